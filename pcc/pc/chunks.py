"""Inference on layer chunks (``parallel.layer_chunks``): the network's values and weights moved between a
graph and its chunked form (:mod:`pcc.ir.chunks`); and how many batch groups it runs (``parallel.batch_groups``).

Only the inference loop sees the chunks: it slices the weights and the starting activities and errors once,
runs on the chunked network, and concatenates what it returns, so a step's results keep the spec's layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from pcc.ir.chunks import Chunking, batch_group_count, chunk_counts, split_stacks
from pcc.ir.graph import Graph, bottom_up_key
from pcc.nn.network import abstract_network
from pcc.spec.models import Spec


KEYS = (lambda node: node, bottom_up_key)
"""How activities and errors name a node's entries: its value or error, and its bottom-up error."""


@dataclass(frozen=True)
class ChunkedLayout:
    """The chunked graph, its network's structure, and the maps into and out of it."""

    chunking: Chunking
    graphdef: Any
    abstract: Any  # the chunked network's parameter state, shapes only

    @property
    def graph(self) -> Graph:
        return self.chunking.graph

    def params(self, params) -> Any:
        """The chunked network's parameters: each stacked leaf sliced by its owner node's chunks."""
        spans = self.chunking.spans
        last = {name: chunk[-1][0] for name, chunk in spans.items()}
        out = {}
        for group, owners in nnx.to_pure_dict(params).items():
            out[group] = {}
            for owner, leaves in owners.items():
                if owner not in spans:
                    if group == "edges":
                        leaves = {last.get(src, src): v for src, v in leaves.items()}
                    out[group][owner] = leaves
                    continue
                for k, (name, a, b) in enumerate(spans[owner]):
                    part = jax.tree.map(lambda v, a=a, b=b: v[a:b], leaves)
                    if group == "edges":  # chunk k > 0 reads chunk k − 1
                        part = {(last.get(src, src) if k == 0 else spans[owner][k - 1][0]): v
                                for src, v in part.items()}
                    out[group][name] = part
        state = jax.tree.map(lambda v: v, self.abstract)
        nnx.replace_by_pure_dict(state, out)
        return state

    def split(self, values: dict) -> dict:
        """Activities or errors (keyed by node, or :func:`bottom_up_key` of it) sliced into chunks."""
        out = dict(values)
        for node, chain in self.chunking.spans.items():
            for key in KEYS:
                if key(node) in out:
                    v = out.pop(key(node))
                    out |= {key(name): v[a:b] for name, a, b in chain}
        return out

    def merge(self, values: dict) -> dict:
        """The inverse of :meth:`split`: chunks concatenated back into their stacks."""
        out = dict(values)
        for node, chain in self.chunking.spans.items():
            for key in KEYS:
                if key(chain[0][0]) in out:
                    out[key(node)] = jnp.concatenate([out.pop(key(name)) for name, _, _ in chain], axis=0)
        return out


def layer_chunks(spec: Spec, graph: Graph) -> dict[str, int]:
    """Chunks per stacked node (see :func:`~pcc.ir.chunks.chunk_counts`) on the backend JAX runs on."""
    return chunk_counts(graph, spec.parallel.layer_chunks, spec.data.batch_size, jax.default_backend() == "cpu")


def batch_groups(spec: Spec, graph: Graph, *, alone: bool) -> int:
    """Groups of samples inference runs side by side (``parallel.batch_groups``). ``auto`` forms them only on a
    CPU of several cores, and only when ``alone``: one device runs the step and no stack is in layer chunks
    (which already give XLA independent operations)."""
    cpu = jax.default_backend() == "cpu"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return batch_group_count(graph, spec.parallel.batch_groups, spec.data.batch_size, cores if cpu and alone else 1)


def chunked_layout(graph: Graph, table: dict, counts: dict[str, int]) -> ChunkedLayout | None:
    """The layout of ``graph`` with its stacks in up to ``counts[name]`` chunks; None when nothing splits."""
    chunking = split_stacks(graph, counts)
    if chunking is None:
        return None
    graphdef, abstract = nnx.split(abstract_network(chunking.graph, chunking.table(table)))
    return ChunkedLayout(chunking, graphdef, abstract)

"""Layer chunks: the same graph with each stacked node split into a few runs of consecutive copies.

A stacked node of R copies is one ``(R, B, N)`` array. Split into chunks ``name#0 … name#(c−1)``, each its
own stacked node of about R/c copies, the network is unchanged: chunk k's copy 0 is fed by chunk k−1's last
copy through the same ops, exactly as copy k of a stack is fed by copy k−1. Inference runs on the chunked
graph where that is faster (``parallel.layer_chunks``): on a CPU, XLA runs the chunks' independent matmuls
and elementwise passes concurrently on its cores (a stack's one batched matmul runs on one core), while the
traced program grows with the number of chunks, not with depth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, TypeVar

from pcc.ir.graph import Graph, bottom_up_key

CPU_CHUNKS = 16
"""The most chunks per stack under ``parallel.layer_chunks: auto`` on a CPU (fastest of 1–24 on Task B,
docs/performance.md); elsewhere ``auto`` is 1."""
MIN_CHUNK_MACS = 2**22
"""Under ``auto``, each chunk's dense op holds at least this many multiply-adds per pass: smaller operations
gain nothing from running concurrently and cost compile time."""

CPU_GROUPS = 4
"""Batch groups under ``parallel.batch_groups: auto`` on a CPU with several cores (2 and 8 were slower than 4 on
Task A-like MLPs, docs/performance.md)."""
MIN_GROUP_ROWS, MIN_GROUP_MACS, MAX_BATCH_MACS = 32, 2**19, 2**24
"""Under ``auto``, groups are formed only when each keeps this many samples and its largest matmul this many
multiply-adds, and the whole batch's largest matmul stays below the last (such a matmul XLA already spreads
over the cores, and splitting it was slower)."""

T = TypeVar("T")
Span = tuple[str, int, int]
"""(chunk name, first copy, one past the last copy) of the original stack."""


@dataclass(frozen=True)
class Chunking:
    """A graph with its stacks split: ``graph`` is the chunked graph, ``spans`` maps each split node to its
    chunks, and ``sources`` maps every dense or identity edge key of ``graph`` to the original edge's key."""

    graph: Graph
    spans: Mapping[str, tuple[Span, ...]]
    sources: Mapping[str, str]

    @property
    def sizes(self) -> dict[str, list[int]]:
        """Copies per chunk of each split node."""
        return {node: [stop - start for _, start, stop in spans] for node, spans in self.spans.items()}

    def table(self, table: Mapping[str, T]) -> dict[str, T]:
        """A per-edge table (keyed by :attr:`Edge.key`, and by :func:`bottom_up_key` of it) for the chunked
        graph, from the original graph's."""
        out = {new: table[old] for new, old in self.sources.items() if old in table}
        return out | {bottom_up_key(new): table[bottom_up_key(old)] for new, old in self.sources.items()
                      if bottom_up_key(old) in table}


def chunk_sizes(repeat: int, chunks: int) -> list[int]:
    """``repeat`` copies in ``min(chunks, repeat // 2)`` nearly equal runs of at least 2 copies."""
    c = max(1, min(chunks, repeat // 2))
    return [repeat // c + (k < repeat % c) for k in range(c)]


def chunk_counts(graph: Graph, setting: int | str, batch_size: int, cpu: bool) -> dict[str, int]:
    """Chunks per stacked node for ``parallel.layer_chunks = setting``: the number itself, or under ``auto`` on
    a CPU as many as hold :data:`MIN_CHUNK_MACS` each, at most :data:`CPU_CHUNKS` (1 on other backends)."""
    counts = {}
    for node in graph.nodes:
        if node.repeat < 2:
            continue
        if setting != "auto":
            counts[node.name] = int(setting)
            continue
        fan_in = max((graph.node(e.src).width for e in graph.incoming(node.name) if e.op == "dense"), default=0)
        macs = node.repeat * batch_size * fan_in * node.width
        counts[node.name] = max(1, min(CPU_CHUNKS, macs // MIN_CHUNK_MACS)) if cpu else 1
    return counts


def split_stacks(graph: Graph, counts: Mapping[str, int]) -> Chunking | None:
    """The chunked graph with each stacked node split into up to ``counts[name]`` chunks (each at least 2
    copies, so a chunk is still a stack), or None when no node splits."""
    spans: dict[str, tuple[Span, ...]] = {}
    for node in graph.nodes:
        sizes = chunk_sizes(node.repeat, counts.get(node.name, 1)) if node.repeat > 1 else [1]
        if len(sizes) > 1:
            starts = [sum(sizes[:k]) for k in range(len(sizes))]
            spans[node.name] = tuple((f"{node.name}#{k}", a, a + s) for k, (a, s) in enumerate(zip(starts, sizes)))
    if not spans:
        return None
    last = {name: chunk[-1][0] for name, chunk in spans.items()}
    nodes, edges, sources = [], [], {}
    for node in graph.nodes:
        if node.name not in spans:
            nodes.append(node)
            continue
        nodes += [replace(node, name=c, repeat=b - a) for c, a, b in spans[node.name]]
    for e in graph.edges:
        if e.dst not in spans:
            new = [replace(e, src=last.get(e.src, e.src))]
        else:
            chain = spans[e.dst]
            new = [replace(e, src=last.get(e.src, e.src), dst=chain[0][0])]
            new += [replace(e, src=chain[k - 1][0], dst=chain[k][0]) for k in range(1, len(chain))]
        edges += new
        sources |= {n.key: e.key for n in new}
    renamed = lambda names: tuple(c for n in names for c in ([s[0] for s in spans[n]] if n in spans else [n]))
    precision = tuple((c, p) for n, p in graph.precision for c in renamed([n]))
    chunked = replace(graph, nodes=tuple(nodes), edges=tuple(edges), precision=precision,
                      learned_precision=renamed(graph.learned_precision))
    return Chunking(chunked, spans, sources)


def batch_group_count(graph: Graph, setting: int | str, batch_size: int, cores: int) -> int:
    """Groups of samples for ``parallel.batch_groups = setting``: the number itself, or under ``auto``
    :data:`CPU_GROUPS` where ``cores`` > 1 and the largest dense op between free nodes (one copy of a stack) is
    in the range where running the groups concurrently was faster (see :data:`MIN_GROUP_ROWS`); else 1."""
    if setting != "auto":
        return int(setting)
    ops = [graph.node(e.src).width * graph.node(e.dst).width for e in graph.edges
           if e.op == "dense" and e.src != graph.x_node.name]
    rows = batch_size // CPU_GROUPS
    fits = ops and rows >= MIN_GROUP_ROWS and rows * max(ops) >= MIN_GROUP_MACS and batch_size * max(ops) < MAX_BATCH_MACS
    return CPU_GROUPS if cores > 1 and fits else 1

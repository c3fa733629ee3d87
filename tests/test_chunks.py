"""Layer chunks (``parallel.layer_chunks``): the chunked graph is the same network, so inference on it must
give the unchunked program's activities, errors, metrics and weights (to float32 rounding: XLA may sum in
another order)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import pcc
from pcc.ir.chunks import CPU_CHUNKS, MIN_CHUNK_MACS, chunk_counts, chunk_sizes, split_stacks
from pcc.ir.lower import lower
from tests.helpers import batch, chain_layers, copy_state, make_spec

STACK = chain_layers([8], residual_repeat=7)  # input → h1 → 7 residual copies → output

SLOW = {"ode", "optax-tol", "generative"}  # other solvers and modes: the same settle path, run with -m slow
VARIANTS = {
    "mupc-gd": dict(layers=STACK, param="mupc", inference={"errors": "recomputed"}),
    "dense-stack-phi_w-bias": dict(layers=[{"dense": {"width": 8}}, {"dense": {"width": 8}, "repeat": 6},
                                           {"dense": {}}], ordering="phi_w", bias=True),
    "learned-precision": dict(layers=STACK, param="mupc", learn_precision=True),
    "bidirectional": dict(layers=STACK, bidirectional={"alpha_f": 1.0, "alpha_b": 0.5}),
    "carried-errors": dict(layers=STACK, param="mupc", inference={"errors": "carried"}),
    "optax-tol": dict(layers=STACK, inference={"solver": "optax", "tol": 1e-4, "steps": 30,
                                               "optimizer": {"name": "momentum", "lr": 0.1, "momentum": 0.5}}),
    "amortised": dict(layers=STACK, inference={"init": "amortised"}),
    "ode": dict(layers=STACK, inference={"solver": "ode", "ode": {"method": "heun", "controller": "constant"}}),
    "generative": dict(layers=STACK, mode="generative"),
}


def test_chunk_sizes_cover_the_stack():
    for repeat in range(2, 40):
        for chunks in (1, 2, 3, 8, 16):
            sizes = chunk_sizes(repeat, chunks)
            assert sum(sizes) == repeat and min(sizes) >= min(2, repeat) and max(sizes) - min(sizes) <= 1
            assert len(sizes) == max(1, min(chunks, repeat // 2))


def test_chunked_graph_chains_the_copies():
    graph = lower(make_spec(STACK, param="mupc"), (5, 3))
    stack = [n for n in graph.nodes if n.repeat > 1][0]
    chunking = split_stacks(graph, {stack.name: 3})
    names = [c for c, _, _ in chunking.spans[stack.name]]
    assert [chunking.graph.node(c).repeat for c in names] == [3, 2, 2]
    assert chunking.graph.depth == graph.depth and chunking.graph.layer_labels.__len__() == len(graph.layer_labels)
    # chunk k reads chunk k − 1 through a dense and an identity edge; the node after the stack reads the last chunk
    for prev, cur in zip(names, names[1:]):
        assert {(e.src, e.op) for e in chunking.graph.incoming(cur)} == {(prev, "dense"), (prev, "identity")}
    assert [e.src for e in chunking.graph.incoming("output")] == [names[-1]]
    assert split_stacks(graph, {stack.name: 1}) is None


def test_auto_chunks_hold_enough_work_each():
    """auto on a CPU: as many chunks as hold MIN_CHUNK_MACS multiply-adds each, at most CPU_CHUNKS; 1 elsewhere."""
    graph = lower(make_spec(chain_layers([128], residual_repeat=126), param="mupc"), (784, 10))
    stack = [n for n in graph.nodes if n.repeat > 1][0].name
    macs = lambda b: 126 * b * 128 * 128  # noqa: E731
    assert chunk_counts(graph, "auto", 128, cpu=True) == {stack: CPU_CHUNKS}  # task B: 63 chunks' worth
    assert chunk_counts(graph, "auto", 32, cpu=True) == {stack: macs(32) // MIN_CHUNK_MACS} == {stack: 15}
    assert chunk_counts(graph, "auto", 16, cpu=True) == {stack: 7}
    assert chunk_counts(graph, "auto", 2, cpu=True) == {stack: 1}
    assert chunk_counts(graph, "auto", 128, cpu=False) == {stack: 1}
    assert chunk_counts(graph, 5, 1, cpu=False) == {stack: 5}
    small = lower(make_spec(STACK, param="mupc"), (5, 3))  # 7 copies of 8 × 8: one chunk
    assert set(chunk_counts(small, "auto", 64, cpu=True).values()) == {1}


def _run(spec, overrides: dict, steps: int = 2):
    spec = spec.model_copy(update={"parallel": spec.parallel.model_copy(update=overrides)})
    compiled = pcc.compile(spec, shapes=(5, 3))
    x, y = batch(0, 6, 5, 3)
    state = compiled.init()
    result = compiled.infer(state, x, y)
    metrics = []
    for _ in range(steps):
        state, m = compiled.train_step(state, (x, y))
        metrics.append(jax.tree.map(np.asarray, m))
    return compiled, copy_state(state), jax.tree.map(np.asarray, result), metrics


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(VARIANTS)])
def test_chunked_inference_is_the_same_program(name):
    spec = make_spec(**VARIANTS[name])
    plain = _run(spec, {"layer_chunks": 1})
    chunked = _run(spec, {"layer_chunks": 3})
    assert plain[0].program.layout is None and chunked[0].program.layout is not None
    for a, b in zip(jax.tree.leaves(plain[1:]), jax.tree.leaves(chunked[1:])):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6)


def test_bench_names_the_chunks_it_timed():
    from pcc.bench import bench

    spec = make_spec(STACK, param="mupc")
    spec = spec.model_copy(update={"parallel": spec.parallel.model_copy(update={"layer_chunks": 3})})
    assert list(bench(spec, steps=2, warmup=1).layer_chunks.values()) == [[3, 2, 2]]

"""Layer chunks (``parallel.layer_chunks``) and batch groups (``parallel.batch_groups``): the chunked graph is
the same network, and each sample's inference is independent of the others', so inference on chunks or on
groups of samples must give the plain program's activities, errors, metrics and weights (to float32 rounding:
XLA may sum in another order)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import pcc
from pcc.ir.chunks import CPU_CHUNKS, CPU_GROUPS, MIN_CHUNK_MACS, batch_group_count, chunk_counts, chunk_sizes, split_stacks
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


def _parallel(spec, **overrides):
    """``spec`` with some ``parallel`` settings replaced."""
    return spec.model_copy(update={"parallel": spec.parallel.model_copy(update=overrides)})


def _run(spec, overrides: dict, steps: int = 2):
    spec = _parallel(spec, **overrides)
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
    spec = _parallel(spec, layer_chunks=3)
    assert list(bench(spec, steps=2, warmup=1).layer_chunks.values()) == [[3, 2, 2]]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(VARIANTS)])
def test_inference_on_batch_groups_is_the_same_program(name):
    """Six samples in four uneven groups (1, 2, 1, 2), inference running them side by side. A one-sample group
    multiplies a vector, summing in another order; two SGD steps at lr 1 grow learned precision's weights to
    ~40 and that rounding to 5e-5 of them, hence rtol 1e-4 (the activities agree to 2e-7)."""
    spec = make_spec(**VARIANTS[name])
    plain = _run(spec, {"layer_chunks": 1, "batch_groups": 1})
    grouped = _run(spec, {"layer_chunks": 1, "batch_groups": 4})
    assert plain[0].program.groups == 1 and grouped[0].program.groups == 4
    for a, b in zip(jax.tree.leaves(plain[1:]), jax.tree.leaves(grouped[1:])):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-6)
    for a, b in zip(jax.tree.leaves(plain[2].activities), jax.tree.leaves(grouped[2].activities)):
        np.testing.assert_allclose(b, a, rtol=2e-6, atol=2e-7)


def test_batch_groups_on_layer_chunks_and_their_loop():
    """Groups inside chunks give the plain program's results; the grouped loop body holds a copy of the
    network's matmuls per group."""
    spec = make_spec(**VARIANTS["carried-errors"])
    plain = _run(spec, {"layer_chunks": 1, "batch_groups": 1})
    both = _run(spec, {"layer_chunks": 3, "batch_groups": 2})
    for a, b in zip(jax.tree.leaves(plain[1:]), jax.tree.leaves(both[1:])):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6)

    def loop_dots(groups):
        compiled = _run(spec, {"layer_chunks": 1, "batch_groups": groups}, steps=0)[0]
        jaxpr = compiled.trace_train_step(compiled.init(), batch(0, 6, 5, 3)).jaxpr
        loops = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name in ("scan", "while")]
        return sum(1 for loop in loops for e in _equations(loop.params["jaxpr"].jaxpr)
                   if e.primitive.name == "dot_general")

    assert loop_dots(1) > 0 and loop_dots(3) == 3 * loop_dots(1)


def _equations(jaxpr):
    """Every equation of ``jaxpr`` and of the jaxprs nested in it (jit calls; a loop's body stays its own)."""
    for e in jaxpr.eqns:
        yield e
        inner = e.params.get("jaxpr")
        if e.primitive.name not in ("scan", "while") and inner is not None:
            yield from _equations(getattr(inner, "jaxpr", inner))


def test_masked_inference_runs_whole_under_batch_groups():
    """Inpainting clamps a mask shaped like the batch: inference runs it as one group, with the same result."""
    spec = make_spec(chain_layers([8]), param="mupc", mode="unsupervised", latent_width=4)
    x, _ = batch(7, 6, 5, 3)
    mask = np.zeros_like(x)
    mask[:, :2] = 1
    filled = []
    for groups in (1, 3):
        compiled = pcc.compile(_parallel(spec, batch_groups=groups), shapes=(5, 3))
        filled.append(np.asarray(compiled.inpaint(compiled.init(), x, mask)))
    np.testing.assert_array_equal(filled[1], filled[0])


def test_auto_batch_groups_where_they_were_faster():
    """auto: CPU_GROUPS groups on several cores for an MLP whose matmuls are mid-sized (Task A: 784-128-128-
    128-10 at B = 128, 256 or 512; width 256 at B = 128), one where groups were slower (a group under 32
    samples, width 64, the whole batch's matmul over 2²⁴ multiply-adds) and on one core."""
    def groups(width, b, cores=2, setting="auto"):
        graph = lower(make_spec(chain_layers([width] * 3)), (784, 10))
        return batch_group_count(graph, setting, b, cores)

    assert [groups(128, b) for b in (128, 256, 512)] == [CPU_GROUPS] * 3
    assert groups(256, 128) == CPU_GROUPS
    assert [groups(128, 64), groups(64, 128), groups(128, 2048), groups(512, 128)] == [1, 1, 1, 1]
    assert groups(128, 128, cores=1) == 1
    assert groups(64, 8, cores=1, setting=3) == 3


def test_bench_names_the_batch_groups_it_timed():
    from pcc.bench import bench

    spec = make_spec(chain_layers([8]))
    spec = _parallel(spec, batch_groups=2)
    assert bench(spec, steps=2, warmup=1).batch_groups == 2

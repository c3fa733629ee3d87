"""`pcc explain`'s parameter count against the parameters the compiled network actually holds."""

from __future__ import annotations

import jax
import pytest

from pcc.compiler import compile
from pcc.explain import explain
from pcc.spec.loader import load_spec


@pytest.mark.parametrize("spec", ["quickstart", "mupc-resnet8-digits", "graph-skip", "bidirectional-digits",
                                  "amortised-generative-digits", "precision-digits", "unsupervised-digits"])
def test_explain_counts_every_parameter(spec):
    loaded = load_spec(f"specs/{spec}.yaml")
    info = explain(loaded)
    params = compile(loaded).init().params
    assert info["total_params"] == sum(leaf.size for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("spec, overrides, errors", [
    ("mupc-resnet8-digits", [], "carried"),
    ("mupc-resnet8-digits", ["inference.errors=recomputed"], "recomputed"),
    ("mupc-resnet8-digits", ["model.dtype=bfloat16"], "recomputed"),
    ("ode-digits", [], "recomputed"),
    ("epc-digits", [], "recomputed"),
    ("bidirectional-digits", [], "recomputed"),
])
def test_explain_says_how_inference_updates_the_errors(spec, overrides, errors):
    """What the compiled program does (Program.carry_errors) is what explain reports."""
    loaded = load_spec(f"specs/{spec}.yaml", overrides)
    assert explain(loaded)["inference"]["errors"] == errors
    assert compile(loaded).program.carry_errors == (errors == "carried")


@pytest.mark.parametrize("overrides, sizes", [
    ([], [8] * 14 + [7] * 2),  # auto: 16 chunks on this CPU
    (["parallel.layer_chunks=3"], [42, 42, 42]),
    (["parallel.layer_chunks=1"], None),
    (["learning.algorithm=ipc"], None),  # ipc's loop is not chunked
])
def test_explain_reports_the_layer_chunks_inference_runs_on(overrides, sizes):
    """explain's chunk sizes are the chunks of the compiled program's inference (task B: 126 residual layers)."""
    loaded = load_spec("benchmarks/task_b.yaml", overrides)
    chunks = explain(loaded, shapes=(784, 10))["inference"]["layer_chunks"]
    layout = compile(loaded, shapes=(784, 10)).program.layout
    stack = None if layout is None else layout.chunking.sizes["h2"]
    if sizes is None:  # one chunk: no layout; ipc: its training loop does not use the layout
        assert chunks is None or chunks["sizes"]["h2"] == [126]
        assert stack is None if overrides != ["learning.algorithm=ipc"] else chunks is None
    else:
        assert chunks["sizes"]["h2"] == sizes == stack


@pytest.mark.parametrize("task, overrides, groups", [
    ("a", [], 4),  # auto on a CPU of several cores: Task A's MLP in 4 groups of 32
    ("a", ["parallel.batch_groups=1"], None),
    ("a", ["learning.algorithm=ipc"], None),  # ipc's loop does not group
    ("b", [], None),  # auto: not beside layer chunks
    ("b", ["parallel.batch_groups=2"], 2),
])
def test_explain_reports_the_batch_groups_inference_runs(task, overrides, groups):
    """explain's batch groups are those of the compiled program's inference (where this CPU has several cores)."""
    import os

    loaded = load_spec(f"benchmarks/task_{task}.yaml", overrides)
    info = explain(loaded, shapes=(784, 10))["inference"]["batch_groups"]
    assert (info or {}).get("groups") == groups
    if groups and len(os.sched_getaffinity(0)) > 1 and "ipc" not in str(overrides):
        assert compile(loaded, shapes=(784, 10)).program.groups == groups

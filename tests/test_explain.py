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

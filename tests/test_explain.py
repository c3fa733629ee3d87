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

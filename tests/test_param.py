"""Parameterisation rules against THEORY.md §3 (written out by hand here, not computed by the rules)."""

from __future__ import annotations

import math

import pytest

from pcc.ir.lower import lower
from pcc.param.rules import parameterise
from pcc.spec.models import Spec

D, N, C = 784, 128, 10


def table_for(param, layers=None, graph=None, **model):
    spec = Spec.model_validate({"model": {"parameterisation": param, "layers": layers, "graph": graph, **model}})
    g = lower(spec, shapes=(D, C))
    return g, parameterise(g, param, gain=spec.model.gain, gamma=spec.model.output_gamma)


def chain(hidden, skips):
    layers = [{"dense": {"width": N}}]
    if hidden > 1:
        layers.append({("residual" if skips else "dense"): {"width": N}, "repeat": hidden - 1})
    return layers + [{"dense": {}}]


# THEORY.md §3, with L = H + 1 weight layers
EXPECTED = {
    ("ntp", False): (1 / math.sqrt(D), lambda L: 1 / math.sqrt(N), 1 / math.sqrt(N)),
    ("ntp", True): (1 / math.sqrt(D), lambda L: 1 / math.sqrt(N * L), 1 / math.sqrt(N)),
    ("mupc", False): (1 / math.sqrt(D), lambda L: 1 / math.sqrt(N), 1 / N),
    ("mupc", True): (1 / math.sqrt(D), lambda L: 1 / math.sqrt(N * L), 1 / N),
    ("sp", False): (1.0, lambda L: 1.0, 1.0),
    ("sp", True): (1.0, lambda L: 1.0, 1.0),
}


@pytest.mark.parametrize("param,skips", sorted(EXPECTED))
@pytest.mark.parametrize("hidden", [2, 7, 127])
def test_chain_multipliers_match_theory_table(param, skips, hidden):
    g, table = table_for(param, chain(hidden, skips))
    L = hidden + 1
    assert g.depth == L
    a_in, a_hidden, a_out = EXPECTED[(param, skips)]
    stem, *middle, readout = [table[e.key] for e in g.edges if e.op == "dense"]
    assert stem.multiplier == pytest.approx(a_in)
    assert readout.multiplier == pytest.approx(a_out)
    for p in middle:
        assert p.multiplier == pytest.approx(a_hidden(L))
    # weights: N(0, 1) for ntp/mupc, U(±1/√fan_in) for sp — initialised once (no double scaling)
    for p, fan_in in [(stem, D), (readout, N)] + [(p, N) for p in middle]:
        if param == "sp":
            assert (p.init, p.init_scale) == ("uniform", pytest.approx(1 / math.sqrt(fan_in)))
        else:
            assert (p.init, p.init_scale) == ("normal", 1.0)


def test_output_gamma_and_gain():
    g, table = table_for("mupc", chain(3, True), output_gamma=2.0, gain=1.5)
    stem, middle, readout = [table[e.key] for e in g.edges if e.op == "dense"]
    assert readout.multiplier == pytest.approx(1.5 / (2.0 * N))
    assert stem.multiplier == pytest.approx(1.5 / math.sqrt(D))
    assert middle.multiplier == pytest.approx(1.5 / math.sqrt(N * 4))


def test_merge_node_gets_the_in_degree_rule():
    graph = {
        "a": {"inputs": ["input"], "width": 64},
        "b": {"inputs": ["input"], "width": 32},
        "m": {"inputs": ["a", "b"], "width": 16},  # K = 2 dense edges
        "r": {"inputs": ["m", {"from": "m", "op": "identity"}], "width": 16},  # residual branch
        "output": {"inputs": ["r", "a"]},  # readout with K = 2
    }
    g, table = table_for("mupc", graph=graph)
    L = g.depth
    assert L == 4  # input → a|b → m → r → output
    assert table["input->a:dense"].multiplier == pytest.approx(1 / math.sqrt(D))
    assert table["a->m:dense"].multiplier == pytest.approx(1 / math.sqrt(64 * 2))
    assert table["b->m:dense"].multiplier == pytest.approx(1 / math.sqrt(32 * 2))
    assert table["m->r:dense"].multiplier == pytest.approx(1 / math.sqrt(16 * 1 * L))
    assert table["r->output:dense"].multiplier == pytest.approx(1 / (16 * math.sqrt(2)))
    assert table["a->output:dense"].multiplier == pytest.approx(1 / (64 * math.sqrt(2)))


def test_lr_scaling_on_residual_branches_only():
    spec = Spec.model_validate({"model": {"parameterisation": "mupc", "layers": chain(5, True)},
                                "learning": {"lr_scaling": True}})
    g = lower(spec, shapes=(D, C))
    table = parameterise(g, "mupc", lr_scaling=True, optimizer="adam")
    stem, middle, readout = [table[e.key] for e in g.edges if e.op == "dense"]
    assert (stem.lr_scale, readout.lr_scale) == (1.0, 1.0)
    assert middle.lr_scale == pytest.approx(1 / math.sqrt(N * 6))

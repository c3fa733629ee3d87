"""Inference carries the prediction errors by their changes (pcc.pc.energy.carry_errors): exact in real
arithmetic, and immune to a backend whose feedforward pass rounds differently from the energy's predictions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pcc
import pcc.nn.network as network
from pcc.ir.graph import INPUT
from pcc.pc import energy as E
from pcc.spec.loader import load_spec_text
from tests.helpers import batch, chain_layers, make_spec


def _drop_last_bit(x):
    u = jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jax.lax.bitcast_convert_type((u + jnp.uint32(1)) & jnp.uint32(0xFFFFFFFE), jnp.float32)


@pytest.mark.parametrize("model", [
    dict(param="mupc", act="relu", layers=chain_layers([16], residual_repeat=4)),
    dict(param="sp", act="tanh", bias=True, layers=chain_layers([12, 10], residual_repeat=3)),
    dict(param="ntp", act="gelu", graph={
        "a": {"width": 12, "inputs": ["input"]},
        "b": {"width": 12, "inputs": ["a", "input", {"from": "a", "op": "identity"}]},
        "output": {"inputs": ["b", "a"]}}),
])
def test_carried_errors_equal_recomputed_ones(model):
    """e(old) + Δe(old → new) = e(new), for stacks, biases, skips and multi-input nodes."""
    layers = model.pop("layers", None)
    spec = make_spec(layers, **model) if layers else make_spec(None, **model)
    c = pcc.compile(spec, shapes=(8, 5))
    p, params = c.program, c.init().params
    net = p.net(params)
    x, y = batch(0, 6, 8, 5)
    rng = np.random.default_rng(1)
    fwd = net.forward(jnp.asarray(x))
    old_free = {n: fwd[n] + 0.3 * rng.normal(size=fwd[n].shape).astype(np.float32) for n in p.free_names()}
    new_free = {n: v + 0.1 * rng.normal(size=v.shape).astype(np.float32) for n, v in old_free.items()}
    old, new = p.values(old_free, x, y), p.values(new_free, x, y)
    carried = E.carry_errors(net, old, new, E.errors(net, old), old_free)
    recomputed = E.errors(net, new)
    assert carried.keys() == recomputed.keys()
    for n in recomputed:
        np.testing.assert_allclose(carried[n], recomputed[n], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("errors", ["carried", "recomputed"])
def test_unreached_layers_stay_exactly_zero_under_a_rounding_mismatch(monkeypatch, errors):
    """A feedforward pass one ULP off the energy's predictions (as another backend's kernels may round): the
    layers inference has not reached (T = 2 of H = 8) keep exactly zero errors and weight gradients, as on a
    consistent backend. Recomputing the errors from the activities would hand them that rounding as signal."""
    exact = network.PCNetwork.forward

    def off_by_one_ulp(self, x, offsets=None):
        return {k: v if k == INPUT else _drop_last_bit(v) for k, v in exact(self, x, offsets).items()}

    monkeypatch.setattr(network.PCNetwork, "forward", off_by_one_ulp)
    spec = make_spec(chain_layers([32], residual_repeat=7), param="mupc", act="relu",
                     inference={"steps": 2, "step_size": 0.5, "errors": errors},
                     learning={"optimizer": {"name": "adam", "lr": 0.05}})
    c = pcc.compile(spec, shapes=(20, 4))
    x, y = batch(3, 16, 20, 4)
    _, metrics = c.train_step(c.init(), (x, y))
    norms = dict(zip(c.graph.layer_labels, np.asarray(metrics.grad_norms)))
    unreached = ["h1"] + [f"h2[{k}]" for k in range(5)]
    if errors == "carried":
        assert all(norms[label] == 0.0 for label in unreached), norms
    else:  # the rounding noise reaches every layer's weight gradient
        assert all(norms[label] > 0.0 for label in unreached), norms
    assert norms["h2[6]"] > 0 and norms["output"] > 0


def test_carried_and_recomputed_errors_train_alike():
    """On a consistent backend both ways give the same step, to rounding."""
    steps = {}
    for errors in ("carried", "recomputed"):
        spec = make_spec(chain_layers([24], residual_repeat=5), param="mupc", act="tanh",
                         inference={"steps": 6, "step_size": 0.3, "errors": errors})
        c = pcc.compile(spec, shapes=(10, 3))
        state, metrics = c.train_step(c.init(), batch(5, 8, 10, 3))
        steps[errors] = (jax.tree.leaves(state.params), metrics)
    (p1, m1), (p2, m2) = steps["carried"], steps["recomputed"]
    np.testing.assert_allclose(m1.layer_energies, m2.layer_energies, rtol=1e-4, atol=1e-9)
    for a, b in zip(p1, p2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_carried_errors_are_rejected_where_they_do_not_apply():
    with pytest.raises(pcc.SpecError, match="errors: carried"):
        load_spec_text("model: {ordering: phi_w, layers: [{dense: {width: 4}}, {dense: {}}]}\n"
                           "inference: {errors: carried}\n")

"""Numeric precision controls (``model.matmul_precision``, ``model.dtype``) against the lowered program and the
linear closed forms."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pcc.compiler import compile
from pcc.theory import linear as T
from pcc.theory.network import linear_chain
from tests.helpers import batch, chain_layers, make_spec
from tests.test_compile import LINEAR_CASES, kernels, per_layer

D, C = 6, 3
DOT = re.compile(r"stablehlo\.dot_general .*?precision = \[(\w+), (\w+)\] : \((.*)\) -> (.*)$")


def dots(text: str) -> list[tuple[str, tuple[str, ...], str]]:
    """(precision, operand element types, result element type) of every dot in StableHLO text."""
    lines = [line for line in text.splitlines() if "dot_general" in line]
    found = [DOT.search(line) for line in lines]
    assert all(found), [line for line, m in zip(lines, found) if not m]
    elem = lambda t: re.findall(r"tensor<(?:\d+x)*(\w+)>", t)
    return [(m.group(1), tuple(elem(m.group(3))), elem(m.group(4))[0]) for m in found]


def lowered(m, *, x=None, y=None) -> str:
    """The StableHLO of a compiled model's train step, inference and prediction."""
    x, y = batch(0, 4, D, C) if x is None else (x, y)
    state = m.init()
    key = jax.random.key(0)
    x, y = jnp.asarray(x), jnp.asarray(y)
    return "\n".join([m._train_step.lower(state, x, y).as_text(), m._infer.lower(state.params, x, y, key).as_text(),
                      m._predict.lower(state.params, x, key).as_text()])


def residual_model(**model):
    return compile(make_spec(chain_layers([8], residual_repeat=2), **model), shapes=(D, C))


# ------------------------------------------------------------------------------------------ matmul precision
@pytest.mark.parametrize("precision", ["highest", "high", "default"])
@pytest.mark.parametrize("algorithm", ["pc", "bp"])
def test_matmul_precision_is_the_precision_of_every_dot(precision, algorithm):
    """Every dot of the train step (forward, back-projections, weight gradients, the stacked einsum),
    inference and prediction carries the spec's precision; JAX's default would be DEFAULT."""
    m = residual_model(matmul_precision=precision, learning={"algorithm": algorithm})
    text = lowered(m)
    found = dots(text)
    assert len(found) >= 10
    assert {p for p, _, _ in found} == {precision.upper()}
    if precision == "default":
        assert "HIGHEST" not in text
    assert all(ops == ("f32", "f32") and out == "f32" for _, ops, out in found)


def test_float32_default_emits_no_low_precision_and_no_master_weights():
    m = residual_model()
    assert (m.spec.model.dtype, m.graph.dtype, m.spec.model.matmul_precision) == ("float32", "float32", "highest")
    assert "bf16" not in lowered(m)
    state = m.init()
    assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert not any("master" in jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state))


# ------------------------------------------------------------------------------------------ bfloat16
@pytest.mark.parametrize("algorithm", ["pc", "bp"])
def test_bfloat16_dots_take_bfloat16_inputs_and_accumulate_in_float32(algorithm):
    """Forward dots ask for a float32 result; derivative dots (back-projections, weight gradients) read
    bfloat16 cotangents, so no dot of the program runs on float32 operands."""
    m = residual_model(dtype="bfloat16", learning={"algorithm": algorithm})
    found = dots(lowered(m))
    assert all(ops == ("bf16", "bf16") for _, ops, _ in found), found
    assert any(out == "f32" for _, _, out in found)
    assert {p for p, _, _ in found} == {"HIGHEST"}


def test_bfloat16_stores_weights_and_activities_and_reports_float32():
    m = compile(make_spec(chain_layers([8], residual_repeat=2), dtype="bfloat16", learn_precision=True,
                          learning={"optimizer": {"name": "adam", "lr": 1e-3}}), shapes=(D, C))
    state = m.init()
    pure = nnx.to_pure_dict(state.params)
    bf16, f32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)
    assert {a.dtype for a in jax.tree.leaves(pure["edges"])} == {bf16}
    assert {a.dtype for a in jax.tree.leaves(pure["log_precision"])} == {f32}  # λ lives with the float32 energy
    # the optimiser's state and master weights are float32 (the step counter aside)
    assert {a.dtype for a in jax.tree.leaves(state.opt_state) if jnp.issubdtype(a.dtype, jnp.floating)} == {f32}
    x, y = batch(1, 4, D, C)
    result = m.infer(state, x, y)
    assert {a.dtype for a in result.activities.values()} == {bf16}
    assert result.energy.dtype == f32 and result.layer_energies.dtype == f32
    state, metrics = m.train_step(state, (x, y))
    assert {a.dtype for a in jax.tree.leaves(metrics) if jnp.issubdtype(a.dtype, jnp.floating)} == {f32}
    assert {a.dtype for a in jax.tree.leaves(nnx.to_pure_dict(state.params)["edges"])} == {bf16}
    assert m.predict(state, x).dtype == f32


def _equilibrium_errors(case, dtype, state):
    """Relative errors (worst layer's activities, per-sample energies, all weight gradients) of 300 inference
    steps against the closed form of the network's own (rounded) weights."""
    kw = dict(LINEAR_CASES[case])
    layers, param = kw.pop("layers"), kw.pop("param")
    m = compile(make_spec(layers, param=param, act="identity", dtype=dtype,
                          inference={"steps": 300, "step_size": 0.2, "state": state}, **kw), shapes=(D, C))
    state = m.init()
    params = state.params
    x, y = batch(1, 8, D, C, classes=False)
    result = m.infer(state, x, y)
    chain = linear_chain(m, params)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    rel = lambda a, b: np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)
    z_err = max(rel(g, z) for g, z in zip(per_layer(m, result.activities), T.equilibrium(chain, x64, y64)))
    f_err = rel(result.energy, T.equilibrated_energy(chain, x64, y64))
    _, grads = jax.jit(m.program.weight_grad)(params, result.activities, x, y)
    gk = kernels(grads)
    got = [np.asarray(g, np.float64)[k] if m.graph.node(n.name).repeat > 1 else np.asarray(g, np.float64)
           for n in m.graph.energy_nodes for e in m.graph.incoming(n.name) if e.op == "dense"
           for g in [gk[(n.name, e.src)]] for k in range(n.repeat)]
    want = T.pc_weight_gradients_at_equilibrium(chain, x64, y64)
    flat = lambda gs: np.concatenate([np.ravel(g) for g in gs])
    return z_err, f_err, rel(flat(got), flat(want)), result


@pytest.mark.parametrize("case", ["mupc-residual", "ntp-chain"])
def test_bfloat16_error_state_inference_reaches_the_closed_form_equilibrium(case):
    """ePC stores the prediction errors themselves, so bfloat16 keeps them to 2⁻⁹ relative: the equilibrium,
    its energy and the weight gradient of the bfloat16 network come within bfloat16 tolerances of the exact
    ones (float32 reaches them to < 1e-6 in the same 300 steps)."""
    z_err, f_err, g_err, result = _equilibrium_errors(case, "bfloat16", "errors")
    assert result.energy.dtype == jnp.float32
    assert z_err < 1.5e-2 and f_err < 1e-2 and g_err < 5e-2, (z_err, f_err, g_err)


def test_bfloat16_activity_inference_reaches_the_closed_form_energy():
    """With bfloat16 activities the errors are differences of rounded activities: the energy still comes within
    ~1e-2 and the activities within a few 1e-2 of the closed form, the weight gradient only within ~5 % here
    (10–20 % on the worse-conditioned chains, see the ``model.dtype`` docs)."""
    z_err, f_err, g_err, _ = _equilibrium_errors("sp-chain", "bfloat16", "activities")
    assert f_err < 1e-2 and z_err < 4e-2 and g_err < 0.1, (z_err, f_err, g_err)


def test_bfloat16_training_tracks_float32_through_float32_master_weights():
    """N(0, 1) weights (ntp) move by ~lr = 1e-3 per Adam step, below bfloat16's resolution at 1 (2⁻⁸): the
    float32 master copy in the optimiser state accumulates the steps, the bfloat16 weights are its rounding, and
    the losses follow the float32 run."""
    x, y = batch(4, 16, D, C)
    runs = {}
    for dtype in ("float32", "bfloat16"):
        m = compile(make_spec(chain_layers([16, 16]), param="ntp", dtype=dtype,
                              inference={"steps": 20, "step_size": 0.1, "state": "errors"},
                              learning={"optimizer": {"name": "adam", "lr": 1e-3}}), shapes=(D, C))
        state, losses = m.init(), []
        w0 = kernels(state.params)
        for _ in range(15):
            state, metrics = m.train_step(state, (x, y))
            losses.append(float(metrics.loss))
        runs[dtype] = w0, state, np.array(losses)
    w0, ref, ref_losses = runs["float32"]
    _, low, low_losses = runs["bfloat16"]
    np.testing.assert_allclose(low_losses, ref_losses, rtol=1e-2)
    master, weights, want = kernels(low.opt_state.master), kernels(low.params), kernels(ref.params)
    for k in w0:
        assert master[k].dtype == np.float32 and weights[k].dtype == jnp.bfloat16
        np.testing.assert_array_equal(master[k].astype(jnp.bfloat16), weights[k])  # the weights: the rounded master
        moved = np.linalg.norm(want[k] - w0[k])
        assert np.linalg.norm(master[k] - want[k]) < 0.2 * moved, k  # the master follows the float32 weights


def test_bfloat16_with_ode_inference_is_rejected_at_the_field():
    from pcc.errors import SpecError
    from pcc.spec.loader import load_spec_text

    with pytest.raises(SpecError) as info:
        load_spec_text("model:\n  dtype: bfloat16\n  layers: [{dense: {}}]\ninference: {solver: ode}\n", "a.yaml")
    issue = info.value.issues[0]
    assert str(issue).startswith("a.yaml:2:10: model.dtype: `model.dtype: bfloat16` supports `inference.solver: gd`")
    assert "use `model.dtype: float32` with `solver: ode`" in issue.message


def test_bench_and_explain_report_the_dtype():
    from pcc.bench import matmul_peak
    from pcc.explain import explain

    for dtype in ("float32", "bfloat16"):
        assert np.isfinite(matmul_peak(n=64, repeats=2, dtype=dtype, precision="highest"))
    info = explain(make_spec(chain_layers([8]), dtype="bfloat16", matmul_precision="high"), shapes=(D, C))
    assert (info["dtype"], info["matmul_precision"]) == ("bfloat16", "high")

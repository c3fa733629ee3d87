"""The algorithm family against oracles: ODE inference, learnable precisions, generative and unsupervised
modes with partial clamping, ePC, nudging, update schedules; and every combination of their options either
compiles and takes a finite training step or is rejected at validation time."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pcc.compiler import compile
from pcc.spec.models import ODE_METHODS, Spec
from pcc.theory import linear as T
from pcc.theory.network import linear_chain
from tests.helpers import batch, chain_layers, copy_state

D, C = 6, 3


def spec(layers=None, *, model=None, inference=None, learning=None) -> Spec:
    """A validated spec from dicts (no test defaults beyond a sgd weight optimiser)."""
    return Spec.model_validate({
        "model": {"layers": layers or chain_layers([8, 8]), **(model or {})},
        "inference": inference or {},
        "learning": {"optimizer": {"name": "sgd", "lr": 0.1}, **(learning or {})},
    })


def leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def per_layer(m, activities):
    """Free activities as one (B, N) array per hidden layer (stacked nodes split into their copies)."""
    out = []
    for n in m.graph.nodes:
        if n.name in activities:
            a = np.asarray(activities[n.name])
            out += [a[k] for k in range(n.repeat)] if n.repeat > 1 else [a]
    return out


# ------------------------------------------------------------------------------------------ 1. ODE inference
@pytest.mark.parametrize("method", ODE_METHODS)
def test_every_ode_method_reaches_the_closed_form_equilibrium(method):
    controller = "constant" if method in ("euler", "heun") else "pid"
    m = compile(spec(chain_layers([8], residual_repeat=2), model={"parameterisation": "mupc", "activation": "identity"},
                     inference={"solver": "ode", "tol": 1e-6, "ode": {
                         "method": method, "controller": controller, "t1": 500, "dt0": 0.2, "rtol": 1e-6,
                         "atol": 1e-6}}), shapes=(D, C))
    state = m.init()
    x, y = batch(1, 4, D, C, classes=False)
    result = m.infer(state, x, y)
    zstar = T.equilibrium(linear_chain(m, state.params), x.astype(np.float64), y.astype(np.float64))
    for got, want in zip(per_layer(m, result.activities), zstar):
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert 0 < int(result.steps) < 4096  # stopped by the steady-state event, not the budget


def test_ode_euler_at_constant_steps_is_gradient_descent():
    common = {"steps": 7, "step_size": 0.1}
    gd = compile(spec(inference=common), shapes=(D, C))
    ode = compile(spec(inference={**common, "solver": "ode", "ode": {"method": "euler", "controller": "constant"}}),
                  shapes=(D, C))
    x, y = batch(2, 8, D, C)
    ra, rb = gd.infer(gd.init(), x, y), ode.infer(ode.init(), x, y)
    assert int(ra.steps) == int(rb.steps) == 7
    for a, b in zip(leaves(ra.activities), leaves(rb.activities)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    na, _ = gd.train_step(gd.init(), (x, y))
    nb, _ = ode.train_step(ode.init(), (x, y))
    for a, b in zip(leaves(na.params), leaves(nb.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_ode_steady_state_stop_tests_the_vector_field():
    """At a steady state the stop fires at once (even though ‖z‖ is far from 0); far from one it does not."""
    m = compile(spec(inference={"solver": "ode", "tol": 1e-3, "steps": 50, "step_size": 0.1}), shapes=(D, C))
    state = m.init()
    x, _ = batch(3, 8, D, C)
    y = np.asarray(m.predict(state, x))  # the feedforward pass is an exact equilibrium: every error is 0
    assert int(m.infer(state, x, y).steps) == 0
    x, y = batch(3, 8, D, C)
    assert int(m.infer(state, x, y).steps) > 0


# ------------------------------------------------------------------------------------------ 2. precision
def _precision_leaves(tree) -> dict:
    from flax import nnx

    return {n: np.asarray(v) for n, v in nnx.to_pure_dict(tree)["log_precision"].items()}


def test_learned_precision_gradient_is_the_gaussian_normaliser_balance():
    """∂(mean_i F_i)/∂ log λ_n = ½ λ_n mean_i ‖e_{n,i}‖² − ½ d_n; zero at λ_n = d_n / mean_i ‖e_{n,i}‖²."""
    m = compile(spec(chain_layers([8], residual_repeat=2), model={"parameterisation": "mupc",
                     "learn_precision": True, "precision": {"h1": 2.0}}, inference={"steps": 5}), shapes=(D, C))
    state = m.init()
    x, y = batch(4, 16, D, C)
    free = m.infer(state, x, y).activities
    err = m.program.errors(state.params, free, x, y)
    _, grads = m.program.weight_grad(state.params, free, x, y)
    g, start = _precision_leaves(grads), _precision_leaves(state.params)
    assert set(g) == {"h1", "h2", "output"}
    for name, e in err.items():
        sq = np.mean(np.sum(np.asarray(e, np.float64) ** 2, -1), axis=-1)  # per copy for the stacked h2
        lam = np.exp(start[name])
        np.testing.assert_allclose(g[name], 0.5 * lam * sq - 0.5 * e.shape[-1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.exp(start["h1"]), 2.0, rtol=1e-6)


def test_gradient_steps_move_the_precision_to_its_optimum():
    m = compile(spec(model={"learn_precision": ["h2", "output"]}, inference={"steps": 5}), shapes=(D, C))
    state = m.init()
    x, y = batch(5, 32, D, C)
    free = m.infer(state, x, y).activities
    err = m.program.errors(state.params, free, x, y)
    optimum = {n: err[n].shape[-1] / np.mean(np.sum(np.asarray(err[n]) ** 2, -1)) for n in ("h2", "output")}

    @jax.jit
    def descend(params):
        def step(_, p):
            _, g = m.program.weight_grad(p, free, x, y)
            return jax.tree_util.tree_map_with_path(
                lambda path, a, b: a - 0.05 * b if "log_precision" in jax.tree_util.keystr(path) else a, p, g)

        return jax.lax.fori_loop(0, 400, step, params)

    got = {n: np.exp(v) for n, v in _precision_leaves(descend(state.params)).items()}
    for n in optimum:
        np.testing.assert_allclose(got[n], optimum[n], rtol=1e-3)
    # one real train step moves every learned λ towards its optimum
    new, metrics = m.train_step(copy_state(state), (x, y))
    before, after = _precision_leaves(state.params), _precision_leaves(new.params)
    for n in optimum:
        assert abs(after[n] - np.log(optimum[n])) < abs(before[n] - np.log(optimum[n]))
    assert np.isfinite(float(metrics.energy_final))


# ------------------------------------------------------------------------------------------ 3. modes
def _quadratic_minimiser(program, params, free, x, y):
    """argmin of the (quadratic) energy over the free variables: H z = −∇F(0), with H the autodiff Hessian;
    coordinates the energy does not depend on (masked-in pixels) are left out of the solve."""
    flat, unravel = jax.flatten_util.ravel_pytree(free)
    f = lambda v: program.total_energy(params, unravel(v), x, y).sum()
    zero = jnp.zeros_like(flat)
    h = np.asarray(jax.hessian(f)(zero), np.float64)
    g = np.asarray(jax.grad(f)(zero), np.float64)
    keep = np.abs(h).sum(0) > 0
    z = np.zeros_like(g)
    z[keep] = np.linalg.solve(h[np.ix_(keep, keep)], -g[keep])
    return {k: np.asarray(v) for k, v in unravel(jnp.asarray(z, flat.dtype)).items()}, keep


def _linear(mode, **model):
    return compile(spec(chain_layers([8], residual_repeat=2), model={"parameterisation": "mupc", "activation":
                        "identity", "mode": mode, **model},
                        inference={"steps": 60000, "step_size": 0.15, "tol": 1e-6}), shapes=(D, C))


@pytest.mark.parametrize("case", ["generative-predict", "unsupervised", "unsupervised-inpaint"])
def test_linear_modes_infer_the_closed_form(case):
    from pcc.pc.learning import Clamp

    m = _linear("generative") if case.startswith("generative") else _linear("unsupervised", latent_width=2)
    program = m.program.with_clamps(input=None)  # generative prediction: the label node is inferred
    x, y = batch(6, 3, D, C, classes=False)
    if case.endswith("inpaint"):  # 4 known pixels pin down the 2-unit latent; the other 2 are inferred
        mask = np.arange(D)[None, :] < 4
        mask = np.broadcast_to(mask, x.shape)
        program = program.with_clamps(output=Clamp("x", mask))
    state = m.init()
    result = jax.jit(program.infer)(state.params, x, y, jax.random.key(0))
    want, _ = _quadratic_minimiser(program, state.params, result.activities, x, y)
    for name, value in want.items():
        got = np.asarray(result.activities[name])
        if name == "output":  # only the unknown pixels are variables
            got, value = got[~mask], value[~mask]
        # float32 solves of a free latent without a prior (κ ~ 10⁴): error relative to the solution's scale
        np.testing.assert_allclose(got, value, atol=2e-4 * (1 + np.abs(value).max()))


def test_inpainting_keeps_the_known_pixels_and_fills_in_the_prediction():
    m = compile(spec(model={"mode": "unsupervised", "latent_width": 4, "parameterisation": "mupc"},
                     inference={"steps": 200, "step_size": 0.2}), shapes=(D, C))
    state = m.init()
    x, _ = batch(7, 5, D, C)
    mask = np.zeros_like(x)
    mask[:, : D // 2] = 1
    filled = np.asarray(m.inpaint(state, x, mask))
    np.testing.assert_array_equal(filled[:, : D // 2], x[:, : D // 2])
    assert not np.allclose(filled[:, D // 2:], x[:, D // 2:]) and np.all(np.isfinite(filled))


@pytest.mark.parametrize("mode", ["generative", "unsupervised"])
def test_mupc_trains_in_every_mode(mode):
    """μPC in the generative and unsupervised modes (JPC crashes on unsupervised μPC): the energy after
    inference falls over training, and evaluation reports the mode's metrics."""
    extra = {"latent_width": 4} if mode == "unsupervised" else {}
    m = compile(spec(chain_layers([16], residual_repeat=2), model={"parameterisation": "mupc", "mode": mode,
                     "activation": "relu", **extra}, inference={"steps": 8, "step_size": 0.2},
                     learning={"optimizer": {"name": "adam", "lr": 0.02}}), shapes=(D, C))
    state = m.init()
    x, y = batch(8, 32, D, C)
    first = m.evaluate(state, [(x, y)])
    for _ in range(30):
        state, metrics = m.train_step(state, (x, y))
    last = m.evaluate(state, [(x, y)])
    assert np.isfinite(float(metrics.energy_final)) and last.energy < first.energy and last.loss < first.loss
    assert (last.accuracy is None) == (mode == "unsupervised")
    assert m.predict(state, x).shape == ((32, C) if mode == "generative" else (32, D))

    # the metrics over uneven batches are the sample-weighted means of each batch's (inference starts from a
    # random draw of the batch's shape in these modes, so they are not those of one whole batch)
    parts = [m.evaluate(state, [(x[a:b], y[a:b])]) for a, b in ((0, 5), (5, 17), (17, 32))]
    split = m.evaluate(state, [(x[a:b], y[a:b]) for a, b in ((0, 5), (5, 17), (17, 32))])
    assert split.samples == 32
    for field in ("loss", "energy") + (("accuracy",) if mode == "generative" else ()):
        want = sum(getattr(p, field) * p.samples for p in parts) / 32
        assert getattr(split, field) == pytest.approx(want, rel=1e-6)


# ------------------------------------------------------------------------------------------ 4. ePC
@pytest.mark.parametrize("layers", ["chain", "residual"])
def test_epc_reaches_pc_equilibrium_energy(layers):
    """ePC relaxes the errors ε (z_n = μ_n + ε_n) of the same energy, output error included: on a linear net
    both reach the closed-form F* > 0 (an ePC that drops the output error collapses to F = 0) and the same z*."""
    arch = chain_layers([8, 8]) if layers == "chain" else chain_layers([8], residual_repeat=3)
    make = lambda state: compile(spec(arch, model={"parameterisation": "mupc", "activation": "identity"}, inference={
        "steps": 8000, "step_size": 0.2, "tol": 1e-6, "state": state}), shapes=(D, C))
    pc, epc = make("activities"), make("errors")
    state = pc.init()
    x, y = batch(9, 4, D, C, classes=False)
    fstar = T.equilibrated_energy(linear_chain(pc, state.params), x.astype(np.float64), y.astype(np.float64))
    assert np.all(fstar > 0.05)
    a, b = pc.infer(state, x, y), epc.infer(state, x, y)
    np.testing.assert_allclose(np.asarray(a.energy), fstar, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(b.energy), fstar, rtol=1e-4)
    for u, v in zip(leaves(a.activities), leaves(b.activities)):
        np.testing.assert_allclose(u, v, atol=2e-4)
    assert int(b.steps) < int(a.steps)  # error information crosses the whole net in one step


def test_epc_trains_and_starts_at_the_feedforward_loss():
    m = compile(spec(inference={"steps": 5, "state": "errors"}), shapes=(D, C))
    x, y = batch(10, 8, D, C)
    _, metrics = m.train_step(m.init(), (x, y))
    assert float(metrics.energy_init) == pytest.approx(float(metrics.loss), rel=1e-6)
    assert float(metrics.energy_final) < float(metrics.energy_init)


# ------------------------------------------------------------------------------------------ 5. nudging
def _update(m, state, x, y):
    """θ_before − θ_after of one sgd(lr = 1) train step: the weight gradient the algorithm used."""
    new, _ = m.train_step(copy_state(state), (x, y))
    return np.concatenate([(a - b).ravel() for a, b in zip(leaves(state.params), leaves(new.params))])


def test_nudged_gradients_tend_to_backprop_at_their_order_in_beta():
    """Equilibrium propagation's theorem on the PC energy: (∇F_β − ∇F_0)/β → ∇_θ loss as β → 0, with error
    O(β) for one-sided nudging and O(β²) centred. The 1/β scaling is what makes the limit the gradient."""
    tight = {"steps": 3000, "step_size": 0.2, "tol": 1e-7}
    make = lambda learning: compile(spec(model={"parameterisation": "mupc"}, inference=tight,
                                         learning={"optimizer": {"name": "sgd", "lr": 1.0}, **learning}), shapes=(D, C))
    bp = make({"algorithm": "bp"})
    state = bp.init()
    x, y = batch(11, 8, D, C)
    ref = _update(bp, state, x, y)
    err = {}
    for mode, beta in [("positive", 0.1), ("positive", 0.01), ("negative", 0.01), ("centred", 0.1), ("centred", 0.01)]:
        g = _update(make({"nudge": {"mode": mode, "beta": beta}}), state, x, y)
        err[mode, beta] = np.linalg.norm(g - ref) / np.linalg.norm(ref)
    assert err["positive", 0.01] < 0.2 * err["positive", 0.1] and err["positive", 0.01] < 0.03
    assert err["negative", 0.01] < 0.03
    assert err["centred", 0.1] < 0.3 * err["positive", 0.1] and err["centred", 0.01] < 2e-3


def test_beta_schedule_runs_from_beta_to_beta_final():
    from pcc.errors import PccError
    from pcc.pc.optim import make_beta_schedule
    from pcc.spec.models import Nudge

    for kind in ("linear", "cosine", "exponential"):
        beta = make_beta_schedule(Nudge(beta=0.5, beta_final=0.05, schedule=kind), total_steps=11)
        values = np.array([float(beta(t)) for t in range(11)])
        assert values[0] == pytest.approx(0.5) and values[-1] == pytest.approx(0.05, rel=1e-5)
        assert np.all(np.diff(values) < 0)
    s = spec(learning={"nudge": {"mode": "positive", "beta": 0.5, "beta_final": 0.1}})
    with pytest.raises(PccError, match="steps per epoch"):
        compile(s, shapes=(D, C))
    m = compile(s, shapes=(D, C), steps_per_epoch=3)
    state = m.init()
    x, y = batch(12, 8, D, C)
    for _ in range(3):
        state, metrics = m.train_step(state, (x, y))
    assert np.isfinite(float(metrics.energy_final))


# ------------------------------------------------------------------------------------------ 6. update schedules
def _schedule_model(updates, steps=6, algorithm="pc"):
    return compile(spec(chain_layers([9, 7]), model={"parameterisation": "mupc"},
                        inference={"steps": steps, "step_size": 0.1},
                        learning={"algorithm": algorithm, "updates": updates,
                                  "optimizer": {"name": "sgd", "lr": 0.05}}), shapes=(D, C))


@pytest.mark.parametrize("updates, algorithm", [("last", "pc"), ("every", "ipc")])
def test_the_schedule_loop_is_pc_and_ipc_at_their_schedules(updates, algorithm):
    """The general schedule runner, forced onto the canonical schedules, takes pc's and ipc's steps."""
    from functools import partial

    from pcc.compiler import _step_key
    from pcc.pc.learning import scheduled_step
    from pcc.spec.models import update_steps

    m = _schedule_model(None, algorithm=algorithm)
    state = m.init()
    x, y = batch(13, 8, D, C)
    run = jax.jit(partial(scheduled_step, m.program, schedule=update_steps(updates, 6)))
    params, _, metrics = run(state.params, state.opt_state, jnp.asarray(x), jnp.asarray(y), _step_key(state))
    want, want_metrics = m.train_step(copy_state(state), (x, y))
    for a, b in zip(leaves(params), leaves(want.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(metrics.energy_final), float(want_metrics.energy_final), rtol=1e-5)


@pytest.mark.parametrize("updates", [{"warmup": 2}, [0, 3, 6], [4]])
def test_hybrid_schedules_match_a_hand_written_loop(updates):
    from pcc.spec.models import WarmUp, update_steps
    from tests.test_compile import _chain_weights, reference_energy, reference_forward

    steps, eta, lr = 6, 0.1, 0.05
    m = _schedule_model(updates, steps)
    state = m.init()
    ws, mults = _chain_weights(m, state.params)
    x, y = batch(14, 8, D, C)
    new, metrics = m.train_step(copy_state(state), (x, y))
    when = update_steps(WarmUp(**updates) if isinstance(updates, dict) else updates, steps)
    zs = reference_forward(ws, mults, x, jnp.tanh)[:-1]
    mean_f = lambda w, z: reference_energy(w, mults, z, x, y, jnp.tanh).mean()
    for t in range(steps + 1):
        gw = jax.grad(mean_f)(ws, zs)
        gz = jax.grad(lambda z, w=ws: reference_energy(w, mults, z, x, y, jnp.tanh).sum())(zs)
        if t in when:
            ws = [w - lr * g for w, g in zip(ws, gw)]
        if t < steps:
            zs = [z - eta * g for z, g in zip(zs, gz)]
    for got, want in zip(_chain_weights(m, new.params)[0], ws):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)
    assert int(metrics.steps) == steps


# ------------------------------------------------------------------------------------------ combinations
MAIN_AXES = {
    "inference.solver": ["gd", "optax", "ode"],
    "learning.algorithm": ["pc", "ipc", "bp"],
    "model.parameterisation": ["sp", "ntp", "mupc"],
    "model.ordering": ["w_phi", "phi_w"],
    "model.output_energy": ["mse", "cross_entropy"],
}
EXTRA_AXES = {
    "model.mode": ["discriminative", "generative", "unsupervised"],
    "inference.state": ["activities", "errors"],
    "inference.init": ["forward", "zeros", "normal", "amortised"],
    "model.learn_precision": [False, True],
    "learning.nudge.mode": [None, "positive", "negative", "centred"],
    "learning.updates": [None, "last", "every", [0, 2], {"warmup": 1}],
    "inference.ode.method": list(ODE_METHODS),
    "inference.ode.controller": ["constant", "pid"],
}
ODE_ONLY = ("inference.ode.method", "inference.ode.controller")


def _combinations(per_main: int = 8, seed: int = 0) -> list[dict]:
    """Every combination of the main axes, each with ``per_main`` deterministic draws of the other axes
    (each at its default, the first value, half the time; the ode options only where the solver is ode:
    elsewhere the key is rejected by design)."""
    import itertools

    rng = np.random.default_rng(seed)
    out = []
    for main in itertools.product(*MAIN_AXES.values()):
        for _ in range(per_main):
            combo = dict(zip(MAIN_AXES, main))
            for axis, values in EXTRA_AXES.items():
                if axis not in ODE_ONLY or combo["inference.solver"] == "ode":
                    combo[axis] = values[0 if rng.random() < 0.5 else rng.integers(len(values))]
            out.append(combo)
    return out


def _yaml(combo: dict) -> str:
    """The spec of a combination: a tiny residual net on the test shapes, 3 inference steps."""
    from pcc.spec.loader import dump_yaml

    tree = {"model": {"activation": "tanh", "layers": [{"dense": {"width": 8}}, {"residual": {"width": 8},
                                                                                 "repeat": 2}, {"dense": {}}]},
            "inference": {"steps": 3, "step_size": 0.05},
            "learning": {"optimizer": {"name": "adam", "lr": 1e-3}}}
    for path, value in combo.items():
        if value is None:
            continue
        node = tree
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    if combo.get("model.mode") == "unsupervised":
        tree["model"]["latent_width"] = 4
    if "ode" in tree["inference"]:
        tree["inference"]["ode"]["max_steps"] = 64
    if "nudge" in tree["learning"]:
        tree["learning"]["nudge"]["beta"] = 0.2
    return dump_yaml(tree)


def _load(combo):
    """The validated spec, or the SpecError that rejects it (checked to be located and to explain itself)."""
    from pcc.errors import SpecError
    from pcc.spec.loader import load_spec_text

    try:
        return load_spec_text(_yaml(combo), "combo.yaml")
    except SpecError as e:
        assert e.issues and all(i.file == "combo.yaml" and i.line >= 1 and i.col >= 1 for i in e.issues), e
        assert all(len(i.message) > 20 for i in e.issues), e
        return None


COMBOS = _combinations()


def test_every_sampled_combination_validates_or_is_rejected_with_a_located_reason():
    accepted = [c for c in COMBOS if _load(c) is not None]
    assert 0.1 * len(COMBOS) < len(accepted) < len(COMBOS)
    # every value of every axis is reachable by some accepted combination
    for axis, values in {**MAIN_AXES, **EXTRA_AXES}.items():
        for value in values:
            assert any(c.get(axis, "absent") == value for c in accepted), (axis, value)


def _cover(pairs: bool) -> list[dict]:
    """Accepted combinations, in order, that cover every (axis, value) once (``pairs``: every pair of them)."""
    seen, chosen = set(), []
    for combo in COMBOS:
        items = sorted((k, str(v)) for k, v in combo.items())
        keys = set(items) if not pairs else {(a, b) for a in items for b in items if a < b}
        if keys - seen and _load(combo) is not None:
            seen |= keys
            chosen.append(combo)
    return chosen


def _compile_and_step(combo):
    s = _load(combo)
    m = compile(s, shapes=(D, C))
    x, y = batch(15, 4, D, C)
    state, metrics = m.train_step(m.init(), (x, y))
    for value in (metrics.loss, metrics.energy_final, *leaves(state.params)):
        assert np.all(np.isfinite(np.asarray(value))), combo
    assert np.all(np.isfinite(np.asarray(m.predict(state, x))))


@pytest.mark.parametrize("combo", _cover(pairs=False), ids=lambda c: "-".join(str(v) for v in c.values()))
def test_every_option_value_compiles_and_takes_a_finite_step(combo):
    _compile_and_step(combo)


@pytest.mark.slow
@pytest.mark.parametrize("combo", _cover(pairs=True), ids=lambda c: "-".join(str(v) for v in c.values()))
def test_every_pair_of_option_values_compiles_and_takes_a_finite_step(combo):
    _compile_and_step(combo)


# ------------------------------------------------------------------------------------------ 7. hybrid PC
def test_amortiser_gradient_is_the_regression_gradient_onto_the_equilibrated_activities():
    from flax import nnx

    m = compile(spec(chain_layers([8], residual_repeat=2), model={"parameterisation": "mupc"},
                     inference={"init": "amortised", "steps": 10}), shapes=(D, C))
    state = m.init()
    x, y = batch(16, 8, D, C)
    free = m.infer(state, x, y).activities
    grads = nnx.to_pure_dict(m.program.amortiser_grad(state.params, free, x, y))
    amortiser = nnx.to_pure_dict(state.params)["amortiser"]
    assert set(amortiser) == {"h1", "h2", "output"}  # every node but the one holding x
    for name, z in free.items():
        a, b = np.asarray(amortiser[name]["kernel"]), np.asarray(amortiser[name]["bias"])
        xs = np.broadcast_to(x, a.shape[:-2] + x.shape)
        r = np.asarray(z) - (np.einsum("...bi,...io->...bo", xs, a) + b[..., None, :])  # z* − â(x)
        np.testing.assert_allclose(grads["amortiser"][name]["kernel"], -np.einsum("...bi,...bo->...io", xs, r) / 8,
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(grads["amortiser"][name]["bias"], -r.sum(-2) / 8, rtol=1e-4, atol=1e-6)
    assert all(np.all(v == 0) for v in leaves(grads["edges"]))


@pytest.mark.parametrize("mode", ["discriminative", "unsupervised"])
def test_training_brings_the_amortised_guess_to_the_equilibrium(mode):
    extra = {"latent_width": 4} if mode == "unsupervised" else {}
    m = compile(spec(model={"parameterisation": "mupc", "mode": mode, **extra},
                     inference={"init": "amortised", "steps": 20, "step_size": 0.2},
                     learning={"optimizer": {"name": "adam", "lr": 0.01}}), shapes=(D, C))
    state = m.init()
    x, y = batch(17, 32, D, C)

    def gap(state):
        result = m.infer(state, x, y)
        guess = m.program.net(state.params).amortise(x)
        return sum(float(np.sum((np.asarray(z) - np.asarray(guess[n])) ** 2)) for n, z in result.activities.items())

    before = gap(state)
    for _ in range(40):
        state, metrics = m.train_step(state, (x, y))
    assert gap(state) < 0.3 * before and np.isfinite(float(metrics.energy_final))


def test_unsupported_combinations_point_at_the_field_and_say_what_is_supported():
    from pcc.errors import SpecError
    from pcc.spec.loader import load_spec_text

    head = "model:\n  layers: [{dense: {}}]\n"
    cases = {
        head + "inference: {solver: ode}\nlearning:\n  algorithm: ipc\n":
            "a.yaml:5:14: learning.algorithm: `algorithm: ipc` takes a weight step",
        head + "inference:\n  solver: ode\n  ode: {method: euler}\n":
            "a.yaml:5:17: inference.ode.method: ode method 'euler' has no error estimate",
        head + "learning:\n  nudge: {mode: centred, beta: 1.5}\n":
            "a.yaml:4:32: learning.nudge.beta: a negative phase needs β below the output precision",
        head + "  mode: generative\n  output_energy: cross_entropy\n":
            "a.yaml:4:18: model.output_energy: `output_energy: cross_entropy` needs a label at the output",
    }
    for text, start in cases.items():
        with pytest.raises(SpecError) as info:
            load_spec_text(text, "a.yaml")
        assert str(info.value.issues[0]).startswith(start), str(info.value)


# ------------------------------------------------------------------------------------------ bidirectional PC
def _bidirectional(alpha_b, **model):
    return compile(spec(chain_layers([5], residual_repeat=2), model={"bidirectional": {"alpha_f": 0.7, "alpha_b":
                        alpha_b}, **model}, inference={"steps": 4000, "step_size": 0.1, "tol": 1e-7}), shapes=(D, C))


def test_linear_bidirectional_inference_reaches_the_argmin_of_the_two_energies():
    """F = α_f Σ ½‖z_l − f_l(z_{l−1})‖² + α_b Σ ½‖z_{l−1} − g_l(z_l)‖², written out here in float64 for the
    chain x → h1 → h2[0] → h2[1] (residual) → y, minimised by solving H z = −∇F(0)."""
    from flax import nnx

    m = _bidirectional(0.5, activation="identity", parameterisation="mupc")
    state = m.init()
    x, y = batch(18, 3, D, C, classes=False)
    got = per_layer(m, m.infer(state, x, y).activities)
    p, net = nnx.to_pure_dict(state.params), m.program.net(state.params)
    f64 = lambda a: np.asarray(a, np.float64)
    fw = [f64(p["edges"]["h1"]["input"]["kernel"]), *f64(p["edges"]["h2"]["h1"]["kernel"]),
          f64(p["edges"]["output"]["h2"]["kernel"])]
    bw = [f64(p["bottom_up"]["h1"]["kernel"]), *f64(p["bottom_up"]["h2"]["kernel"]),
          f64(p["bottom_up"]["output"]["kernel"])]
    a = [net.edges[d][s].multiplier for d, s in (("h1", "input"), ("h2", "h1"), ("h2", "h1"), ("output", "h2"))]
    b = [net.bottom_up[n].multiplier for n in ("h1", "h2", "h2", "output")]
    skip = [0, 1, 1, 0]

    def energy(flat):
        zs = [f64(x), *flat.reshape(3, 3, 5), f64(y)]
        f = 0.0
        for l in range(1, 5):
            mu = a[l - 1] * zs[l - 1] @ fw[l - 1] + (zs[l - 1] if skip[l - 1] else 0)
            f += 0.7 * 0.5 * jnp.sum((zs[l] - mu) ** 2)
            f += 0.5 * 0.5 * jnp.sum((zs[l - 1] - b[l - 1] * zs[l] @ bw[l - 1]) ** 2)
        return f

    with jax.enable_x64(True):
        zero = jnp.zeros(45, jnp.float64)
        want = np.linalg.solve(np.asarray(jax.hessian(energy)(zero)), -np.asarray(jax.grad(energy)(zero)))
    for g, w in zip(got, want.reshape(3, 3, 5)):
        np.testing.assert_allclose(g, w, atol=1e-4)


def test_bidirectional_with_alpha_b_zero_is_standard_pc():
    kw = {"parameterisation": "mupc", "ordering": "phi_w"}
    bi, pc = (compile(spec(chain_layers([5], residual_repeat=2), model={**kw, **extra}, inference={"steps": 8}),
                      shapes=(D, C)) for extra in ({"bidirectional": {"alpha_b": 0.0}}, {}))
    x, y = batch(19, 4, D, C)
    s_bi, s_pc = bi.init(), pc.init()
    for n, z in pc.infer(s_pc, x, y).activities.items():
        np.testing.assert_allclose(bi.infer(s_bi, x, y).activities[n], z, rtol=1e-6, atol=1e-7)
    (new_bi, m_bi), (new_pc, m_pc) = bi.train_step(s_bi, (x, y)), pc.train_step(s_pc, (x, y))
    for g, w in zip(leaves(new_bi.params["edges"]), leaves(new_pc.params["edges"])):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m_bi.energy_final, m_pc.energy_final, rtol=1e-6)


def test_bidirectional_learns_both_weight_sets_on_every_supported_path():
    from flax import nnx

    x, y = batch(20, 4, D, C)
    for model, inference, learning in [({"ordering": "phi_w"}, {}, {"algorithm": "ipc"}),
                                       ({"output_energy": "cross_entropy"}, {"solver": "ode"}, {}),
                                       ({"parameterisation": "ntp"}, {"init": "amortised"}, {}),
                                       ({}, {}, {"updates": [0, 2]})]:
        m = compile(spec(chain_layers([8], residual_repeat=2), model={"bidirectional": {}, **model},
                         inference={"steps": 3, **inference}, learning=learning), shapes=(D, C))
        state = m.init()
        before = leaves(nnx.to_pure_dict(state.params)["bottom_up"])
        new, metrics = m.train_step(copy_state(state), (x, y))
        assert np.isfinite(float(metrics.energy_final)) and np.all(np.isfinite(np.asarray(m.predict(new, x))))
        assert all(np.any(b != a) for b, a in zip(before, leaves(nnx.to_pure_dict(new.params)["bottom_up"])))


@pytest.mark.parametrize("extra", ["  mode: generative\n", "  graph: {output: {inputs: [input]}}\n",
                                   "inference: {state: errors}\n", "learning: {algorithm: bp}\n"])
def test_bidirectional_rejects_what_it_does_not_support(extra):
    from pcc.errors import SpecError
    from pcc.spec.loader import load_spec_text

    text = "model:\n  bidirectional: {alpha_b: 0.5}\n" + ("" if extra.startswith("  graph") else
                                                         "  layers: [{dense: {}}]\n") + extra
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "b.yaml")
    assert "bidirectional PC supports the `layers:` chain form" in str(info.value), str(info.value)

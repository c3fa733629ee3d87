"""The compiler core against oracles: closed forms, a hand-written reference, invariants."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pcc.compiler import compile
from pcc.theory import linear as T
from pcc.theory.network import linear_chain
from tests.helpers import batch, chain_layers, copy_state, make_spec

D, C = 6, 3


def kernels(params):
    """{(dst, src): kernel} as numpy."""
    pure = nnx.to_pure_dict(params)["edges"]
    return {(d, s): np.asarray(leaves["kernel"]) for d, srcs in pure.items() for s, leaves in srcs.items()}


# ------------------------------------------------------------------------------------------ invariants
@pytest.mark.parametrize("energy", ["mse", "cross_entropy"])
@pytest.mark.parametrize("ordering", ["w_phi", "phi_w"])
def test_energy_at_forward_init_equals_loss(energy, ordering):
    spec = make_spec(chain_layers([16, 16]), output_energy=energy, ordering=ordering)
    m = compile(spec, shapes=(D, C))
    x, y = batch(0, 8, D, C)
    _, metrics = m.train_step(m.init(), (x, y))
    assert float(metrics.energy_init) == pytest.approx(float(metrics.loss), rel=1e-6)
    # and the loss is the output energy of the feedforward prediction, computed by hand
    pred = np.asarray(m.predict(m.init(), x))
    if energy == "mse":
        ref = 0.5 * np.sum((y - pred) ** 2, -1).mean()
    else:
        ref = -np.sum(y * np.asarray(jax.nn.log_softmax(pred)), -1).mean()
    assert float(metrics.loss) == pytest.approx(ref, rel=1e-5)


def per_layer(m, activities):
    """Free activities as one (B, N) array per layer (stacked nodes split into their copies)."""
    out = []
    for n in m.graph.free:
        a = np.asarray(activities[n.name])
        out += [a[k] for k in range(n.repeat)] if n.repeat > 1 else [a]
    return out


# ------------------------------------------------------------------------------------------ linear oracles
LINEAR_CASES = {
    "mupc-residual": dict(layers=chain_layers([8], residual_repeat=3), param="mupc"),
    "ntp-chain": dict(layers=chain_layers([8, 7, 5]), param="ntp"),
    "sp-chain": dict(layers=chain_layers([8, 8]), param="sp"),
    "mupc-precision": dict(layers=chain_layers([8, 8]), param="mupc", precision={"output": 2.0, "h1": 0.5}),
}


def linear_model(case, **inference):
    kw = dict(LINEAR_CASES[case])
    layers, param = kw.pop("layers"), kw.pop("param")
    spec = make_spec(layers, param=param, act="identity",
                     inference={"steps": 4000, "step_size": 0.2, **inference}, **kw)
    return compile(spec, shapes=(D, C))


@pytest.mark.parametrize("case", sorted(LINEAR_CASES))
def test_linear_inference_reaches_closed_form(case):
    m = linear_model(case, tol=1e-6)
    state = m.init()
    x, y = batch(1, 4, D, C, classes=False)
    chain = linear_chain(m, state.params)
    result = m.infer(state, x, y)
    zstar = T.equilibrium(chain, x.astype(np.float64), y.astype(np.float64))
    got = per_layer(m, result.activities)
    for g, z in zip(got, zstar):
        np.testing.assert_allclose(g, z, atol=2e-4, rtol=1e-3)
    fstar = T.equilibrated_energy(chain, x.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(np.asarray(result.energy), fstar, rtol=1e-4, atol=1e-6)
    assert int(result.steps) < 4000  # converged by the tolerance, not by the cap


@pytest.mark.parametrize("case", sorted(LINEAR_CASES))
def test_energy_hessian_is_the_analytic_block_tridiagonal(case):
    m = linear_model(case)
    state = m.init()
    x, y = batch(2, 1, D, C, classes=False)
    free, _, _ = m.program.start(state.params, x, y, jax.random.key(0))
    flat, unravel = jax.flatten_util.ravel_pytree(free)

    def f(v):
        return m.program.total_energy(state.params, unravel(v), x, y).sum()

    hessian = np.asarray(jax.hessian(f)(flat))
    analytic = T.activity_hessian(linear_chain(m, state.params))
    # ravel_pytree orders nodes by name; reorder the analytic blocks the same way
    order = _ravel_order(m, free)
    np.testing.assert_allclose(hessian, analytic[np.ix_(order, order)], atol=1e-5)


def _ravel_order(m, free):
    """Index map from ravel_pytree's layout (sorted node names) to the chain's layer order."""
    starts, pos = {}, 0
    for node in m.graph.free:
        for k in range(node.repeat):
            starts[(node.name, k)] = pos
            pos += node.width
    order = []
    for name in sorted(free):
        node = m.graph.node(name)
        for k in range(node.repeat):
            order += list(range(starts[(name, k)], starts[(name, k)] + node.width))
    return np.array(order)


@pytest.mark.parametrize("case", ["mupc-residual", "ntp-chain"])
def test_pc_weight_gradient_is_the_gradient_of_the_equilibrated_energy(case):
    m = linear_model(case, tol=1e-7, steps=8000)
    state = m.init()
    x, y = batch(3, 5, D, C, classes=False)
    result = m.infer(state, x, y)
    _, grads = m.program.weight_grad(state.params, result.activities, x, y)
    chain = linear_chain(m, state.params)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    rng = np.random.default_rng(0)
    layer_keys = [(n.name, e.src, k) for n in m.graph.energy_nodes for e in m.graph.incoming(n.name)
                  if e.op == "dense" for k in range(n.repeat)]
    gk = kernels(grads)
    for layer, (dst, src, k) in enumerate(layer_keys):
        g = gk[(dst, src)]
        g = g[k] if m.graph.node(dst).repeat > 1 else g
        for _ in range(3):
            i, j = rng.integers(0, g.shape[0]), rng.integers(0, g.shape[1])
            fd = _fd_fstar(chain, layer, i, j, x64, y64)
            assert g[i, j] == pytest.approx(fd, rel=2e-3, abs=1e-6)


def _fd_fstar(chain, layer, i, j, x, y, h=1e-5):
    def fstar(delta):
        ws = [w.copy() for w in chain.weights]
        ws[layer][i, j] += delta
        c = T.LinearChain(ws, chain.multipliers, chain.skips, chain.output_precision, chain.hidden_precisions)
        return T.equilibrated_energy(c, x, y).mean()

    return (fstar(h) - fstar(-h)) / (2 * h)


# ------------------------------------------------------------------------------------------ reference loops
def reference_energy(ws, mults, zs, x, y, act):
    """Hand-written Σ_l ½‖z_l − a_l φ(z_{l−1}) W_l‖² for a w_phi chain, per sample."""
    prev, total = x, 0.0
    for l, (w, a) in enumerate(zip(ws, mults)):
        target = zs[l] if l < len(zs) else y
        h = prev if l == 0 else act(prev)
        total = total + 0.5 * jnp.sum((target - a * h @ w) ** 2, -1)
        prev = target
    return total


def reference_forward(ws, mults, x, act):
    zs, prev = [], x
    for l, (w, a) in enumerate(zip(ws, mults)):
        prev = a * (prev if l == 0 else act(prev)) @ w
        zs.append(prev)
    return zs


def _chain_weights(m, params):
    names = [n.name for n in m.graph.energy_nodes]
    k = kernels(params)
    srcs = ["input"] + names[:-1]
    ws = [jnp.asarray(k[(d, s)]) for d, s in zip(names, srcs)]
    mults = [m.table[f"{s}->{d}:dense"].multiplier for d, s in zip(names, srcs)]
    return ws, mults


@pytest.mark.parametrize("algorithm,errors", [("pc", "auto"), ("pc", "recomputed"), ("ipc", "auto"), ("bp", "auto")])
def test_train_step_matches_hand_written_reference(algorithm, errors):
    steps, eta, lr = 6, 0.1, 0.05
    spec = make_spec(chain_layers([9, 7]), param="mupc", inference={"steps": steps, "step_size": eta, "errors": errors},
                     learning={"algorithm": algorithm, "optimizer": {"name": "sgd", "lr": lr}})
    m = compile(spec, shapes=(D, C))
    state = m.init()
    ws, mults = _chain_weights(m, state.params)
    x, y = batch(4, 8, D, C)
    new_state, metrics = m.train_step(copy_state(state), (x, y))
    new_ws, _ = _chain_weights(m, new_state.params)

    zs = reference_forward(ws, mults, x, jnp.tanh)[:-1]
    mean_f = lambda w, z: reference_energy(w, mults, z, x, y, jnp.tanh).mean()
    if algorithm == "bp":
        loss = lambda w: 0.5 * jnp.sum((y - reference_forward(w, mults, x, jnp.tanh)[-1]) ** 2, -1).mean()
        ws = [w - lr * g for w, g in zip(ws, jax.grad(loss)(ws))]
    else:
        for _ in range(steps):
            gz = jax.grad(lambda z: reference_energy(ws, mults, z, x, y, jnp.tanh).sum())(zs)
            if algorithm == "ipc":
                gw = jax.grad(mean_f)(ws, zs)
                ws = [w - lr * g for w, g in zip(ws, gw)]
            zs = [z - eta * g for z, g in zip(zs, gz)]
        if algorithm == "pc":
            ws = [w - lr * g for w, g in zip(ws, jax.grad(mean_f)(ws, zs))]
    for got, want in zip(new_ws, ws):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)
    assert int(metrics.steps) == (0 if algorithm == "bp" else steps)


# ------------------------------------------------------------------------------------------ structure
def test_inference_loop_holds_the_input_projection_as_a_constant():
    """With the errors recomputed every step, the prediction of the node fed by the clamped input is computed
    once: the loop carries it, not the input and its weights, and the errors it gives are bit for bit those
    computed from scratch."""
    b, width = 4, 9
    spec = make_spec(chain_layers([width, 7]), inference={"steps": 3, "errors": "recomputed"})
    m = compile(spec, shapes=(D, C))
    state = m.init()
    x, y = map(jnp.asarray, batch(0, b, D, C))
    text = m._train_step.lower(state, x, y).as_text()
    loop = text[text.index("stablehlo.while"):]
    carried = loop[:loop.index("\n")]
    assert f"tensor<{b}x{width}xf32>" in carried
    assert f"tensor<{b}x{D}xf32>" not in carried and f"tensor<{D}x{width}xf32>" not in carried

    p = m.program
    free = {n: jax.random.normal(jax.random.key(i), (b, p.graph.node(n).width)) for i, n in enumerate(p.free_names())}
    hoisted, direct = p.error_map(state.params, x, y)(free), p.errors(state.params, free, x, y)
    assert set(hoisted) == set(direct)
    for n in direct:
        np.testing.assert_array_equal(np.asarray(hoisted[n]), np.asarray(direct[n]))


def test_stacked_block_equals_unstacked_layers():
    repeat = 3
    stacked = make_spec(chain_layers([8], residual_repeat=repeat), param="mupc")
    graph = {"h1": {"inputs": ["input"], "width": 8}}
    prev = "h1"
    for k in range(repeat):
        graph[f"r{k}"] = {"inputs": [prev, {"from": prev, "op": "identity"}], "width": 8}
        prev = f"r{k}"
    graph["output"] = {"inputs": [prev]}
    unstacked = make_spec(None, param="mupc", graph=graph)
    ms, mu = compile(stacked, shapes=(D, C)), compile(unstacked, shapes=(D, C))
    assert [p.multiplier for p in ms.table.values()] == [mu.table[k].multiplier for k in
                                                         ["input->h1:dense", "h1->r0:dense", "r2->output:dense"]]
    ss = ms.init()
    su = mu.init()
    # copy the stacked weights into the unstacked network
    ks = kernels(ss.params)
    pure = nnx.to_pure_dict(su.params)
    pure["edges"]["h1"]["input"]["kernel"] = ks[("h1", "input")]
    srcs = ["h1", "r0", "r1"]
    for k in range(repeat):
        pure["edges"][f"r{k}"][srcs[k]]["kernel"] = ks[("h2", "h1")][k]
    pure["edges"]["output"]["r2"]["kernel"] = ks[("output", "h2")]
    nnx.replace_by_pure_dict(su.params, pure)
    x, y = batch(5, 4, D, C)
    rs, ru = ms.infer(ss, x, y), mu.infer(su, x, y)
    np.testing.assert_allclose(np.asarray(rs.energy), np.asarray(ru.energy), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(rs.layer_energies), np.asarray(ru.layer_energies), rtol=1e-5, atol=1e-9)
    for k in range(repeat):
        np.testing.assert_allclose(np.asarray(rs.activities["h2"][k]), np.asarray(ru.activities[f"r{k}"]), rtol=1e-5,
                                   atol=1e-7)
    ns, _ = ms.train_step(ss, (x, y))
    nu, _ = mu.train_step(su, (x, y))
    kn, ku = kernels(ns.params), kernels(nu.params)
    for k in range(repeat):
        np.testing.assert_allclose(kn[("h2", "h1")][k], ku[(f"r{k}", srcs[k])], rtol=1e-5, atol=1e-7)


def test_per_sample_dynamics_do_not_depend_on_batch_size():
    spec = make_spec(chain_layers([16, 16]), param="mupc", inference={"steps": 10, "step_size": 0.3})
    m = compile(spec, shapes=(D, C))
    state = m.init()
    x, y = batch(6, 64, D, C)
    full = m.infer(state, x, y)
    for i in (0, 17, 63):
        one = m.infer(state, x[i:i + 1], y[i:i + 1])
        for name in full.activities:
            np.testing.assert_allclose(np.asarray(one.activities[name][0]), np.asarray(full.activities[name][i]),
                                       rtol=1e-5, atol=1e-6)


def test_batch_mean_convention_divides_the_step_by_the_tuned_batch_size():
    per_sample = make_spec(chain_layers([16]), inference={"steps": 7, "step_size": 0.5 / 32})
    batch_mean = make_spec(chain_layers([16]), inference={"steps": 7, "step_size": 0.5,
                                                          "step_convention": "batch_mean", "tuned_batch_size": 32})
    x, y = batch(7, 8, D, C)
    a = compile(per_sample, shapes=(D, C))
    b = compile(batch_mean, shapes=(D, C))
    ra, rb = a.infer(a.init(), x, y), b.infer(b.init(), x, y)
    for name in ra.activities:
        np.testing.assert_allclose(np.asarray(ra.activities[name]), np.asarray(rb.activities[name]), rtol=1e-5)


def _hidden_rms(param, width, layers, act="relu"):
    spec = make_spec(chain_layers([width], residual_repeat=layers - 2), param=param, act=act)
    m = compile(spec, shapes=(32, 10))
    x = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    values = m.network.forward(jnp.asarray(x))
    last = np.asarray(values[m.graph.free[-1].name])[-1]
    return float(np.sqrt(np.mean(last**2)))


@pytest.mark.parametrize("width", [64, 256])
@pytest.mark.parametrize("layers", [8, 64])
def test_mupc_keeps_the_forward_pass_order_one(width, layers):
    assert 0.2 < _hidden_rms("mupc", width, layers) < 5


def test_sp_with_skips_grows_with_depth():
    assert _hidden_rms("sp", 128, 64) > 5 * _hidden_rms("sp", 128, 8)
    assert _hidden_rms("sp", 128, 64) > 10 * _hidden_rms("mupc", 128, 64)

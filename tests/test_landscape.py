"""pcc.theory.landscape: the origin saddle of a deep linear net, PC (∇F*) against BP (∇MSE), THEORY.md §4."""

from __future__ import annotations

from functools import reduce

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pcc import theory as T
from pcc.theory import landscape as LS


def fstar_jax(weights, x, y):
    """Batch-mean F* = ½ mean r S⁻¹ rᵀ of a plain chain, written independently in jnp (S = I + Σ_{l≥2} Q_lᵀQ_l)."""
    tails = [reduce(jnp.matmul, weights[l:]) for l in range(1, len(weights))]
    s = jnp.eye(y.shape[-1]) + sum(q.T @ q for q in tails)
    r = y - x @ reduce(jnp.matmul, weights)
    return 0.5 * jnp.mean(jnp.sum(r * jnp.linalg.solve(s, r.T).T, -1))


def mse_jax(weights, x, y):
    return 0.5 * jnp.mean(jnp.sum((y - x @ reduce(jnp.matmul, weights)) ** 2, -1))


def problem(seed, depth, width=5, batch=16, init_scale=1.0):
    return LS.teacher_problem(seed, depth, width, batch, init_scale)


# ------------------------------------------------------------------------------------------ (a) PC gradient = ∇F*
@pytest.mark.parametrize(("depth", "init_scale"), [(1, 1.0), (2, 1.0), (4, 0.7), (4, 0.05)])
def test_pc_gradient_is_the_gradient_of_the_equilibrated_energy(depth, init_scale):
    chain, x, y = problem(depth, depth, init_scale=init_scale)
    with jax.enable_x64(True):
        ws = [jnp.asarray(w) for w in chain.weights]
        value, grads = jax.value_and_grad(fstar_jax)(ws, x, y)
        value, grads = float(value), [np.asarray(g) for g in grads]
        bp = [np.asarray(g) for g in jax.grad(mse_jax)(ws, x, y)]
    assert value == pytest.approx(float(T.equilibrated_energy(chain, x, y).mean()), rel=1e-12)
    scale = max(np.abs(g).max() for g in grads)
    for ours, ref in zip(T.pc_weight_gradients_at_equilibrium(chain, x, y), grads, strict=True):
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12 * scale)
    for ours, ref in zip(T.bp_weight_gradients(chain, x, y), bp, strict=True):
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-14)


# --------------------------------------------------------------------------------------------- (b) F* ≤ MSE
@pytest.mark.parametrize("seed", range(4))
def test_equilibrated_energy_is_below_the_loss_at_random_weights(seed):
    chain, x, y = problem(seed, depth=1 + seed, init_scale=[0.1, 1.0, 2.0, 5.0][seed])
    per_sample_loss = 0.5 * ((y - x @ T.effective_map(chain)) ** 2).sum(-1)
    assert np.all(T.equilibrated_energy(chain, x, y) <= per_sample_loss + 1e-12)


def test_equilibrated_energy_stays_below_the_loss_along_training():
    run = LS.saddle_escape(depth=3, width=6, batch=32, init_scale=0.3, lr=0.1, max_updates=300, until_escape=False)
    for traj in (run.bp, run.pc):
        assert traj.updates == 300 and len(traj.fstar) == 301
        assert traj.max_gap <= 1e-12
        assert traj.mse[-1] < 0.2 * traj.mse[0]  # both runs actually trained
    assert run.max_gap == max(run.bp.max_gap, run.pc.max_gap)
    chain, x, y = LS.teacher_problem(0, 3, 6, 32, 0.3)
    assert run.bp.mse[0] == run.pc.mse[0] == pytest.approx(LS.mse(chain, x, y), rel=1e-14)


# ------------------------------------------------------------------------------ (c) the saddle at the origin
@pytest.mark.parametrize("depth", [2, 3, 4])
def test_bp_gradient_vanishes_to_order_H_while_pc_does_not(depth):
    norm = lambda gs: np.sqrt(sum((g ** 2).sum() for g in gs))
    ratios = []
    for eps in (1e-2, 1e-3):
        chain, x, y = problem(0, depth, init_scale=eps)
        pc, bp = T.pc_weight_gradients_at_equilibrium(chain, x, y), T.bp_weight_gradients(chain, x, y)
        assert norm(pc[-1]) / norm(pc) > 0.99  # PC's gradient sits on the output layer (the −Σ_yy direction)
        ratios.append(norm(bp) / norm(pc))
    assert ratios[1] < 1e-2
    # ‖g_BP‖ ~ ε^H and ‖g_PC‖ ~ ε, so shrinking ε tenfold shrinks the ratio by ~10^(H−1)
    assert np.log10(ratios[0] / ratios[1]) == pytest.approx(depth - 1, abs=0.3)


@pytest.mark.parametrize("depth", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_origin_hessians(depth):
    """At W = 0 the MSE Hessian vanishes for H ≥ 2; F*'s is −(I_N ⊗ Σ_yy) on W_L and 0 elsewhere: a strict saddle."""
    width, batch = 3, 10
    _, x, y = problem(1, depth, width=width, batch=batch)
    flat = lambda f: lambda v: f(list(v.reshape(depth + 1, width, width)), x, y)
    zero = np.zeros((depth + 1) * width * width)
    with jax.enable_x64(True):
        h_mse = np.asarray(jax.jit(jax.hessian(flat(mse_jax)))(jnp.asarray(zero)))
        h_f = np.asarray(jax.jit(jax.hessian(flat(fstar_jax)))(jnp.asarray(zero)))
    np.testing.assert_array_equal(h_mse, 0.0)
    expected = np.zeros_like(h_f)
    last = slice(depth * width * width, None)
    expected[last, last] = -np.kron(np.eye(width), y.T @ y / batch)
    np.testing.assert_allclose(h_f, expected, atol=1e-12)
    assert np.linalg.eigvalsh(h_f)[0] == pytest.approx(-np.linalg.eigvalsh(y.T @ y / batch)[-1], rel=1e-12)


# --------------------------------------------------------------------------------------------- (d) escape
@pytest.mark.parametrize("seed", range(3))
def test_pc_escapes_the_origin_before_bp(seed):
    run = LS.saddle_escape(depth=4, width=8, init_scale=0.2, lr=0.1, max_updates=3000, seed=seed)
    assert run.bp.escape is not None and run.pc.escape is not None
    assert run.ratio > 1.5
    assert run.pc.energy_escape < run.pc.escape  # F* halves first (partly by rescaling, S grows)
    assert run.max_gap <= 1e-12
    # until_escape stops each run at its escape
    assert run.bp.updates == run.bp.escape and run.pc.updates == run.pc.escape


def test_escape_bookkeeping():
    traj = LS.Trajectory(np.array([4.0, 3.0, 1.9, 1.0]), np.array([3.0, 1.0, 0.5, 0.5]), threshold=0.5)
    assert (traj.escape, traj.energy_escape, traj.updates, traj.max_gap) == (2, 1, 3, -0.5)
    stuck = LS.Trajectory(np.array([4.0, 3.9]), np.array([3.0, 2.9]), threshold=0.5)
    assert stuck.escape is None
    assert LS.Escape(stuck, traj).ratio == float("inf")
    assert np.isnan(LS.Escape(traj, stuck).ratio)
    assert LS.Escape(LS.Trajectory(np.array([4.0, 3, 3, 3, 1]), np.zeros(5), 0.5), traj).ratio == 2.0

"""Inference: activity initialisers, solvers on the activities, and the loop that runs them.

Every solver relaxes a :class:`Relaxation` (the gradient flow ds/dt = −g(s) of the energy over the inference
state s) with ``relax(problem, s, aux, steps=, tol=) -> (s, aux, steps taken)``. A discrete solver
(:class:`StepSolver`) is a pair ``init(z) -> state`` and ``update(g, state, z) -> (z, state)`` (optax's
shape) run by :func:`settle`: ``T`` steps in a ``lax.scan``, or, when a tolerance is given, a
``lax.while_loop`` until every sample's ‖∇_z F_i‖_rms < tol (at most ``T`` steps). ``solver: ode``
integrates the flow with diffrax (:mod:`pcc.pc.ode`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from pcc.pc.optim import make_optimizer
from pcc.spec.models import Inference, OptimizerSpec

Activities = dict[str, jax.Array]

UNROLL: int | bool = 1
"""Inference steps per iteration of the fixed-``T`` loop (``True``: the whole loop written out). 1: writing it
out saved 6–7 % of a GPU step but added seconds of compile (``benchmarks/gpu_suite.py`` measures it)."""


# ------------------------------------------------------------------------------------------ solvers
@dataclass(frozen=True)
class Relaxation:
    """The gradient flow ds/dt = −g(s) that inference follows, over a state pytree s.

    ``aux(s)`` is what the gradient reuses (the prediction errors: a discrete loop carries them, so a step
    costs one back-projection and one prediction pass); ``grad(s, aux)`` is g, including the step-size
    convention's scale c; ``rms(t)`` the per-sample rms ‖t_i‖_rms of a state-shaped tree, shape (B,).
    """

    grad: Callable[[Any, Any], Any]
    aux: Callable[[Any], Any]
    rms: Callable[[Any], jax.Array]
    scale: float = 1.0
    carry: Callable[[Any, Any, Any], Any] | None = None
    """``carry(s_old, s_new, aux_old)``: aux at s_new from its change (a discrete loop's step), where that is
    exact and better conditioned than recomputing ``aux(s_new)`` (see :func:`pcc.pc.energy.carry_errors`)."""

    def next_aux(self, old: Any, new: Any, aux: Any) -> Any:
        """aux at ``new`` after a step from ``old``."""
        return self.aux(new) if self.carry is None else self.carry(old, new, aux)

    def residual(self, g: Any) -> jax.Array:
        """‖∇F_i‖_rms per sample (the convention's scale undone)."""
        return self.rms(g) / self.scale

    @staticmethod
    def side_by_side(parts: "list[Relaxation]") -> "Relaxation":
        """One relaxation over a tuple of independent states (groups of samples), part k over state k: a loop
        runs them together, their operations independent of each other; ``rms`` lists the parts' samples in
        order. A solver sees the same arrays as on the whole batch, split."""
        return Relaxation(
            grad=lambda s, aux: tuple(r.grad(si, ai) for r, si, ai in zip(parts, s, aux)),
            aux=lambda s: tuple(r.aux(si) for r, si in zip(parts, s)),
            rms=lambda t: jnp.concatenate([r.rms(ti) for r, ti in zip(parts, t)]),
            scale=parts[0].scale,
            carry=lambda old, new, aux: tuple(r.next_aux(*a) for r, *a in zip(parts, old, new, aux)))


class StepSolver:
    """A discrete solver: ``init``/``update`` steps run by :func:`settle`."""

    def relax(self, problem: Relaxation, s: Any, aux: Any, *, steps: int, tol: float | None):
        def advance(c, g):
            z, state = self.update(g, c[1], c[0])
            return z, state, problem.next_aux(c[0], z, c[2])

        (s, _, aux), taken = settle(lambda c: problem.grad(c[0], c[2]), advance, (s, self.init(s), aux),
                                    steps=steps, tol=tol, residual=problem.residual)
        return s, aux, taken


@dataclass(frozen=True)
class GradientDescent(StepSolver):
    """z ← z − η g."""

    step_size: float

    def init(self, z: Activities) -> Any:
        return ()

    def update(self, g: Activities, state: Any, z: Activities):
        return jax.tree.map(lambda zi, gi: zi - self.step_size * gi, z, g), state


@dataclass(frozen=True)
class OptaxSolver(StepSolver):
    """Any optax optimiser on the activities."""

    tx: optax.GradientTransformation

    def init(self, z: Activities) -> Any:
        return self.tx.init(z)

    def update(self, g: Activities, state: Any, z: Activities):
        updates, state = self.tx.update(g, state, z)
        return optax.apply_updates(z, updates), state


def _optax_solver(cfg: Inference) -> OptaxSolver:
    opt = cfg.optimizer or OptimizerSpec(name="sgd", lr=cfg.step_size)
    lr = opt.lr if "lr" in opt.model_fields_set else cfg.step_size
    return OptaxSolver(make_optimizer(opt, lr))


def _ode_solver(cfg: Inference):
    from pcc.pc.ode import ODESolver  # diffrax is imported only when a spec integrates

    return ODESolver.from_spec(cfg)


SOLVERS: dict[str, Callable[[Inference], Any]] = {
    "gd": lambda cfg: GradientDescent(cfg.step_size),
    "optax": _optax_solver,
    "ode": _ode_solver,
}


# ------------------------------------------------------------------------------------ initialisers
def initial_activities(mode: str, forward: Activities, key: jax.Array, std: float) -> Activities:
    """``forward``: the feedforward values; ``zeros``; ``normal``: N(0, std²)."""
    if mode == "forward":
        return forward
    if mode == "zeros":
        return jax.tree.map(jnp.zeros_like, forward)
    keys = jax.random.split(key, len(forward))
    return {n: (std * jax.random.normal(k, v.shape)).astype(v.dtype)  # drawn in float32 whatever the dtype
            for (n, v), k in zip(sorted(forward.items()), keys)}


# ------------------------------------------------------------------------------------------- loop
def per_sample_rms(g: Activities, stacked: frozenset[str]) -> jax.Array:
    """‖g_i‖_rms for each sample i (the batch axis is 1 for stacked nodes, 0 otherwise), in float32."""
    total, count = 0.0, 0
    for name, gi in g.items():
        gi = gi.astype(jnp.float32)
        axes = tuple(a for a in range(gi.ndim) if a != (1 if name in stacked else 0))
        total = total + jnp.sum(jnp.square(gi), axis=axes)
        count += gi.size // gi.shape[1 if name in stacked else 0]
    return jnp.sqrt(total / max(count, 1))


def settle(grad: Callable, advance: Callable, state: Any, *, steps: int, tol: float | None,
           residual: Callable[[Any], jax.Array]):
    """Run inference: ``state ← advance(state, grad(state))``; returns (state, steps taken).

    ``grad(state)`` gives the gradient pytree the step uses, ``residual(g)`` the per-sample rms of its
    activity part. With ``tol`` the loop stops once every sample's residual is below it.
    """
    if tol is None:
        state = jax.lax.fori_loop(0, steps, lambda _, s: advance(s, grad(s)), state, unroll=UNROLL)
        return state, jnp.asarray(steps, jnp.int32)

    def cond(carry):
        i, _, g = carry
        return (i < steps) & (jnp.max(residual(g)) >= tol)

    def body(carry):
        i, s, g = carry
        s = advance(s, g)
        return i + 1, s, grad(s)

    i, state, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), state, grad(state)))
    return state, i

"""ODE inference: the gradient flow of the energy, integrated by diffrax.

    ds/dt = −c · ∇_s Σ_i F_i(s),     s(0) = the initialised state,

(c the step-size convention's scale) from t = 0 to t1 with a named Runge–Kutta method, at constant steps
dt0 or with a PID controller. Its error norm is the worst sample's rms, max_i ‖err_i‖_rms, so the
tolerances hold for every sample whatever the batch size (diffrax's default rms over the whole batch would
dilute one sample's error by B). With ``inference.tol`` a :class:`diffrax.Event` stops the solve at a steady
state, once max_i ‖ds_i/dt‖_rms / c < tol: the vector field, not the state (JPC tests ‖s‖, which never
stops). Running out of ``max_steps`` is not an error: the solve returns the state it reached. The steps
reported are the accepted steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import diffrax
import jax
import jax.numpy as jnp

from pcc.pc.inference import Relaxation
from pcc.spec.models import ODE, Inference

METHODS: dict[str, type[diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "ralston": diffrax.Ralston,
    "bosh3": diffrax.Bosh3,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
}


@dataclass(frozen=True)
class ODESolver:
    """Integrate a :class:`~pcc.pc.inference.Relaxation` from 0 to ``t1``."""

    method: str
    controller: str
    t1: float
    dt0: float
    rtol: float
    atol: float
    max_steps: int

    @classmethod
    def from_spec(cls, cfg: Inference) -> "ODESolver":
        ode = cfg.ode or ODE()
        t1, dt0 = cfg.ode_times()
        return cls(ode.method, ode.controller, t1, dt0, ode.rtol, ode.atol, ode.max_steps)

    def relax(self, problem: Relaxation, s: Any, aux: Any, *, steps: int, tol: float | None):
        """(state at the end, its aux, accepted steps). ``steps`` is not read: the budget is ``max_steps``."""
        if self.t1 == 0:
            return s, aux, jnp.asarray(0, jnp.int32)
        worst = lambda tree: jnp.max(problem.rms(tree))
        term = diffrax.ODETerm(lambda t, z, args: jax.tree.map(jnp.negative, problem.grad(z, problem.aux(z))))
        controller = (diffrax.ConstantStepSize() if self.controller == "constant"
                      else diffrax.PIDController(rtol=self.rtol, atol=self.atol, norm=worst))
        event = None
        if tol is not None:
            def steady(t, z, args, *, terms, solver, **kwargs):
                return worst(solver.func(terms, t, z, args)) / problem.scale < tol

            event = diffrax.Event(steady)
        sol = diffrax.diffeqsolve(term, METHODS[self.method](), 0.0, self.t1, self.dt0, s,
                                  stepsize_controller=controller, event=event, max_steps=self.max_steps,
                                  throw=False, saveat=diffrax.SaveAt(t1=True))
        s = jax.tree.map(lambda a: a[-1], sol.ys)
        return s, problem.aux(s), sol.stats["num_accepted_steps"].astype(jnp.int32)

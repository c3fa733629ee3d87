"""Learning algorithms: pure functions ``step(program, params, opt_state, x, y, key) -> (params, opt_state,
metrics)``, registered by name. Each is derived from the one energy (:mod:`pcc.pc.energy`).

- ``pc``: infer the activities, then one optimiser step on ∇_θ mean_i F_i at the final activities.
- ``ipc``: incremental PC: a weight step at every inference step, from the current activities.
- ``bp``: backpropagation of the output loss through the same network and parameterisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pcc.ir.graph import INPUT, OUTPUT, Graph
from pcc.nn.network import PCNetwork
from pcc.pc import energy as E
from pcc.pc.inference import Activities, Relaxation, initial_activities, per_sample_rms, settle


@jax.tree_util.register_dataclass
@dataclass
class StepMetrics:
    """What one train step measured (batch means unless noted)."""

    loss: jax.Array  # loss of the feedforward prediction
    energy_init: jax.Array  # F before inference
    energy_final: jax.Array  # F after inference
    layer_energies: jax.Array  # (L,) per weight layer after inference
    grad_norms: jax.Array  # (L,) ‖∇_θ‖ per weight layer
    steps: jax.Array  # inference steps taken


@jax.tree_util.register_dataclass
@dataclass
class InferenceResult:
    """Activities after inference and their energies."""

    activities: dict  # node → (B, N) or (R, B, N)
    energy: jax.Array  # (B,) F_i
    layer_energies: jax.Array  # (L, B)
    steps: jax.Array


@dataclass(frozen=True)
class Program:
    """Everything a generated loop needs, fixed at compile time.

    Loops carry the activities together with their prediction errors, so each inference step costs one
    back-projection (the vjp of the prediction ops) and one prediction pass, and the weight gradient
    after inference reuses the last step's errors (see :mod:`pcc.pc.energy`).
    """

    graphdef: Any
    graph: Graph
    solver: Any
    steps: int
    tol: float | None
    grad_scale: float  # 1 (per-sample step) or 1/B_tuned (batch-mean convention)
    init: str
    init_std: float
    tx: optax.GradientTransformation

    # ----------------------------------------------------------------------- building blocks
    def net(self, params) -> PCNetwork:
        return nnx.merge(self.graphdef, params)

    def values(self, free: Activities, x: jax.Array, y: jax.Array) -> dict:
        return {INPUT: x, OUTPUT: y, **free}

    def free_names(self) -> list[str]:
        return [n.name for n in self.graph.free]

    def errors(self, params, free: Activities, x: jax.Array, y: jax.Array) -> E.Errors:
        """e = z − μ of every energy node."""
        return E.errors(self.net(params), self.values(free, x, y))

    def start(self, params, x, y, key) -> tuple[Activities, E.Errors, jax.Array]:
        """Initial activities, their errors, and the per-sample loss of the feedforward prediction.

        Under the feedforward initialisation every free node's error is exactly 0 and the output's is
        y − ŷ, so no prediction pass is spent on them."""
        net = self.net(params)
        fwd = net.forward(x)
        loss = E.output_loss(net, fwd[OUTPUT], y)
        free = {n: fwd[n] for n in self.free_names()}
        if self.init == "forward":
            err = {**{n: jnp.zeros_like(v) for n, v in free.items()}, OUTPUT: y - fwd[OUTPUT]}
            return free, err, loss
        free = initial_activities(self.init, free, key, self.init_std)
        return free, self.errors(params, free, x, y), loss

    def energy(self, free, err, x, y) -> jax.Array:
        """F_i per sample from the errors at ``free``."""
        return E.total(self.graph, self.values(free, x, y), err)

    def total_energy(self, params, free, x, y) -> jax.Array:
        """F_i per sample (errors computed here)."""
        return E.total(self.graph, self.values(free, x, y), self.errors(params, free, x, y))

    def _scaled(self, g: Activities) -> Activities:
        return g if self.grad_scale == 1 else jax.tree.map(lambda a: a * self.grad_scale, g)

    def activity_grad(self, params, free, x, y, err=None) -> Activities:
        """Per-sample ∇_z F_i (times the step-size convention's scale), from the errors ``err`` at ``free``."""
        err = self.errors(params, free, x, y) if err is None else err
        g = E.local_grads(lambda z: self.errors(params, z, x, y), free, self.values(free, x, y), err, self.graph)
        return self._scaled(g)

    def weight_grad(self, params, free, x, y, err=None):
        """(mean_i F_i, ∇_θ mean_i F_i) at fixed activities, from the errors ``err`` at ``free``."""
        err = self.errors(params, free, x, y) if err is None else err
        values = self.values(free, x, y)
        g = E.local_grads(lambda p: self.errors(p, free, x, y), params, values, err, self.graph)
        inv_b = 1.0 / x.shape[0]
        return E.total(self.graph, values, err).mean(), jax.tree.map(lambda a: inv_b * a, g)

    def joint_grad(self, params, free, x, y, err):
        """Activity and weight gradients from one back-projection (incremental PC)."""
        values = self.values(free, x, y)
        g_p, g_z = E.local_grads(lambda pz: self.errors(pz[0], pz[1], x, y), (params, free), values, err,
                                 self.graph)
        inv_b = 1.0 / x.shape[0]
        return self._scaled(g_z), jax.tree.map(lambda a: inv_b * a, g_p)

    def residual(self, g: Activities) -> jax.Array:
        stacked = frozenset(n.name for n in self.graph.free if n.repeat > 1)
        return per_sample_rms(g, stacked) / self.grad_scale

    def apply_weights(self, params, grads, opt_state):
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    # ----------------------------------------------------------------------- inference
    def settle(self, params, free, x, y, err=None):
        """Run the solver on the activities at fixed weights from ``free`` (with errors ``err``);
        returns (activities, errors, steps)."""
        err = self.errors(params, free, x, y) if err is None else err
        return self.solver.relax(self.relaxation(params, x, y), free, err, steps=self.steps, tol=self.tol)

    def relaxation(self, params, x, y) -> Relaxation:
        """The gradient flow of the energy over the free activities at fixed weights."""
        stacked = frozenset(n.name for n in self.graph.free if n.repeat > 1)
        return Relaxation(grad=lambda z, err: self.activity_grad(params, z, x, y, err),
                          aux=lambda z: self.errors(params, z, x, y),
                          rms=lambda t: per_sample_rms(t, stacked), scale=self.grad_scale)

    def infer(self, params, x, y, key) -> InferenceResult:
        free, err, _ = self.start(params, x, y, key)
        free, err, steps = self.settle(params, free, x, y, err)
        layers = E.layer_energies(self.graph, self.values(free, x, y), err)
        return InferenceResult(free, layers.sum(0), layers, steps)

    def metrics(self, free, err, x, y, loss, energy_init, grads, steps) -> StepMetrics:
        layers = E.layer_energies(self.graph, self.values(free, x, y), err).mean(axis=1)
        return StepMetrics(loss.mean(), energy_init, layers.sum(), layers, layer_grad_norms(self.graph, grads),
                           steps)


def layer_grad_norms(graph: Graph, grads) -> jax.Array:
    """‖∇_θ‖ per weight layer (per copy of a stacked node), in ``graph.layer_labels`` order."""
    pure = nnx.to_pure_dict(grads)["edges"]
    rows = []
    for node in graph.energy_nodes:
        sq = jnp.zeros((node.repeat,))
        for leaves in pure.get(node.name, {}).values():
            for leaf in leaves.values():
                if leaf is None:
                    continue
                axes = tuple(range(1, leaf.ndim)) if node.repeat > 1 else None
                sq = sq + jnp.sum(jnp.square(leaf), axis=axes)
        rows.append(jnp.sqrt(sq))
    return jnp.concatenate(rows)


# ------------------------------------------------------------------------------------- algorithms
ALGORITHMS: dict[str, Callable] = {}


def algorithm(name: str):
    def register(fn):
        ALGORITHMS[name] = fn
        return fn

    return register


@algorithm("pc")
def pc_step(p: Program, params, opt_state, x, y, key):
    free, err, loss = p.start(params, x, y, key)
    energy_init = p.energy(free, err, x, y).mean()
    free, err, steps = p.settle(params, free, x, y, err)
    _, grads = p.weight_grad(params, free, x, y, err)
    metrics = p.metrics(free, err, x, y, loss, energy_init, grads, steps)
    params, opt_state = p.apply_weights(params, grads, opt_state)
    return params, opt_state, metrics


@algorithm("ipc")
def ipc_step(p: Program, params, opt_state, x, y, key):
    free, err, loss = p.start(params, x, y, key)
    energy_init = p.energy(free, err, x, y).mean()

    def advance(s, g):
        z, zs, theta, os, _ = s
        z, zs = p.solver.update(g[0], zs, z)
        theta, os = p.apply_weights(theta, g[1], os)
        return z, zs, theta, os, p.errors(theta, z, x, y)

    (free, _, params, opt_state, err), steps = settle(
        lambda s: p.joint_grad(s[2], s[0], x, y, s[4]), advance,
        (free, p.solver.init(free), params, opt_state, err),
        steps=p.steps, tol=p.tol, residual=lambda g: p.residual(g[0]),
    )
    _, grads = p.weight_grad(params, free, x, y, err)
    return params, opt_state, p.metrics(free, err, x, y, loss, energy_init, grads, steps)


@algorithm("bp")
def bp_step(p: Program, params, opt_state, x, y, key):
    def loss_fn(theta):
        net = p.net(theta)
        values = net.forward(x)
        return E.output_loss(net, values[OUTPUT], y).mean(), values

    (loss, values), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    free = {n: values[n] for n in p.free_names()}
    metrics = p.metrics(free, p.errors(params, free, x, y), x, y, loss, loss, grads, jnp.asarray(0, jnp.int32))
    params, opt_state = p.apply_weights(params, grads, opt_state)
    return params, opt_state, metrics

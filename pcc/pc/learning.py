"""Learning algorithms: pure functions ``step(program, params, opt_state, x, y, key, t) -> (params, opt_state,
metrics)`` (``t`` the train step, for schedules), registered by name. Each is derived from the one energy
(:mod:`pcc.pc.energy`).

- ``pc``: infer the activities, then one optimiser step on ∇_θ mean_i F_i at the final activities.
- ``ipc``: incremental PC: a weight step at every inference step, from the current activities.
- ``bp``: backpropagation of the output loss through the same network and parameterisation.
- :func:`nudged_step` (``learning.nudge``): pc with a nudged instead of a clamped output (equilibrium
  propagation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from itertools import groupby
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pcc.ir.graph import INPUT, OUTPUT, Graph
from pcc.nn.network import PCNetwork
from pcc.pc import energy as E
from pcc.pc.inference import Activities, Relaxation, initial_activities, per_sample_rms, settle
from pcc.spec.models import update_steps


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
class Clamp:
    """A node held at a slot of the batch (``"x"`` or ``"y"``).

    Hard by default. With ``mask`` (an array like the data, 1 = known) only the known entries are held and
    the rest of the node is free (inpainting). With ``beta`` the node is free and *nudged* towards the data:
    the energy gains β·½‖d − z‖² (equilibrium propagation's soft clamp)."""

    slot: str
    mask: Any = None
    beta: Any = None

    @property
    def hard(self) -> bool:
        return self.mask is None and self.beta is None


@dataclass(frozen=True)
class Program:
    """Everything a generated loop needs, fixed at compile time.

    Loops carry the activities together with their prediction errors, so each inference step costs one
    back-projection (the vjp of the prediction ops) and one prediction pass, and the weight gradient
    after inference reuses the last step's errors (see :mod:`pcc.pc.energy`).

    ``clamps`` says which node holds which slot of the batch (default: the graph's, i.e. the mode's training
    clamps); every other node is free. ``state`` names what inference updates (:data:`STATES`).
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
    clamps: Mapping[str, Clamp] | None = None
    state: str = "activities"
    carry_errors: bool = False  # a discrete solver carries the errors by their changes (``inference.errors``)
    layout: Any = None  # a ChunkedLayout: inference runs on the stacks split in chunks (``parallel.layer_chunks``)
    groups: int = 1  # inference runs the batch as this many groups of samples side by side (``parallel.batch_groups``)

    def __post_init__(self):
        if self.clamps is None:
            object.__setattr__(self, "clamps", {name: Clamp(slot) for name, slot in self.graph.clamps})

    def with_clamps(self, **clamps: Clamp | None) -> "Program":
        """This program with some nodes clamped otherwise (``None``: free)."""
        merged = {**self.clamps, **clamps}
        return replace(self, clamps={n: c for n, c in merged.items() if c is not None})

    # ----------------------------------------------------------------------- building blocks
    def net(self, params) -> PCNetwork:
        return nnx.merge(self.graphdef, params)

    def data(self, name: str, x: jax.Array, y: jax.Array) -> jax.Array:
        """The batch slot node ``name`` is clamped to."""
        return x if self.clamps[name].slot == "x" else y

    def values(self, free: Activities, x: jax.Array, y: jax.Array) -> dict:
        values = dict(free)
        for name, c in self.clamps.items():
            if c.mask is not None:
                values[name] = jnp.where(jnp.asarray(c.mask, bool), self.data(name, x, y), free[name])
            elif c.beta is None:
                values[name] = self.data(name, x, y)
        return values

    def free_names(self) -> list[str]:
        """Nodes inference updates: every node that is not hard-clamped."""
        return [n.name for n in self.graph.nodes if n.name not in self.clamps or not self.clamps[n.name].hard]

    def errors(self, params, free: Activities, x: jax.Array, y: jax.Array) -> E.Errors:
        """e = z − μ of every energy node."""
        return E.errors(self.net(params), self.values(free, x, y))

    def error_map(self, params, x: jax.Array, y: jax.Array) -> Callable[[Activities], E.Errors]:
        """z ↦ the errors at fixed weights (:meth:`errors`), with the predictions of the nodes fed only by
        hard-clamped data (the input's projection) computed once, here: an inference loop built on the map
        holds them as constants instead of redoing their matmuls every step."""
        net = self.net(params)
        data = {n: self.data(n, x, y) for n, c in self.clamps.items() if c.hard}
        fixed = {n.name: net.signed_prediction(n.name, data) for n in self.graph.energy_nodes
                 if n.repeat == 1 and all(e.src in data for e in self.graph.incoming(n.name))}
        return lambda free: E.errors(net, self.values(free, x, y), fixed)

    def log_precision(self, params) -> E.LogPrecisions:
        """log λ of the nodes with a learned precision."""
        if not self.graph.learned_precision:
            return {}
        net = self.net(params)
        return {n: net.log_precision[n][...] for n in self.graph.learned_precision}

    def start(self, params, x, y, key) -> tuple[Activities, E.Errors, jax.Array]:
        """Initial activities, their errors, and the per-sample loss of the feedforward prediction.

        The feedforward pass starts from the clamped root, or from a free root at N(0, init_std²) (zeros
        under ``init: zeros``). Under the feedforward initialisation every free node's error is exactly 0 and
        the output's is its clamped value − ŷ, so no prediction pass is spent on them. Free activities and
        errors are in the network's dtype (``model.dtype``); clamped data keep theirs."""
        net = self.net(params)
        dtype = net.dtype
        if INPUT in self.clamps:
            root = self.data(INPUT, x, y)
        else:
            shape = (x.shape[0], self.graph.input.width)
            root = (jnp.zeros(shape, dtype) if self.init == "zeros"
                    else (self.init_std * jax.random.normal(jax.random.fold_in(key, 1), shape)).astype(dtype))
        fwd = net.forward(root)
        loss = E.output_loss(net, fwd[OUTPUT], self.data(OUTPUT, x, y))
        free = {n: fwd[n].astype(dtype) for n in self.free_names()}
        if self.init == "amortised":
            guess = net.amortise(self.data(self.graph.x_node.name, x, y))
            free = {n: guess[n] for n in free}
            return free, self.errors(params, free, x, y), loss
        if self.init == "forward" and not self.graph.bidirectional:  # bottom-up errors are not 0 here
            err = {n.name: jnp.zeros(fwd[n.name].shape, dtype) for n in self.graph.energy_nodes}
            err[OUTPUT] = (self.values(free, x, y)[OUTPUT] - fwd[OUTPUT]).astype(dtype)
            return free, err, loss
        free = initial_activities(self.init, free, key, self.init_std)
        return free, self.errors(params, free, x, y), loss

    def local(self, params, free, x, y, err=None) -> tuple:
        """The energy's local variables at (params, free): errors, log precisions, nudged nodes' values."""
        err = self.errors(params, free, x, y) if err is None else err
        nudged = {n: free[n] for n, c in self.clamps.items() if c.beta is not None}
        return err, self.log_precision(params), nudged

    def energy_of(self, local, values, x, y) -> jax.Array:
        """F_i per sample from the local variables: Σ_n λ_n E_n (− ½ d_n log λ_n) + Σ_nudged β ½‖d − z‖²."""
        err, logp, nudged = local
        f = E.total(self.graph, values, err, logp)
        for name, z in nudged.items():
            f = f + self.clamps[name].beta * 0.5 * jnp.sum(jnp.square(self.data(name, x, y) - z), axis=-1)
        return f

    def energy(self, params, free, err, x, y) -> jax.Array:
        """F_i per sample from the errors ``err`` at ``free`` (computed when None)."""
        return self.energy_of(self.local(params, free, x, y, err), self.values(free, x, y), x, y)

    def total_energy(self, params, free, x, y) -> jax.Array:
        """F_i per sample (errors computed here)."""
        return self.energy(params, free, None, x, y)

    def _scaled(self, g: Activities) -> Activities:
        return g if self.grad_scale == 1 else jax.tree.map(lambda a: a * self.grad_scale, g)

    def _grads(self, local_map, wrt, params, free, x, y, err):
        """(∂ℓ/∂wrt)ᵀ ∂F/∂ℓ through the local variables ℓ (see :func:`pcc.pc.energy.local_grads`)."""
        values = self.values(free, x, y)
        local = self.local(params, free, x, y, err)
        return E.local_grads(local_map, wrt, local, lambda l: self.energy_of(l, values, x, y)), local, values

    def activity_grad(self, params, free, x, y, err=None) -> Activities:
        """Per-sample ∇_z F_i (times the step-size convention's scale), from the errors ``err`` at ``free``."""
        g, _, _ = self._grads(lambda z: self.local(params, z, x, y), free, params, free, x, y, err)
        return self._scaled(g)

    def weight_grad(self, params, free, x, y, err=None):
        """(mean_i F_i, ∇_θ mean_i F_i) at fixed activities, from the errors ``err`` at ``free``."""
        g, local, values = self._grads(lambda p: self.local(p, free, x, y), params, params, free, x, y, err)
        inv_b = 1.0 / x.shape[0]
        return self.energy_of(local, values, x, y).mean(), jax.tree.map(lambda a: inv_b * a, g)

    def joint_grad(self, params, free, x, y, err):
        """Activity and weight gradients from one back-projection (incremental PC)."""
        (g_p, g_z), _, _ = self._grads(lambda pz: self.local(pz[0], pz[1], x, y), (params, free), params, free,
                                       x, y, err)
        inv_b = 1.0 / x.shape[0]
        return self._scaled(g_z), jax.tree.map(lambda a: inv_b * a, g_p)

    def amortiser_grad(self, params, free, x, y):
        """∇ of the amortiser's loss mean_i Σ_n ½‖z_n − â_n(x)‖² at the (equilibrated) activities ``free``,
        with respect to the amortiser's parameters (every other leaf 0)."""
        def loss(p):
            guess = self.net(p).amortise(self.data(self.graph.x_node.name, x, y))
            return sum(0.5 * jnp.sum(jnp.square((jax.lax.stop_gradient(z) - guess[n]).astype(jnp.float32)))
                       for n, z in free.items())

        return jax.tree.map(lambda g: g / x.shape[0], jax.grad(loss)(params))

    def rms(self, t: Activities) -> jax.Array:
        """Per-sample ‖t_i‖_rms of a tree shaped like the free activities."""
        return per_sample_rms(t, frozenset(n for n in self.free_names() if self.graph.node(n).repeat > 1))

    def residual(self, g: Activities) -> jax.Array:
        return self.rms(g) / self.grad_scale

    def apply_weights(self, params, grads, opt_state):
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    # ----------------------------------------------------------------------- inference
    def settle(self, params, free, x, y, err=None):
        """Run the solver at fixed weights from ``free`` (with errors ``err``) on the program's
        :data:`STATES` variables; returns (activities, errors, steps)."""
        err = self.errors(params, free, x, y) if err is None else err
        return STATES[self.state](self, params, free, err, x, y)

    def relaxation(self, params, x, y) -> Relaxation:
        """The gradient flow of the energy over the free activities at fixed weights."""
        net = self.net(params)
        carry = (lambda old, new, err: E.carry_errors(net, self.values(old, x, y), self.values(new, x, y), err, old)
                 ) if self.carry_errors else None
        return Relaxation(grad=lambda z, err: self.activity_grad(params, z, x, y, err),
                          aux=self.error_map(params, x, y), rms=self.rms, scale=self.grad_scale, carry=carry)

    # ePC: the state is the errors ε of the free nodes (the value itself for a free root)
    def from_errors(self, params, eps: Activities, x, y) -> tuple[Activities, E.Errors]:
        """(free activities, errors) of the error state ε: z_n = μ_n(z) + ε_n by one forward pass."""
        offsets = {n: e for n, e in eps.items() if n != INPUT}
        fwd = self.net(params).forward(eps[INPUT] if INPUT in eps else self.data(INPUT, x, y), offsets)
        free = {n: fwd[n].astype(self.graph.dtype) for n in self.free_names()}
        values = self.values(free, x, y)
        err = {n.name: offsets[n.name] if n.name in offsets and n.name not in self.clamps
               else values[n.name] - (fwd[n.name] - offsets.get(n.name, 0.0)) for n in self.graph.energy_nodes}
        return free, {n: e.astype(self.graph.dtype) for n, e in err.items()}

    def error_relaxation(self, params, x, y) -> Relaxation:
        """The gradient flow of F(z(ε)) over the error state ε (∇_ε F is backprop through the forward pass)."""
        def energy(eps):
            return self.energy(params, *self.from_errors(params, eps, x, y), x, y).sum()

        return Relaxation(grad=lambda eps, _: self._scaled(jax.grad(energy)(eps)), aux=lambda eps: (),
                          rms=self.rms, scale=self.grad_scale)

    def infer(self, params, x, y, key) -> InferenceResult:
        return self.infer_with_errors(params, x, y, key)[0]

    def infer_with_errors(self, params, x, y, key) -> tuple[InferenceResult, E.Errors]:
        """Inference from the initialisation, and the errors it ends with (what the weight gradient takes)."""
        free, err, _ = self.start(params, x, y, key)
        free, err, steps = self.settle(params, free, x, y, err)
        layers = E.layer_energies(self.graph, self.values(free, x, y), err, self.log_precision(params))
        return InferenceResult(free, layers.sum(0), layers, steps), err

    def metrics(self, params, free, err, x, y, loss, energy_init, grads, steps) -> StepMetrics:
        layers = E.layer_energies(self.graph, self.values(free, x, y), err, self.log_precision(params)).mean(axis=1)
        return StepMetrics(loss.mean(), energy_init, layers.sum(), layers, layer_grad_norms(self.graph, grads),
                           steps)


def _settle_activities(p: Program, params, free, err, x, y):
    chunks = p.layout
    if chunks is not None:
        q = replace(p, graphdef=chunks.graphdef, graph=chunks.graph, layout=None)
        free, err, steps = _settle_activities(q, chunks.params(params), chunks.split(free), chunks.split(err), x, y)
        return chunks.merge(free), chunks.merge(err), steps
    groups = _batch_groups(len(x), p.groups) if all(c.mask is None for c in p.clamps.values()) else []
    if len(groups) < 2:
        return p.solver.relax(p.relaxation(params, x, y), free, err, steps=p.steps, tol=p.tol)
    joint = Relaxation.side_by_side([p.relaxation(params, *_samples((x, y), a, b)) for a, b in groups])
    free, err, steps = p.solver.relax(joint, tuple(_samples(free, a, b) for a, b in groups),
                                      tuple(_samples(err, a, b) for a, b in groups), steps=p.steps, tol=p.tol)
    return _join_samples(free), _join_samples(err), steps


def _batch_groups(size: int, groups: int) -> list[tuple[int, int]]:
    """``size`` samples in ``min(groups, size)`` nearly equal runs (first, one past the last)."""
    g = max(1, min(groups, size))
    return [(k * size // g, (k + 1) * size // g) for k in range(g)]


def _samples(tree, a: int, b: int):
    """Samples a…b−1 of every array in ``tree``: along the batch axis, 0 of (B, N), 1 of a stack's (R, B, N)."""
    return jax.tree.map(lambda v: jax.lax.slice_in_dim(v, a, b, axis=v.ndim - 2), tree)


def _join_samples(parts):
    """The inverse of :func:`_samples` over consecutive groups."""
    return jax.tree.map(lambda *v: jnp.concatenate(v, axis=v[0].ndim - 2), *parts)


def _settle_errors(p: Program, params, free, err, x, y):
    eps = {n: err[n] if n in err else free[n] for n in p.free_names()}
    eps, _, steps = p.solver.relax(p.error_relaxation(params, x, y), eps, (), steps=p.steps, tol=p.tol)
    return (*p.from_errors(params, eps, x, y), steps)


STATES: dict[str, Callable] = {"activities": _settle_activities, "errors": _settle_errors}
"""What inference updates (``inference.state``): ``activities`` z (PC: local gradients, carried errors) or
``errors`` ε (ePC: the same energy over z_n = μ_n + ε_n; its minimisers are PC's, reparameterised)."""


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
                sq = sq + jnp.sum(jnp.square(leaf.astype(jnp.float32)), axis=axes)
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
def pc_step(p: Program, params, opt_state, x, y, key, t=None):
    free, err, loss = p.start(params, x, y, key)
    energy_init = p.energy(params, free, err, x, y).mean()
    free, err, steps = p.settle(params, free, x, y, err)
    _, grads = p.weight_grad(params, free, x, y, err)
    if p.graph.amortised:  # hybrid PC: the amortiser learns to predict the equilibrated activities
        grads = jax.tree.map(jnp.add, grads, p.amortiser_grad(params, free, x, y))
    metrics = p.metrics(params, free, err, x, y, loss, energy_init, grads, steps)
    params, opt_state = p.apply_weights(params, grads, opt_state)
    return params, opt_state, metrics


@algorithm("ipc")
def ipc_step(p: Program, params, opt_state, x, y, key, t=None):
    free, err, loss = p.start(params, x, y, key)
    energy_init = p.energy(params, free, err, x, y).mean()

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
    return params, opt_state, p.metrics(params, free, err, x, y, loss, energy_init, grads, steps)


@algorithm("bp")
def bp_step(p: Program, params, opt_state, x, y, key, t=None):
    root, target = p.data(INPUT, x, y), p.data(OUTPUT, x, y)

    def loss_fn(theta):
        net = p.net(theta)
        values = net.forward(root)
        return E.output_loss(net, values[OUTPUT], target).mean(), values

    (loss, values), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    free = {n: values[n] for n in p.free_names()}
    metrics = p.metrics(params, free, p.errors(params, free, x, y), x, y, loss, loss, grads,
                        jnp.asarray(0, jnp.int32))
    params, opt_state = p.apply_weights(params, grads, opt_state)
    return params, opt_state, metrics


# ------------------------------------------------------------------------------------------ nudging
NUDGE_PHASES: dict[str, tuple[tuple[int, float], ...]] = {
    "positive": ((1, 1.0),),
    "negative": ((-1, -1.0),),
    "centred": ((1, 0.5), (-1, -0.5)),
}
"""(sign of β, coefficient c) per phase: the weight gradient is Σ_k c_k ∇_θ F_{s_k β} / β."""


@dataclass(frozen=True)
class Nudging:
    """The nudged phases (:data:`NUDGE_PHASES`) and β as a function of the train step."""

    phases: tuple[tuple[int, float], ...]
    beta: Callable[[jax.Array], jax.Array]


def nudged_step(p: Program, params, opt_state, x, y, key, t, *, nudging: Nudging):
    """Equilibrium propagation on the PC energy: the output node is freed and nudged towards its data by
    ``Clamp(beta=±β)``; each phase infers from the feedforward values and takes ∇_θ F at its equilibrium.
    The free phase is the feedforward pass itself (every error 0, so ∇_θ F_0 = 0 and it costs nothing)."""
    beta = nudging.beta(t)
    free, err, loss = p.start(params, x, y, key)
    energy_init = p.energy(params, free, err, x, y).mean()
    slot = p.clamps[OUTPUT].slot
    grads, steps, shown = None, 0, None
    for sign, coef in nudging.phases:
        q = p.with_clamps(**{OUTPUT: Clamp(slot, beta=sign * beta)})
        z, e, _ = q.start(params, x, y, key)
        z, e, n = q.settle(params, z, x, y, e)
        _, g = q.weight_grad(params, z, x, y, e)
        g = jax.tree.map(lambda a, c=coef: (c / beta) * a, g)
        grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
        steps, shown = steps + n, shown or (q, z, e)
    q, z, e = shown
    metrics = q.metrics(params, z, e, x, y, loss, energy_init, grads, steps)
    params, opt_state = p.apply_weights(params, grads, opt_state)
    return params, opt_state, metrics


# ------------------------------------------------------------------------------------- update schedules
def _activity_step(p: Program, s, x, y):
    """One activity step at fixed weights; ``s = (z, solver state, θ, optimiser state, errors)``."""
    z, zs, theta, os, err = s
    z, zs = p.solver.update(p.activity_grad(theta, z, x, y, err), zs, z)
    return z, zs, theta, os, p.errors(theta, z, x, y)


def _joint_step(p: Program, s, x, y):
    """One activity step and one weight step from the same state (incremental PC)."""
    z, zs, theta, os, err = s
    g_z, g_theta = p.joint_grad(theta, z, x, y, err)
    z, zs = p.solver.update(g_z, zs, z)
    theta, os = p.apply_weights(theta, g_theta, os)
    return z, zs, theta, os, p.errors(theta, z, x, y)


def _runs(schedule: frozenset[int], steps: int) -> list[tuple[bool, int]]:
    """The inference steps 0 … T−1 as runs of (whether the weights step too, run length)."""
    return [(joint, len(list(run))) for joint, run in groupby(t in schedule for t in range(steps))]


def scheduled_step(p: Program, params, opt_state, x, y, key, t=None, *, schedule: frozenset[int]):
    """PC with weight steps at the inference steps of ``schedule`` (see :func:`~pcc.spec.models.update_steps`):
    each run of steps with the same choice is one loop, so a schedule costs no branching per step."""
    free, err, loss = p.start(params, x, y, key)
    energy_init = p.energy(params, free, err, x, y).mean()
    s = (free, p.solver.init(free), params, opt_state, err)
    for joint, n in _runs(schedule, p.steps):
        step = _joint_step if joint else _activity_step
        s = jax.lax.fori_loop(0, n, lambda _, c, step=step: step(p, c, x, y), s)
    free, _, params, opt_state, err = s
    _, grads = p.weight_grad(params, free, x, y, err)
    metrics = p.metrics(params, free, err, x, y, loss, energy_init, grads, jnp.asarray(p.steps, jnp.int32))
    if p.steps in schedule:
        params, opt_state = p.apply_weights(params, grads, opt_state)
    return params, opt_state, metrics


def train_step_of(algorithm: str, updates, steps: int, nudging: Nudging | None = None) -> Callable:
    """The train-step function of a learning section: ``nudging`` replaces pc's clamped output; an update
    schedule equal to ``last`` or ``every`` is the pc or ipc loop, any other one :func:`scheduled_step`."""
    if nudging is not None:
        return partial(nudged_step, nudging=nudging)
    if updates is None or algorithm != "pc":
        return ALGORITHMS[algorithm]
    schedule = update_steps(updates, steps)
    canonical = {update_steps("last", steps): "pc", update_steps("every", steps): "ipc"}
    return ALGORITHMS[canonical[schedule]] if schedule in canonical else partial(scheduled_step, schedule=schedule)

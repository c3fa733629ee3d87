"""Diagnostics of a compiled network at a state, on one batch: what inference and learning actually see.

Everything is derived from the compiled program's one energy F (THEORY.md §5):

- **conditioning**: the spectrum of the activity Hessian H_z = ∇²_z F_i of one sample and
  κ(H_z) = |λ|_max / |λ|_min, analytic for linear chains (:func:`pcc.theory.linear.activity_hessian`) and by
  ``jax.hessian`` of F_i w.r.t. the flattened free activities otherwise (at the feedforward activities,
  averaged over the first few samples);
- **inference**: per-layer energies after every step of the compiled solver (a Python loop over jitted
  steps: a diagnostic, not a hot path) and the steps until max_i ‖∇_z F_i‖_rms < tol;
- **per layer**: the energy after inference, activity RMS (feedforward and inferred), ‖θ_l‖, and the PC
  weight update g_PC = ∇_θ mean_i F_i at the inferred activities against the BP gradient
  g_BP = ∇_θ mean_i ℓ(f(x_i), y_i) of the feedforward loss: cos(g_PC, g_BP) and ‖g_PC‖ / ‖g_BP‖;
- **linear chains**: the closed forms F* = ½ r S⁻¹ rᵀ, ‖S − I‖₂ and z* beside the numerical values.

:func:`alignment` is the PC-vs-BP part alone, one jitted XLA program per compiled spec and batch shape (the
runner logs it every ``run.alignment_every`` train steps). BP runs forward from the clamped input as
``algorithm: bp`` does (x → y; y → x in ``mode: generative``); ``mode: unsupervised`` has no clamped input
to backprop from and is refused.

Layers follow ``graph.layer_labels``: one per weight layer, the copies of a stacked node separately.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pcc.errors import PccError
from pcc.ir.graph import INPUT, OUTPUT, Graph, Node
from pcc.pc import energy as E
from pcc.pc.learning import InferenceResult
from pcc.theory import linear as T
from pcc.theory.network import linear_chain

HessianMethod = Literal["auto", "analytic", "autodiff", "none"]
MAX_AUTODIFF_UNITS = 4096
"""Largest number of free units per sample whose Hessian is built by autodiff (a U × U matrix, U vjps)."""
MAX_ANALYTIC_UNITS = 8192
"""Largest number of free units per sample whose closed-form (dense float64) Hessian is built."""


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class Spectrum:
    """Eigenvalues of H_z (ascending; the mean of the samples' sorted spectra) and κ(H_z) = |λ|_max / |λ|_min
    (the mean over the samples)."""

    method: Literal["analytic", "autodiff"]
    eigenvalues: np.ndarray
    condition_number: float
    samples: int  # samples averaged over (0 for the closed form, which does not depend on the data)


@dataclass(frozen=True)
class Trajectory:
    """An inference run, step by step: ``energies[t, l]`` is layer l's batch-mean energy after t steps and
    ``residuals[t] = max_i ‖∇_z F_i‖_rms`` there (t = 0 … max_steps)."""

    energies: np.ndarray  # (T + 1, L)
    residuals: np.ndarray  # (T + 1,)
    tol: float

    def steps_to(self, tol: float) -> int | None:
        """The first t with residuals[t] < tol (None: not within the run)."""
        hits = np.flatnonzero(self.residuals < tol)
        return int(hits[0]) if hits.size else None

    @property
    def steps_to_tol(self) -> int | None:
        return self.steps_to(self.tol)


@dataclass(frozen=True)
class LayerReport:
    """One weight layer (one copy of a stacked node)."""

    label: str
    energy: float  # batch-mean energy after inference
    forward_rms: float  # RMS of the node's feedforward value (the prediction, for the output)
    inferred_rms: float  # RMS of the node's value after inference (the clamped target, for the output)
    weight_norm: float  # ‖θ_l‖ (kernels and biases of its incoming dense edges)
    pc_grad_norm: float  # ‖g_PC,l‖
    bp_grad_norm: float  # ‖g_BP,l‖
    cosine: float  # cos(g_PC,l, g_BP,l); NaN when either is 0
    norm_ratio: float  # ‖g_PC,l‖ / ‖g_BP,l‖


@dataclass(frozen=True)
class Alignment:
    """The PC weight gradient g_PC against the BP gradient g_BP on one batch: per weight layer (one copy of a
    stacked node each, ``graph.layer_labels`` order) and over all layers. NaN where a norm is 0."""

    labels: tuple[str, ...]
    pc_norms: np.ndarray  # (L,) ‖g_PC,l‖
    bp_norms: np.ndarray  # (L,) ‖g_BP,l‖
    cosines: np.ndarray  # (L,) cos(g_PC,l, g_BP,l)
    ratios: np.ndarray  # (L,) ‖g_PC,l‖ / ‖g_BP,l‖
    cosine: float  # cos(g_PC, g_BP) over all layers
    norm_ratio: float  # ‖g_PC‖ / ‖g_BP‖ over all layers

    @classmethod
    def from_sums(cls, labels, sums) -> "Alignment":
        """From :func:`layer_sums` of (g_PC, g_BP) (float64 on the host from here on)."""
        dot, a_sq, b_sq, a_max, b_max = (np.asarray(v, np.float64) for v in sums)
        pc, bp = a_max * np.sqrt(a_sq), b_max * np.sqrt(b_sq)
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = np.where((pc > 0) & (bp > 0), dot / np.sqrt(a_sq * b_sq), np.nan)
            ratio = np.where(bp > 0, pc / bp, np.nan)
        pc_all, bp_all = float(np.sqrt(np.sum(pc ** 2))), float(np.sqrt(np.sum(bp ** 2)))
        dot_all = float(np.sum(a_max * b_max * dot))
        return cls(tuple(labels), pc, bp, cos, ratio,
                   dot_all / (pc_all * bp_all) if pc_all > 0 and bp_all > 0 else math.nan, _ratio(pc_all, bp_all))

    def metrics(self) -> dict[str, float | None]:
        """``align_cos`` and ``align_ratio`` over all layers, then ``align_cos/<layer>`` and
        ``align_ratio/<layer>`` per layer (metrics-row keys); non-finite values are None."""
        def num(v) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {"align_cos": num(self.cosine), "align_ratio": num(self.norm_ratio),
                **{f"align_cos/{l}": num(c) for l, c in zip(self.labels, self.cosines)},
                **{f"align_ratio/{l}": num(r) for l, r in zip(self.labels, self.ratios)}}


@dataclass(frozen=True)
class LinearCheck:
    """Closed forms of a linear chain beside the numerical inference."""

    energy_closed_form: float  # mean_i F*_i
    energy_numerical: float  # mean_i F_i after inference
    s_minus_identity: float  # ‖S − I‖₂ (μPC → BP as it goes to 0)
    z_max_abs_diff: float  # max |z − z*| over samples, layers and units


@dataclass(frozen=True)
class Diagnosis:
    """Everything :func:`diagnose` measured; :meth:`to_dict` is JSON-ready (non-finite numbers become None)."""

    batch: int
    free_units: int  # free activities per sample
    inference_steps: int  # steps the compiled inference took
    spectrum: Spectrum | None
    trajectory: Trajectory | None  # None under ODE inference (no discrete steps to record)
    layers: tuple[LayerReport, ...]
    cosine: float  # cos(g_PC, g_BP) over all layers
    norm_ratio: float  # ‖g_PC‖ / ‖g_BP‖ over all layers
    linear: LinearCheck | None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = _plain(asdict(self))
        if self.trajectory is not None:
            out["trajectory"]["steps_to_tol"] = self.trajectory.steps_to_tol
        return out


def _plain(obj: Any) -> Any:
    """numpy → Python, non-finite floats → None, recursively."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj.item() if isinstance(obj, np.generic) else obj


# ------------------------------------------------------------------------------------ layer layout
def per_layer(nodes: tuple[Node, ...], values: dict) -> list[jax.Array]:
    """Each node's value split into its copies: one (B, N) array per layer, in the order of ``nodes``."""
    return [v for n in nodes for v in (values[n.name] if n.repeat > 1 else values[n.name][None])]


def pack(graph: Graph, free: dict) -> jax.Array:
    """Free activities as one (B, U) array, layers in depth order (the closed forms' layout)."""
    return jnp.concatenate(per_layer(graph.free, free), axis=-1)


def unpack(graph: Graph, flat: jax.Array) -> dict:
    """Inverse of :func:`pack`."""
    widths = [n.width for n in graph.free for _ in range(n.repeat)]
    parts = iter(jnp.split(flat, np.cumsum(widths)[:-1], axis=-1))
    out = {}
    for n in graph.free:
        copies = [next(parts) for _ in range(n.repeat)]
        out[n.name] = jnp.stack(copies) if n.repeat > 1 else copies[0]
    return out


def layer_vectors(graph: Graph, tree) -> list[np.ndarray]:
    """A params-shaped tree as one flat vector per weight layer (kernels and biases of the layer's incoming
    dense edges; per copy of a stacked node), in ``graph.layer_labels`` order."""
    pure = nnx.to_pure_dict(tree)["edges"]
    out = []
    for node in graph.energy_nodes:
        leaves = [np.asarray(leaf, np.float64) for srcs in pure.get(node.name, {}).values()
                  for leaf in srcs.values() if leaf is not None]
        for k in range(node.repeat):
            out.append(np.concatenate([(a[k] if node.repeat > 1 else a).ravel() for a in leaves] or [np.zeros(0)]))
    return out


def layer_sums(graph: Graph, a, b) -> tuple[jax.Array, ...]:
    """Per weight layer of two params-shaped trees (the entries :func:`layer_vectors` takes; per copy of a
    stacked node), with â = a / max|a| and b̂ = b / max|b| layer by layer: (Σ â·b̂, Σ â², Σ b̂², max|a|, max|b|),
    each (L,) in ``graph.layer_labels`` order. jnp, so it runs inside jit and only 5·L numbers leave the device;
    the rescaling keeps float32 sums exact enough for gradients far below 1 (a deep layer's PC gradient), so
    cosines and norms match float64 sums of the same float32 gradients."""
    pa, pb = nnx.to_pure_dict(a)["edges"], nnx.to_pure_dict(b)["edges"]
    out = []
    for node in graph.energy_nodes:
        pairs = [(leaf.astype(jnp.float32), pb[node.name][src][name].astype(jnp.float32))
                 for src, leaves in pa.get(node.name, {}).items() for name, leaf in leaves.items() if leaf is not None]

        def per_copy(reduce, v):  # (R,) for a stacked node, (1,) otherwise
            return reduce(v, axis=tuple(range(1, v.ndim))) if node.repeat > 1 else reduce(v)[None]

        def scaled(v, s):
            s = jnp.where(s > 0, s, 1.0)
            return v / (s.reshape((-1,) + (1,) * (v.ndim - 1)) if node.repeat > 1 else s[0])

        zero = jnp.zeros((node.repeat,))
        a_max = functools.reduce(jnp.maximum, (per_copy(jnp.max, jnp.abs(u)) for u, _ in pairs), zero)
        b_max = functools.reduce(jnp.maximum, (per_copy(jnp.max, jnp.abs(v)) for _, v in pairs), zero)
        hats = [(scaled(u, a_max), scaled(v, b_max)) for u, v in pairs]
        out.append([sum((per_copy(jnp.sum, f(u, v)) for u, v in hats), zero) for f in
                    (lambda u, v: u * v, lambda u, v: u * u, lambda u, v: v * v)] + [a_max, b_max])
    return tuple(jnp.concatenate(col) for col in zip(*out))


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    """u·v / (‖u‖ ‖v‖); NaN when either is 0."""
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    return float(u @ v / (nu * nv)) if nu > 0 and nv > 0 else math.nan


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else math.nan


def _rms(a) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(a, np.float64)))))


def free_units(graph: Graph) -> int:
    """U: free activities per sample."""
    return sum(n.width * n.repeat for n in graph.free)


# ------------------------------------------------------------------------------------ conditioning
def _kappa(ev: np.ndarray) -> float:
    a = np.abs(ev)
    return float(a.max() / a.min()) if a.min() > 0 else math.inf


def autodiff_spectrum(compiled, params, x, y, samples: int = 1) -> Spectrum:
    """H_z = ∇²_z F_i by ``jax.hessian`` at the feedforward activities of each of the first ``samples``
    samples; the eigenvalues averaged over them (sorted), κ averaged likewise."""
    graph, program = compiled.graph, compiled.program
    units = free_units(graph)
    if units > MAX_AUTODIFF_UNITS:
        raise PccError(f"the autodiff activity Hessian needs {units} × {units} entries per sample (free units "
                       f"{units} > {MAX_AUTODIFF_UNITS}): diagnose a narrower or shallower network, or skip the "
                       "spectrum (hessian='none', `pcc diagnose --hessian none`)")

    @jax.jit
    def hessian(params, v, xi, yi):
        return jax.hessian(lambda u: program.total_energy(params, unpack(graph, u[None]), xi, yi).sum())(v)

    forward = program.net(params).forward(_root(program, x[:samples], y[:samples]))
    flat = pack(graph, forward)
    spectra = [np.linalg.eigvalsh(np.asarray(hessian(params, flat[i], x[i:i + 1], y[i:i + 1]), np.float64))
               for i in range(len(flat))]
    return Spectrum("autodiff", np.mean(spectra, axis=0), float(np.mean([_kappa(s) for s in spectra])),
                    len(spectra))


def analytic_spectrum(chain: T.LinearChain) -> Spectrum:
    """The closed-form H_z of a linear chain (it depends on the weights only: ``samples`` is 0)."""
    units = sum(chain.widths[1:-1])
    if units > MAX_ANALYTIC_UNITS:
        raise PccError(f"the closed-form activity Hessian of {units} free units exceeds {MAX_ANALYTIC_UNITS}: "
                       "skip the spectrum (hessian='none', `pcc diagnose --hessian none`)")
    ev = T.hessian_spectrum(chain)
    return Spectrum("analytic", ev, _kappa(ev), 0)


def _spectrum(method: HessianMethod, compiled, params, x, y, chain, samples: int) -> tuple[Spectrum | None, str]:
    """(the spectrum, "") or, when skipped, (None, why). ``auto`` picks analytic for linear chains and autodiff
    otherwise, and skips instead of refusing above the size limits."""
    if method == "none":
        return None, "spectrum skipped (hessian='none')"
    auto = method == "auto"
    if auto:
        method = "autodiff" if chain is None else "analytic"
    units, limit = free_units(compiled.graph), MAX_ANALYTIC_UNITS if method == "analytic" else MAX_AUTODIFF_UNITS
    if auto and units > limit:
        return None, f"spectrum skipped: {units} free units per sample exceed the {method} limit {limit}"
    if method == "autodiff":
        return autodiff_spectrum(compiled, params, x, y, samples), ""
    if chain is None:
        raise PccError("the analytic activity Hessian needs a linear chain with an mse output (identity "
                       "activations, one dense edge per layer, optional identity skips, no biases): use "
                       "hessian='autodiff'")
    return analytic_spectrum(chain), ""


def _chain_or_none(compiled, params) -> T.LinearChain | None:
    """The network's :class:`LinearChain`, or None when the closed forms do not apply."""
    if compiled.graph.output_energy != "mse":
        return None
    try:
        return linear_chain(compiled, params)
    except PccError:
        return None


# --------------------------------------------------------------------------------------- inference
def layer_energies(program, params, free, x, y) -> jax.Array:
    """λ_n E_n per weight layer and sample, shape (L, B), in ``graph.layer_labels`` order."""
    return E.layer_energies(program.graph, program.values(free, x, y), program.errors(params, free, x, y))


def trajectory(compiled, state, x, y, *, max_steps: int | None = None, tol: float = 1e-3) -> Trajectory:
    """Run the compiled solver step by step from the compiled initialisation (``max_steps`` defaults to the
    spec's ``inference.steps``; the spec's ``tol`` is ignored) and record the per-layer energies and the
    per-sample residual max_i ‖∇_z F_i‖_rms before every step and after the last."""
    from pcc.compiler import _step_key

    program = compiled.program
    if not hasattr(program.solver, "update"):
        raise PccError(f"an inference trajectory records discrete solver steps; `solver: "
                       f"{compiled.spec.inference.solver}` takes none (try --set inference.solver=gd)")
    steps = compiled.spec.inference.steps if max_steps is None else max_steps

    @jax.jit
    def step(params, free, solver_state, x, y):
        g = program.activity_grad(params, free, x, y)
        layers = layer_energies(program, params, free, x, y).mean(axis=1)
        free, solver_state = program.solver.update(g, solver_state, free)
        return free, solver_state, layers, jnp.max(program.residual(g))

    free, _, _ = program.start(state.params, x, y, _step_key(state))
    solver_state, energies, residuals = program.solver.init(free), [], []
    for _ in range(steps + 1):
        free, solver_state, layers, res = step(state.params, free, solver_state, x, y)
        energies.append(np.asarray(layers))
        residuals.append(float(res))
    return Trajectory(np.stack(energies), np.asarray(residuals), tol)


# ---------------------------------------------------------------------------------------- learning
def _root(program, x, y) -> jax.Array:
    """The batch slot the input node is clamped to (x; y in ``mode: generative``): where BP runs forward from."""
    if INPUT not in program.clamps:
        raise PccError("PC-vs-BP alignment backpropagates the feedforward loss from the clamped input node, and "
                       "`mode: unsupervised` has none (its root is a free latent): use `mode: discriminative` or "
                       "`generative`")
    return program.data(INPUT, jnp.asarray(x), jnp.asarray(y))


def bp_gradient(compiled, params, x, y):
    """∇_θ mean_i ℓ(f(root_i), target_i): backprop of the feedforward loss (the output node's energy) from the
    clamped input to the clamped output, as ``algorithm: bp`` trains (x → y; y → x in ``mode: generative``)."""
    program = compiled.program
    root, target = _root(program, x, y), program.data(OUTPUT, x, y)

    def loss(p):
        net = program.net(p)
        return E.output_loss(net, net.forward(root)[OUTPUT], target).mean()

    return jax.grad(loss)(params)


@partial(jax.jit, static_argnums=0)
def _forward(compiled, params, x, y):
    return compiled.program.net(params).forward(_root(compiled.program, x, y))


@partial(jax.jit, static_argnums=0)
def _infer_and_align(compiled, state, x, y) -> tuple[InferenceResult, tuple[jax.Array, ...]]:
    """The spec's inference from ``state`` (as ``compiled.infer``: same key, same result) and :func:`layer_sums`
    of (g_PC, g_BP), in one XLA program. g_PC = ∇_θ mean_i F_i from the errors inference carries, exactly as
    the pc train step takes it."""
    from pcc.compiler import _step_key

    p, params = compiled.program, state.params
    result, err = p.infer_with_errors(params, x, y, _step_key(state))
    _, pc = p.weight_grad(params, result.activities, x, y, err)
    return result, layer_sums(compiled.graph, pc, bp_gradient(compiled, params, x, y))


def alignment(compiled, state, x, y) -> Alignment:
    """The PC weight gradient against the BP gradient on the batch (x, y), per weight layer.

    g_PC = ∇_θ mean_i F_i at the activities the spec's inference reaches from ``state`` (the update
    ``algorithm: pc`` takes from ``state`` on this batch, before the optimiser); g_BP = ∇_θ of the mean
    feedforward loss (:func:`bp_gradient`). One XLA program per compiled spec and batch shape (inference, both
    gradients and the per-layer sums); only 5·L numbers come back to the host."""
    _root(compiled.program, x, y)  # refuse unsupervised with a PccError, not a trace-time traceback
    _, sums = _infer_and_align(compiled, state, jnp.asarray(x), jnp.asarray(y))
    return Alignment.from_sums(compiled.graph.layer_labels, jax.device_get(sums))


def _linear_check(graph: Graph, chain: T.LinearChain, inferred: dict, energy: float, x, y) -> LinearCheck:
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    zstar = np.concatenate(T.equilibrium(chain, x64, y64), axis=-1)
    s = T.energy_rescaling(chain)
    return LinearCheck(
        energy_closed_form=float(T.equilibrated_energy(chain, x64, y64).mean()),
        energy_numerical=energy,
        s_minus_identity=float(np.linalg.norm(s - np.eye(len(s)), 2)),
        z_max_abs_diff=float(np.max(np.abs(np.asarray(pack(graph, inferred), np.float64) - zstar))),
    )


# ------------------------------------------------------------------------------------------- entry
def diagnose(compiled, state, x, y, *, tol: float = 1e-3, max_steps: int | None = None,
             hessian: HessianMethod = "auto", hessian_samples: int = 1) -> Diagnosis:
    """Diagnose ``compiled`` at ``state`` on the batch (x (B, D), y (B, C)); see the module docstring.

    The learning quantities are taken at the activities the train step would use (``compiled.infer``: the
    spec's inference); the trajectory runs ``max_steps`` steps (default: the spec's) to find the steps to
    ``tol``. ``hessian``: ``auto`` (analytic for linear chains, autodiff up to
    :data:`MAX_AUTODIFF_UNITS` free units, else skipped with a note), ``analytic``, ``autodiff`` or ``none``.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    graph, program, params = compiled.graph, compiled.program, state.params
    _root(program, x, y)  # unsupervised: refused before any work
    chain = _chain_or_none(compiled, params)
    spectrum, note = _spectrum(hessian, compiled, params, x, y, chain, hessian_samples)

    result, sums = _infer_and_align(compiled, state, x, y)  # = compiled.infer(state, x, y), and the gradients
    inferred = result.activities
    align = Alignment.from_sums(graph.layer_labels, jax.device_get(sums))
    w_v = layer_vectors(graph, params)
    fwd_l = per_layer(graph.energy_nodes, _forward(compiled, params, x, y))
    inf_l = per_layer(graph.energy_nodes, program.values(inferred, x, y))
    energies = np.asarray(result.layer_energies).mean(axis=1)
    layers = tuple(
        LayerReport(label, float(e), _rms(f), _rms(z), float(np.linalg.norm(w)), float(g), float(b), float(c),
                    float(r))
        for label, e, f, z, w, g, b, c, r in zip(graph.layer_labels, energies, fwd_l, inf_l, w_v, align.pc_norms,
                                                 align.bp_norms, align.cosines, align.ratios)
    )
    energy = float(np.asarray(result.energy).mean())
    discrete = hasattr(program.solver, "update")
    notes = (note,) if note else ()
    if not discrete:
        notes += (f"ODE inference: no per-step trajectory; the solver accepted {int(result.steps)} steps",)
    return Diagnosis(
        batch=int(x.shape[0]), free_units=free_units(graph), inference_steps=int(result.steps),
        spectrum=spectrum, trajectory=trajectory(compiled, state, x, y, max_steps=max_steps, tol=tol)
        if discrete else None,
        layers=layers, cosine=align.cosine, norm_ratio=align.norm_ratio,
        linear=None if chain is None else _linear_check(graph, chain, inferred, energy, x, y),
        notes=notes,
    )


# -------------------------------------------------------------------------------------------- plot
def plot_diagnosis(diag: Diagnosis, out_png: str | Path) -> Path:
    """One PNG: per-layer energies along inference (colour = depth) with the residual, the per-layer PC-vs-BP
    cosine and norm ratio, and the histogram of the H_z spectrum. Returns its path."""
    from pcc.figures import pyplot, save

    plt = pyplot()

    fig, (e_ax, r_ax, c_ax, s_ax) = plt.subplots(1, 4, figsize=(20, 4.5))
    traj, labels = diag.trajectory, [layer.label for layer in diag.layers]
    if traj is None:
        for ax in (e_ax, r_ax):
            ax.text(0.5, 0.5, "ODE inference:\nno per-step trajectory", ha="center", va="center")
            ax.set_axis_off()
    else:
        colors = plt.cm.viridis(np.linspace(0, 1, len(labels)))
        steps = np.arange(len(traj.residuals))
        energies = np.where(traj.energies > 0, traj.energies, np.nan)  # exact zeros (feedforward init): gaps
        for l, (label, color) in enumerate(zip(labels, colors)):
            e_ax.plot(steps, energies[:, l], color=color, label=label)
        e_ax.set(title="per-layer energy during inference", xlabel="step", ylabel="energy (batch mean)",
                 yscale="log")
        if len(labels) <= 10:
            e_ax.legend(fontsize="small")
        r_ax.plot(steps, traj.residuals, color="k")
        reached = "not reached" if traj.steps_to_tol is None else f"step {traj.steps_to_tol}"
        r_ax.axhline(traj.tol, ls="--", color="r", label=f"tol {traj.tol:g} ({reached})")
        r_ax.set(title="max_i ‖∇_z F_i‖_rms", xlabel="step", yscale="log")
        r_ax.legend(fontsize="small")

    x = np.arange(len(labels))
    c_ax.plot(x, [layer.cosine for layer in diag.layers], marker="o", label="cos(g_PC, g_BP)")
    c_ax.set(title=f"PC vs BP per layer (overall cos {diag.cosine:.3f})", xlabel="layer", ylabel="cosine",
             ylim=(-1.05, 1.05))
    ratio_ax = c_ax.twinx()
    ratio_ax.plot(x, [layer.norm_ratio for layer in diag.layers], marker="s", color="C1",
                  label="‖g_PC‖ / ‖g_BP‖")
    ratio_ax.set(ylabel="norm ratio", yscale="log")
    c_ax.set_xticks(x, labels, rotation=90 if len(labels) > 8 else 0, fontsize="small" if len(labels) > 8 else None)
    c_ax.legend(loc="upper left", fontsize="small")
    ratio_ax.legend(loc="upper right", fontsize="small")

    if diag.spectrum is not None:
        ev = np.abs(diag.spectrum.eigenvalues)
        ev = ev[ev > 0]
        s_ax.hist(ev, bins=np.geomspace(ev.min(), ev.max() * 1.0001, 40) if ev.max() > ev.min() else 10)
        s_ax.set(xscale="log", title=f"H_z spectrum ({diag.spectrum.method}), κ = {diag.spectrum.condition_number:.3g}",
                 xlabel="|eigenvalue|", ylabel="count")
    else:
        s_ax.set_axis_off()
        s_ax.text(0.5, 0.5, "\n".join(diag.notes) or "no spectrum", ha="center", va="center", wrap=True)
    for ax in (e_ax, r_ax, c_ax):
        ax.grid(alpha=0.3)
    return save(fig, out_png)

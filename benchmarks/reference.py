"""Plain-JAX reference for one predictive-coding (PC) train step, plus a timing harness.

This file depends only on jax and optax (never on ``pcc``): it is the
hand-written baseline that compiled ``pcc`` programs are compared against.

Model (row-vector convention, ``W_l`` has shape ``(fan_in, fan_out)``, no biases)
--------------------------------------------------------------------------------
Activities ``z_0 = x`` (clamped input, width D), hidden ``z_1 .. z_H`` (width n),
clamped target ``y`` (width C).  Layer maps, "W phi(z)" ordering, ``phi = tanh``::

    f_1(x) = a_1 x W_1                              (stem, no nonlinearity on x)
    f_l(z) = a_l phi(z) W_l + tau z                 (l = 2 .. H, the "mid" stack)
    f_L(z) = a_L phi(z) W_L                         (readout, L = H + 1)

Errors ``e_l = z_l - f_l(z_{l-1})`` (``e_L = y - f_L(z_H)``); per-sample energy
``F_i = sum_l 1/2 ||e_l||^2``.  Gradients (per sample)::

    dF/dz_k = e_k - J_{k+1}^T e_{k+1},
    J_{k+1}^T e_{k+1} = a_{k+1} phi'(z_k) * (e_{k+1} W_{k+1}^T) + tau_{k+1} e_{k+1}
    dF/dW_l = -a_l phi(z_{l-1})^T e_l        (phi -> identity for the stem)

One train step on a batch (x, y):

1. feedforward init ``z_l = f_l(z_{l-1})`` (hidden errors are exactly 0, so the
   energy equals the MSE loss ``1/2 ||y - yhat||^2``);
2. ``T`` steps of gradient descent on the activities, ``z <- z - eta dF_i/dz``;
3. the batch-mean weight gradient ``d(mean_i F_i)/dW`` at the final
   activities, then one optax Adam update.

Implementation
--------------
Parameters are ``{"w_in": (D, n), "w_mid": (H-1, n, n), "w_out": (n, C)}``: the
mid layers are one stacked array, so nothing in the traced code loops over
layers in Python.  The hidden activities and the mid layers' errors are stacked
too, aligned with the weight stack (see "Layout" below).

Two layer-axis strategies (``variant``):

* ``"batched"`` -- every inference step computes all mid-layer predictions and
  back-projections at once with batched matmuls over the layer axis
  (``einsum('lbi,lij->lbj')``): PC inference updates all layers synchronously
  from the current activities, so there is no sequential dependency.
* ``"scan"`` -- the same computation with each stacked matmul run as a
  ``lax.scan`` (``lax.map``) of per-layer matmuls over the stack.

Two activity-gradient strategies (``grad``):

* ``"local"`` -- the hand-derived local gradients above, fused: the loop carries
  the errors, so each inference step costs exactly one back-projection and one
  prediction matmul per free layer; the feedforward init provides the first
  errors for free (hidden errors 0, ``e_L = y - yhat``) and the last step's
  errors are reused for the weight gradient.  The input projection ``a_1 x W_1``
  is hoisted out of the loop.
* ``"autodiff"`` -- ``jax.grad`` of the total energy w.r.t. the activities at
  each step, and ``jax.value_and_grad`` of the batch-mean energy w.r.t. the
  weights at the end (the input projection is hoisted out of the loop too).

Usage::

    python benchmarks/reference.py --check               # correctness self-check
    python benchmarks/reference.py [--task a|b|both] [--steps 30] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

VARIANTS = ("batched", "scan")
GRADS = ("local", "autodiff")


# ----------------------------------------------------------------------------- tasks


@dataclasses.dataclass(frozen=True)
class Task:
    """A PC network + training hyper-parameters (hashable, closed over by jit)."""

    name: str
    d_in: int  # D
    width: int  # n
    n_hidden: int  # H: hidden layers z_1..z_H; weight layers L = H + 1
    d_out: int  # C
    a_in: float  # a_1 (stem multiplier)
    a_mid: float  # a_l, l = 2..H
    a_out: float  # a_L (readout multiplier)
    skip: float  # tau for the mid layers (1.0 = identity-skip residual, 0.0 = plain)
    init: str  # "uniform": U(+-1/sqrt(fan_in)); "normal": N(0, 1)
    batch: int = 128  # B
    n_infer: int = 20  # T
    eta: float = 0.125  # activity step size
    lr: float = 1e-3  # Adam learning rate

    @property
    def n_layers(self) -> int:
        return self.n_hidden + 1


TASK_A = Task("a", 784, 128, 3, 10, a_in=1.0, a_mid=1.0, a_out=1.0, skip=0.0, init="uniform")
TASK_B = Task(
    "b", 784, 128, 127, 10,
    a_in=784 ** -0.5, a_mid=1.0 / 128, a_out=1.0 / 128, skip=1.0, init="normal",
)  # fmt: skip
TASKS = {"a": TASK_A, "b": TASK_B}


def init_params(task: Task, key: jax.Array) -> dict:
    """Weights ``{"w_in": (D,n), "w_mid": (H-1,n,n), "w_out": (n,C)}`` (float32)."""
    k1, k2, k3 = jax.random.split(key, 3)
    D, n, C, M = task.d_in, task.width, task.d_out, task.n_hidden - 1
    shapes = {"w_in": (k1, (D, n)), "w_mid": (k2, (M, n, n)), "w_out": (k3, (n, C))}
    if task.init == "normal":
        return {k: jax.random.normal(kk, s, jnp.float32) for k, (kk, s) in shapes.items()}
    return {
        k: jax.random.uniform(kk, s, jnp.float32, -1.0, 1.0) * s[-2] ** -0.5
        for k, (kk, s) in shapes.items()
    }


def make_data(task: Task, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Fixed random batch: ``x ~ U[0, 1]^(B, D)``, ``y`` one-hot of random labels."""
    kx, ky = jax.random.split(key)
    x = jax.random.uniform(kx, (task.batch, task.d_in), jnp.float32)
    labels = jax.random.randint(ky, (task.batch,), 0, task.d_out)
    return x, jax.nn.one_hot(labels, task.d_out, dtype=jnp.float32)


# ------------------------------------------------------------------ layer primitives
#
# Layout.  Activities are a pair ``Z = (Zs, zH)``: ``Zs`` (H-1, B, n) stacks
# z_1 .. z_{H-1}, the inputs of the mid stack (``Zs[j]`` feeds ``W_mid[j] = W_{j+2}``),
# and ``zH`` (B, n) is the top hidden layer, the readout's input.  Errors are a
# triple, one part per layer kind:
#   e_in  = z_1 - a_1 x W_1                          (B, n)
#   E_mid = [z_2 .. z_H] - f_mid(Zs)                 (H-1, B, n), aligned with W_mid
#   e_out = y - a_L phi(z_H) W_L                     (B, C)
# so every operand of the stacked matmuls is aligned with the weight stack: no
# shifted-slice copies on the hot path, and XLA updates ``Zs`` in place (keeping
# z_H inside one (H, B, n) stack measured ~10% slower on Task B).


def _stack_einsum(eq: str, a, b, variant: str):
    """An einsum over the stacked layer axis ``l``.

    ``"batched"``: one batched matmul over all layers; ``"scan"``: ``lax.map``
    (a scan) of the per-layer matmul over the stack.
    """
    if variant == "batched":
        return jnp.einsum(eq, a, b)
    if variant == "scan":
        return lax.map(lambda ab: jnp.einsum(eq.replace("l", ""), *ab), (a, b))
    raise ValueError(f"unknown variant {variant!r}")


def input_projection(task: Task, params: dict, x):
    """The clamped input's prediction ``f_1(x) = a_1 x W_1`` (constant during inference)."""
    return task.a_in * (x @ params["w_in"])


def _out_pred(task: Task, params: dict, zH):
    return task.a_out * (jnp.tanh(zH) @ params["w_out"])


def feedforward(task: Task, params: dict, p1):
    """Feedforward init ``z_l = f_l(z_{l-1})``: a ``lax.scan`` over the mid stack.

    Returns ``((Zs, zH), yhat)``: the activities (see layout) and the readout.
    """

    def layer(z, w):
        p = task.a_mid * (jnp.tanh(z) @ w)
        return (p + task.skip * z if task.skip else p), z  # carry z_{l}, emit z_{l-1}

    zH, Zs = lax.scan(layer, p1, params["w_mid"])
    return (Zs, zH), _out_pred(task, params, zH)


def errors(task: Task, params: dict, Z, p1, y, variant: str = "batched"):
    """Prediction errors ``(e_in, E_mid, e_out)`` at activities ``Z = (Zs, zH)``.

    ``E_mid = [z_2 .. z_H] - (a phi(Zs) W_mid + tau Zs)``, all mid layers at once.
    """
    Zs, zH = Z
    pred = task.a_mid * _stack_einsum("lbi,lij->lbj", jnp.tanh(Zs), params["w_mid"], variant)
    pred = pred + task.skip * Zs if task.skip else pred
    E_mid = jnp.concatenate([Zs[1:], zH[None]]) - pred
    return Zs[0] - p1, E_mid, y - _out_pred(task, params, zH)


def energy(task: Task, params: dict, Z, p1, y, variant: str = "batched"):
    """Total energy ``sum_i F_i`` (summed over the batch: ``d/dZ`` is per-sample ``dF_i/dz_i``)."""
    return 0.5 * sum(jnp.sum(e * e) for e in errors(task, params, Z, p1, y, variant))


def activity_grad_local(task: Task, params: dict, Z, errs, variant: str = "batched"):
    """Hand-derived ``dF/dz_k = e_k - J_{k+1}^T e_{k+1}`` for all hidden layers, as ``(Zs, zH)``.

    ``J_{k+1}^T e_{k+1} = a_{k+1} phi'(z_k) * (e_{k+1} W_{k+1}^T) + tau e_{k+1}``
    with ``phi' = 1 - tanh^2``: one stacked matmul for the mid layers (into ``Zs``),
    one matmul for the readout (into ``zH``).
    """
    (Zs, zH), (e_in, E_mid, e_out) = Z, errs
    back = _stack_einsum("lbj,lij->lbi", E_mid, params["w_mid"], variant)
    back = task.a_mid * (1.0 - jnp.tanh(Zs) ** 2) * back
    back = back + task.skip * E_mid if task.skip else back
    top = task.a_out * (1.0 - jnp.tanh(zH) ** 2) * (e_out @ params["w_out"].T)
    return jnp.concatenate([e_in[None], E_mid[:-1]]) - back, E_mid[-1] - top


def activity_grad_autodiff(task: Task, params: dict, Z, p1, y, variant: str = "batched"):
    """``jax.grad`` of the total energy w.r.t. the activities ``(Zs, zH)``."""
    return jax.grad(lambda Z_: energy(task, params, Z_, p1, y, variant))(Z)


def weight_grad_local(task: Task, params: dict, x, Z, errs, variant: str = "batched"):
    """Hand-derived batch-mean weight gradient ``dW_l = -a_l phi(z_{l-1})^T e_l / B``."""
    (Zs, zH), (e_in, E_mid, e_out) = Z, errs
    s = -1.0 / x.shape[0]
    g_mid = _stack_einsum("lbi,lbj->lij", jnp.tanh(Zs), E_mid, variant)
    return {
        "w_in": (s * task.a_in) * (x.T @ e_in),
        "w_mid": (s * task.a_mid) * g_mid,
        "w_out": (s * task.a_out) * (jnp.tanh(zH).T @ e_out),
    }


# ------------------------------------------------------------------- inference loops


def _descend(task: Task, Z, grad):
    return jax.tree.map(lambda z, g: z - task.eta * g, Z, grad)


def infer_local(task: Task, params: dict, x, y, variant: str = "batched"):
    """Feedforward init + ``T`` fused local inference steps; returns ``(Z, errs)``.

    The loop carries ``(Z, errs)``: each step updates ``Z`` from the carried
    errors, then recomputes the errors at the new activities, i.e. one
    back-projection and one prediction matmul per free layer and step.  The
    feedforward init supplies the first errors (hidden errors 0, ``e_out = y -
    yhat``); the returned errors are those at the final activities.
    """
    p1 = input_projection(task, params, x)
    Z, yhat = feedforward(task, params, p1)
    errs = (jnp.zeros_like(p1), jnp.zeros_like(Z[0]), y - yhat)  # E_mid has the shape of Zs

    def body(_, carry):
        Z, errs = carry
        Z = _descend(task, Z, activity_grad_local(task, params, Z, errs, variant))
        return Z, errors(task, params, Z, p1, y, variant)

    return lax.fori_loop(0, task.n_infer, body, (Z, errs))


def infer_autodiff(task: Task, params: dict, x, y, variant: str = "batched"):
    """Feedforward init + ``T`` steps ``Z <- Z - eta jax.grad(energy)(Z)``; returns ``Z``."""
    p1 = input_projection(task, params, x)
    Z, _ = feedforward(task, params, p1)
    step = lambda _, Z: _descend(task, Z, activity_grad_autodiff(task, params, Z, p1, y, variant))
    return lax.fori_loop(0, task.n_infer, step, Z)


def make_grads(task: Task, variant: str = "batched", grad: str = "local") -> Callable:
    """``grads_fn(params, x, y) -> (weight_grads, mean_energy)`` (not jitted).

    ``mean_energy`` is ``mean_i F_i`` at the final activities (the energy whose
    weight gradient is returned).
    """
    if variant not in VARIANTS or grad not in GRADS:
        raise ValueError(f"variant must be in {VARIANTS}, grad in {GRADS}")

    def local(params, x, y):
        Z, errs = infer_local(task, params, x, y, variant)
        mean_f = 0.5 * sum(jnp.sum(e * e) for e in errs) / x.shape[0]
        return weight_grad_local(task, params, x, Z, errs, variant), mean_f

    def autodiff(params, x, y):
        Z = infer_autodiff(task, params, x, y, variant)

        def mean_energy(p):
            return energy(task, p, Z, input_projection(task, p, x), y, variant) / x.shape[0]

        f, g = jax.value_and_grad(mean_energy)(params)
        return g, f

    return local if grad == "local" else autodiff


def make_task(task: str | Task, variant: str = "batched", grad: str = "local"):
    """Build ``(init_fn, step_fn)`` for one PC train step.

    * ``init_fn(key) -> state`` (jitted) with ``state = (params, adam_state)``;
    * ``step_fn(state, x, y) -> (state, energy)``: one jitted train step
      (inference + weight gradient + Adam), with the state buffers donated;
      ``energy`` is the batch-mean energy at the final activities.
    """
    task = TASKS[task] if isinstance(task, str) else task
    opt = optax.adam(task.lr)
    grads_fn = make_grads(task, variant, grad)

    def init_fn(key):
        params = init_params(task, key)
        return params, opt.init(params)

    def step(state, x, y):
        g, f = grads_fn(state[0], x, y)
        return _adam_update(opt, state, g), f

    return jax.jit(init_fn), jax.jit(step, donate_argnums=0)


def _adam_update(opt, state, grads):
    params, opt_state = state
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


# --------------------------------------------------------------------------- checks


def _rel_err(a, b):
    """``max|a - b| / max|b|`` over all leaves of two pytrees."""
    mx = lambda t: jnp.max(jnp.stack([jnp.max(jnp.abs(u)) for u in jax.tree.leaves(t)]))
    return mx(jax.tree.map(jnp.subtract, a, b)) / mx(b)


def _forward_reference(task: Task, params: dict, x):
    """Independent plain forward pass (a Python loop over the layers): returns ``yhat``."""
    z = task.a_in * x @ params["w_in"]
    for w in params["w_mid"]:
        z = task.a_mid * jnp.tanh(z) @ w + task.skip * z
    return task.a_out * jnp.tanh(z) @ params["w_out"]


def self_check(task: Task, key: jax.Array | None = None) -> dict[str, float]:
    """Correctness checks; returns the relative error (or mismatch) of each.

    * ``act_grad_<variant>``: hand-derived activity gradient vs ``jax.grad`` of the
      energy, at random (non-equilibrium) activities;
    * ``weight_grad_<variant>``: hand-derived weight gradient vs ``jax.grad`` of the
      batch-mean energy w.r.t. the weights at fixed activities;
    * ``ff_energy``: energy at feedforward init vs the MSE loss ``mean 1/2||y - yhat||^2``
      of an independent forward pass; ``ff_hidden_err``: max hidden error there
      (0 up to rounding), relative to max |z|;
    * ``infer_energy_rise_<v>_<g>``: relative rise of the energy during inference
      (must be 0: gradient descent on the activities lowers it);
    * ``grads_<v>_<g>``: weight gradients of the whole inference, every variant/grad
      vs batched/local; ``params_<v>_<g>``: params after one Adam step (the update
      of ``make_task``'s step), same comparison (max abs. difference in units of lr).

    Everything runs in one jitted program (one compile instead of hundreds of
    eager op compiles), compiled at XLA backend optimization level 0: the
    program is large and runs once, so compile time dominates.
    """
    key = jax.random.PRNGKey(0) if key is None else key
    lowered = jax.jit(_self_check, static_argnums=0).lower(task, key)
    res = lowered.compile(compiler_options={"xla_backend_optimization_level": 0})(key)
    return {k: float(v) for k, v in res.items()}


def _self_check(task: Task, key: jax.Array) -> dict:
    kp, kd, kz = jax.random.split(key, 3)
    params = init_params(task, kp)
    x, y = make_data(task, kd)
    p1 = input_projection(task, params, x)
    kz1, kz2 = jax.random.split(kz)
    Zr = (jax.random.normal(kz1, (task.n_hidden - 1, task.batch, task.width)),
          jax.random.normal(kz2, (task.batch, task.width)))  # fmt: skip
    out = {}

    act_ref = activity_grad_autodiff(task, params, Zr, p1, y)
    mean_f = lambda p: energy(task, p, Zr, input_projection(task, p, x), y) / task.batch
    w_ref = jax.grad(mean_f)(params)
    for v in VARIANTS:
        errs = errors(task, params, Zr, p1, y, v)
        out[f"act_grad_{v}"] = _rel_err(activity_grad_local(task, params, Zr, errs, v), act_ref)
        out[f"weight_grad_{v}"] = _rel_err(weight_grad_local(task, params, x, Zr, errs, v), w_ref)

    Z0, _ = feedforward(task, params, p1)
    mse = 0.5 * jnp.mean(jnp.sum((y - _forward_reference(task, params, x)) ** 2, axis=-1))
    out["ff_energy"] = _rel_err(energy(task, params, Z0, p1, y) / task.batch, mse)
    e_in, E_mid, _ = errors(task, params, Z0, p1, y)
    z_max = jnp.maximum(jnp.abs(Z0[0]).max(), jnp.abs(Z0[1]).max())
    out["ff_hidden_err"] = jnp.maximum(jnp.abs(e_in).max(), jnp.abs(E_mid).max()) / z_max

    ref_g = ref_p = None
    for v in VARIANTS:
        for g in GRADS:
            grads, f_final = make_grads(task, v, g)(params, x, y)
            out[f"infer_energy_rise_{v}_{g}"] = jnp.maximum(0.0, (f_final - mse) / mse)
            opt = optax.adam(task.lr)  # the update of make_task's step_fn
            new_params, _ = _adam_update(opt, (params, opt.init(params)), grads)
            if ref_g is None:
                ref_g, ref_p = grads, new_params
            out[f"grads_{v}_{g}"] = _rel_err(grads, ref_g)
            diff = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), new_params, ref_p)
            out[f"params_{v}_{g}"] = jnp.max(jnp.stack(jax.tree.leaves(diff))) / task.lr
    return out


# Tolerances for self_check (float32).  Adam's first step is ~lr * sign(g), so
# params agree to float rounding except where a gradient entry is ~0; the
# params check therefore allows up to one lr of difference per entry (2 = a sign flip).
TOLERANCES = {"act_grad": 1e-5, "weight_grad": 1e-5, "ff_energy": 1e-5, "ff_hidden_err": 1e-5,
              "infer_energy_rise": 0.0, "grads": 1e-4, "params": 1.0}  # fmt: skip


def check_failures(results: dict[str, float]) -> list[str]:
    """Names of the self-check entries above tolerance."""
    tol = lambda k: next(t for p, t in TOLERANCES.items() if k.startswith(p))
    return [k for k, v in results.items() if not v <= tol(k)]


# ------------------------------------------------------------------------- timing


def flops_per_step(task: Task) -> int:
    """FLOPs one train step strictly needs (``2 B fan_in fan_out`` per matmul).

    Per inference step two matmuls (prediction and error back-projection) for
    every layer whose input is free (mid + readout); the clamped input's
    projection once; the rest of the feedforward init once; the weight gradient
    of every layer once.
    """
    B, D, n, C, M = task.batch, task.d_in, task.width, task.d_out, task.n_hidden - 1
    free = 2 * B * (M * n * n + n * C)
    stem = 2 * B * D * n
    return task.n_infer * 2 * free + stem + free + (stem + free)


def matmul_peak_gflops(n: int = 1024, reps: int = 30) -> dict[str, float]:
    """float32 matmul throughput of this machine: jitted ``(n,n) @ (n,n)``, GFLOP/s.

    ``peak`` uses the fastest repetition (the least disturbed on a shared machine).
    """
    ka, kb = jax.random.split(jax.random.PRNGKey(1))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        ts.append(time.perf_counter() - t0)
    fl = 2 * n**3 / 1e9
    return {"n": n, "peak_gflops": fl / min(ts), "median_gflops": fl / statistics.median(ts)}


def time_step(task: Task, variant: str, grad: str, steps: int = 30, warmup: int = 3) -> dict:
    """Compile time (first call) and steady-state ms/step of one task/variant/grad."""
    init_fn, step_fn = make_task(task, variant, grad)
    x, y = make_data(task, jax.random.PRNGKey(1))
    state = jax.block_until_ready(init_fn(jax.random.PRNGKey(0)))
    t0 = time.perf_counter()
    state, f = jax.block_until_ready(step_fn(state, x, y))
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        state, f = jax.block_until_ready(step_fn(state, x, y))
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, f = jax.block_until_ready(step_fn(state, x, y))
        ts.append(1e3 * (time.perf_counter() - t0))
    return {
        "task": task.name, "variant": variant, "grad": grad, "compile_s": compile_s,
        "ms_median": statistics.median(ts), "ms_min": min(ts), "ms_max": max(ts),
        "steps": steps, "gflop_per_step": flops_per_step(task) / 1e9, "energy": float(f),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("a", "b", "both"), default="both")
    ap.add_argument("--variant", choices=(*VARIANTS, "all"), default="all")
    ap.add_argument("--grad", choices=(*GRADS, "all"), default="all")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--check", action="store_true", help="run the correctness self-check")
    args = ap.parse_args(argv)
    tasks = [TASKS[t] for t in (("a", "b") if args.task == "both" else (args.task,))]

    if args.check:
        ok = True
        for task in tasks:
            res = self_check(task)
            bad = check_failures(res)
            ok &= not bad
            print(f"task {task.name}: {'OK' if not bad else 'FAIL ' + ', '.join(bad)}")
            for k, v in res.items():
                print(f"  {k:36s} {v:.3g}")
        return 0 if ok else 1

    peak = matmul_peak_gflops()
    variants = VARIANTS if args.variant == "all" else (args.variant,)
    grads = GRADS if args.grad == "all" else (args.grad,)
    rows = [
        time_step(task, v, g, steps=max(args.steps, 1))
        for task in tasks for v in variants for g in grads
    ]  # fmt: skip
    # Measure the peak again after the runs and keep the best (the machine may be shared).
    peak = max(peak, matmul_peak_gflops(), key=lambda p: p["peak_gflops"])
    for r in rows:
        r["gflops_median"] = r["gflop_per_step"] / (r["ms_median"] / 1e3)
        r["gflops_best"] = r["gflop_per_step"] / (r["ms_min"] / 1e3)
        r["frac_peak_median"] = r["gflops_median"] / peak["peak_gflops"]
        r["frac_peak_best"] = r["gflops_best"] / peak["peak_gflops"]
    if args.json:
        print(json.dumps({"backend": jax.default_backend(), "matmul": peak, "results": rows}))
        return 0
    print(f"backend {jax.default_backend()}; f32 matmul {peak['n']}^3: "
          f"peak {peak['peak_gflops']:.1f} GFLOP/s (median {peak['median_gflops']:.1f})")  # fmt: skip
    hdr = ("task", "variant", "grad", "compile s", "ms med", "ms min", "ms max", "GFLOP/st",
           "GF/s med", "GF/s best", "%pk med", "%pk best")  # fmt: skip
    print(("{:<5}{:<9}{:<10}" + "{:>10}" * 9).format(*hdr))
    for r in rows:
        print(("{:<5}{:<9}{:<10}" + "{:>10.2f}" * 5 + "{:>10.1f}" * 2 + "{:>10.1%}" * 2).format(
            r["task"], r["variant"], r["grad"], r["compile_s"], r["ms_median"], r["ms_min"],
            r["ms_max"], r["gflop_per_step"], r["gflops_median"], r["gflops_best"],
            r["frac_peak_median"], r["frac_peak_best"]))  # fmt: skip
    return 0

if __name__ == "__main__":
    sys.exit(main())

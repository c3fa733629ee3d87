"""optax optimisers and schedules from the spec (for weights and, with ``solver: optax``, activities)."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pcc.spec.models import OPTIMIZER_FIELDS, Nudge, OptimizerSpec, Schedule

_OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "momentum": lambda learning_rate, momentum=0.9, **kw: optax.sgd(learning_rate, momentum=momentum, **kw),
    "nesterov": lambda learning_rate, momentum=0.9, **kw: optax.sgd(learning_rate, momentum=momentum,
                                                                     nesterov=True, **kw),
    "adam": optax.adam,
    "adamw": optax.adamw,
    "rmsprop": optax.rmsprop,
    "lamb": optax.lamb,
    "lion": optax.lion,
    "adagrad": optax.adagrad,
}

def make_optimizer(opt: OptimizerSpec, learning_rate: Any = None) -> optax.GradientTransformation:
    """The optax transformation ``opt`` names (``learning_rate`` overrides ``opt.lr``: a float or schedule)."""
    kwargs = {f: getattr(opt, f) for f in OPTIMIZER_FIELDS[opt.name] if getattr(opt, f) is not None}
    tx = _OPTIMIZERS[opt.name](learning_rate=opt.lr if learning_rate is None else learning_rate, **kwargs)
    return optax.chain(optax.clip_by_global_norm(opt.clip_norm), tx) if opt.clip_norm else tx


def make_schedule(schedule: Schedule, peak: float, total_steps: int, steps_per_epoch: int):
    """The learning-rate schedule over ``total_steps`` train steps (a float when constant)."""
    end = peak * schedule.final_fraction
    if schedule.name == "constant":
        return peak
    if schedule.name == "cosine":
        return optax.cosine_decay_schedule(peak, max(total_steps, 1), alpha=schedule.final_fraction)
    if schedule.name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, schedule.warmup_steps,
                                                  max(total_steps, schedule.warmup_steps + 1), end)
    return optax.exponential_decay(peak, max(steps_per_epoch, 1), schedule.decay_rate, staircase=True)


def scale_by_tree(scales: Any) -> optax.GradientTransformation:
    """Multiply each update leaf by a fixed per-leaf factor (the parameterisation's LR scales)."""

    def update(updates, state, params=None):
        return jax.tree.map(lambda u, s: u * s, updates, scales), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class MasterState(NamedTuple):
    """State of :func:`with_float32_master`: the float32 master weights and the inner optimiser's state."""

    master: Any
    inner: Any


def with_float32_master(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """Mixed precision for low-precision weights (``model.dtype: bfloat16``): ``tx`` runs in float32 on a
    float32 master copy of the weights kept in the optimiser state; each update moves the low-precision
    weights to the new master (``optax.apply_updates`` rounds p + (master − p) = master into p's dtype), so
    steps smaller than the weights' resolution accumulate in the master instead of being rounded away."""
    f32 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float32), tree)

    def init(params):
        master = f32(params)
        return MasterState(master, tx.init(master))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("with_float32_master needs the current params in update()")
        inner_updates, inner = tx.update(f32(updates), state.inner, state.master)
        master = optax.apply_updates(state.master, inner_updates)
        return jax.tree.map(lambda m, p: m - p.astype(jnp.float32), master, params), MasterState(master, inner)

    return optax.GradientTransformation(init, update)


def make_beta_schedule(nudge: Nudge, total_steps: int):
    """β_t from ``nudge.beta`` at step 0 to ``nudge.beta_final`` at the last of ``total_steps``:
    linear, cosine (β_f + (β_0 − β_f)·½(1 + cos πt/T)) or exponential (β_0 (β_f/β_0)^{t/T})."""
    b0, b1, steps = nudge.beta, nudge.beta_final, max(total_steps - 1, 1)
    return {
        "linear": lambda: optax.linear_schedule(b0, b1, steps),
        "cosine": lambda: optax.cosine_decay_schedule(b0, steps, alpha=b1 / b0),
        "exponential": lambda: optax.exponential_decay(b0, steps, b1 / b0, end_value=b1),
    }[nudge.schedule]()

"""What every implementation of the peer benchmark shares: the two tasks, the data, the weights and the timer.

Needs only the standard library, numpy and jax, so it imports in pcc's environment and in each peer's
virtualenv alike. Conventions (those of ``benchmarks/reference.py``): row vectors, ``W_l`` of shape
``(fan_in, fan_out)``, no biases, ``f_1(x) = a_1 x W_1``, ``f_l(z) = a_l tanh(z) W_l (+ z on a skip)``,
per-sample energy ``F = sum_l 1/2 ||z_l - f_l(z_{l-1})||^2`` with ``z_0 = x`` and ``z_L = y`` clamped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    n_hidden: int  # H hidden (free) layers; L = H + 1 weight layers
    residual: bool  # identity skips on the hidden->hidden layers
    parameterisation: str  # "sp": U(+-1/sqrt(fan_in)), multipliers 1; "mupc": N(0, 1), muPC multipliers
    d_in: int = 784
    width: int = 128
    d_out: int = 10
    batch: int = 128
    steps: int = 20  # T inference steps
    eta: float = 0.125  # per-sample activity step: z <- z - eta dF_i/dz_i
    lr: float = 1e-3  # Adam on the batch-mean weight gradient

    @property
    def n_layers(self) -> int:
        return self.n_hidden + 1

    @property
    def sizes(self) -> list[int]:
        return [self.d_in] + [self.width] * self.n_hidden + [self.d_out]

    def multipliers(self) -> list[float]:
        """``a_l`` per weight layer (pcc's rules: 1/sqrt(D), 1/sqrt(N L) on residual branches, 1/N readout)."""
        if self.parameterisation == "sp":
            return [1.0] * self.n_layers
        mid = 1 / math.sqrt(self.width * (self.n_layers if self.residual else 1))
        return [1 / math.sqrt(self.d_in)] + [mid] * (self.n_hidden - 1) + [1 / self.width]

    def skips(self) -> list[bool]:
        """Whether weight layer l has an identity skip (the hidden->hidden layers of a residual net)."""
        return [self.residual and 0 < l < self.n_hidden for l in range(self.n_layers)]


TASKS = {
    "a": Task("a", n_hidden=3, residual=False, parameterisation="sp"),
    "b": Task("b", n_hidden=127, residual=True, parameterisation="mupc"),
}


def make_data(task: Task, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch: ``x ~ U[0, 1)^(B, D)``, ``y`` one-hot of random labels (float32)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(task.batch, task.d_in)).astype(np.float32)
    y = np.eye(task.d_out, dtype=np.float32)[rng.integers(0, task.d_out, task.batch)]
    return x, y


def init_weights(task: Task, seed: int = 0) -> list[np.ndarray]:
    """Weights with the task's init, for runs without a case file (``compare.py`` passes pcc's own)."""
    rng = np.random.default_rng(seed)
    fans = list(zip(task.sizes[:-1], task.sizes[1:]))
    if task.parameterisation == "sp":
        return [rng.uniform(-1, 1, s).astype(np.float32) / math.sqrt(s[0]) for s in fans]
    return [rng.standard_normal(s).astype(np.float32) for s in fans]


def save_case(path: str, x: np.ndarray, y: np.ndarray, weights: list[np.ndarray]) -> None:
    np.savez(path, x=x, y=y, **{f"w{l}": w for l, w in enumerate(weights)})


def load_case(task: Task, path: str | None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """``(x, y, weights)`` from a case file written by ``compare.py``, else :func:`make_data`/:func:`init_weights`."""
    if path is None:
        return (*make_data(task), init_weights(task))
    f = np.load(path)
    return f["x"], f["y"], [f[f"w{l}"] for l in range(task.n_layers)]


class Timer:
    """Times ``state, energy = step(state)``, with ``jax.block_until_ready`` on both.

    At construction: the first call (trace + compile + run: ``compile_s``), then ``warmup`` calls. ``energy``:
    the batch-mean energy at the final activities of the first two steps (the second checks the weight update
    too), for comparing the math across implementations started from the same weights and data. Then
    :meth:`block` times ``k`` more steps at a time, so that several implementations can take turns.
    """

    def __init__(self, step: Callable[[Any], tuple[Any, Any]], state: Any, warmup: int = 3) -> None:
        import jax

        self.step, self.state, self.ms = step, state, []
        (compile_ms,), e1 = self._run(1)
        _, e2 = self._run(1)
        self._run(warmup - 1)
        self.info = {"compile_s": compile_ms / 1e3, "energy": [float(e1), float(e2)], "jax": jax.__version__,
                     "backend": jax.default_backend()}

    def _run(self, k: int) -> tuple[list[float], Any]:
        import jax

        ms, energy = [], None
        for _ in range(k):
            t0 = time.perf_counter()
            self.state, energy = jax.block_until_ready(self.step(self.state))
            ms.append(1e3 * (time.perf_counter() - t0))
        return ms, energy

    def block(self, k: int) -> list[float]:
        ms = self._run(k)[0]
        self.ms += ms
        return ms

    def serve(self) -> None:
        """Worker mode for ``compare.py``: announce ``info``, then time a block per line ``k`` on stdin (0: stop)."""
        print(json.dumps(self.info), flush=True)
        for line in sys.stdin:
            if int(line) <= 0:
                break
            print(json.dumps({"ms": self.block(int(line))}), flush=True)

    def result(self) -> dict:
        ms = self.ms
        return {**self.info, "steps": len(ms),
                "step_ms": {"median": statistics.median(ms), "min": min(ms), "max": max(ms)} if ms else None}


def bench(step: Callable[[Any], tuple[Any, Any]], state: Any, steps: int = 30, warmup: int = 3) -> dict:
    """:class:`Timer` over ``steps`` steps; served block by block instead when ``PEER_SERVE`` is set."""
    timer = Timer(step, state, warmup)
    if os.environ.get("PEER_SERVE"):
        timer.serve()
    else:
        timer.block(steps)
    return timer.result()


def cli(impl: str, run: Callable[[Task, np.ndarray, np.ndarray, list[np.ndarray], int], dict],
        argv: list[str] | None = None) -> None:
    """``python <impl>_tasks.py [--task a|b|both] [--case case.npz] [--steps 30]``: one JSON line per task."""
    import argparse

    ap = argparse.ArgumentParser(description=f"Task A/B train-step timing in {impl}")
    ap.add_argument("--task", choices=("a", "b", "both"), default="both")
    ap.add_argument("--case", help="npz with x, y, w0..w{L-1} (written by compare.py); default: fresh init")
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args(argv)
    for name in ("a", "b") if args.task == "both" else (args.task,):
        task = TASKS[name]
        res = run(task, *load_case(task, args.case), args.steps)
        print(json.dumps({"impl": impl, "task": name, **res}), flush=True)
    sys.exit(0)

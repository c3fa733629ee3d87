"""The "benign landscape" claim (THEORY.md §4) as an experiment: escaping the origin saddle, PC against BP.

A plain deep linear net x ↦ x W_1 ⋯ W_L (L = H + 1 layers, every multiplier 1, no skips) starts near the origin
and is trained twice from the same weights by full-batch gradient descent at the same learning rate:

- **BP** descends the MSE loss ½ mean‖y − x W_eff‖², whose gradient at the origin is O(ε^H) for an init of
  scale ε (the origin is flat to order H);
- **PC** descends the equilibrated energy F* = ½ mean r S⁻¹ rᵀ, using PC's weight gradients at the exact
  activity equilibrium (= ∇_θ F* by the envelope theorem). The origin is a strict saddle of F*: the output
  layer sees curvature −Σ_yy, so it grows like e^{η σ t} from any ε.

**Escape** is measured on the MSE (the task loss, the same yardstick for both): the first update count t with
MSE_t ≤ threshold · MSE_0 (default threshold 0.5: the loss has halved, so the run has left the plateau at the
saddle). ``energy_escape`` is the same test on F*, the objective PC actually descends. F* ≤ MSE everywhere
(S ⪰ I), and the experiment records max(F* − MSE) along both runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pcc.theory.linear import (
    LinearChain,
    bp_weight_gradients,
    effective_map,
    equilibrated_energy,
    pc_weight_gradients_at_equilibrium,
)

Array = np.ndarray
Gradients = Callable[[LinearChain, Array, Array], list[Array]]


def _first_below(series: Array, threshold: float) -> int | None:
    hits = np.flatnonzero(series <= threshold * series[0])
    return int(hits[0]) if hits.size else None


@dataclass(frozen=True)
class Trajectory:
    """One gradient-descent run: batch-mean MSE and F* before update t (index t = 0 … number of updates)."""

    mse: Array
    fstar: Array
    threshold: float

    @property
    def updates(self) -> int:
        return len(self.mse) - 1

    @property
    def escape(self) -> int | None:
        """Updates until MSE ≤ threshold · MSE_0 (None: not within the run)."""
        return _first_below(self.mse, self.threshold)

    @property
    def energy_escape(self) -> int | None:
        """Updates until F* ≤ threshold · F*_0 (None: not within the run)."""
        return _first_below(self.fstar, self.threshold)

    @property
    def max_gap(self) -> float:
        """max_t (F*_t − MSE_t); ≤ 0 when F* ≤ MSE held at every recorded step."""
        return float(np.max(self.fstar - self.mse))


@dataclass(frozen=True)
class Escape:
    """BP and PC runs from the same init; ``ratio`` = BP escape / PC escape (inf if only PC escaped)."""

    bp: Trajectory
    pc: Trajectory

    @property
    def ratio(self) -> float:
        b, p = self.bp.escape, self.pc.escape
        if p is None:
            return float("nan")
        return float("inf") if b is None else b / max(p, 1)

    @property
    def max_gap(self) -> float:
        return max(self.bp.max_gap, self.pc.max_gap)


def plain_chain(weights: list[Array]) -> LinearChain:
    """A plain deep linear net W_1 ⋯ W_L: multipliers 1, no skips, unit precisions."""
    return LinearChain(weights, [1.0] * len(weights), [False] * len(weights))


def teacher_problem(seed: int, depth: int, width: int, batch: int,
                    init_scale: float) -> tuple[LinearChain, Array, Array]:
    """(chain, x, y): x ~ N(0, I_width) rows, y = x A with A Gaussian scaled to spectral norm 1, and a
    width → width^depth → width chain with W_l ~ init_scale · N(0, 1/width) (each layer has gain ≈ init_scale)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width))
    a = rng.standard_normal((width, width))
    y = x @ (a / np.linalg.norm(a, 2))
    weights = [init_scale * rng.standard_normal((width, width)) / np.sqrt(width) for _ in range(depth + 1)]
    return plain_chain(weights), x, y


def mse(chain: LinearChain, x: Array, y: Array) -> float:
    """The batch-mean loss ½‖y − x W_eff‖²."""
    return float(0.5 * ((y - x @ effective_map(chain)) ** 2).sum(-1).mean())


def train(chain: LinearChain, x: Array, y: Array, gradients: Gradients, lr: float, max_updates: int,
          threshold: float = 0.5, until_escape: bool = True) -> Trajectory:
    """Plain gradient descent W ← W − lr · g(W), recording MSE and F* before every update (and after the last).
    Stops once MSE ≤ threshold · MSE_0 when ``until_escape``."""
    weights, losses, energies = chain.weights, [], []
    for t in range(max_updates + 1):
        c = plain_chain(weights)
        losses.append(mse(c, x, y))
        energies.append(float(equilibrated_energy(c, x, y).mean()))
        if t == max_updates or (until_escape and losses[-1] <= threshold * losses[0]):
            break
        weights = [w - lr * g for w, g in zip(weights, gradients(c, x, y))]
    return Trajectory(np.array(losses), np.array(energies), threshold)


def saddle_escape(depth: int, width: int = 8, batch: int = 64, init_scale: float = 0.2, lr: float = 0.1,
                  max_updates: int = 5000, seed: int = 0, threshold: float = 0.5,
                  until_escape: bool = True) -> Escape:
    """Train the same small-init deep linear net by BP (∇ MSE) and by PC (∇ F* at the exact equilibrium)."""
    chain, x, y = teacher_problem(seed, depth, width, batch, init_scale)
    run = lambda g: train(chain, x, y, g, lr, max_updates, threshold, until_escape)
    return Escape(bp=run(bp_weight_gradients), pc=run(pc_weight_gradients_at_equilibrium))

"""Closed forms for linear predictive coding chains (user diagnostics and test oracles for the compiler).

Conventions (row vectors, as the compiler uses them). A chain has input x = z_0 ∈ R^D, hidden activities
z_1 … z_H, target y ∈ R^C and L = H + 1 weight layers. ``W_l`` has shape (fan_in, fan_out) and the layer
map is linear::

    f_l(z) = a_l · z W_l + τ_l · z = z M_l,        M_l = a_l W_l + τ_l I   (fan_in × fan_out)

Errors e_l = z_l − z_{l−1} M_l (l ≤ H), e_L = y − z_H M_L, and the energy of one sample is::

    F = Σ_{l=1}^{H} ½ λ_l ‖e_l‖² + ½ λ_L ‖e_L‖²      (λ_l = hidden precisions, default 1; λ_L = output precision)

F is quadratic in the hidden activities: ∇_z F = H_z z − b, so z* = H_z⁻¹ b. Everything here is numpy
float64; a batch is a leading axis on x, y and every activity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

Array = np.ndarray


@dataclass(frozen=True)
class LinearChain:
    """A linear PC chain: L = H + 1 layers ``z ↦ a_l · z W_l + τ_l · z`` with W_l of shape (fan_in, fan_out)."""

    weights: list[Array]
    multipliers: list[float]
    skips: list[bool]
    output_precision: float = 1.0
    hidden_precisions: list[float] | None = None  # λ_1 … λ_H; None means all 1

    def __post_init__(self) -> None:
        ws = [np.asarray(w, dtype=np.float64) for w in self.weights]
        L = len(ws)
        if L < 1:
            raise ValueError("LinearChain needs at least one weight layer")
        if len(self.multipliers) != L or len(self.skips) != L:
            raise ValueError(
                f"LinearChain: {L} weights but {len(self.multipliers)} multipliers and {len(self.skips)} skips; "
                "give one of each per layer"
            )
        for l, w in enumerate(ws, start=1):
            if w.ndim != 2:
                raise ValueError(f"LinearChain: W_{l} must be 2-D (fan_in, fan_out), got shape {w.shape}")
            if self.skips[l - 1] and w.shape[0] != w.shape[1]:
                raise ValueError(f"LinearChain: layer {l} has an identity skip but W_{l} is not square: {w.shape}")
        for l in range(1, L):
            if ws[l - 1].shape[1] != ws[l].shape[0]:
                raise ValueError(
                    f"LinearChain: W_{l} has fan_out {ws[l - 1].shape[1]} but W_{l + 1} has fan_in {ws[l].shape[0]}"
                )
        lam = self.hidden_precisions
        if lam is not None and len(lam) != L - 1:
            raise ValueError(f"LinearChain: {len(lam)} hidden precisions for {L - 1} hidden layers")
        if any(p <= 0 for p in [self.output_precision, *(lam or [])]):
            raise ValueError("LinearChain: precisions must be positive")
        object.__setattr__(self, "weights", ws)
        object.__setattr__(self, "multipliers", [float(a) for a in self.multipliers])
        object.__setattr__(self, "skips", [bool(s) for s in self.skips])

    @property
    def L(self) -> int:
        return len(self.weights)

    @property
    def H(self) -> int:
        return self.L - 1

    @property
    def widths(self) -> list[int]:
        """[D, N_1, …, N_H, C]."""
        return [self.weights[0].shape[0]] + [w.shape[1] for w in self.weights]

    @property
    def precisions(self) -> Array:
        """[λ_1, …, λ_H, λ_L]."""
        hidden = self.hidden_precisions if self.hidden_precisions is not None else [1.0] * self.H
        return np.array([*hidden, self.output_precision], dtype=np.float64)

    @property
    def maps(self) -> list[Array]:
        """The layer maps M_l = a_l W_l + τ_l I, so that f_l(z) = z M_l."""
        layers = zip(self.weights, self.multipliers, self.skips)
        return [a * w + (np.eye(w.shape[0]) if s else 0.0) for w, a, s in layers]


# ---------------------------------------------------------------------------------------------------------------
# Energy, Hessian, equilibrium


def energy(chain: LinearChain, zs: Sequence[Any], x: Any, y: Any) -> Any:
    """F = Σ_l ½ λ_l ‖z_l − z_{l−1} M_l‖² with z_0 = x, z_L = y (per sample for a batch).

    Uses only operators and array methods, so it also traces under jax (``jax.hessian`` of it is the oracle for
    :func:`activity_hessian`)."""
    if len(zs) != chain.H:
        raise ValueError(f"energy: {len(zs)} activity arrays for {chain.H} hidden layers")
    path = [x, *zs, y]
    lams, maps = chain.precisions.tolist(), chain.maps
    terms = [0.5 * lam * ((z - zp @ m) ** 2).sum(-1) for lam, zp, z, m in zip(lams, path, path[1:], maps)]
    return sum(terms[1:], terms[0])


def _slices(chain: LinearChain) -> list[slice]:
    ends = np.cumsum(chain.widths[1:-1])
    return [slice(e - n, e) for e, n in zip(ends, chain.widths[1:-1])]


def activity_hessian(chain: LinearChain) -> Array:
    """H_z = ∇²_z F, block tridiagonal over the hidden layers (blocks l, m = 1 … H)::

        H_ll = λ_l I + λ_{l+1} M_{l+1} M_{l+1}ᵀ,   H_{l,l+1} = −λ_{l+1} M_{l+1},   H_{l+1,l} = H_{l,l+1}ᵀ
    """
    sl, lam, maps = _slices(chain), chain.precisions, chain.maps
    n = sl[-1].stop if sl else 0
    hz = np.zeros((n, n))
    for i, s in enumerate(sl):  # hidden layer l = i + 1; its outgoing map is maps[i + 1]
        m = maps[i + 1]
        hz[s, s] = lam[i] * np.eye(s.stop - s.start) + lam[i + 1] * m @ m.T
        if i + 1 < len(sl):
            hz[s, sl[i + 1]] = -lam[i + 1] * m
            hz[sl[i + 1], s] = -lam[i + 1] * m.T
    return hz


def activity_rhs(chain: LinearChain, x: Any, y: Any) -> Array:
    """b with ∇_z F = H_z z − b: λ_1 x M_1 in the first block, λ_L y M_Lᵀ in the last (batched rows)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    sl, lam, maps = _slices(chain), chain.precisions, chain.maps
    b = np.zeros(np.broadcast_shapes(x.shape[:-1], y.shape[:-1]) + (sl[-1].stop if sl else 0,))
    if not sl:
        return b
    b[..., sl[0]] += lam[0] * x @ maps[0]
    b[..., sl[-1]] += lam[-1] * y @ maps[-1].T
    return b


def feedforward(chain: LinearChain, x: Any) -> list[Array]:
    """The feedforward pass [z_0 = x, z_1, …, z_L = ŷ] (every hidden error 0)."""
    zs = [np.asarray(x, np.float64)]
    for m in chain.maps:
        zs.append(zs[-1] @ m)
    return zs


def hessian_spectrum(chain: LinearChain) -> Array:
    """Eigenvalues of H_z, ascending. Deep chains use H_z's band (half-width max_l N_l + N_{l+1} − 1), which is
    several times faster than a dense solver."""
    hz, n = activity_hessian(chain), sum(chain.widths[1:-1])
    u = max((a + b for a, b in zip(chain.widths[1:-1], chain.widths[2:-1] + [0])), default=1) - 1
    if 4 * u >= n:
        return np.linalg.eigvalsh(hz)
    band = np.zeros((u + 1, n))  # LAPACK upper band storage: band[u - k, k:] is the k-th superdiagonal
    for k in range(u + 1):
        band[u - k, k:] = np.diagonal(hz, k)
    return scipy.linalg.eig_banded(band, eigvals_only=True)


def condition_number(chain: LinearChain) -> float:
    """κ(H_z) = λ_max / λ_min."""
    ev = hessian_spectrum(chain)
    return float(ev[-1] / ev[0])


# ---------------------------------------------------------------------------------------------------------------
# Equilibrated energy


def _tails(chain: LinearChain) -> list[Array]:
    """Q_l = M_l M_{l+1} ⋯ M_L for l = 1 … L+1 (Q_{L+1} = I): the map from z_{l−1} to the output."""
    qs = [np.eye(chain.widths[-1])]
    for m in reversed(chain.maps):
        qs.append(m @ qs[-1])
    return qs[::-1]


def effective_map(chain: LinearChain) -> Array:
    """W_eff = M_1 M_2 ⋯ M_L (D × C), so the feedforward prediction is ŷ = x W_eff."""
    return _tails(chain)[0]


def energy_rescaling(chain: LinearChain) -> Array:
    """S = I/λ_L + Σ_{l=2}^{L} Q_lᵀ Q_l / λ_{l−1}  (C × C), Q_l = M_l ⋯ M_L.

    Q_lᵀ is THEORY.md's column-convention P_l. Minimising F over the errors subject to
    y − x W_eff = Σ_{l=1}^{H} e_l Q_{l+1} + e_L gives F* = ½ r S⁻¹ rᵀ."""
    qs, lam = _tails(chain), chain.precisions
    return sum((q.T @ q / p for q, p in zip(qs[1:-1], lam[:-1])), np.eye(chain.widths[-1]) / lam[-1])


def _output_multiplier(chain: LinearChain, x: Any, y: Any) -> tuple[Array, Array]:
    """(r, μ) with r = y − x W_eff and μ = r S⁻¹ = λ_L e_L* (rows)."""
    r = np.asarray(y, np.float64) - np.asarray(x, np.float64) @ effective_map(chain)
    rows = r.reshape(-1, r.shape[-1])
    return r, np.linalg.solve(energy_rescaling(chain), rows.T).T.reshape(r.shape)


def equilibrium(chain: LinearChain, x: Any, y: Any) -> list[Array]:
    """z* = H_z⁻¹ b, split per hidden layer: [(…, N_1), …, (…, N_H)].

    Computed in error space, without the (Σ N_l)² system: minimising Σ ½ λ_l ‖e_l‖² subject to
    Σ_{l≤H} e_l Q_{l+1} + e_L = r gives e_l* = μ Q_{l+1}ᵀ / λ_l with μ = r S⁻¹, then z_l* = z_{l−1}* M_l + e_l*."""
    _, mu = _output_multiplier(chain, x, y)
    zs = [np.asarray(x, np.float64)]
    for m, q, lam in zip(chain.maps[:-1], _tails(chain)[1:-1], chain.precisions):
        zs.append(zs[-1] @ m + mu @ q.T / lam)
    return zs[1:]


def equilibrated_energy(chain: LinearChain, x: Any, y: Any) -> Array:
    """F* = min_z F = ½ r S⁻¹ rᵀ with r = y − x W_eff (per sample for a batch)."""
    r, mu = _output_multiplier(chain, x, y)
    return 0.5 * (r * mu).sum(-1)


# ---------------------------------------------------------------------------------------------------------------
# Weight gradients


def _weight_grads(chain: LinearChain, inputs: Sequence[Array], deltas: Sequence[Array]) -> list[Array]:
    """∂/∂W_l = a_l · mean_b z_{l−1}ᵀ δ_l, where δ_l is the derivative w.r.t. the output of layer l."""
    rows = [(z.reshape(-1, z.shape[-1]), d.reshape(-1, d.shape[-1])) for z, d in zip(inputs, deltas)]
    return [a * z.T @ d / len(z) for a, (z, d) in zip(chain.multipliers, rows)]


def bp_weight_gradients(chain: LinearChain, x: Any, y: Any) -> list[Array]:
    """Batch-mean gradients of the loss ½ λ_L ‖y − x W_eff‖² w.r.t. each W_l (δ_l = −λ_L r Q_{l+1}ᵀ)."""
    zs = feedforward(chain, x)
    r = np.asarray(y, np.float64) - zs[-1]
    deltas = [-chain.output_precision * r @ q.T for q in _tails(chain)[1:]]
    return _weight_grads(chain, zs[:-1], deltas)


def pc_weight_gradients(chain: LinearChain, zs: Sequence[Any], x: Any, y: Any) -> list[Array]:
    """Batch-mean ∂F/∂W_l at the given activities: −a_l λ_l · mean_b z_{l−1}ᵀ e_l."""
    path = [np.asarray(p, np.float64) for p in (x, *zs, y)]
    deltas = [-lam * (z - zp @ m) for lam, zp, z, m in zip(chain.precisions, path, path[1:], chain.maps)]
    return _weight_grads(chain, path[:-1], deltas)


def pc_weight_gradients_at_equilibrium(chain: LinearChain, x: Any, y: Any) -> list[Array]:
    """∂F/∂W_l at z* — by the envelope theorem, the gradient of the batch-mean equilibrated energy F*."""
    return pc_weight_gradients(chain, equilibrium(chain, x, y), x, y)


def gradient_cosine(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cosine between the flattened concatenations of two gradient lists."""
    u = np.concatenate([np.ravel(g) for g in a])
    v = np.concatenate([np.ravel(g) for g in b])
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def layer_cosines(a: Sequence[Any], b: Sequence[Any]) -> list[float]:
    """Per-layer cosines between two gradient lists."""
    return [gradient_cosine([u], [v]) for u, v in zip(a, b)]


# ---------------------------------------------------------------------------------------------------------------
# Builders

PARAMETERISATIONS = ("mupc", "ntp", "sp")


def _rng(key_or_seed: Any) -> np.random.Generator:
    """A numpy generator from an int seed, a Generator, or a jax PRNG key (its raw key data seeds numpy)."""
    if isinstance(key_or_seed, np.random.Generator):
        return key_or_seed
    if isinstance(key_or_seed, (int, np.integer)):
        return np.random.default_rng(int(key_or_seed))
    import jax  # only for typed jax keys

    typed = jax.dtypes.issubdtype(key_or_seed.dtype, jax.dtypes.prng_key)
    data = jax.random.key_data(key_or_seed) if typed else key_or_seed
    return np.random.default_rng(np.asarray(data, dtype=np.uint32).ravel())


def mupc_chain(
    key_or_seed: Any, D: int, N: int, H: int, C: int, skips: bool = True, parameterisation: str = "mupc"
) -> LinearChain:
    """A D → N^H → C chain under THEORY.md §3: 'mupc'/'ntp' draw W ~ N(0, 1) with a_1 = 1/√D, hidden
    a = 1/√N (1/√(N·L) with skips) and a_L = 1/N ('mupc') or 1/√N ('ntp'); 'sp' draws W ~ U(±1/√fan_in)
    with every a = 1. Hidden→hidden layers (l = 2 … H) get identity skips when ``skips``."""
    if parameterisation not in PARAMETERISATIONS:
        raise ValueError(f"mupc_chain: unknown parameterisation {parameterisation!r}; use one of {PARAMETERISATIONS}")
    if H < 1:
        raise ValueError(f"mupc_chain: H must be >= 1, got {H}")
    rng, L = _rng(key_or_seed), H + 1
    shapes = [(D, N)] + [(N, N)] * (H - 1) + [(N, C)]
    skip_flags = [False] + [skips] * (H - 1) + [False]
    if parameterisation == "sp":
        weights = [rng.uniform(-1, 1, s) / np.sqrt(s[0]) for s in shapes]
        return LinearChain(weights, [1.0] * L, skip_flags)
    hidden = 1 / np.sqrt(N * L) if skips else 1 / np.sqrt(N)
    out = 1 / N if parameterisation == "mupc" else 1 / np.sqrt(N)
    weights = [rng.standard_normal(s) for s in shapes]
    return LinearChain(weights, [1 / np.sqrt(D)] + [hidden] * (H - 1) + [out], skip_flags)

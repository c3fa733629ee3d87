"""From a loader's raw arrays to a :class:`Dataset`: seeded split and shuffle, limits, normalisation, one-hot.

Every loader returns a :class:`Raw`; :func:`finish` applies the same pipeline to all of them, so the
``data:`` options mean the same thing for every dataset. numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pcc.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from pcc.spec.models import Data

_STREAM = 0xDA7A  # keeps the data shuffles apart from the batch order's default_rng([seed, epoch])
_MIN_STD = 1e-8


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test arrays ready for training: float32, ``x`` flattened to (N, D), ``y`` of shape (N, C).

    ``y`` is one-hot for classification (``num_classes`` set) and the regression targets otherwise
    (``num_classes`` is None). ``input_shape`` is one sample's unflattened shape, e.g. (28, 28). The arrays
    are read-only.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int | None
    input_shape: tuple[int, ...]

    @property
    def input_dim(self) -> int:
        """D: the width of the input node."""
        return int(self.x_train.shape[1])

    @property
    def output_dim(self) -> int:
        """C: the width of the output node (classes, or regression targets)."""
        return int(self.y_train.shape[1])

    @property
    def is_classification(self) -> bool:
        """True when ``y`` is one-hot class labels."""
        return self.num_classes is not None

    def __repr__(self) -> str:
        kind = f"{self.num_classes} classes" if self.is_classification else f"{self.output_dim} targets"
        return (
            f"Dataset({self.name!r}: {len(self.x_train)} train, {len(self.x_test)} test, "
            f"input {self.input_shape}, {kind})"
        )


@dataclass(frozen=True)
class Raw:
    """A loader's output: samples of any shape (N, ...) and integer labels (N,) or targets (N, C).

    ``x_test``/``y_test`` None: the dataset ships no test split and one is held out by ``test_fraction``.
    ``num_classes`` None for labels: max label + 1. ``scale``: the largest possible raw value (255 for
    uint8 pixels), what ``normalize: unit`` divides by; None where the data have no fixed range.
    """

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    num_classes: int | None = None
    scale: float | None = None


def seeded_rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of one named random stream of the data pipeline."""
    return np.random.default_rng([seed, _STREAM, stream])


def finish(name: str, raw: Raw, data: Data, seed: int) -> Dataset:
    """Split (or shuffle) by seed, apply the limits, normalise, flatten and one-hot encode."""
    _check(name, raw)
    x, y, xt, yt = _split(raw, data.test_fraction, seed)
    x, y = x[: data.limit_train], y[: data.limit_train]
    xt, yt = xt[: data.limit_test], yt[: data.limit_test]
    input_shape = tuple(int(d) for d in x.shape[1:])
    x, xt = NORMALIZERS[data.normalize](_flat(x), _flat(xt), raw.scale)
    num_classes = num_classes_of(raw.y, raw.y_test, raw.num_classes, name)
    y, yt = (_encode(v, num_classes) for v in (y, yt))
    return Dataset(name, *map(_frozen, (x, y, xt, yt)), num_classes, input_shape)


def num_classes_of(y: np.ndarray, y_test: np.ndarray | None, declared: int | None, name: str) -> int | None:
    """Number of classes of integer labels (None for 2-D regression targets); checks the labels."""
    if y.ndim == 2:
        return None
    labels = [v for v in (y, y_test) if v is not None and v.size]
    for v in labels:
        if v.ndim != 1 or np.any(v < 0) or np.any(v != np.round(v)):
            raise DataError(
                f"{name}: labels must be non-negative integers of shape (N,) (or give 2-D float targets "
                f"of shape (N, C) for regression); got shape {v.shape}, dtype {v.dtype}"
            )
    top = max(int(v.max()) for v in labels) + 1 if labels else 1
    if declared is not None and top > declared:
        raise DataError(f"{name}: label {top - 1} out of range for {declared} classes")
    return declared or top


def _check(name: str, raw: Raw) -> None:
    if (raw.x_test is None) != (raw.y_test is None):
        raise DataError(f"{name}: give both test arrays (x_test and y_test) or neither")
    pairs = [("train", raw.x, raw.y)] + ([("test", raw.x_test, raw.y_test)] if raw.x_test is not None else [])
    for split, x, y in pairs:
        if len(x) != len(y):
            raise DataError(f"{name}: {split} split has {len(x)} samples but {len(y)} labels/targets")
        if y.ndim not in (1, 2):
            raise DataError(f"{name}: {split} labels/targets must be 1-D labels or 2-D targets, got {y.shape}")
    if raw.x_test is not None and (raw.x.shape[1:] != raw.x_test.shape[1:] or raw.y.shape[1:] != raw.y_test.shape[1:]):
        raise DataError(
            f"{name}: train and test samples differ in shape: x {raw.x.shape[1:]} vs {raw.x_test.shape[1:]}, "
            f"y {raw.y.shape[1:]} vs {raw.y_test.shape[1:]}"
        )


def _split(raw: Raw, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Shuffle the shipped splits by seed, or shuffle everything and hold out ``test_fraction``."""
    if raw.x_test is not None:
        p, q = seeded_rng(seed, 0).permutation(len(raw.x)), seeded_rng(seed, 1).permutation(len(raw.x_test))
        return raw.x[p], raw.y[p], raw.x_test[q], raw.y_test[q]
    n = len(raw.x)
    if n < 2:
        raise DataError(f"need at least 2 samples to hold out a test split, got {n}")
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    p = seeded_rng(seed, 0).permutation(n)
    train, test = p[n_test:], p[:n_test]
    return raw.x[train], raw.y[train], raw.x[test], raw.y[test]


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float32)


def _encode(y: np.ndarray, num_classes: int | None) -> np.ndarray:
    if num_classes is None:
        return y.astype(np.float32)
    return np.eye(num_classes, dtype=np.float32)[y.astype(np.int64)]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.setflags(write=False)
    return a


def _unit(x: np.ndarray, xt: np.ndarray, scale: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Divide by the largest possible raw value (pixels to [0, 1]); data without a fixed range stay as they are."""
    return (x / np.float32(scale), xt / np.float32(scale)) if scale else (x, xt)


def _standard(x: np.ndarray, xt: np.ndarray, scale: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Zero mean, unit variance per feature, with the train split's statistics (constant features: std 1)."""
    mean, std = x.mean(0, dtype=np.float64), x.std(0, dtype=np.float64)
    std[std < _MIN_STD] = 1.0
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    return (x - mean) / std, (xt - mean) / std


def _none(x: np.ndarray, xt: np.ndarray, scale: float | None) -> tuple[np.ndarray, np.ndarray]:
    return x, xt


NORMALIZERS: dict[str, Callable[[np.ndarray, np.ndarray, float | None], tuple[np.ndarray, np.ndarray]]] = {
    "unit": _unit,
    "standard": _standard,
    "none": _none,
}

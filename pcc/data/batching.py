"""Minibatches: a permutation per (seed, epoch), so any batch of any epoch can be recomputed (resume mid-epoch)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np

T = TypeVar("T")
U = TypeVar("U")


def num_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    """Batches per epoch of ``n`` samples: full batches only, or with a final partial one."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    return n // batch_size if drop_last else -(-n // batch_size)


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray | None:
    """The sample order of one epoch: ``default_rng([seed, epoch]).permutation(n)``, or None (in order)."""
    return np.random.default_rng([seed, epoch]).permutation(n) if shuffle else None


def batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    drop_last: bool = True,
    start: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (x, y) batches of one epoch, from batch index ``start`` on (a resumed run continues mid-epoch).

    The order depends only on (seed, epoch), so the same arguments give the same batches. ``drop_last``
    skips the final partial batch; with ``drop_last=False`` every sample appears exactly once per epoch.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    total = num_batches(len(x), batch_size, drop_last)
    if not 0 <= start <= total:
        raise ValueError(f"start batch {start} outside 0..{total}")
    order = epoch_order(len(x), seed=seed, epoch=epoch, shuffle=shuffle)
    for i in range(start, total):
        rows = slice(i * batch_size, (i + 1) * batch_size)
        rows = rows if order is None else order[rows]
        yield x[rows], y[rows]


def batches_from(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int, epoch: int, start_batch: int, **options: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`batches` from batch ``start_batch`` of the epoch: the rest of an interrupted epoch."""
    return batches(x, y, batch_size, seed=seed, epoch=epoch, start=start_batch, **options)


def prefetch(items: Iterable[T], place: Callable[[T], U], ahead: int = 2) -> Iterator[U]:
    """``place(item)`` for each item, called ``ahead`` items before the item is wanted: with ``place`` an
    asynchronous copy to the device, the copy of the next batches overlaps the steps on the current one."""
    queue: deque[U] = deque()
    for item in items:
        queue.append(place(item))
        if len(queue) > ahead:
            yield queue.popleft()
    while queue:
        yield queue.popleft()

"""The training progress bar (rich, on stderr, only on an interactive terminal) and graceful Ctrl-C."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator


class Bar:
    """A rich progress bar over the run's train steps: epoch, step, loss, energy and the last test accuracy.

    ``enabled=False`` (or stderr not a terminal) gives a bar that does nothing.
    """

    def __init__(self, total: int, done: int, enabled: bool):
        self._progress = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  energy {task.fields[energy]}  acc {task.fields[acc]}"),
            TimeRemainingColumn(), console=console,
        )
        self._task = self._progress.add_task("train", total=total, completed=done,
                                             epoch="-", loss="-", energy="-", acc="-")

    def update(self, step: int, epoch: float, row: dict[str, Any] | None = None) -> None:
        """Move to ``step``; ``row`` (a metrics row) refreshes the shown values."""
        if self._progress is None:
            return
        shown: dict[str, str] = {}
        if row is not None:
            if row["kind"] == "train":
                shown = {"loss": f"{row['loss']:.4g}", "energy": f"{row['energy_final']:.4g}"}
            elif row.get("accuracy") is not None:
                shown = {"acc": f"{row['accuracy']:.3f}"}
        self._progress.update(self._task, completed=step, epoch=f"{epoch:.2f}", **shown)

    def __enter__(self) -> "Bar":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


class StopFlag:
    """Set by the first Ctrl-C; the runner stops at the next batch boundary, where its state is consistent."""

    requested = False


@contextmanager
def graceful_interrupt() -> Iterator[StopFlag]:
    """While active (main thread only), the first SIGINT sets the flag instead of raising; a second raises
    KeyboardInterrupt at once. Elsewhere, or outside this block, SIGINT behaves as usual."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)

"""User-facing errors. Each carries what is wrong, where, and what to do; the CLI prints them without a
traceback and exits with status 2."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

Path = tuple[str | int, ...]


def dotted(path: Path) -> str:
    """``('model', 'layers', 0, 'dense')`` -> ``model.layers.0.dense``."""
    return ".".join(str(p) for p in path) if path else "<root>"


@dataclass(frozen=True)
class Issue:
    """One located problem in a spec: ``FILE:LINE:COL: dotted.path: message``."""

    path: Path
    message: str
    file: str | None = None
    line: int | None = None  # 1-based
    col: int | None = None  # 1-based

    def located(self, file: str, line: int, col: int) -> "Issue":
        return replace(self, file=file, line=line, col=col)

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}:{self.col}"
        return f"{where}: {dotted(self.path)}: {self.message}"


class PccError(Exception):
    """Base of every error pcc reports to a user (exit status 2, no traceback)."""

    exit_code = 2


class SpecError(PccError):
    """A spec (file or ``--set`` override) is invalid; holds every issue found, each located."""

    def __init__(self, issues: Sequence[Issue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class DataError(PccError):
    """A dataset is missing, unreadable, or does not fit the model."""


class CheckpointError(PccError):
    """A checkpoint is missing, corrupt, or does not match the spec."""


class DivergenceError(PccError):
    """Training produced a non-finite energy or loss."""

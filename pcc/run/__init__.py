"""The runner: ``train``, ``evaluate_run``, ``plot_runs`` and the run folder's files.

Importing this package is cheap (the CLI imports :mod:`pcc.run.cli_commands` without jax); the names below
load their modules, and jax, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "train": "pcc.run.runner",
    "evaluate_run": "pcc.run.runner",
    "load_run_spec": "pcc.run.runner",
    "Summary": "pcc.run.runner",
    "plot_runs": "pcc.run.plot",
    "read_rows": "pcc.run.metrics",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pcc.run' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from pcc.run.metrics import read_rows
    from pcc.run.plot import plot_runs
    from pcc.run.runner import Summary, evaluate_run, load_run_spec, train

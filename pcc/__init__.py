"""pcc: the predictive coding compiler.

``pcc.load_spec`` and the spec models import no jax; ``pcc.compile`` and ``pcc.train`` import it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load_spec": ("pcc.spec.loader", "load_spec"),
    "Spec": ("pcc.spec.models", "Spec"),
    "compile": ("pcc.compiler", "compile"),
    "Compiled": ("pcc.compiler", "Compiled"),
    "train": ("pcc.run.runner", "train"),
    "sweep": ("pcc.run.sweep", "sweep"),
    "diagnose": ("pcc.theory.diagnose", "diagnose"),
    "lower": ("pcc.ir.lower", "lower"),
    "SpecError": ("pcc.errors", "SpecError"),
    "DataError": ("pcc.errors", "DataError"),
    "PccError": ("pcc.errors", "PccError"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'pcc' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from pcc.compiler import Compiled, compile
    from pcc.errors import DataError, PccError, SpecError
    from pcc.spec.loader import load_spec
    from pcc.spec.models import Spec

"""The metrics files of a run: ``metrics.jsonl`` (one JSON object per row) and ``metrics.csv`` (the same rows).

A row is a train row (``kind: train``, written every ``run.log_every`` steps and at the last step), an
eval row (``kind: eval``, the test split) or an alignment row (``kind: alignment``, every
``run.alignment_every`` steps when set). Columns: kind, step, epoch (progress in epochs, step / steps per
epoch), wall (seconds of training so far), loss, accuracy (eval rows of classification data),
energy_init, energy_final, steps (inference steps taken), ``energy/<layer>`` and ``grad_norm/<layer>`` per
weight layer; alignment rows: ``align_cos`` and ``align_ratio`` (cos(g_PC, g_BP) and ‖g_PC‖ / ‖g_BP‖ over all
weight layers) and ``align_cos/<layer>``, ``align_ratio/<layer>`` per weight layer, for the update of step
``step`` (see :func:`pcc.theory.diagnose.alignment`; null where a gradient is 0). A column a row lacks is
empty in the CSV and absent from the JSON line. numpy and json only.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pcc.errors import PccError

Row = dict[str, Any]
JSONL, CSV = "metrics.jsonl", "metrics.csv"
BASE_COLUMNS = ("kind", "step", "epoch", "wall", "loss", "accuracy", "energy_init", "energy_final", "steps")


def columns(layer_labels: Sequence[str], alignment: bool = False) -> list[str]:
    """Every column of a run with these weight layers (and alignment rows), in CSV order."""
    align = ["align_cos", "align_ratio", *(f"align_cos/{l}" for l in layer_labels),
             *(f"align_ratio/{l}" for l in layer_labels)] if alignment else []
    return [*BASE_COLUMNS, *(f"energy/{l}" for l in layer_labels), *(f"grad_norm/{l}" for l in layer_labels),
            *align]


def train_row(metrics: Any, labels: Sequence[str], *, step: int, epoch: float, wall: float) -> Row:
    """A train row from one step's host-side :class:`~pcc.pc.learning.StepMetrics`."""
    return {
        "kind": "train", "step": step, "epoch": epoch, "wall": wall,
        "loss": float(metrics.loss), "energy_init": float(metrics.energy_init),
        "energy_final": float(metrics.energy_final), "steps": int(metrics.steps),
        **{f"energy/{l}": float(e) for l, e in zip(labels, metrics.layer_energies)},
        **{f"grad_norm/{l}": float(g) for l, g in zip(labels, metrics.grad_norms)},
    }


def eval_row(result: Any, *, step: int, epoch: float, wall: float) -> Row:
    """An eval row from an :class:`~pcc.compiler.EvalMetrics`."""
    row = {"kind": "eval", "step": step, "epoch": epoch, "wall": wall, "loss": float(result.loss)}
    if getattr(result, "energy", None) is not None:  # modes that infer at test time: F after inference
        row["energy_final"] = float(result.energy)
    return row if result.accuracy is None else {**row, "accuracy": float(result.accuracy)}


def alignment_row(values: Mapping[str, float | None], *, step: int, epoch: float, wall: float) -> Row:
    """An alignment row from :meth:`pcc.theory.diagnose.Alignment.metrics`."""
    return {"kind": "alignment", "step": step, "epoch": epoch, "wall": wall, **values}


def finite(row: Mapping[str, Any], keys: Iterable[str] = ("loss", "energy_init", "energy_final")) -> bool:
    """True when every present value of ``keys`` is a finite number."""
    return all(math.isfinite(row[k]) for k in keys if row.get(k) is not None)


def read_rows(run_dir: str | Path) -> list[Row]:
    """All rows of a run folder's ``metrics.jsonl``."""
    path = Path(run_dir) / JSONL
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        raise PccError(f"{run_dir}: not a run folder (no {JSONL}); give a folder written by `pcc train`") from None
    except json.JSONDecodeError as e:
        raise PccError(f"{path}: unreadable metrics ({e})") from None


class MetricsLog:
    """Appends rows to both metrics files, flushing each row (a crash keeps what was logged).

    ``keep``: rows to keep from an existing log (a resumed run continues after its checkpoint's rows; rows
    logged after that checkpoint are dropped, since the resumed run writes them again).
    """

    def __init__(self, run_dir: str | Path, columns: Sequence[str], keep: int = 0):
        self.dir, self.columns = Path(run_dir), list(columns)
        rows = read_rows(self.dir)[:keep] if keep else []
        if keep and len(rows) < keep:
            raise PccError(f"{self.dir / JSONL} has {len(rows)} rows but the checkpoint expects {keep}")
        self._rewrite(rows)
        self._jsonl = open(self.dir / JSONL, "a", encoding="utf-8")
        self._csv_file = open(self.dir / CSV, "a", encoding="utf-8", newline="")
        self._csv = csv.DictWriter(self._csv_file, self.columns, restval="", extrasaction="ignore")
        self.count = len(rows)

    def _rewrite(self, rows: list[Row]) -> None:
        """Replace both files by ``rows`` (each written to a temporary file and renamed over the old one)."""
        for name, write in ((JSONL, self._write_jsonl), (CSV, self._write_csv)):
            tmp = self.dir / f".{name}.tmp"
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                write(f, rows)
            os.replace(tmp, self.dir / name)

    def _write_jsonl(self, f, rows: list[Row]) -> None:
        f.writelines(json.dumps(r) + "\n" for r in rows)

    def _write_csv(self, f, rows: list[Row]) -> None:
        w = csv.DictWriter(f, self.columns, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    def write(self, row: Row) -> None:
        """Append ``row`` to both files."""
        self._jsonl.write(json.dumps(row) + "\n")
        self._csv.writerow(row)
        self._jsonl.flush()
        self._csv_file.flush()
        self.count += 1

    def close(self) -> None:
        self._jsonl.close()
        self._csv_file.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Hyperparameter sweeps: :func:`sweep` trains the cartesian grid of spec overrides, one run folder per cell,
resumably, then tabulates and plots the results.

Layout of ``out_dir``::

    <cell>/                     one run folder per cell (see :func:`cell_name`), written by pcc.train
    results.csv, results.json   one row per cell: swept values, status, test/train metrics, wall time
    heatmap-<a>-<b>.png         the metric over every pair of swept axes (the best over any other axes)
    transfer-<a>.png            with three or more axes: one panel per value of the first axis ``a`` over the
                                next two, each panel's own best cell starred (does the best cell move with a?)

Resuming: a cell whose ``summary.json`` says ``completed`` or ``diverged`` is read, not rerun (training is
deterministic, so a diverged cell diverges again); an interrupted or killed cell continues from its latest
checkpoint, or starts again when it has none. A cell folder written with another spec is an error, never
silently mixed in. A cell that diverges is recorded as ``diverged``; one that fails with a pcc error (bad
data, a checkpoint that does not fit) as ``failed`` with the message; neither stops the sweep. Ctrl-C stops
the sweep after the current cell has checkpointed; rerun the same command to continue.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from pcc.errors import PccError, SpecError
from pcc.spec.models import Spec

Grid = Mapping[str, Sequence[Any]]
Status = Literal["completed", "diverged", "interrupted", "failed"]
METRICS: dict[str, Callable[..., Any]] = {
    "best_test_accuracy": max, "final_test_accuracy": max,
    "best_test_loss": min, "final_test_loss": min, "final_train_loss": min,
}
"""Metrics a sweep can rank and plot, each with the direction that is better."""
RESULTS_CSV, RESULTS_JSON = "results.csv", "results.json"
RUN_FILES = {"spec.yaml", "env.json", "metrics.jsonl", "metrics.csv", "checkpoints", "summary.json"}
"""What the runner writes into a run folder: a cell folder holding only these may be restarted from scratch."""


@dataclass(frozen=True)
class CellResult:
    """One cell of the grid: its swept values, how its run ended, and the run's summary metrics."""

    name: str
    values: dict[str, Any]  # swept path -> value
    status: Status
    run_dir: str
    final_test_accuracy: float | None = None
    best_test_accuracy: float | None = None
    final_test_loss: float | None = None
    best_test_loss: float | None = None
    final_train_loss: float | None = None
    wall_time: float | None = None
    steps: int | None = None
    error: str | None = None

    def metric(self, name: str) -> float:
        """The metric's value; NaN when the cell has none (diverged, failed, regression accuracy)."""
        value = getattr(self, name)
        return math.nan if value is None or self.status in ("diverged", "failed") else float(value)

    def row(self) -> dict[str, Any]:
        """A flat table row: cell, each swept value under its path, then the other fields."""
        rest = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("name", "values")}
        return {"cell": self.name, **self.values, **rest}


@dataclass(frozen=True)
class SweepResult:
    """All cells in grid order, the best one by ``metric``, the files written; ``interrupted`` when Ctrl-C
    stopped the sweep before its last cell."""

    out_dir: str
    axes: tuple[str, ...]
    metric: str
    cells: tuple[CellResult, ...]
    best: CellResult | None
    files: tuple[str, ...]
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------- the grid
def split_values(text: str) -> list[str]:
    """Split ``v1,v2,...`` at the commas outside brackets (so ``[1,2],[3]`` is two YAML lists)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "[{") - (ch in "]}")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [p.strip() for p in parts + [text[start:]]]


def parse_grid_option(text: str) -> tuple[str, list[Any]]:
    """``dotted.path=v1,v2,...`` -> (path, values), each value read as a YAML scalar (``0.1``, ``1e-3``,
    ``relu``, ``true``, ``[64, 64]``)."""
    from pcc.spec.loader import read_yaml

    path, eq, rest = text.partition("=")
    values = split_values(rest) if eq else []
    if not path.strip() or not values or "" in values:
        raise PccError(f"--grid takes `dotted.path=v1,v2,...` (e.g. learning.optimizer.lr=0.1,0.01), got {text!r}")
    try:
        return path.strip(), [read_yaml(v, f"--grid {path}")[0] for v in values]
    except SpecError as e:
        raise PccError(f"--grid {text!r}: {e}") from None


def short_names(axes: Sequence[str]) -> dict[str, str]:
    """Each dotted path's shortest suffix that no other axis ends with (``learning.optimizer.lr`` -> ``lr``)."""
    out = {}
    for axis in axes:
        parts = axis.split(".")
        for k in range(1, len(parts) + 1):
            suffix = ".".join(parts[-k:])
            if not any(o != axis and (o == suffix or o.endswith("." + suffix)) for o in axes):
                break
        out[axis] = suffix
    return out


def _text(value: Any) -> str:
    """A value as YAML flow text (JSON is YAML): ``0.05``, ``1e-05``, ``true``, ``"relu"``, ``[64,64]``."""
    return json.dumps(value, separators=(",", ":"))


def _label(value: Any) -> str:
    """A value as a name or tick shows it: strings bare, floats short when exact (``1e+08``, ``0.05``), the rest
    as YAML flow text."""
    if isinstance(value, float):
        return format(value, "g") if float(format(value, "g")) == value else repr(value)
    return value if isinstance(value, str) else _text(value)


def _safe(name: str) -> str:
    """Any character outside ``[A-Za-z0-9._+=-]`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", name)


def cell_name(values: Mapping[str, Any]) -> str:
    """A filesystem-safe folder name from the swept values, with short axis names: ``lr=0.05__steps=8``."""
    short = short_names(list(values))
    return _safe("__".join(f"{short[a]}={_label(v)}" for a, v in values.items()))


def grid_cells(grid: Grid) -> list[dict[str, Any]]:
    """The cartesian product of the grid, first axis slowest, as {path: value} per cell."""
    if not grid or any(len(v) == 0 for v in grid.values()):
        raise PccError("a sweep needs at least one axis, each with at least one value")
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


# ------------------------------------------------------------------------------------------ one cell
def _summary(cell_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((cell_dir / "summary.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _has_checkpoint(cell_dir: Path) -> bool:
    from pcc.run.checkpoint import Checkpoints

    if not (cell_dir / "spec.yaml").is_file() or not (cell_dir / "checkpoints").is_dir():
        return False
    ckpts = Checkpoints(cell_dir)
    try:
        return ckpts.latest() is not None
    finally:
        ckpts.close()


def _check_same_spec(cell_dir: Path, spec: Spec) -> None:
    """A cell folder must have been written by this cell's spec (the ``run:`` bookkeeping may differ)."""
    from pcc.run.runner import load_run_spec

    if not (cell_dir / "spec.yaml").is_file():
        return
    if load_run_spec(cell_dir).model_dump(mode="json", exclude={"run"}) != spec.model_dump(mode="json",
                                                                                         exclude={"run"}):
        raise PccError(f"{cell_dir} was written by another spec than this sweep's cell: sweep into another "
                       "--out folder, or delete that cell folder to rerun it")


def _result(name: str, values: dict[str, Any], cell_dir: Path, status: Status | None = None,
            error: str | None = None) -> CellResult:
    """The cell's result from its ``summary.json`` (if any)."""
    summary = _summary(cell_dir) or {}
    known = {f.name for f in fields(CellResult)} - {"name", "values", "status", "run_dir", "error"}
    metrics = {k: None if isinstance(v, float) and not math.isfinite(v) else v
               for k, v in summary.items() if k in known}
    return CellResult(name, values, status or summary.get("status", "failed"), str(cell_dir), error=error, **metrics)


def run_cell(spec: Spec, name: str, values: dict[str, Any], cell_dir: Path, progress: bool | None) -> CellResult:
    """Run (or skip, resume, restart) one cell; divergence and pcc errors are recorded, not raised."""
    from pcc.errors import DivergenceError
    from pcc.run.runner import train

    _check_same_spec(cell_dir, spec)
    done = _summary(cell_dir)
    if done and done.get("status") in ("completed", "diverged"):
        return _result(name, values, cell_dir)
    try:
        if _has_checkpoint(cell_dir):
            train(spec, resume=cell_dir, progress=progress)
        else:
            if cell_dir.is_dir() and {p.name for p in cell_dir.iterdir()} <= RUN_FILES:  # a run killed early
                shutil.rmtree(cell_dir)
            train(spec, out=cell_dir, progress=progress)
    except DivergenceError as e:
        return _result(name, values, cell_dir, "diverged", str(e))
    except PccError as e:
        return _result(name, values, cell_dir, "failed", str(e))
    return _result(name, values, cell_dir)


# ----------------------------------------------------------------------------------------- the sweep
def sweep(
    spec_path: str | Path,
    grid: Grid,
    *,
    out_dir: str | Path,
    overrides: Sequence[str] = (),
    metric: str = "best_test_accuracy",
    progress: bool | None = None,
    on_cell: Callable[[int, int, CellResult], Any] | None = None,
) -> SweepResult:
    """Train every cell of ``grid`` ({dotted spec path: values}) on the spec at ``spec_path`` (with
    ``overrides`` applied first) into ``out_dir/<cell>/``, sequentially; write the result tables after each
    cell and the heatmaps at the end. Every cell's spec is validated before the first one trains.

    ``metric`` ranks the cells and colours the heatmaps (one of :data:`METRICS`); ``progress`` is passed to
    :func:`pcc.train`; ``on_cell(i, n, result)`` is called after each cell.
    """
    from pcc.spec.loader import load_spec

    if metric not in METRICS:
        raise PccError(f"unknown sweep metric {metric!r}; use one of: {', '.join(METRICS)}")
    cells = grid_cells(grid)
    names = [cell_name(c) for c in cells]
    if len(set(names)) != len(names):
        raise PccError("two grid cells get the same folder name: give each axis distinct values")
    specs = [load_spec(spec_path, [*overrides, *(f"{p}={_text(v)}" for p, v in c.items())]) for c in cells]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    axes, results, interrupted = tuple(grid), [], False
    for i, (spec, name, values) in enumerate(zip(specs, names, cells)):
        result = run_cell(spec, name, values, out / name, progress)
        results.append(result)
        write_tables(out, axes, metric, results)
        if on_cell:
            on_cell(i, len(cells), result)
        if result.status == "interrupted":
            interrupted = True
            break
    files = [out / RESULTS_CSV, out / RESULTS_JSON, *plot_heatmaps(results, axes, metric, out)]
    return SweepResult(str(out), axes, metric, tuple(results), best_cell(results, metric),
                       tuple(str(f) for f in files), interrupted)


def best_cell(cells: Sequence[CellResult], metric: str) -> CellResult | None:
    """The cell with the best finite ``metric`` (the first on ties), or None."""
    scored = [c for c in cells if math.isfinite(c.metric(metric))]
    return METRICS[metric](scored, key=lambda c: c.metric(metric), default=None)


def best_by(cells: Sequence[CellResult], axis: str, metric: str) -> dict[Any, CellResult | None]:
    """The best cell for each value of ``axis`` (None where every cell of that value diverged or failed)."""
    return {v: best_cell([c for c in cells if c.values[axis] == v], metric) for v in _axis_values(cells, axis)}


def write_tables(out: Path, axes: Sequence[str], metric: str, cells: Sequence[CellResult]) -> None:
    """``results.csv`` (lists and dicts as JSON, None empty) and ``results.json`` (with the best cell)."""
    rows = [c.row() for c in cells]
    columns = ["cell", *axes, *(f.name for f in fields(CellResult) if f.name not in ("name", "values"))]
    with open(out / RESULTS_CSV, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _text(v) if isinstance(v, (list, dict)) else "" if v is None else v
                             for k, v in row.items()})
    best = best_cell(cells, metric)
    summary = {"axes": list(axes), "metric": metric, "best": best and best.name, "cells": rows}
    if len(axes) >= 3:
        summary["best_by"] = {_text(v): c and c.name for v, c in best_by(cells, axes[0], metric).items()}
    (out / RESULTS_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- plots
def plot_heatmaps(cells: Sequence[CellResult], axes: Sequence[str], metric: str, out: Path) -> list[Path]:
    """One heatmap of ``metric`` per pair of swept axes (a single row for a one-axis sweep); over the other
    axes each square shows the best value. Diverged squares are hatched, the best cell is starred. With three
    or more axes, also :func:`plot_transfer` over the first."""
    from pcc.figures import pyplot, save

    plt = pyplot()
    pairs = list(itertools.combinations(axes, 2)) or [(axes[0], None)]
    short, best = short_names(axes), best_cell(cells, metric)
    paths = []
    for a, b in pairs:
        rows, cols = _axis_values(cells, a), _axis_values(cells, b) if b else [None]
        fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 3, 0.8 * len(rows) + 2))
        _heatmap(fig, ax, cells, metric, a, b, best, short)
        ax.set_title(f"{metric} (★ best)")
        paths.append(save(fig, out / _safe(f"heatmap-{short[a]}-{short[b]}.png" if b else
                                             f"heatmap-{short[a]}.png")))
    if len(axes) >= 3:
        paths.append(plot_transfer(cells, axes, metric, out))
    return paths


def plot_transfer(cells: Sequence[CellResult], axes: Sequence[str], metric: str, out: Path) -> Path:
    """``transfer-<first axis>.png``: one heatmap of the second × third axis per value of the first (the best
    over any further axes), each panel's own best cell starred: hyperparameter transfer across the first axis
    holds when the star stays in the same square."""
    from pcc.figures import pyplot, save

    plt = pyplot()
    facet, a, b = axes[:3]
    short, groups = short_names(axes), best_by(cells, facet, metric)
    rows, cols = _axis_values(cells, a), _axis_values(cells, b)
    fig, panels = plt.subplots(1, len(groups), squeeze=False,
                               figsize=(len(groups) * (1.2 * len(cols) + 2.5), 0.8 * len(rows) + 2))
    for ax, (value, best) in zip(panels[0], groups.items()):
        members = [c for c in cells if c.values[facet] == value]
        _heatmap(fig, ax, members, metric, a, b, best, short)
        ax.set_title(f"{short[facet]} = {_label(value)}")
    fig.suptitle(f"{metric}; ★ best of each panel")
    return save(fig, out / _safe(f"transfer-{short[facet]}.png"))


def _heatmap(fig, ax, cells: Sequence[CellResult], metric: str, a: str, b: str | None, best: CellResult | None,
             short: Mapping[str, str]) -> None:
    """Draw ``metric`` over axes ``a`` (rows) × ``b`` (columns) of ``cells`` on ``ax``, ``best`` starred."""
    import matplotlib

    rows, cols = _axis_values(cells, a), _axis_values(cells, b) if b else [None]
    grid, diverged = _project(cells, metric, a, rows, b, cols)
    cmap = matplotlib.colormaps["viridis" if METRICS[metric] is max else "viridis_r"].with_extremes(bad="lightgrey")
    image = ax.imshow(grid, cmap=cmap, aspect="auto")
    fig.colorbar(image, ax=ax, label=metric.replace("_", " "))
    for (r, c), value in _cells_of(grid):
        if diverged[r][c]:
            ax.add_patch(matplotlib.patches.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="xx",
                                                      edgecolor="firebrick", lw=0))
            ax.text(c, r, "diverged", ha="center", va="center", fontsize="small", color="firebrick")
        elif math.isfinite(value):
            ax.text(c, r, f"{value:.3g}", ha="center", va="center", fontsize="small", color="w")
    if best is not None:
        ax.plot((cols.index(best.values[b]) if b else 0) + 0.35, rows.index(best.values[a]) - 0.3, marker="*",
                ms=16, mec="k", mfc="gold")
    ax.set_yticks(range(len(rows)), [_label(v) for v in rows])
    ax.set_xticks(range(len(cols)), [_label(v) for v in cols] if b else [""])
    ax.set(ylabel=short[a], xlabel=short[b] if b else "")


def _axis_values(cells: Sequence[CellResult], axis: str) -> list[Any]:
    """The axis's values in grid order (first appearance)."""
    seen: list[Any] = []
    for c in cells:
        if c.values[axis] not in seen:
            seen.append(c.values[axis])
    return seen


def _project(cells, metric, a, rows, b, cols) -> tuple[list[list[float]], list[list[bool]]]:
    """(best metric over the other axes, all-diverged) per (row, col) square."""
    better = METRICS[metric]
    grid = [[math.nan] * len(cols) for _ in rows]
    diverged = [[False] * len(cols) for _ in rows]
    for r, rv in enumerate(rows):
        for c, cv in enumerate(cols):
            members = [x for x in cells if x.values[a] == rv and (b is None or x.values[b] == cv)]
            finite = [x.metric(metric) for x in members if math.isfinite(x.metric(metric))]
            grid[r][c] = better(finite) if finite else math.nan
            diverged[r][c] = bool(members) and all(x.status == "diverged" for x in members)
    return grid, diverged


def _cells_of(grid: list[list[float]]):
    return (((r, c), v) for r, row in enumerate(grid) for c, v in enumerate(row))

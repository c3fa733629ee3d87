"""Curves of one or more runs in one PNG: train loss and test metric against the step, the per-layer
energies of the last logged step, and (when a run logged ``run.alignment_every`` rows) the per-layer PC-vs-BP
gradient cosine against the step. Several runs are overlaid, each labelled by its folder name (alignment:
colour = layer depth, line style = run)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pcc.errors import PccError
from pcc.run.metrics import Row, read_rows


def _series(rows: list[Row], kind: str, key: str) -> tuple[list[int], list[float]]:
    picked = [r for r in rows if r["kind"] == kind and r.get(key) is not None]
    return [r["step"] for r in picked], [r[key] for r in picked]


def _final_energies(rows: list[Row]) -> dict[str, float]:
    train = [r for r in rows if r["kind"] == "train"]
    return {k.split("/", 1)[1]: v for k, v in train[-1].items() if k.startswith("energy/")} if train else {}


def _alignment_curves(rows: list[Row]) -> dict[str, tuple[list[int], list[float]]]:
    """layer → (steps, cosines) of the alignment rows (layers in logged order)."""
    aligned = [r for r in rows if r["kind"] == "alignment"]
    layers = [k.split("/", 1)[1] for k in aligned[0] if k.startswith("align_cos/")] if aligned else []
    return {l: _series(aligned, "alignment", f"align_cos/{l}") for l in layers}


def plot_runs(run_dirs: Sequence[str | Path], out_png: str | Path) -> Path:
    """Write the curves of ``run_dirs`` to ``out_png`` (matplotlib, Agg backend); returns its path."""
    if not run_dirs:
        raise PccError("plot needs at least one run folder")
    from pcc.figures import pyplot, save

    plt = pyplot()

    runs = {Path(d).name or str(d): read_rows(d) for d in run_dirs}
    classify = any(r.get("accuracy") is not None for rows in runs.values() for r in rows)
    aligned = {label: _alignment_curves(rows) for label, rows in runs.items()}
    panels = 4 if any(aligned.values()) else 3
    fig, axes = plt.subplots(1, panels, figsize=(16 * panels / 3, 4.5))
    loss_ax, test_ax, energy_ax = axes[:3]
    layers: list[str] = []
    for label, rows in runs.items():
        loss_ax.plot(*_series(rows, "train", "loss"), label=label)
        test_ax.plot(*_series(rows, "eval", "accuracy" if classify else "loss"), marker="o", label=label)
        energies = _final_energies(rows)
        energy_ax.plot(range(len(energies)), list(energies.values()), marker="o", label=label)
        layers = max(layers, list(energies), key=len)
    loss_ax.set(title="train loss", xlabel="step", ylabel="loss")
    test_ax.set(title="test accuracy" if classify else "test loss", xlabel="step",
                ylabel="accuracy" if classify else "loss")
    energy_ax.set(title="per-layer energy (last logged step)", xlabel="layer", ylabel="energy")
    energy_ax.set_xticks(range(len(layers)), layers, rotation=45 if len(layers) > 8 else 0)
    for ax in (loss_ax, energy_ax):
        values = [v for line in ax.get_lines() for v in line.get_ydata()]
        if values and all(v > 0 for v in values):
            ax.set_yscale("log")
    for ax in (loss_ax, test_ax, energy_ax):
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small")
    if panels == 4:
        align_ax, styles = axes[3], ("-", "--", ":", "-.")
        for i, (label, curves) in enumerate(aligned.items()):
            colors = plt.cm.viridis([k / max(len(curves) - 1, 1) for k in range(len(curves))])
            for (layer, (steps, cos)), color in zip(curves.items(), colors):
                align_ax.plot(steps, cos, color=color, ls=styles[i % len(styles)], label=f"{label}: {layer}")
        align_ax.set(title="cos(g_PC, g_BP) per layer (colour = depth)", xlabel="step", ylabel="cosine",
                     ylim=(-1.05, 1.05))
        align_ax.grid(alpha=0.3)
        if len(align_ax.get_lines()) <= 12:
            align_ax.legend(fontsize="x-small")
    return save(fig, out_png)

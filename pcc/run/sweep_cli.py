"""The ``pcc sweep`` and ``pcc diagnose`` commands.

``sweep_cmd`` and ``diagnose_cmd`` do the work and the printing; :func:`register` wires them into the typer
app (``register(command)`` with :func:`pcc.cli.command`, as :mod:`pcc.run.cli_commands` does). This module
imports no jax: the commands import it when they run.
"""

# No `from __future__ import annotations`: typer reads the annotations of the commands defined inside
# register(), which name SetOpt from register's own scope.
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from pcc.errors import CheckpointError, PccError
from pcc.run.cli_commands import INTERRUPTED_EXIT, _echo_json

HESSIAN_METHODS = ("auto", "analytic", "autodiff", "none")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _console():
    """A rich console, 120 columns wide when not on a terminal (rich would take 80)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


# ---------------------------------------------------------------------------------------------- sweep
def sweep_cmd(spec: Path, grid: list[str], out: Path | None, set_: list[str] | None, metric: str,
              json_: bool) -> None:
    """Train the grid of SPEC overrides into OUT (default ``run.out_dir/<name>-sweep``), print a line per
    cell on stderr and the results (a table, or one JSON object with ``--json``)."""
    from pcc.run.sweep import parse_grid_option, sweep
    from pcc.spec.loader import load_spec

    axes = [parse_grid_option(g) for g in grid]
    if not axes:
        raise PccError("give at least one --grid dotted.path=v1,v2,...")
    if len({path for path, _ in axes}) != len(axes):
        raise PccError("each --grid path may be given once")
    overrides = set_ or []
    if out is None:
        base = load_spec(spec, overrides)
        out = Path(base.run.out_dir) / f"{base.name}-sweep"

    def report(i: int, n: int, cell: Any) -> None:
        typer.echo(f"[{i + 1}/{n}] {cell.name}: {cell.status}  {metric} {_fmt(getattr(cell, metric))}", err=True)

    result = sweep(spec, dict(axes), out_dir=out, overrides=overrides, metric=metric, on_cell=report)
    if json_:
        _echo_json(result.to_dict())
    else:
        _sweep_table(result)
    if result.interrupted:
        typer.echo(f"sweep interrupted; continue it with the same command (--out {result.out_dir})", err=True)
        raise typer.Exit(INTERRUPTED_EXIT)


def _sweep_table(result: Any) -> None:
    from rich.table import Table

    best = result.best.name if result.best else None
    table = Table(title=f"sweep {result.out_dir} (best by {result.metric}: {best or '-'})")
    for column in ("cell", "status", result.metric, "final acc", "test loss", "train loss", "wall s"):
        table.add_column(column)
    for c in result.cells:
        table.add_row(c.name, c.status, _fmt(getattr(c, result.metric)), _fmt(c.final_test_accuracy),
                      _fmt(c.final_test_loss), _fmt(c.final_train_loss), _fmt(c.wall_time),
                      style="bold green" if c.name == best else "red" if c.status != "completed" else None)
    console = _console()
    console.print(table)
    if len(result.axes) >= 3:
        from pcc.run.sweep import best_by, short_names

        facet = result.axes[0]
        for value, cell in best_by(result.cells, facet, result.metric).items():
            console.print(f"best at {short_names(result.axes)[facet]} = {value}: {cell.name if cell else '-'}")
    console.print("\n".join(result.files[2:]))


# ------------------------------------------------------------------------------------------- diagnose
def restore_state(run_dir: Path, model: Any) -> Any:
    """The TrainState of ``run_dir``'s latest checkpoint, shaped for ``model``."""
    import jax

    from pcc.run.checkpoint import Checkpoints

    if not (run_dir / "checkpoints").is_dir():
        raise CheckpointError(f"{run_dir}: no checkpoints folder; give a run folder written by `pcc train`")
    ckpts = Checkpoints(run_dir)
    try:
        step = ckpts.latest()
        if step is None:
            raise CheckpointError(f"{run_dir}: no complete checkpoint")
        state, _ = ckpts.restore(step, jax.eval_shape(model.init))
    finally:
        ckpts.close()
    return state


def diagnose_cmd(spec: Path | None, checkpoint: Path | None, batch: int, json_: bool, out: Path | None,
                 set_: list[str] | None, tol: float, max_steps: int | None, hessian: str, samples: int) -> None:
    """Diagnose SPEC's network (fresh weights, or RUN_DIR's latest checkpoint) on the first BATCH test samples."""
    from pcc.compiler import compile as compile_spec
    from pcc.data import load_dataset, num_batches
    from pcc.run.runner import load_run_spec
    from pcc.spec.loader import load_spec
    from pcc.theory.diagnose import diagnose, plot_diagnosis

    if spec is None and checkpoint is None:
        raise PccError("give a SPEC file, or --checkpoint RUN_DIR to diagnose a trained run")
    if hessian not in HESSIAN_METHODS:
        raise PccError(f"--hessian must be one of {', '.join(HESSIAN_METHODS)}, got {hessian!r}")
    overrides = set_ or ()
    loaded = load_spec(spec, overrides) if spec is not None else load_run_spec(checkpoint, overrides)
    data = load_dataset(loaded.data, loaded.seed)
    model = compile_spec(loaded, shapes=(data.input_dim, data.output_dim),
                         steps_per_epoch=max(num_batches(len(data.x_train), loaded.data.batch_size), 1))
    state = restore_state(checkpoint, model) if checkpoint is not None else model.init()
    diag = diagnose(model, state, data.x_test[:batch], data.y_test[:batch], tol=tol, max_steps=max_steps,
                    hessian=hessian, hessian_samples=samples)
    report = diag.to_dict()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "diagnosis.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        plot_diagnosis(diag, out / "diagnosis.png")
    if json_:
        _echo_json(report)
        return
    _diagnosis_tables(loaded.name, diag)
    if out is not None:
        typer.echo(f"wrote {out / 'diagnosis.json'} and {out / 'diagnosis.png'}")


def _diagnosis_tables(name: str, diag: Any) -> None:
    from rich.table import Table

    spectrum, linear, traj = diag.spectrum, diag.linear, diag.trajectory
    overview = {
        "batch": diag.batch, "free units per sample": diag.free_units, "inference steps": diag.inference_steps,
        **({} if traj is None else {f"steps to ‖∇_z F‖_rms < {traj.tol:g}": traj.steps_to_tol
                                    if traj.steps_to_tol is not None else f"not within {len(traj.residuals) - 1}"}),
        "κ(H_z)": None if spectrum is None else f"{spectrum.condition_number:.4g} ({spectrum.method})",
        "cos(g_PC, g_BP)": diag.cosine, "‖g_PC‖ / ‖g_BP‖": diag.norm_ratio,
        **({} if linear is None else {"F* closed form": linear.energy_closed_form,
                                      "F after inference": linear.energy_numerical,
                                      "‖S − I‖₂": linear.s_minus_identity, "max |z − z*|": linear.z_max_abs_diff}),
        **{f"note {i + 1}": note for i, note in enumerate(diag.notes)},
    }
    console = _console()
    summary = Table(title=f"{name}: diagnosis", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    for key, value in overview.items():
        if value is not None:
            summary.add_row(key, _fmt(value))
    console.print(summary)
    table = Table(title="per layer")
    columns = {"layer": "label", "energy": "energy", "fwd rms": "forward_rms", "inferred rms": "inferred_rms",
               "‖θ‖": "weight_norm", "‖g_PC‖": "pc_grad_norm", "‖g_BP‖": "bp_grad_norm", "cos": "cosine",
               "ratio": "norm_ratio"}
    for column in columns:
        table.add_column(column, justify="left" if column == "layer" else "right")
    for layer in diag.layers:
        table.add_row(*(_fmt(getattr(layer, attr)) for attr in columns.values()))
    console.print(table)


# ------------------------------------------------------------------------------------------ wiring
SpecPath = Annotated[Path, typer.Argument(metavar="SPEC", help="The spec file (YAML).", dir_okay=False,
                                          show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]


def register(command: Callable[..., Callable]) -> None:
    """Add sweep and diagnose to the app through ``command`` (``pcc.cli.command``)."""
    from pcc.cli import SetOpt

    @command("sweep")
    def sweep(
        spec: SpecPath,
        grid: Annotated[list[str], typer.Option("--grid", "-g", metavar="PATH=V1,V2,...", show_default=False,
                                                help="A swept spec value and its values, read as YAML "
                                                     "(repeatable: the grid is their product).")],
        out: Annotated[Path | None, typer.Option("--out", "-o", file_okay=False,
                                                    help="Sweep folder (default: run.out_dir/<name>-sweep); "
                                                         "rerun into it to continue.")] = None,
        set_: SetOpt = None,
        metric: Annotated[str, typer.Option("--metric", help="Ranks the cells and colours the heatmaps: "
                                            "best_test_accuracy, final_test_accuracy, best_test_loss, "
                                            "final_test_loss or final_train_loss.")] = "best_test_accuracy",
        json_: JsonOpt = False,
    ) -> None:
        """Train a grid of spec overrides, one run folder per cell (resumable); write results.csv/json and
        heatmaps."""
        sweep_cmd(spec, grid, out, set_, metric, json_)

    @command("diagnose")
    def diagnose(
        spec: Annotated[Path | None, typer.Argument(metavar="SPEC", help="The spec file (YAML); with "
                                                       "--checkpoint, defaults to the run's spec.yaml.",
                                                       dir_okay=False, show_default=False)] = None,
        checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", metavar="RUN_DIR", file_okay=False,
                                                           help="Diagnose this run's latest checkpoint "
                                                                "(default: fresh weights).")] = None,
        batch: Annotated[int, typer.Option("--batch", "-b", min=1, help="Test samples to diagnose on.")] = 64,
        json_: JsonOpt = False,
        out: Annotated[Path | None, typer.Option("--out", "-o", file_okay=False,
                                                    help="Write diagnosis.json and diagnosis.png here.")] = None,
        set_: SetOpt = None,
        tol: Annotated[float, typer.Option("--tol", min=0, help="Residual for the steps-to-tolerance count.")] = 1e-3,
        max_steps: Annotated[int | None, typer.Option("--max-steps", min=0, help="Length of the inference "
                                                         "trajectory (default: inference.steps).")] = None,
        hessian: Annotated[str, typer.Option("--hessian", help="Activity-Hessian spectrum: auto, analytic, "
                                             "autodiff or none.")] = "auto",
        samples: Annotated[int, typer.Option("--hessian-samples", min=1, help="Samples the autodiff spectrum "
                                             "averages over.")] = 1,
    ) -> None:
        """Diagnose a network on a test batch: H_z spectrum and κ, inference trajectory, per-layer norms and
        the PC-vs-BP gradient cosine."""
        diagnose_cmd(spec, checkpoint, batch, json_, out, set_, tol, max_steps, hessian, samples)

"""The runner's CLI commands: ``pcc train``, ``pcc eval`` and ``pcc plot``.

``train_cmd``, ``eval_cmd`` and ``plot_cmd`` do the work and the printing; :func:`register` wires them into
the typer app with their arguments (``register(command)`` with :func:`pcc.cli.command`, which turns a
:class:`~pcc.errors.PccError` into exit status 2). This module imports no jax: the commands import the
runner when they run.
"""

# No `from __future__ import annotations`: typer reads the annotations of the commands defined inside
# register(), which name SetOpt from register's own scope.
import json
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from pcc.errors import PccError

INTERRUPTED_EXIT = 130


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj))


def _table(title: str, values: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in values.items():
        if value is not None:
            table.add_row(key.replace("_", " "), f"{value:.4g}" if isinstance(value, float) else str(value))
    Console().print(table)


def train_cmd(spec: Path | None, set_: list[str] | None, out: Path | None, resume: Path | None, json_: bool,
              processes: tuple[str | None, int | None, int | None] = (None, None, None)) -> None:
    """Train SPEC into a new run folder, or continue RUN_DIR (``--resume``; SPEC defaults to its spec.yaml).

    ``processes`` = (coordinator, number of processes, this process's id) joins a multi-process run first
    (:func:`pcc.parallel.initialize`). Prints the summary (a table, or one JSON object with ``--json``); after
    Ctrl-C prints how to resume and exits with status 130.
    """
    if spec is None and resume is None:
        raise PccError("give a SPEC file, or --resume RUN_DIR to continue a run")
    if any(v is not None for v in processes):
        if any(v is None for v in processes):
            raise PccError("a multi-process run needs all three of --coordinator HOST:PORT, --num-processes N "
                           "and --process-id I")
        coordinator, count, index = processes
        if not 0 <= index < count:
            raise PccError(f"--process-id must be in 0 … {count - 1} for --num-processes {count}, got {index}")
        from pcc.parallel import initialize

        initialize(coordinator, count, index)
    from pcc.run.runner import load_run_spec, train
    from pcc.spec.loader import load_spec

    overrides = set_ or ()
    loaded = load_spec(spec, overrides=overrides) if spec is not None else load_run_spec(resume, overrides)
    summary = train(loaded, out=out, resume=resume)
    if json_:
        _echo_json(summary.to_dict())
    else:
        _table(f"{summary.name}: {summary.status}", summary.to_dict())
    if summary.status == "interrupted":
        typer.echo(f"interrupted at step {summary.steps} (checkpoint {summary.checkpoint}); "
                   f"resume with: pcc train --resume {summary.run_dir}", err=True)
        raise typer.Exit(INTERRUPTED_EXIT)


def eval_cmd(run_dir: Path, which: str, json_: bool) -> None:
    """Evaluate RUN_DIR's best (or last) checkpoint on its test split."""
    from pcc.run.runner import evaluate_run

    result = evaluate_run(run_dir, which)  # type: ignore[arg-type]
    if json_:
        _echo_json(result)
    else:
        _table(f"{run_dir}: {result['which']} checkpoint (step {result['step']})", result)


def plot_cmd(run_dirs: list[Path], out: Path | None) -> None:
    """Plot the curves of one or more runs to a PNG (default: RUN_DIR/curves.png for one run, else
    ./curves.png) and print its path."""
    from pcc.run.plot import plot_runs

    if not run_dirs:
        raise PccError("give at least one run folder")
    default = run_dirs[0] / "curves.png" if len(run_dirs) == 1 else Path("curves.png")
    typer.echo(str(plot_runs(run_dirs, out or default)))


# ------------------------------------------------------------------------------------------ wiring


RunDirArg = Annotated[Path, typer.Argument(help="A run folder written by `pcc train`.", file_okay=False,
                                           show_default=False)]


def register(command: Callable[..., Callable]) -> None:
    """Add train, eval and plot to the app through ``command`` (``pcc.cli.command``)."""
    from pcc.cli import SetOpt

    @command("train")
    def train(
        spec: Annotated[Optional[Path], typer.Argument(help="The spec file (YAML); with --resume, defaults to the "
                                                       "run's spec.yaml.", dir_okay=False, show_default=False)] = None,
        set_: SetOpt = None,
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default: "
                                                    "run.out_dir/<name>-<timestamp>).", file_okay=False)] = None,
        resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue this run folder from its latest "
                                                       "checkpoint.", file_okay=False)] = None,
        json_: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
        coordinator: Annotated[Optional[str], typer.Option(
            "--coordinator", metavar="HOST:PORT", help="Multi-process run: process 0's address; start one "
            "process per host (or device group), each with the same SPEC, --out and --num-processes.",
            rich_help_panel="Multi-process")] = None,
        num_processes: Annotated[Optional[int], typer.Option(
            "--num-processes", min=1, help="Multi-process run: how many processes.",
            rich_help_panel="Multi-process")] = None,
        process_id: Annotated[Optional[int], typer.Option(
            "--process-id", min=0, help="Multi-process run: this process's index (0 writes the run folder).",
            rich_help_panel="Multi-process")] = None,
    ) -> None:
        """Train a spec: write a run folder with metrics, checkpoints and a summary."""
        train_cmd(spec, set_, out, resume, json_, (coordinator, num_processes, process_id))

    @command("eval")
    def eval_(
        run_dir: RunDirArg,
        which: Annotated[str, typer.Option("--which", help="Checkpoint: best or last.")] = "best",
        json_: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
    ) -> None:
        """Evaluate a run's checkpoint on its test split."""
        eval_cmd(run_dir, which, json_)

    @command("plot")
    def plot(
        run_dirs: Annotated[list[Path], typer.Argument(help="Run folders to overlay.", file_okay=False,
                                                       show_default=False)],
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The PNG to write.", dir_okay=False)] = None,
    ) -> None:
        """Plot train loss, test metric and per-layer energies of one or more runs."""
        plot_cmd(run_dirs, out)

"""pcc.run.sweep and the sweep/diagnose commands: grid parsing, cell folders, divergence, resume, tables, plots."""

from __future__ import annotations

import csv
import functools
import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pcc.errors import PccError, SpecError
from pcc.run.sweep import (
    CellResult,
    best_by,
    best_cell,
    cell_name,
    grid_cells,
    parse_grid_option,
    plot_heatmaps,
    short_names,
    sweep,
    write_tables,
)
from pcc.run.sweep_cli import register

SPEC = """\
name: tiny
data:
  dataset: synthetic
  batch_size: 32
  synthetic: {kind: gaussian_classes, n_train: 128, n_test: 64, input_dim: 8, output_dim: 3}
model:
  activation: identity
  layers:
    - dense: {width: 16}
    - dense: {}
inference: {steps: 3}
learning:
  optimizer: {name: sgd, lr: 0.01}
run: {log_every: 1, progress: false}
"""
GRID = {"learning.optimizer.lr": [0.05, 1.0e8], "inference.steps": [2, 3]}  # lr 1e8 diverges


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def swept(spec_file, tmp_path_factory):
    seen = []
    result = sweep(spec_file, GRID, out_dir=tmp_path_factory.mktemp("sweep") / "out",
                   on_cell=lambda i, n, c: seen.append((i, n, c.status)))
    return result, seen


# ------------------------------------------------------------------------------------------- the grid
@pytest.mark.parametrize("text, path, values", [
    ("learning.optimizer.lr=0.1,1e-3", "learning.optimizer.lr", [0.1, 0.001]),
    ("model.activation=relu, tanh", "model.activation", ["relu", "tanh"]),
    ("run.progress=true,false", "run.progress", [True, False]),
    ("inference.steps=8", "inference.steps", [8]),
    ("x.widths=[64,64],[32]", "x.widths", [[64, 64], [32]]),
])
def test_grid_values_are_yaml_scalars(text, path, values):
    assert parse_grid_option(text) == (path, values)


@pytest.mark.parametrize("text", ["learning.optimizer.lr", "=0.1", "a.b=", "a.b=1,,2", "a.b=[1"])
def test_bad_grid_options(text):
    with pytest.raises(PccError, match="--grid"):
        parse_grid_option(text)


def test_cell_names_are_short_unique_and_filesystem_safe():
    assert short_names(["learning.optimizer.lr", "inference.optimizer.lr", "inference.steps"]) == {
        "learning.optimizer.lr": "learning.optimizer.lr", "inference.optimizer.lr": "inference.optimizer.lr",
        "inference.steps": "steps"}
    cells = grid_cells({"learning.optimizer.lr": [0.05, 1e-5, 1e8], "model.activation": ["relu", "a/b c"]})
    names = [cell_name(c) for c in cells]
    assert names[0] == "lr=0.05__activation=relu" and names[3] == "lr=1e-05__activation=a_b_c"
    assert "lr=1e+08__activation=relu" in names and len(set(names)) == 6


# -------------------------------------------------------------------------------------------- a sweep
def test_sweep_runs_every_cell_and_records_divergence(swept):
    result, seen = swept
    out = Path(result.out_dir)
    assert seen == [(0, 4, "completed"), (1, 4, "completed"), (2, 4, "diverged"), (3, 4, "diverged")]
    assert [c.name for c in result.cells] == ["lr=0.05__steps=2", "lr=0.05__steps=3", "lr=1e+08__steps=2",
                                              "lr=1e+08__steps=3"]
    assert all((out / c.name / "summary.json").is_file() for c in result.cells)
    good = result.cells[:2]
    assert all(c.best_test_accuracy is not None and c.wall_time > 0 and c.steps == 4 for c in good)
    assert all(c.best_test_accuracy is None and "diverged" in c.error for c in result.cells[2:])
    assert result.best is best_cell(result.cells, "best_test_accuracy") and result.best in good
    assert not result.interrupted

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["completed", "completed", "diverged", "diverged"]
    assert rows[2]["learning.optimizer.lr"] == "100000000.0" and rows[2]["best_test_accuracy"] == ""
    assert {"cell", "inference.steps", "final_test_accuracy", "final_test_loss", "final_train_loss",
            "wall_time"} <= set(rows[0])
    summary = json.loads((out / "results.json").read_text())
    assert summary["best"] == result.best.name and len(summary["cells"]) == 4
    assert [Path(f).name for f in result.files] == ["results.csv", "results.json", "heatmap-lr-steps.png"]
    assert (out / "heatmap-lr-steps.png").stat().st_size > 0


def test_rerun_skips_finished_cells_and_resumes_partial_ones(swept, spec_file, tmp_path):
    result, _ = swept
    out = tmp_path / "copy"
    shutil.copytree(result.out_dir, out)
    stamps = {c.name: (out / c.name / "summary.json").stat().st_mtime_ns for c in result.cells}
    first, second = result.cells[0].name, result.cells[1].name
    (out / first / "summary.json").unlink()  # killed after its last checkpoint: resumed
    shutil.rmtree(out / second / "checkpoints")  # killed before any checkpoint: restarted
    (out / second / "summary.json").unlink()

    again = sweep(spec_file, GRID, out_dir=out)
    for c in again.cells[2:]:  # finished (diverged) cells are read, not rerun
        assert (out / c.name / "summary.json").stat().st_mtime_ns == stamps[c.name] and c.status == "diverged"
    for old, new in zip(result.cells[:2], again.cells[:2]):  # deterministic: the same numbers
        assert new.status == "completed"
        assert (new.best_test_accuracy, new.final_test_loss, new.steps) == (
            old.best_test_accuracy, old.final_test_loss, old.steps)


def test_a_cell_folder_holding_other_files_is_never_deleted(spec_file, tmp_path):
    (tmp_path / "lr=0.05").mkdir()
    (tmp_path / "lr=0.05" / "notes.txt").write_text("mine")
    (cell,) = sweep(spec_file, {"learning.optimizer.lr": [0.05]}, out_dir=tmp_path).cells
    assert cell.status == "failed" and "not empty" in cell.error
    assert (tmp_path / "lr=0.05" / "notes.txt").read_text() == "mine"


def test_a_cell_written_by_another_spec_is_an_error(swept, spec_file):
    with pytest.raises(PccError, match="another spec"):
        sweep(spec_file, GRID, out_dir=swept[0].out_dir, overrides=["learning.epochs=2"])


def test_every_cell_spec_is_validated_before_training(spec_file, tmp_path):
    with pytest.raises(SpecError, match="lrr"):
        sweep(spec_file, {"learning.optimizer.lrr": [0.1]}, out_dir=tmp_path / "bad")
    with pytest.raises(PccError, match="unknown sweep metric"):
        sweep(spec_file, {"learning.optimizer.lr": [0.1]}, out_dir=tmp_path / "bad", metric="acc")
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------------------------- plots
def fake_cells(**axes):
    cells = []
    for i, values in enumerate(grid_cells(axes)):
        diverged = values.get("lr") == 1.0
        cells.append(CellResult(cell_name(values), values, "diverged" if diverged else "completed", "",
                                best_test_accuracy=None if diverged else 0.1 * i, final_test_loss=1.0 / (i + 1)))
    return cells


def test_heatmaps_for_every_pair_of_axes(tmp_path):
    cells = fake_cells(lr=[0.1, 1.0], eta=[0.5, 0.05], steps=[4, 8])
    paths = plot_heatmaps(cells, ["lr", "eta", "steps"], "best_test_accuracy", tmp_path)
    assert sorted(p.name for p in paths) == ["heatmap-eta-steps.png", "heatmap-lr-eta.png", "heatmap-lr-steps.png",
                                             "transfer-lr.png"]
    assert best_cell(cells, "best_test_accuracy").values == {"lr": 0.1, "eta": 0.05, "steps": 8}
    assert best_cell(cells, "final_test_loss").values == {"lr": 0.1, "eta": 0.05, "steps": 8}  # diverged have less
    (one,) = plot_heatmaps(fake_cells(lr=[0.1, 0.01]), ["lr"], "final_test_loss", tmp_path)
    assert one.name == "heatmap-lr.png" and one.stat().st_size > 0


def test_best_cell_per_value_of_the_first_axis(tmp_path):
    """Transfer: the best (eta, steps) for each lr; a value whose cells all diverged has none."""
    cells = fake_cells(lr=[0.1, 1.0, 0.01], eta=[0.5, 0.05], steps=[4, 8])
    best = best_by(cells, "lr", "best_test_accuracy")
    assert {lr: c and c.values for lr, c in best.items()} == {
        0.1: {"lr": 0.1, "eta": 0.05, "steps": 8}, 1.0: None, 0.01: {"lr": 0.01, "eta": 0.05, "steps": 8}}
    write_tables(tmp_path, ["lr", "eta", "steps"], "best_test_accuracy", cells)
    table = json.loads((tmp_path / "results.json").read_text())
    assert table["best_by"] == {"0.1": best[0.1].name, "1.0": None, "0.01": best[0.01].name}


# -------------------------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def cli():
    """The two commands in an app of their own (pcc.cli wires them into the real one)."""
    app = typer.Typer()

    def command(name):
        def add(fn):
            @functools.wraps(fn)
            def run(*a, **k):
                try:
                    return fn(*a, **k)
                except PccError as e:
                    typer.echo(str(e), err=True)
                    raise typer.Exit(2)

            app.command(name)(run)
            return fn

        return add

    register(command)
    return lambda *args: CliRunner().invoke(app, [str(a) for a in args])


def test_cli_sweep(cli, spec_file, tmp_path):
    out = cli("sweep", spec_file, "--grid", "learning.optimizer.lr=0.05,1e8", "--out", tmp_path / "s",
              "--set", "inference.steps=2", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert [c["status"] for c in result["cells"]] == ["completed", "diverged"]
    assert result["best"]["values"] == {"learning.optimizer.lr": 0.05} and "[2/2]" in out.stderr
    bad = cli("sweep", spec_file, "--grid", "learning.optimizer.lr")
    assert bad.exit_code == 2 and "dotted.path=v1,v2" in bad.stderr


def test_cli_diagnose(cli, spec_file, swept, tmp_path):
    out = cli("diagnose", spec_file, "--batch", 8, "--json", "--out", tmp_path / "d", "--max-steps", 5)
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["batch"] == 8 and report["spectrum"]["method"] == "analytic" and len(report["layers"]) == 2
    assert len(report["trajectory"]["residuals"]) == 6 and report["linear"] is not None
    assert (tmp_path / "d" / "diagnosis.png").is_file() and json.loads((tmp_path / "d" / "diagnosis.json").read_text())
    trained = Path(swept[0].out_dir) / swept[0].cells[0].name
    table = cli("diagnose", "--checkpoint", trained, "--batch", 4, "--hessian", "autodiff")
    assert table.exit_code == 0, table.output
    assert "autodiff" in table.stdout and "per layer" in table.stdout
    missing = cli("diagnose", "--checkpoint", tmp_path)
    assert missing.exit_code == 2 and "spec.yaml" in missing.stderr

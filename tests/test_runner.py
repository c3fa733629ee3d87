"""The runner: run folder files, exact resume, atomic checkpoints, divergence, corrupt checkpoints, eval, plots."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from pcc.errors import CheckpointError, DivergenceError, PccError
from pcc.run import evaluate_run, load_run_spec, plot_runs, read_rows, train
from pcc.run.checkpoint import Checkpoints
from pcc.run.runner import _setup
from pcc.spec.models import Spec

BASE = {
    "name": "t",
    "data": {"dataset": "synthetic", "batch_size": 32,
             "synthetic": {"kind": "gaussian_classes", "n_train": 256, "n_test": 64, "input_dim": 8, "output_dim": 3}},
    "model": {"layers": [{"dense": {"width": 16}}, {"dense": {}}]},
    "inference": {"steps": 5},
    "learning": {"epochs": 2, "optimizer": {"lr": 0.01}},
    "run": {"log_every": 3, "progress": False},
    "eval": {"every_steps": 5},
}
STEPS_PER_EPOCH, EPOCHS = 8, 2  # 256 // 32


def make_spec(**sections) -> Spec:
    data = json.loads(json.dumps(BASE))
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return Spec.model_validate(data)


def without_wall(rows):
    return [{k: v for k, v in r.items() if k != "wall"} for r in rows]


def saved_steps(run_dir) -> list[int]:
    ckpts = Checkpoints(run_dir)
    try:
        return ckpts.steps()
    finally:
        ckpts.close()


def latest_state(run_dir, spec: Spec):
    ckpts = Checkpoints(run_dir)
    try:
        return ckpts.restore(ckpts.latest(), jax.eval_shape(_setup(spec).model.init))
    finally:
        ckpts.close()


def assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 2-epoch run: (spec, summary)."""
    spec = make_spec()
    return spec, train(spec, out=tmp_path_factory.mktemp("runs") / "straight")


# ------------------------------------------------------------------------------------- run folder


def test_run_folder_files(straight):
    spec, summary = straight
    run = Path(summary.run_dir)
    assert {"spec.yaml", "env.json", "metrics.jsonl", "metrics.csv", "summary.json", "checkpoints"} <= set(os.listdir(run))
    assert load_run_spec(run).model_dump() == spec.model_dump()
    env = json.loads((run / "env.json").read_text())
    assert {"pcc", "jax", "jaxlib", "flax", "optax", "python", "platform", "devices"} <= set(env)

    rows = read_rows(run)
    total = STEPS_PER_EPOCH * EPOCHS
    train_steps = [r["step"] for r in rows if r["kind"] == "train"]
    eval_steps = [r["step"] for r in rows if r["kind"] == "eval"]
    assert train_steps == [*range(3, total + 1, 3), total]  # the log_every cadence and the last step
    assert eval_steps == [5, 8, 10, 15, 16]  # every_steps, every epoch, and the end (each step once)
    assert all({"energy/h1", "energy/output", "energy_init", "energy_final", "loss"} <= set(r)
               for r in rows if r["kind"] == "train")
    assert all("accuracy" in r for r in rows if r["kind"] == "eval")

    with open(run / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["kind"], int(r["step"])) for r in table] == [(r["kind"], r["step"]) for r in rows]
    assert {"energy/h1", "energy/output", "accuracy", "wall", "epoch"} <= set(table[0])

    saved = json.loads((run / "summary.json").read_text())
    assert saved == summary.to_dict()
    assert summary.status == "completed" and summary.steps == total and summary.epochs == EPOCHS
    last_eval = [r for r in rows if r["kind"] == "eval"][-1]
    assert summary.final_test_accuracy == last_eval["accuracy"] and summary.final_test_loss == last_eval["loss"]
    assert summary.best_test_accuracy == max(r["accuracy"] for r in rows if r["kind"] == "eval")
    assert summary.final_train_loss == [r for r in rows if r["kind"] == "train"][-1]["loss"]
    assert summary.compile_time > 0 and summary.wall_time > 0
    assert Path(summary.checkpoint).name == str(total)
    # kept: the last `keep` (2) checkpoints and the best
    assert {8, 16} <= set(saved_steps(run))


def test_regression_run_keeps_latest_and_best(tmp_path):
    spec = make_spec(data={"synthetic": {"kind": "linear", "n_train": 128, "n_test": 32, "input_dim": 4, "output_dim": 2}},
                     learning={"epochs": 3}, run={"keep": 1, "log_every": 2}, eval={"every_steps": None})
    summary = train(spec, out=tmp_path / "reg")
    assert summary.final_test_accuracy is None and summary.best_test_accuracy is None
    assert summary.best_test_loss == min(r["loss"] for r in read_rows(summary.run_dir) if r["kind"] == "eval")
    steps = saved_steps(summary.run_dir)
    latest, best = int(Path(summary.checkpoint).name), int(Path(summary.best_checkpoint).name)
    assert steps == sorted({latest, best}) and latest == 12  # 4 batches x 3 epochs; the others were deleted


def test_out_dir_not_empty_is_an_error(straight):
    with pytest.raises(PccError, match="--resume"):
        train(straight[0], out=straight[1].run_dir)


# ------------------------------------------------------------------------------------------ resume


def _interrupt_at(step, how):
    def callback(row):
        if row["kind"] == "train" and row["step"] == step:
            if how == "signal":
                signal.raise_signal(signal.SIGINT)  # like Ctrl-C: stop at the next batch boundary
            else:
                raise KeyboardInterrupt

    return callback


@pytest.mark.parametrize("how", ["signal", "exception"])
def test_resume_is_exact(straight, tmp_path, how):
    spec, done = straight
    run = tmp_path / "resumed"
    stopped = train(spec, out=run, callbacks=[_interrupt_at(12, how)])
    assert stopped.status == "interrupted" and stopped.steps == 12  # mid-epoch 2
    assert saved_steps(run)[-1] == 12

    resumed = train(load_run_spec(run), resume=run)
    assert resumed.status == "completed" and resumed.steps == done.steps
    assert without_wall(read_rows(run)) == without_wall(read_rows(done.run_dir))
    a, pos_a = latest_state(done.run_dir, spec)
    b, pos_b = latest_state(run, spec)
    assert_same_state(a, b)
    assert (pos_a.epoch, pos_a.batch, pos_a.step) == (pos_b.epoch, pos_b.batch, pos_b.step)
    same = ("final_train_loss", "final_test_loss", "final_test_accuracy", "best_test_accuracy", "best_step")
    assert {k: getattr(resumed, k) for k in same} == {k: getattr(done, k) for k in same}


def test_resume_without_checkpoint(tmp_path):
    (tmp_path / "spec.yaml").write_text("x: 1\n")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(make_spec(), resume=tmp_path)


# ------------------------------------------------------------------------------------------- faults

KILL_ON_SAVE = textwrap.dedent("""
    import json, os, signal, sys
    from orbax.checkpoint._src.path import atomicity
    from pcc.run import train
    from pcc.spec.models import Spec

    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def killed_before_commit(self, *args, **kwargs):
        if self._final_path.name == sys.argv[3]:  # the rename that would publish checkpoint <step>
            os.kill(os.getpid(), signal.SIGKILL)
        return await finalize(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = killed_before_commit
    train(Spec.model_validate(json.loads(sys.argv[1])), out=sys.argv[2])
""")


def test_checkpoint_failing_mid_save_keeps_previous(straight, tmp_path, monkeypatch):
    """A save that fails after writing its files but before publishing them leaves the last checkpoint whole."""
    from orbax.checkpoint._src.path import atomicity

    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def failing(self, *args, **kwargs):
        if self._final_path.name == "16":
            raise OSError("disk gone")
        return await finalize(self, *args, **kwargs)

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", failing)
    spec = straight[0]
    run = tmp_path / "failed"
    with pytest.raises(OSError, match="disk gone"):
        train(spec, out=run)
    assert saved_steps(run) == [8]
    _, position = latest_state(run, spec)
    assert position.step == 8 and position.epoch == 1 and position.batch == 0
    (run / "checkpoints" / "16").mkdir()  # even a bare folder with the next step's name is not a checkpoint...
    with pytest.raises(CheckpointError, match="checkpoints/16"):  # ...but it is reported, not a traceback
        latest_state(run, spec)


@pytest.mark.slow
def test_checkpoint_killed_mid_save_keeps_previous(straight, tmp_path):
    """A process SIGKILLed while writing its second checkpoint leaves the first one whole; resume is exact."""
    spec, done = straight
    run = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILL_ON_SAVE, spec.model_dump_json(by_alias=True), str(run), "16"],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert any(".orbax-checkpoint-tmp" in p for p in os.listdir(run / "checkpoints"))  # the half-written one
    assert saved_steps(run) == [8]

    resumed = train(load_run_spec(run), resume=run)
    assert resumed.status == "completed"
    assert not any("tmp" in p for p in os.listdir(run / "checkpoints"))
    assert without_wall(read_rows(run)) == without_wall(read_rows(done.run_dir))
    assert_same_state(latest_state(run, spec)[0], latest_state(done.run_dir, spec)[0])


def test_divergence_keeps_last_good_checkpoint(straight, tmp_path):
    spec, _ = straight
    run = tmp_path / "div"
    train(make_spec(learning={"epochs": 1}), out=run)
    good, _ = latest_state(run, spec)

    wild = load_run_spec(run, ["learning.epochs=2", "inference.step_size=1e6"])
    with pytest.raises(DivergenceError) as err:
        train(wild, resume=run)
    message = str(err.value)
    assert "diverged at step 9 " in message  # the first logged step after the resume
    assert "inference.step_size" in message and "learning.optimizer.lr" in message
    assert str(run / "checkpoints" / "8") in message
    assert saved_steps(run) == [8]
    assert_same_state(latest_state(run, spec)[0], good)
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"


def test_divergence_from_the_start(tmp_path):
    spec = make_spec(inference={"step_size": 1e6}, run={"log_every": 1}, eval={"every_steps": None})
    with pytest.raises(DivergenceError, match=r"diverged at step 1 .*No checkpoint"):
        train(spec, out=tmp_path / "div")
    assert saved_steps(tmp_path / "div") == []


def test_corrupt_checkpoint(straight, tmp_path):
    run = tmp_path / "corrupt"
    shutil.copytree(straight[1].run_dir, run)
    state_dir = run / "checkpoints" / "16" / "state"
    for path in state_dir.rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"checkpoints/16.*unreadable.*delete .*previous checkpoint \(step 8\)"):
        train(load_run_spec(run), resume=run)


def test_mismatched_spec(straight, tmp_path):
    run = tmp_path / "mismatch"
    shutil.copytree(straight[1].run_dir, run)
    before = {name: (run / name).read_bytes() for name in ("spec.yaml", "metrics.jsonl", "summary.json")}
    wider = load_run_spec(run, ["model.layers.0.dense.width=32"])
    with pytest.raises(CheckpointError, match=r"does not fit this model.*kernel.*\[8, 16\].*\[8, 32\]"):
        train(wider, resume=run)
    assert before == {name: (run / name).read_bytes() for name in before}  # the run folder is untouched


# -------------------------------------------------------------------------------------- eval, plot, cli


def test_evaluate_run(straight):
    _, summary = straight
    last = evaluate_run(summary.run_dir, "last")
    assert last["step"] == summary.steps and last["accuracy"] == pytest.approx(summary.final_test_accuracy)
    best = evaluate_run(summary.run_dir, "best")
    assert best["which"] == "best" and best["accuracy"] == pytest.approx(
        max(r["accuracy"] for r in read_rows(summary.run_dir) if r["kind"] == "eval" and r["step"] in (8, 16)))
    with pytest.raises(PccError):
        evaluate_run(summary.run_dir, "worst")


def test_plot_runs(straight, tmp_path):
    run = straight[1].run_dir
    png = plot_runs([run, run], tmp_path / "curves.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_commands(straight, tmp_path, capsys):
    from pcc.run.cli_commands import eval_cmd, plot_cmd, train_cmd

    spec_file = Path(straight[1].run_dir) / "spec.yaml"
    train_cmd(spec_file, ["learning.epochs=1"], tmp_path / "cli", None, True)
    out = capsys.readouterr().out
    summary = json.loads(out)  # one JSON object, nothing else on stdout
    assert summary["status"] == "completed" and summary["steps"] == STEPS_PER_EPOCH

    eval_cmd(tmp_path / "cli", "last", True)
    assert json.loads(capsys.readouterr().out)["step"] == STEPS_PER_EPOCH

    plot_cmd([tmp_path / "cli"], None)
    assert Path(capsys.readouterr().out.strip()) == tmp_path / "cli" / "curves.png"

    with pytest.raises(PccError, match="--resume"):
        train_cmd(None, None, None, None, False)

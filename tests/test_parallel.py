"""Data and model parallelism against the single-device run (8 forced host devices, in subprocesses)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "scripts" / "parallel_run.py"


def run(*args: str, devices: int = 8) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    out = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def single():
    result = run("1", "1")
    assert result["mesh"] is None
    return np.array(result["curve"])


@pytest.mark.parametrize("data,model", [("auto", 1), ("4", 2)])
def test_sharded_loss_curve_matches_single_device(single, data, model):
    result = run(data, str(model))
    assert result["mesh"] == {"data": 8 // model, "model": model} and result["placed_pass_through"]
    np.testing.assert_allclose(np.array(result["curve"]), single, rtol=1e-5, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_over_loopback(single):
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), "auto", "1", f"127.0.0.1:{port}", "2", str(i)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    for out, _ in outs:
        result = json.loads(out.strip().splitlines()[-1])
        assert result["mesh"] == {"data": 2, "model": 1}
        np.testing.assert_allclose(np.array(result["curve"]), single, rtol=1e-5, atol=1e-6)


def test_batch_must_divide_the_data_axis():
    from pcc.compiler import compile
    from pcc.errors import PccError
    from pcc.spec.models import Spec

    spec = Spec.model_validate({"data": {"batch_size": 30}, "model": {"layers": [{"dense": {}}]},
                                "parallel": {"data": 4}})
    with pytest.raises(PccError, match="devices"):
        compile(spec, shapes=(4, 2))


def _pcc_train(*args: str) -> subprocess.Popen:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    return subprocess.Popen([sys.executable, "-m", "pcc", "train", *args, "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])


def _two_process_group():
    """The flags of process i of a new two-process group (its coordinator on a free loopback port)."""
    port = _free_port()
    return lambda i: ("--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i))


def _summaries(procs: list[subprocess.Popen]) -> list[dict]:
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def test_pcc_train_over_two_processes_and_resume(tmp_path):
    """`pcc train --coordinator … --num-processes 2 --process-id i`: one run folder, written by process 0
    (checkpoints by orbax from process 0); one epoch, then `--resume` for a second, gives the numbers of a
    one-process run of two epochs."""
    run, spec = tmp_path / "two", ["specs/quickstart.yaml", "--set", "data.limit_train=512"]
    group = _two_process_group()
    procs = [_pcc_train(*spec, "--set", "learning.epochs=1", "--out", str(run), *group(i)) for i in range(2)]
    procs.append(_pcc_train(*spec, "--set", "learning.epochs=2", "--out", str(tmp_path / "one")))
    first0, first1, one = _summaries(procs)
    assert first0["run_dir"] == first1["run_dir"] == str(run) and first0["epochs"] == 1
    assert {p.name for p in run.iterdir()} >= {"spec.yaml", "env.json", "metrics.jsonl", "summary.json",
                                               "checkpoints", "process-1"}
    assert (run / "checkpoints" / str(first0["steps"])).is_dir() and first1["checkpoint"] == first0["checkpoint"]
    group = _two_process_group()
    two0, two1 = _summaries([_pcc_train("--resume", str(run), "--set", "learning.epochs=2", *group(i))
                             for i in range(2)])
    assert two0["steps"] == one["steps"] == 2 * first0["steps"]
    rows = lambda path: path.read_text().count("\n")
    assert rows(run / "process-1" / "metrics.jsonl") == rows(run / "metrics.jsonl") > 0
    for key in ("final_train_loss", "final_test_loss", "final_test_accuracy"):
        np.testing.assert_allclose(two0[key], one[key], rtol=1e-5)
        assert two1[key] == two0[key]


def test_pcc_train_processes_must_agree_on_the_spec(tmp_path):
    """A process started with another spec is an error on every process (none is left hanging)."""
    group = _two_process_group()
    procs = [_pcc_train("specs/quickstart.yaml", "--set", f"learning.optimizer.lr={lr}", "--out", str(tmp_path / "r"),
                        *group(i)) for i, lr in enumerate((1e-3, 2e-3))]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 2 and "the spec of process 1 differs from process 0's" in err, err[-2000:]


def test_pcc_train_processes_stop_together_on_a_used_folder(tmp_path):
    """Process 0 refuses a non-empty --out; the other process stops too instead of waiting for it."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("an earlier result")
    group = _two_process_group()
    procs = [_pcc_train("specs/quickstart.yaml", "--out", str(tmp_path / "r"), *group(i)) for i in range(2)]
    (_, err0), (_, err1) = (p.communicate(timeout=300) for p in procs)
    assert [p.returncode for p in procs] == [2, 2], err0[-2000:] + err1[-2000:]
    assert "is not empty" in err0 and "process 0 could not start the run folder" in err1
    assert [f.name for f in (tmp_path / "r").iterdir()] == ["keep.txt"]


def test_pcc_train_rejects_an_incomplete_process_group(tmp_path):
    from typer.testing import CliRunner

    from pcc.cli import app

    result = CliRunner().invoke(app, ["train", "specs/quickstart.yaml", "--coordinator", "127.0.0.1:1"])
    assert result.exit_code == 2 and "needs all three" in result.output

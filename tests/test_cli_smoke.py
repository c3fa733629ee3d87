"""The `pcc` entry point end to end, in subprocesses: train → eval → plot, explain, bench, Ctrl-free errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcc.cli import CACHE_ENV, use_compilation_cache

SPEC = """\
version: 1
name: smoke
data:
  dataset: synthetic
  batch_size: 32
  synthetic: {kind: gaussian_classes, n_train: 256, n_test: 64, input_dim: 8, output_dim: 3, noise: 0.3}
model:
  layers:
    - dense: {width: 16}
    - dense: {}
inference: {steps: 5}
learning:
  optimizer: {name: adam, lr: 0.01}
  epochs: 3
run: {log_every: 4}
"""


def pcc(*args: str, check: bool = True, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env[CACHE_ENV] = str(cache) if cache else "off"
    return subprocess.run([sys.executable, "-m", "pcc.cli", *args], capture_output=True, text=True, timeout=300,
                          check=check, env=env)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("smoke")
    spec = tmp / "smoke.yaml"
    spec.write_text(SPEC)
    out = pcc("train", str(spec), "--out", str(tmp / "run"), "--json", cache=tmp / "xla")
    return tmp / "run", json.loads(out.stdout)


def test_train_prints_one_json_summary_and_learns(run_dir):
    path, summary = run_dir
    assert summary["status"] == "completed" and summary["steps"] == 3 * (256 // 32)
    assert summary["final_test_accuracy"] > 0.8  # well-separated blobs: chance is 1/3
    assert (path / "summary.json").exists() and (path / "metrics.jsonl").exists()


def test_eval_reads_the_checkpoint_back(run_dir):
    """Evaluated from the compilation cache train left (and without it): the same accuracy."""
    path, summary = run_dir
    cache = path.parent / "xla"
    assert len(list(cache.iterdir())) >= 2  # the train step and the test evaluation at least
    for kept in (cache, None):
        result = json.loads(pcc("eval", str(path), "--which", "last", "--json", cache=kept).stdout)
        assert result["accuracy"] == pytest.approx(summary["final_test_accuracy"])


@pytest.mark.parametrize("setting,want", [("off", None), ("", "home/.cache/pcc/xla"), ("elsewhere", "elsewhere"),
                                          ("a-file", None)])
def test_compilation_cache_folder(monkeypatch, tmp_path, capsys, setting, want):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / setting) if setting in ("elsewhere", "a-file") else setting)
    use_compilation_cache()
    got = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    assert got == (want and str(tmp_path / want))
    assert want is None or (tmp_path / want).is_dir()
    warned = capsys.readouterr().err
    assert ("compilation cache off" in warned) == (setting == "a-file")


def test_plot_writes_a_png(run_dir, tmp_path):
    path, _ = run_dir
    pcc("plot", str(path), "--out", str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_json_counts_parameters(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    info = json.loads(pcc("explain", str(spec), "--json").stdout)
    assert info["total_params"] == 8 * 16 + 16 * 3
    assert [n["name"] for n in info["nodes"]] == ["input", "h1", "output"]


def test_bench_reports_the_needed_flops(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    r = json.loads(pcc("bench", str(spec), "--steps", "3", "--json").stdout)
    # 5 steps × 2 passes over the free-source edge (16→3) + feedforward and weight gradient over both edges
    per = lambda n, m: 2 * 32 * n * m  # noqa: E731
    assert r["flops_per_step"] == 5 * 2 * per(16, 3) + 2 * (per(8, 16) + per(16, 3))
    assert r["step_ms"]["min"] <= r["step_ms"]["median"] <= r["step_ms"]["max"]
    assert r["layer_chunks"] == {}  # no stacked block
    assert sum(r["compile_phases"].values()) == pytest.approx(r["compile_s"])
    assert r["first_step_s"] > r["compile_s"] > 0  # the compile, then one step


def test_bad_spec_exits_2_with_a_located_message(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.replace("batch_size: 32", "batch_sise: 32"))
    out = pcc("train", str(spec), check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{spec}:5:3: data.batch_sise: unknown key 'batch_sise'; did you mean 'batch_size'?" in out.stderr

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
    assert result["mesh"] == {"data": 8 // model, "model": model}
    np.testing.assert_allclose(np.array(result["curve"]), single, rtol=1e-5, atol=1e-6)


def test_two_processes_over_loopback(single):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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

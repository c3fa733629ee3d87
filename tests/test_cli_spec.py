"""The `pcc validate` and `pcc schema` commands through the real entry point (`python -m pcc.cli`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pcc.spec.loader import load_spec, load_spec_text
from pcc.spec.schema import json_schema

ROOT = Path(__file__).parent.parent
QUICKSTART = Path(__file__).parent / "fixtures" / "specs" / "quickstart.yaml"


def pcc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pcc.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_validate_ok():
    out = pcc("validate", str(QUICKSTART))
    assert out.returncode == 0 and out.stdout == f"{QUICKSTART}: ok\n" and out.stderr == ""


def test_validate_resolved_fills_every_default():
    out = pcc("validate", str(QUICKSTART), "--resolved", "--set", "learning.epochs=3")
    assert out.returncode == 0
    resolved = yaml.safe_load(out.stdout)
    assert resolved["learning"]["epochs"] == 3 and resolved["inference"]["init"] == "forward"
    assert resolved["model"]["layers"][1] == {"residual": {"width": 128, "activation": None, "bias": None},
                                              "repeat": 4, "name": None}
    assert load_spec_text(out.stdout).model_dump() == load_spec(QUICKSTART, ["learning.epochs=3"]).model_dump()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("model:\n  layers:\n    - dens: {width: 4}\n",
         ["bad.yaml:3:7: model.layers.0: unknown layer kind 'dens'; did you mean 'dense'?"]),
        ("seed: [1\n", ["bad.yaml:2:1: <root>: invalid YAML: expected ',' or ']', but got '<stream end>' "
                        "(while parsing a flow sequence at line 1)"]),
        ("", ["bad.yaml:1:1: <root>: the spec is empty; it needs at least a `model:` section"]),
        ("model: {layers: [{dense: {widht: 2}}]}\nseed: -1\n",
         ["bad.yaml:1:27: model.layers.0.dense.widht: unknown key 'widht'; did you mean 'width'?",
          "bad.yaml:2:7: seed: must be >= 0, got -1"]),
    ],
)
def test_validate_bad_spec(tmp_path, text, expected):
    (tmp_path / "bad.yaml").write_text(text)
    out = pcc("validate", "bad.yaml", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == expected and "Traceback" not in out.stderr


def test_validate_bad_override():
    out = pcc("validate", str(QUICKSTART), "--set", "learning.optimizer.lr=-1", "-s", "model.layers.7.repeat=2")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        "--set:1:14: model.layers.7: model.layers has 3 item(s); '7' is not an index of it"]
    out = pcc("validate", str(QUICKSTART), "--set", "learning.optimizer.lr=-1")
    assert out.stderr.splitlines() == ["--set:1:23: learning.optimizer.lr: must be > 0, got -1"]


def test_validate_missing_and_binary_files(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"model: \xff\xfe\n")
    for name, message in [("nope.yaml", "nope.yaml:1:1: <root>: cannot read the spec: no such file"),
                          ("bin.yaml", "bin.yaml:1:8: <root>: the file is not UTF-8 text (byte 0xff)")]:
        out = pcc("validate", name, cwd=tmp_path)
        assert (out.returncode, out.stderr.strip()) == (2, message)


def test_validate_and_schema_do_not_import_jax():
    code = ("import sys; from pcc.cli import main; sys.argv = ['pcc', *sys.argv[1:]]\n"
            "try: main()\nexcept SystemExit: pass\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax', 'optax'))\n"
            "print('HEAVY', bad, file=sys.stderr)")
    for args in (["validate", str(QUICKSTART), "--resolved"], ["schema"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
        assert "HEAVY []" in out.stderr, out.stderr


def test_schema_command_prints_the_schema():
    out = pcc("schema")
    assert out.returncode == 0 and json.loads(out.stdout) == json_schema()


def test_committed_schema_is_in_sync():
    committed = json.loads((ROOT / "specs" / "pcc-spec.schema.json").read_text())
    assert committed == json_schema(), "regenerate with: pcc schema > specs/pcc-spec.schema.json"


def test_schema_describes_the_language():
    schema = json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/") and schema["required"] == ["model"]
    assert schema["additionalProperties"] is False
    assert "from" in schema["$defs"]["Edge"]["properties"]  # keys by alias, as written in YAML


def test_no_command_shows_help():
    out = pcc()
    assert "validate" in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_errors_and_interrupts_exit_cleanly(monkeypatch, capsys):
    """`command` turns a PccError into its message and status 2, Ctrl-C into status 130 (on a scratch app)."""
    import typer

    from pcc import cli
    from pcc.errors import DataError

    scratch = typer.Typer()
    scratch.callback()(lambda: None)
    monkeypatch.setattr(cli, "app", scratch)

    @cli.command("interrupt")
    def interrupt() -> None:
        raise KeyboardInterrupt

    @cli.command("data")
    def data() -> None:
        raise DataError("dataset 'digits': cannot read /nowhere")

    for name, code, message in [("interrupt", 130, "pcc: interrupted"),
                                ("data", 2, "dataset 'digits': cannot read /nowhere")]:
        with pytest.raises(SystemExit) as info:
            scratch([name], prog_name="pcc")
        assert info.value.code == code and capsys.readouterr().err == message + "\n"

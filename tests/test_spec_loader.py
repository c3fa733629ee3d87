"""Loading valid specs: YAML 1.2 scalars, source positions, overrides, aliases, the resolved round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from pcc.errors import Issue, SpecError
from pcc.spec.loader import SourceMap, dump_yaml, load_spec, load_spec_text, locate_issues, read_yaml
from pcc.spec.models import DenseLayer, ResidualLayer, Spec

SPECS = Path(__file__).parent / "fixtures" / "specs"
QUICKSTART = SPECS / "quickstart.yaml"
MINIMAL = "model: {layers: [{dense: {}}]}\n"


def test_quickstart_loads():
    spec = load_spec(QUICKSTART)
    assert spec.name == "quickstart" and spec.model.parameterisation == "mupc"
    assert [type(layer) for layer in spec.model.layers] == [DenseLayer, ResidualLayer, DenseLayer]
    assert spec.model.layers[1].repeat == 4 and spec.model.layers[1].residual.width == 128
    assert spec.learning.optimizer.lr == 1e-3 and isinstance(spec.learning.optimizer.lr, float)


def test_graph_spec_loads():
    spec = load_spec(SPECS / "graph.yaml")
    assert set(spec.model.graph) == {"h1", "h2", "output"}
    assert spec.model.graph["h2"].inputs[1].from_ == "input"
    assert spec.learning.optimizer.weight_decay == 1e-4


@pytest.mark.parametrize(
    "text, value",
    [("1e-3", 1e-3), ("1.0e-3", 1e-3), ("-2E5", -2e5), ("+1e2", 100.0), (".5", 0.5), ("3.", 3.0), ("1.5e+2", 150.0)],
)
def test_yaml12_floats(text, value):
    read = read_yaml(f"lr: {text}\n")[0]["lr"]
    assert isinstance(read, float) and read == value


@pytest.mark.parametrize("text, value", [(".inf", math.inf), ("-.Inf", -math.inf), ("0x1F", 31), ("0o17", 15),
                                         ("-12", -12), ("true", True), ("FALSE", False), ("~", None), ("", None)])
def test_core_schema_scalars(text, value):
    assert read_yaml(f"v: {text}\n")[0]["v"] == value


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n"])
def test_yaml11_booleans_are_strings(word):
    assert load_spec_text(f"{MINIMAL}name: {word}\n").name == word


def test_explicit_core_tags():
    spec = load_spec_text(f"{MINIMAL}name: !!str 123\nlearning: {{optimizer: {{lr: !!float 1}}}}\n")
    assert spec.name == "123" and spec.learning.optimizer.lr == 1.0


def test_aliases_are_plain_copies():
    spec = load_spec_text("model:\n  layers:\n    - dense: &h {width: 64}\n    - dense: *h\n    - dense: {}\n")
    assert spec.model.layers[0].dense.width == spec.model.layers[1].dense.width == 64


def test_source_positions():
    source = load_spec(QUICKSTART)._source
    assert isinstance(source, SourceMap) and source.file == str(QUICKSTART)
    assert source.values[("model", "layers", 1, "residual", "width")] == (12, 25)
    assert source.keys[("model", "layers", 1, "repeat")] == (13, 7)
    assert source.values[("learning", "optimizer", "lr")] == (19, 31)
    assert source.locate(("model", "layers", 1, "repeat"), key=True) == (str(QUICKSTART), 13, 7)


def test_locate_falls_back_to_deepest_known_prefix():
    source = load_spec(QUICKSTART)._source
    assert source.locate(("model", "layers", 0, "dense", "bias")) == (str(QUICKSTART), 11, 14)
    assert source.locate(("nowhere", "at", "all")) == (str(QUICKSTART), 1, 1)


def test_locate_issues():
    spec = load_spec(QUICKSTART)
    done = Issue(("x",), "already located", "f", 3, 4)
    out = locate_issues(spec, [Issue(("model", "layers", 2), "unknown node"), done])
    assert (out[0].file, out[0].line, out[0].col) == (str(QUICKSTART), 14, 7) and out[1] == done
    assert str(out[0]) == f"{QUICKSTART}:14:7: model.layers.2: unknown node"
    bare = Spec.model_validate({"model": {"layers": [{"dense": {}}]}})
    assert locate_issues(bare, [Issue(("model",), "m")])[0].line is None


def test_overrides():
    spec = load_spec(QUICKSTART, overrides=["learning.optimizer.lr=0.01", "model.layers.1.repeat=8",
                                            "data.synthetic.noise=1e-2", "run.out_dir=/tmp/runs", "seed=1", "seed=2"])
    assert spec.learning.optimizer.lr == 0.01 and spec.model.layers[1].repeat == 8
    assert spec.data.synthetic.noise == 0.01 and spec.run.out_dir == "/tmp/runs" and spec.seed == 2
    source = spec._source
    assert source.locate(("model", "layers", 1, "repeat")) == ("--set", 1, 23)
    assert source.locate(("model", "layers", 1, "residual")) == (str(QUICKSTART), 12, 17)


def test_override_values_are_yaml():
    layers = "model.layers=[{dense: {width: 8}}, {residual: {}, repeat: 2}, {dense: {}}]"
    spec = load_spec_text(MINIMAL, overrides=[layers, "data={dataset: mnist1d, batch_size: 32}"])
    assert len(spec.model.layers) == 3 and spec.model.layers[1].repeat == 2 and spec.data.batch_size == 32
    assert spec._source.locate(("data", "batch_size")) == ("--set", 1, 37)


def test_resolved_round_trip():
    for spec in (load_spec(QUICKSTART), load_spec(SPECS / "graph.yaml", ["name='1e3'"])):
        dumped = dump_yaml(spec.model_dump(mode="json", by_alias=True))
        assert load_spec_text(dumped).model_dump() == spec.model_dump()


@pytest.mark.parametrize("word", ["1e3", "yes", "0o17", ".inf", "null", "True", "2024-01-01", "1:30", "-", "~"])
def test_dump_yaml_quotes_lookalike_strings(word):
    data = {"name": word, "n": [1, 1.5, 1e-5, True, None]}
    assert read_yaml(dump_yaml(data))[0] == data and yaml.safe_load(dump_yaml(data)) == data


def test_bytes_with_bom(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_spec(path).model.layers[0].dense.width is None


def test_duplicate_keys_rejected():
    with pytest.raises(SpecError, match="duplicate key 'width'"):
        load_spec_text("model:\n  layers:\n    - dense: {width: 3, width: 4}\n")

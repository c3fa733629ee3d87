"""Every kind of spec error is a SpecError whose issues say FILE:LINE:COL: path: message, at the exact place."""

from __future__ import annotations

import pytest

from pcc.errors import SpecError
from pcc.spec.loader import load_spec, load_spec_text

LAYERS = "model:\n  layers:\n    - dense: {width: 16}\n    - dense: {}\n"  # a valid model, lines 1-4


def errors(text: str | bytes, overrides: tuple[str, ...] = ()) -> list[str]:
    """The issues of a spec that must fail, as ``LINE:COL: path: message`` (file ``s.yaml`` left out)."""
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "s.yaml", overrides)
    for issue in info.value.issues:
        assert issue.line is not None and issue.col is not None, issue
    return [str(i).removeprefix("s.yaml:") for i in info.value.issues]


# (case, text, overrides, the exact issues)
CASES = [
    ("yaml syntax", "model:\n  layers: [{dense: {}}\nseed: 1\n", (),
     ["3:1: <root>: invalid YAML: expected ',' or ']', but got '<scalar>' (while parsing a flow sequence at line 2)"]),
    ("bad indentation", "model:\n  layers:\n   - dense: {}\n  seed: 1\n x: 2\n", (),
     ["5:2: <root>: invalid YAML: expected <block end>, but found '<block mapping start>' "
      "(while parsing a block mapping at line 1)"]),
    ("tab", "model:\n\tlayers: []\n", (),
     ["2:1: <root>: invalid YAML: found character '\\t' that cannot start any token "
      "(while scanning for the next token)"]),
    ("empty file", "", (), ["1:1: <root>: the spec is empty; it needs at least a `model:` section"]),
    ("only comments", "# nothing\n\n", (), ["1:1: <root>: the spec is empty; it needs at least a `model:` section"]),
    ("list root", "\n- dense: {}\n", (),
     ["2:1: <root>: a spec is a mapping of sections (version, name, data, model, ...), not a list"]),
    ("scalar root", "hello\n", (),
     ["1:1: <root>: a spec is a mapping of sections (version, name, data, model, ...), not 'hello'"]),
    ("duplicate key", LAYERS + "seed: 1\ndata: {}\nseed: 2\n", (),
     ["7:1: seed: duplicate key 'seed' (first given at line 5)"]),
    ("nested duplicate key", "model:\n  layers:\n    - dense: {width: 3, width: 4}\n", (),
     ["3:25: model.layers.0.dense.width: duplicate key 'width' (first given at line 3)"]),
    ("python tag", LAYERS + "name: !!python/object/apply:os.system [ls]\n", (),
     ["5:7: name: tag '!!python/object/apply:os.system' is not allowed: a spec is plain data and never creates "
      "Python objects"]),
    ("unknown tag", LAYERS + "seed: !seed 3\n", (),
     ["5:7: seed: unknown tag '!seed'; a spec holds only plain YAML (strings, numbers, booleans, null, lists, "
      "mappings)"]),
    ("bad explicit scalar", LAYERS + "seed: !!int 1.5\n", (), ["5:7: seed: '1.5' is not a valid !!int"]),
    ("control character", LAYERS + "name: a\x07b\n", (),
     ["5:8: <root>: character U+0007 is not allowed in YAML (special characters are not allowed)"]),
    ("non-utf8", LAYERS.encode() + b"name: caf\xe9\n", (), ["5:10: <root>: the file is not UTF-8 text (byte 0xe9)"]),
    ("unknown key", "model:\n  layers:\n    - dense: {widht: 16}\n", (),
     ["3:15: model.layers.0.dense.widht: unknown key 'widht'; did you mean 'width'?"]),
    ("unknown section", LAYERS + "lerning:\n  epochs: 2\n", (),
     ["5:1: lerning: unknown key 'lerning'; did you mean 'learning'?"]),
    ("unknown key, no match", LAYERS + "inference: {zzz: 1}\n", (),
     ["5:13: inference.zzz: unknown key 'zzz'; allowed: solver, steps, step_size, step_convention, "
      "tuned_batch_size, init, init_std, tol, optimizer, state, errors, ode"]),
    ("bad enum", LAYERS + "learning:\n  optimizer: {name: adma}\n", (),
     ["6:21: learning.optimizer.name: 'adma' is not one of sgd, momentum, nesterov, adam, adamw, rmsprop, lamb, "
      "lion, adagrad; did you mean 'adam'?"]),
    ("unknown dataset", "data:\n  dataset: fashion-mnist\n" + LAYERS, (),
     ["2:12: data.dataset: 'fashion-mnist' is not one of digits, mnist_5k, fashion_mnist, mnist1d, synthetic, npz, "
      "idx; did you mean 'fashion_mnist'?"]),
    ("bad activation", "model:\n  layers:\n    - dense: {activation: tahn}\n", (),
     ["3:27: model.layers.0.dense.activation: 'tahn' is not one of identity, relu, tanh, gelu, sigmoid, silu, "
      "leaky_relu, softplus; did you mean 'tanh'?"]),
    ("unknown layer kind", "model:\n  layers:\n    - dense: {width: 8}\n    - dens: {width: 4}\n", (),
     ["4:7: model.layers.1: unknown layer kind 'dens'; did you mean 'dense'?"]),
    ("two layer kinds", "model:\n  layers:\n    - dense: {}\n      residual: {}\n", (),
     ["3:7: model.layers.0: a layer has exactly one kind (dense, residual); this one has dense and residual"]),
    ("layer not a mapping", "model:\n  layers:\n    - dense\n", (),
     ["3:7: model.layers.0: a layer is a mapping like `dense: {width: 128}`, got 'dense'"]),
    ("layer without kind", "model:\n  layers:\n    - repeat: 3\n", (),
     ["3:7: model.layers.0: a layer needs one of the keys: dense, residual"]),
    ("wrong type", "data:\n  batch_size: lots\n" + LAYERS, (),
     ["2:15: data.batch_size: expected an integer, got 'lots'"]),
    ("mapping expected", "data: digits\n" + LAYERS, (), ["1:7: data: expected a mapping, got 'digits'"]),
    ("fractional int", "model:\n  layers:\n    - dense: {width: 1.5}\n", (),
     ["3:22: model.layers.0.dense.width: expected an integer, got 1.5"]),
    ("negative width", "model:\n  layers:\n    - dense: {width: -3}\n    - dense: {}\n", (),
     ["3:22: model.layers.0.dense.width: must be > 0, got -3"]),
    ("negative repeat", "model:\n  layers:\n    - residual: {}\n      repeat: -1\n", (),
     ["4:15: model.layers.0.repeat: must be > 0, got -1"]),
    ("bad name", LAYERS + "name: my run\n", (), ["5:7: name: 'my run' does not match the pattern ^[A-Za-z0-9_.-]+$"]),
    ("bad version", "version: 2\n" + LAYERS, (),
     ["1:10: version: unsupported spec version 2; this pcc reads version 1"]),
    ("missing model", "# a comment\nversion: 1\nseed: 3\n", (), ["2:1: model: missing required key 'model'"]),
    ("empty model", "seed: 1\nmodel:\n", (), ["2:7: model: expected a mapping, got an empty value"]),
    ("model validator", "model:\n  layers: []\n", (),
     ["2:3: model: `layers:` needs at least one layer (the output layer)"]),
    ("graph union noise", "model:\n  graph:\n    output: {inputs: [{form: input}, 5]}\n", (),
     ["3:24: model.graph.output.inputs.0.form: unknown key 'form'; did you mean 'from'?",
      "3:38: model.graph.output.inputs.1: expected a string or a mapping, got 5"]),
    ("all errors sorted", "learning: {epochs: 0}\nmodel:\n  layers:\n    - dense: {width: 0}\nseed: -1\n", (),
     ["1:20: learning.epochs: must be > 0, got 0", "4:22: model.layers.0.dense.width: must be > 0, got 0",
      "5:7: seed: must be >= 0, got -1"]),
    # overrides: file --set, line 1, col = position in the override string
    ("bad override value", LAYERS, ("learning.optimizer.lr=-1",),
     ["--set:1:23: learning.optimizer.lr: must be > 0, got -1"]),
    ("override unknown key", LAYERS, ("learning.optimizer.lrr=0.1",),
     ["--set:1:20: learning.optimizer.lrr: unknown key 'lrr'; did you mean 'lr'?"]),
    ("override without =", LAYERS, ("seed",), ["--set:1:1: <root>: an override is `dotted.path=value`, got 'seed'"]),
    ("override empty path", LAYERS, ("=3",), ["--set:1:1: <root>: empty key in override path ''"]),
    ("override empty key", LAYERS, ("data..batch_size=3",),
     ["--set:1:6: <root>: empty key in override path 'data..batch_size'"]),
    ("override index out of range", LAYERS, ("model.layers.2.repeat=3",),
     ["--set:1:14: model.layers.2: model.layers has 2 item(s); '2' is not an index of it"]),
    ("override creates a mapping", LAYERS, ("seed.x=3",), ["--set:1:1: seed: expected an integer, got a mapping"]),
    ("override bad yaml", LAYERS, ("model.layers=[{dense: {}}",),
     ["--set:1:26: model.layers: invalid YAML: expected ',' or ']', but got '<stream end>' "
      "(while parsing a flow sequence at line 1)"]),
    ("override python tag", LAYERS, ("name=!!python/name:os.system",),
     ["--set:1:6: name: tag '!!python/name:os.system' is not allowed: a spec is plain data and never creates "
      "Python objects"]),
]


@pytest.mark.parametrize("text, overrides, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_location_and_message(text, overrides, expected):
    assert errors(text, overrides) == expected


def test_override_into_scalar_from_file():
    """`seed` comes from the file here, so setting inside it names the file's value."""
    assert errors(LAYERS + "seed: 4\n", ("seed.x=1",)) == ["--set:1:6: seed: cannot set 'x' inside seed, which is 4"]


def test_file_errors_come_before_override_errors():
    out = errors(LAYERS + "seed: -1\n", ("inference.steps=-2",))
    assert out == ["5:7: seed: must be >= 0, got -1", "--set:1:17: inference.steps: must be >= 0, got -2"]


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}:1:1: <root>: cannot read the spec: no such file"


def test_directory_is_not_a_spec(tmp_path):
    with pytest.raises(SpecError, match=r":1:1: <root>: cannot read the spec: "):
        load_spec(tmp_path)


def test_recursive_alias():
    assert errors("model: &m {layers: [*m]}\n") == [
        "1:8: model.layers.0: a recursive alias (a value that contains itself)"]


def test_alias_bomb_is_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    (issue,) = errors("\n".join(lines) + "\n")
    assert "expands to more than" in issue


def test_deep_nesting_is_an_error():
    (issue,) = errors("model: " + "[" * 5000 + "]" * 5000 + "\n")
    assert issue.startswith("1:1: <root>: ") and "nested too deeply" in issue


def test_multiple_documents():
    assert errors(LAYERS + "---\nseed: 1\n") == [
        "5:1: <root>: invalid YAML: expected a single document in the stream at line 1, but found another document"]

"""Property tests: generated specs load; mutated specs (tree edits, byte garbage, truncation, bad overrides) give
either a valid Spec or a SpecError whose every issue is located, never any other exception.

The default run is fast (300 examples per property); ``pytest -m slow`` runs the same properties with 5000."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any, get_args

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcc.errors import SpecError
from pcc.spec import loader
from pcc.spec.loader import OVERRIDE_FILE, load_spec_text
from pcc.spec.models import Activation, Spec

FILE = "fuzz.yaml"
FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))

# ------------------------------------------------------------------------------------------ valid specs

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in ("input", "output"))
positive = st.integers(1, 512)
rates = st.floats(1e-6, 1.0)


def options(required: dict[str, Any] | None = None, **optional: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries(required or {}, optional=optional)


def layer(kind: str) -> st.SearchStrategy:
    op = options(width=positive, activation=st.sampled_from(get_args(Activation)), bias=st.booleans())
    return options({kind: op}, repeat=st.integers(1, 8), name=names)


@st.composite
def graphs(draw) -> dict[str, Any]:
    hidden = draw(st.lists(names, min_size=0, max_size=4, unique=True))
    graph, known = {}, ["input"]
    for node in hidden + ["output"]:
        sources = draw(st.lists(st.sampled_from(known), min_size=1, max_size=3, unique=True))
        edges = [draw(st.sampled_from([s, {"from": s}, {"from": s, "op": "dense", "bias": True}])) for s in sources]
        graph[node] = {"inputs": edges} | ({} if node == "output" else {"width": draw(positive)})
        known.append(node)
    return graph


models = st.one_of(
    options({"layers": st.lists(st.one_of(layer("dense"), layer("residual")), min_size=1, max_size=5)},
            parameterisation=st.sampled_from(["sp", "ntp", "mupc"]), activation=st.sampled_from(["tanh", "relu"]),
            output_energy=st.sampled_from(["mse", "cross_entropy"]), gain=st.floats(0.1, 4)),
    options({"graph": graphs()}, ordering=st.sampled_from(["w_phi", "phi_w"]), bias=st.booleans()),
)
optimizers = options(name=st.sampled_from(["sgd", "adam", "adamw", "lion"]), lr=rates, clip_norm=st.floats(0.1, 10))
inferences = st.one_of(
    options(solver=st.just("gd"), steps=st.integers(0, 50), step_size=rates,
            init=st.sampled_from(["forward", "zeros"])),
    options({"solver": st.just("optax")}, optimizer=optimizers, tol=st.floats(1e-6, 1e-2)),
)
specs = options(
    {"model": models},
    version=st.just(1), seed=st.integers(0, 2**31),
    name=st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True) | st.sampled_from(["1e3", "0o17", ".5", "1_0", "-1"]),
    data=options(dataset=st.sampled_from(["digits", "mnist_5k", "mnist1d", "synthetic"]), batch_size=positive,
                 test_fraction=st.floats(0.05, 0.5), synthetic=options(kind=st.sampled_from(["linear", "teacher"]))),
    inference=inferences,
    learning=options(algorithm=st.sampled_from(["pc", "ipc", "bp"]), optimizer=optimizers, epochs=st.integers(1, 9),
                     schedule=options(name=st.sampled_from(["constant", "cosine"]), warmup_steps=st.integers(0, 99))),
    eval=options(every_epochs=st.integers(0, 3)),
    run=options(out_dir=st.just("runs"), keep=st.integers(1, 4)),
)


class FastDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """libyaml's emitter with pcc's quoting rules (``dump_yaml`` is the same in pure Python, and slower)."""

    yaml_implicit_resolvers = loader._Dumper.yaml_implicit_resolvers


def dump(tree: Any, draw) -> str:
    return yaml.dump(tree, Dumper=FastDumper, sort_keys=False, default_flow_style=draw(st.sampled_from([False, None])),
                     allow_unicode=draw(st.booleans()))


# ------------------------------------------------------------------------------------------- the oracle


def check(text: str | bytes, overrides: tuple[str, ...] = ()) -> Spec | None:
    """Load; a failure must be a SpecError whose every issue is located inside the text (or the override)."""
    try:
        return load_spec_text(text, FILE, overrides)
    except SpecError as e:
        assert e.issues, "a SpecError without issues"
        decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        lines = len(re.findall("\r\n|[\r\n\x85\u2028\u2029]", decoded)) + 1  # YAML's line breaks
        for issue in e.issues:
            assert issue.file in (FILE, OVERRIDE_FILE) and issue.line >= 1 and issue.col >= 1, issue
            if issue.file == FILE:
                assert issue.line <= lines, (issue, lines)
            else:
                assert issue.line == 1 and issue.col <= max(len(o) for o in overrides) + 1, issue
            assert str(issue).startswith(f"{issue.file}:{issue.line}:{issue.col}: ")
        return None


# ------------------------------------------------------------------------------------------- mutations

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["dense", "residual", "tanh", "adam", "input", "1e-3"]))


def nested(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)


values = st.recursive(scalars, nested, max_leaves=6)


def containers(tree: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every mapping and list in ``tree``."""
    found = [path] if isinstance(tree, (dict, list)) else []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    for key, child in items:
        found += containers(child, path + (key,))
    return found


def at(tree: Any, path: tuple) -> Any:
    for step in path:
        tree = tree[step]
    return tree


def typo(draw, word: str) -> str:
    i = draw(st.integers(0, len(word)))
    edit = draw(st.sampled_from(["insert", "delete", "swap", "replace"]))
    char = draw(st.sampled_from(string.ascii_lowercase + "_-. "))
    if edit == "insert" or not word:
        return word[:i] + char + word[i:]
    i = min(i, len(word) - 1)
    if edit == "delete":
        return word[:i] + word[i + 1:]
    if edit == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + char + word[i + 1:]


def mutate(draw, tree: dict) -> None:
    """One random edit of a container in the tree: insert, delete, rename, retype, or duplicate an entry."""
    node = at(tree, draw(st.sampled_from(containers(tree))))
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    edit = draw(st.sampled_from(["insert", "delete", "rename", "retype", "duplicate"]))
    if edit == "insert" and isinstance(node, dict):
        key = typo(draw, draw(st.sampled_from(keys))) if keys and draw(st.booleans()) else draw(st.text(max_size=8))
        node[key] = draw(values)
    elif edit == "insert":
        node.insert(draw(st.integers(0, len(node))), draw(values))
    elif not keys:
        return
    elif edit == "delete":
        del node[draw(st.sampled_from(keys))]
    elif edit == "rename" and isinstance(node, dict):
        key = draw(st.sampled_from(keys))
        node[typo(draw, key)] = node.pop(key)
    elif edit == "duplicate" and isinstance(node, list):
        node.append(node[draw(st.sampled_from(keys))])
    else:
        node[draw(st.sampled_from(keys))] = draw(values)


GARBAGE = [b"\x00", b"\xff\xfe", b"\t", b":", b": ", b"- ", b"[", b"]", b"{", b"}", b"&a ", b"*a", b"*zz", b"!!",
           b"!x ", b"!!python/object:os.system ", b"|", b">", b"'", b'"', b"%YAML 1.1\n", b"---\n", b"...\n", b"? ",
           b"#", b",", b"\n  ", b"<<: *a\n", b"\xc3", b"\xe2\x80\xa8", b"\x1b", b"@", b"`"]


def corrupt(draw, text: bytes) -> bytes:
    """One byte-level corruption: garbage insertion, truncation, a duplicated line, a deleted range, re-indent."""
    i = draw(st.integers(0, len(text)))
    edit = draw(st.sampled_from(["garbage", "random", "truncate", "duplicate_line", "delete", "indent"]))
    if edit == "garbage":
        return text[:i] + draw(st.sampled_from(GARBAGE)) + text[i:]
    if edit == "random":
        return text[:i] + draw(st.binary(min_size=1, max_size=8)) + text[i:]
    if edit == "truncate":
        return text[:i]
    lines = text.split(b"\n")
    j = draw(st.integers(0, len(lines) - 1))
    if edit == "duplicate_line":
        return b"\n".join(lines[: j + 1] + lines[j:])
    if edit == "delete":
        return text[:i] + text[i + draw(st.integers(1, 20)):]
    return b"\n".join(lines[:j] + [b" " * draw(st.integers(1, 3)) + lines[j]] + lines[j + 1:])


SPEC_KEYS = ["model", "layers", "0", "1", "5", "dense", "residual", "width", "repeat", "learning", "optimizer", "lr",
             "data", "dataset", "seed", "graph", "output", "inputs", "inference", "steps", "", "x"]


@st.composite
def overrides(draw) -> str:
    path = ".".join(draw(st.lists(st.sampled_from(SPEC_KEYS) | st.text(max_size=5), min_size=0, max_size=5)))
    value = draw(st.sampled_from(["1", "-1", "1e-3", "[", "{dense: {}}", "[{dense: {}}]", "!!python/none ''", "",
                                  "adam", "null", "&a [*a]"]) | st.text(max_size=10))
    return path + draw(st.sampled_from(["=", "=", ""])) + value


# ------------------------------------------------------------------------------------------- properties


def valid_specs_load(data: st.DataObject) -> None:
    tree = data.draw(specs)
    text = dump(tree, data.draw)
    spec = load_spec_text(text, FILE)
    assert spec.seed == tree.get("seed", 0)
    lines = text.splitlines()
    for path, (line, col) in spec._source.keys.items():  # every key is where the source map says
        assert lines[line - 1][col - 1:].lstrip("'\"").startswith(str(path[-1])), (path, line, col)


def mutated_trees(data: st.DataObject) -> None:
    tree = data.draw(specs)
    for _ in range(data.draw(st.integers(1, 4))):
        mutate(data.draw, tree)
    check(dump(tree, data.draw))


def corrupted_text(data: st.DataObject) -> None:
    text = dump(data.draw(specs), data.draw).encode()
    for _ in range(data.draw(st.integers(1, 3))):
        text = corrupt(data.draw, text)
    check(text)


def bad_overrides(data: st.DataObject) -> None:
    check(dump(data.draw(specs), data.draw), tuple(data.draw(st.lists(overrides(), min_size=1, max_size=3))))


def fast_and_slow(prop: Callable[[st.DataObject], None]) -> tuple[Callable, Callable]:
    """The CI test of a property (300 examples) and its ``-m slow`` twin (5000)."""
    return FAST(given(st.data())(prop)), pytest.mark.slow(SLOW(given(st.data())(prop)))


test_valid_specs_load, test_valid_specs_load_slow = fast_and_slow(valid_specs_load)
test_mutated_trees, test_mutated_trees_slow = fast_and_slow(mutated_trees)
test_corrupted_text, test_corrupted_text_slow = fast_and_slow(corrupted_text)
test_bad_overrides, test_bad_overrides_slow = fast_and_slow(bad_overrides)

"""Load a spec: YAML with source positions -> ``--set`` overrides -> pydantic validation -> located errors.

The YAML reader is PyYAML's composer (the node graph, with marks) under a safe loader whose implicit types
are the YAML 1.2 core schema: ``1e-3`` is a float, ``yes``/``on`` are strings (only ``true``/``false``
are booleans), ``0o17``/``0x1F`` are integers. Values are built from the nodes here, never by a PyYAML
constructor, so no tag can create a Python object: any tag outside the core schema is an error. Duplicate
keys are errors. Every value and every mapping key gets its (line, col), 1-based, in a :class:`SourceMap`.

Overrides (``--set learning.optimizer.lr=0.01``, ``--set model.layers.1.repeat=8``) edit the raw mapping before
validation: the value is YAML read by the same reader, missing mappings on the path are created, integers index
lists. Their errors are located in the pseudo-file ``--set`` at line 1, column = offset in the override string.

Every failure, from an unreadable file to a bad enum value, is a :class:`~pcc.errors.SpecError` whose issues
read ``FILE:LINE:COL: dotted.path: message``; all validation issues of a file are reported at once, sorted.
pydantic's error locations are mapped back to YAML nodes: an unknown key points at the key, a bad value at the
value, a missing key at its parent mapping; union-member tags in the location (``dense``, ``str``, ``Edge``)
are recognised from the models' types and dropped, and per-member union noise is merged into one issue.
"""

from __future__ import annotations

import difflib
import math
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path as FsPath
from typing import Annotated, Any, ClassVar, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Tag, ValidationError

from pcc.errors import Issue, Path, SpecError, dotted
from pcc.spec.models import LAYER_KINDS, DenseLayer, Spec

__all__ = ["OVERRIDE_FILE", "SourceMap", "dump_yaml", "load_spec", "load_spec_text", "locate_issues", "read_yaml"]

Pos = tuple[int, int]
OVERRIDE_FILE = "--set"
"""The file name under which errors in ``--set`` overrides are reported (line 1, col = offset in the string)."""
MAX_VALUES = 100_000
"""Alias expansion limit: a spec with more values than this is rejected (a "billion laughs" guard)."""

# ------------------------------------------------------------------------------------------ source map


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of a loaded spec came from.

    ``values`` and ``keys`` map data paths (``('model', 'layers', 0, 'dense')``) to 1-based (line, col).
    ``origins`` marks subtrees that came from elsewhere than ``file`` (``--set`` overrides)."""

    file: str
    values: dict[Path, Pos] = field(default_factory=dict)
    keys: dict[Path, Pos] = field(default_factory=dict)
    origins: dict[Path, str] = field(default_factory=dict)

    def locate(self, path: Sequence[str | int], key: bool = False) -> tuple[str, int, int]:
        """(file, line, col) of the value at ``path`` (of its key with ``key=True``), else of its deepest
        known ancestor."""
        path = tuple(path)
        if key and path in self.keys:
            return (self.file_of(path), *self.keys[path])
        for n in range(len(path), -1, -1):
            if path[:n] in self.values:
                return (self.file_of(path[:n]), *self.values[path[:n]])
        return self.file, 1, 1

    def file_of(self, path: Path) -> str:
        """The file the value at ``path`` came from."""
        return next((self.origins[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.origins), self.file)

    def graft(self, at: Path, origin: str, values: dict[Path, Pos], keys: dict[Path, Pos]) -> None:
        """Replace everything recorded under ``at`` by positions relative to it, from ``origin``."""
        for table in (self.values, self.keys, self.origins):
            for p in [p for p in table if p[: len(at)] == at]:
                del table[p]
        self.values.update({at + p: pos for p, pos in values.items()})
        self.keys.update({at + p: pos for p, pos in keys.items()})
        self.origins[at] = origin

    def issue(self, path: Path, message: str, key: bool = False) -> Issue:
        """A located issue at ``path``."""
        return Issue(tuple(path), message, *self.locate(path, key))


def locate_issues(spec: Spec, issues: Iterable[Issue]) -> list[Issue]:
    """Fill in file/line/col of issues found after validation (e.g. by the IR lowering) from
    ``spec._source``; issues already located, or of a spec without a source map, are left as they are."""
    source: SourceMap | None = getattr(spec, "_source", None)
    if source is None:
        return list(issues)
    return [i if i.line is not None else i.located(*source.locate(i.path)) for i in issues]


# ------------------------------------------------------------------------------------------------ YAML

_CORE = "tag:yaml.org,2002:"


class _CoreLoader(yaml.SafeLoader):
    """A safe loader whose plain scalars resolve by the YAML 1.2 core schema (used only to compose nodes)."""

    yaml_implicit_resolvers: ClassVar[dict] = {}


for _tag, _regex, _first in [
    ("null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", (r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), "-+.0123456789"),
]:
    _CoreLoader.add_implicit_resolver(_CORE + _tag, re.compile(_regex), list(_first) + ([""] if _tag == "null" else []))


class _Dumper(yaml.SafeDumper):
    """A safe dumper that quotes every string a YAML 1.1 or a YAML 1.2 core reader would take for another type."""


for _first, _resolvers in _CoreLoader.yaml_implicit_resolvers.items():
    for _tag, _regex in _resolvers:
        _Dumper.add_implicit_resolver(_tag, _regex, [_first])


def dump_yaml(data: Any) -> str:
    """YAML text of plain data that :func:`read_yaml` (and any YAML 1.1 reader) reads back as the same data."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def _to_int(text: str) -> int:
    sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
    base = {"0o": 8, "0x": 16}.get(digits[:2].lower(), 10)
    return sign * int(digits[2:] if base != 10 else digits, base)


def _to_float(text: str) -> float:
    special = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
    return special[text.lower()] if text.lower() in special else float(text)


def _to_bool(text: str) -> bool:
    return {"true": True, "false": False}[text.lower()]


def _to_null(text: str) -> None:
    if text not in ("", "~", "null", "Null", "NULL"):
        raise ValueError(text)


_SCALARS = {"str": str, "int": _to_int, "float": _to_float, "bool": _to_bool, "null": _to_null}


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class _Mark(NamedTuple):
    """A position as PyYAML's marks give it: 0-based line and column, character index."""

    line: int
    column: int
    index: int


@dataclass
class _Reader:
    """Builds plain Python data from YAML text, recording positions; collects every issue it finds.

    With ``offset`` set (an override's value, which starts after ``path=``), every position is line 1 and the
    column counts characters from the start of the override string."""

    file: str
    offset: int | None = None
    values: dict[Path, Pos] = field(default_factory=dict)
    keys: dict[Path, Pos] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    def pos(self, mark: yaml.Mark | _Mark) -> Pos:
        """1-based (line, col) of a PyYAML mark."""
        return (mark.line + 1, mark.column + 1) if self.offset is None else (1, self.offset + mark.index + 1)

    def fail(self, path: Path, message: str, pos: Pos) -> None:
        self.issues.append(Issue(path, message, self.file, *pos))

    def read(self, text: str, empty: str | None) -> Any:
        """The data of ``text``; an empty document is ``None``, or an error with message ``empty``."""
        try:
            node = yaml.compose(text, Loader=_CoreLoader)
            if node is None:
                self.values[()] = self.pos(_Mark(0, 0, 0))
                if empty is not None:
                    self.fail((), empty, (1, 1))
                value = None
            else:
                value = self.build(node, (), set())
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            self.fail((), _syntax_message(e), self.pos(mark) if mark else (1, 1))
        except yaml.reader.ReaderError as e:
            self.fail((), f"character U+{e.character:04X} is not allowed in YAML ({e.reason})",
                      self.pos(_Mark(*_line_col(text, e.position), e.position)))
        except yaml.YAMLError as e:  # pragma: no cover - every PyYAML error has a mark or a position
            self.fail((), f"invalid YAML: {e}", (1, 1))
        except RecursionError:
            self.fail((), "the document is nested too deeply", (1, 1))
        if self.issues:
            raise SpecError(sorted(self.issues, key=lambda i: (i.line, i.col)))
        return value

    def build(self, node: yaml.Node, path: Path, active: set[int]) -> Any:
        """The value of ``node`` at ``path`` (``active``: nodes being built, to catch recursive aliases)."""
        self.values[path] = pos = self.pos(node.start_mark)
        if len(self.values) > MAX_VALUES:
            raise SpecError([Issue(path, f"the document expands to more than {MAX_VALUES} values (aliases?)",
                                   self.file, *pos)])
        if id(node) in active:
            return self.fail(path, "a recursive alias (a value that contains itself)", pos)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        kind = "map" if isinstance(node, yaml.MappingNode) else "seq"
        if node.tag != _CORE + kind:
            return self.fail(path, _tag_message(node.tag), pos)
        active = active | {id(node)}
        if kind == "seq":
            return [self.build(item, path + (i,), active) for i, item in enumerate(node.value)]
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, path, out)
            if key is not None:
                out[key] = self.build(value_node, path + (key,), active)
        return out

    def key(self, node: yaml.Node, path: Path, seen: dict[str, Any]) -> str | None:
        """A mapping key as the text written (keys are names), or None after recording an issue."""
        pos = self.pos(node.start_mark)
        if not isinstance(node, yaml.ScalarNode):
            return self.fail(path, "a mapping key must be a plain name, not a list or mapping", pos)
        if self.scalar(node, path) is _INVALID:
            return None
        if node.value in seen:
            first = self.keys[path + (node.value,)]
            return self.fail(path + (node.value,), f"duplicate key '{node.value}' (first given at line {first[0]})",
                             pos)
        self.keys[path + (node.value,)] = pos
        return node.value

    def scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        """A scalar by its (resolved or explicit) core-schema tag, or _INVALID after recording an issue."""
        pos = self.pos(node.start_mark)
        kind = node.tag[len(_CORE):] if node.tag.startswith(_CORE) else "str" if node.tag == "!" else None
        if kind not in _SCALARS:
            self.fail(path, _tag_message(node.tag), pos)
            return _INVALID
        try:
            return _SCALARS[kind](node.value)
        except (ValueError, KeyError):
            self.fail(path, f"{node.value!r} is not a valid {_short_tag(node.tag)}", pos)
            return _INVALID


_INVALID = object()
"""Marks a scalar that could not be read (its issue is already recorded)."""


def _tag_message(tag: str) -> str:
    tag = _short_tag(tag)
    if tag.startswith("!!python"):
        return f"tag '{tag}' is not allowed: a spec is plain data and never creates Python objects"
    return f"unknown tag '{tag}'; a spec holds only plain YAML (strings, numbers, booleans, null, lists, mappings)"


def _syntax_message(e: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem and context as one sentence."""
    if not (e.context and e.problem):
        return f"invalid YAML: {e.problem or e.context}"
    line = f" at line {e.context_mark.line + 1}" if e.context_mark is not None else ""
    if e.context.startswith("while "):
        return f"invalid YAML: {e.problem} ({e.context}{line})"
    return f"invalid YAML: {e.context}{line}, {e.problem}"


def _line_col(text: str, index: int) -> tuple[int, int]:
    """0-based (line, col) of a character index."""
    return text.count("\n", 0, index), index - (text.rfind("\n", 0, index) + 1)


def _decode(data: bytes, file: str) -> str:
    """UTF-8 text (a byte-order mark dropped), or a located error at the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[: e.start].decode("utf-8-sig")
        line0, col0 = _line_col(before, len(before))
        raise SpecError([Issue((), f"the file is not UTF-8 text (byte 0x{data[e.start]:02x})", file,
                               line0 + 1, col0 + 1)]) from None


def read_yaml(text: str | bytes, filename: str = "<string>") -> tuple[Any, SourceMap]:
    """The plain data of one YAML document (core schema, no tags, no duplicate keys) and its source map.

    An empty document is an error: a spec file always holds something."""
    if isinstance(text, bytes):
        text = _decode(text, filename)
    reader = _Reader(filename)
    data = reader.read(text, empty="the spec is empty; it needs at least a `model:` section")
    return data, SourceMap(filename, reader.values, reader.keys)


def _read_document(text: str | bytes, filename: str) -> tuple[dict[str, Any], SourceMap]:
    """The root mapping of a spec file and its source map."""
    data, source = read_yaml(text, filename)
    if not isinstance(data, dict):
        raise SpecError([source.issue((), f"a spec is a mapping of sections (version, name, data, model, ...), "
                                          f"not {_describe(data)}")])
    return data, source


# ------------------------------------------------------------------------------------------- overrides


def _override_error(message: str, col: int, path: Path = ()) -> SpecError:
    return SpecError([Issue(path, message, OVERRIDE_FILE, 1, col)])


def _parse_override(text: str) -> tuple[list[str], list[int], Any, _Reader]:
    """``a.b=VALUE`` -> the keys, their 1-based columns, the YAML value and the reader holding its positions."""
    key, eq, value_text = text.partition("=")
    if not eq:
        raise _override_error(f"an override is `dotted.path=value`, got {text!r}", 1)
    parts, cols = key.split("."), [1]
    for part in parts[:-1]:
        cols.append(cols[-1] + len(part) + 1)
    for part, col in zip(parts, cols):
        if not part:
            raise _override_error(f"empty key in override path {key!r}", col)
    reader = _Reader(OVERRIDE_FILE, offset=len(key) + 1)
    try:
        return parts, cols, reader.read(value_text, empty=None), reader
    except SpecError as e:
        raise SpecError([replace(i, path=tuple(parts) + i.path) for i in e.issues]) from None


def _override_step(node: Any, path: Path, part: str, col: int) -> str | int:
    """The key (or list index) ``part`` names inside ``node``, the value at ``path``."""
    if isinstance(node, dict):
        return part
    if not isinstance(node, list):
        raise _override_error(f"cannot set {part!r} inside {dotted(path)}, which is {_describe(node)}", col, path)
    if not part.isdigit() or int(part) >= len(node):
        raise _override_error(f"{dotted(path)} has {len(node)} item(s); {part!r} is not an index of it", col,
                              path + (part,))
    return int(part)


def _apply_override(data: dict[str, Any], source: SourceMap, text: str) -> None:
    """Apply one ``dotted.path=value`` to the raw data (creating missing mappings on the way) and record its
    positions as coming from ``--set``."""
    parts, cols, value, reader = _parse_override(text)
    node, path = data, ()
    for part, col in zip(parts, cols):
        step = _override_step(node, path, part, col)
        path += (step,)
        if len(path) == len(parts):
            node[step] = value
            source.graft(path, OVERRIDE_FILE, reader.values, {(): (1, col), **reader.keys})
        elif isinstance(node, dict) and node.get(step) is None:
            node[step] = {}
            source.graft(path, OVERRIDE_FILE, {(): (1, col)}, {(): (1, col)})
        node = node[step]


# ------------------------------------------------------------------------------------------ validation

_NOUNS = {
    "string_type": "a string", "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list",
    "model_type": "a mapping", "model_attributes_type": "a mapping", "dict_type": "a mapping",
}
"""pydantic type errors -> what was expected."""

_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}


def _describe(value: Any) -> str:
    """A value as a message shows it: ``'abc'``, ``1.5``, ``true``, ``a mapping``, ``an empty value``."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _did_you_mean(word: Any, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _strip(tp: Any) -> Any:
    """``Annotated[X, ...]`` -> X and ``X | None`` -> X."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif _is_union(tp) and len(members := [a for a in get_args(tp) if a is not type(None)]) == 1:
            tp = members[0]
        else:
            return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _union_member(union: Any, elem: Any) -> Any:
    """The member of ``union`` that pydantic names ``elem`` in an error location (a Tag or a type name)."""
    for member in get_args(union):
        tags = [m.tag for m in get_args(member)[1:] if isinstance(m, Tag)] if get_origin(member) is Annotated else []
        if elem in tags or elem == getattr(_strip(member), "__name__", None):
            return member
    return None


def _field_type(model: type[BaseModel], key: Any) -> Any:
    return next((f.annotation for name, f in model.model_fields.items() if key in (name, f.alias)), None)


def _allowed_keys(model: Any) -> list[str]:
    model = _strip(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


@dataclass
class _Error:
    """A pydantic error, its location split into the data path and the union-member tags pydantic adds."""

    kind: str
    path: Path
    owner: Any  # the type at the location's parent (the model of an unknown or missing key)
    input: Any
    ctx: dict[str, Any]
    msg: str
    union: Path | None = None  # data path of the innermost union the location passes through
    member: str | None = None  # ... and the member that failed
    deep: bool = False  # the error lies inside the member, not on the member's type

    @classmethod
    def of(cls, error: dict[str, Any]) -> _Error:
        """Walk the error's ``loc`` through the models' types alongside the data: a step that names a union
        member is a tag, every other step is a key or index of the data."""
        tp, parent, path, union = Spec, None, (), None
        for i, elem in enumerate(error["loc"]):
            parent, stripped = tp, _strip(tp)
            if _is_union(stripped) and (member := _union_member(stripped, elem)) is not None:
                tp, union = member, (path, elem, i < len(error["loc"]) - 1)
                continue
            path += (elem,)
            if isinstance(stripped, type) and issubclass(stripped, BaseModel):
                tp = _field_type(stripped, elem)
            elif get_origin(stripped) in (list, dict):
                tp = get_args(stripped)[-1]
            else:
                tp = None
        path += tuple(getattr((error.get("ctx") or {}).get("error"), "path", ()))  # a FieldError names its field
        out = cls(error["type"], path, parent, error.get("input"), error.get("ctx") or {}, error["msg"])
        if union:
            out.union, out.member, out.deep = union
        return out


def _merge_unions(errors: list[_Error]) -> list[_Error]:
    """pydantic reports one error per union member (``str | Edge``): keep the errors inside the member that
    got furthest, or merge members that all failed on their type into one 'expected A or B' error."""
    groups: dict[Path, list[_Error]] = {}
    for e in errors:
        if e.union is not None:
            groups.setdefault(e.union, []).append(e)
    out = [e for e in errors if e.union is None or len({g.member for g in groups[e.union]}) == 1]
    for where, group in groups.items():
        if len({g.member for g in group}) == 1:
            continue
        deep = [g for g in group if g.deep]
        if deep:
            out += deep
        else:
            nouns = list(dict.fromkeys(_NOUNS.get(g.kind, str(g.member)) for g in group))
            out.append(_Error("union", where, None, group[0].input, {"expected": " or ".join(nouns)}, ""))
    return out


def _unknown_key(e: _Error) -> tuple[str, str | None]:
    """An unknown key and the allowed key it most resembles."""
    return e.path[-1], _did_you_mean(e.path[-1], _allowed_keys(e.owner))


def _message(e: _Error) -> tuple[str, Path, bool]:
    """A human message for one error, and where it points: a data path and whether at its key."""
    if e.kind == "extra_forbidden":
        key, suggestion = _unknown_key(e)
        hint = f"did you mean '{suggestion}'?" if suggestion else f"allowed: {', '.join(_allowed_keys(e.owner))}"
        return f"unknown key '{key}'; {hint}", e.path, True
    if e.kind == "missing":
        return f"missing required key '{e.path[-1]}'", e.path[:-1], False
    if e.kind == "layer_kind":
        return _layer_message(e)
    if e.kind == "literal_error":
        choices = re.findall(r"'([^']*)'", e.ctx.get("expected", "")) or [e.ctx.get("expected", "")]
        suggestion = _did_you_mean(e.input, choices) if isinstance(e.input, str) else None
        hint = f"; did you mean '{suggestion}'?" if suggestion else ""
        return f"{_describe(e.input)} is not one of {', '.join(choices)}{hint}", e.path, False
    if e.kind == "union":
        return f"expected {e.ctx['expected']}, got {_describe(e.input)}", e.path, False
    if e.kind in _NOUNS:
        return f"expected {_NOUNS[e.kind]}, got {_describe(e.input)}", e.path, False
    if e.kind in _BOUNDS:
        key, op = _BOUNDS[e.kind]
        bound = e.ctx[key]
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"must be {op} {bound}, got {_describe(e.input)}", e.path, False
    if e.kind == "too_short":
        return f"needs at least {e.ctx['min_length']} item(s), got {e.ctx['actual_length']}", e.path, False
    if e.kind == "string_pattern_mismatch":
        return f"{_describe(e.input)} does not match the pattern {e.ctx['pattern']}", e.path, False
    return e.msg.removeprefix("Value error, "), e.path, False


def _layer_message(e: _Error) -> tuple[str, Path, bool]:
    """The message of a layer whose kind pydantic could not tell (no or several of dense/residual)."""
    layer, kinds = e.input, ", ".join(LAYER_KINDS)
    if not isinstance(layer, dict):
        return f"a layer is a mapping like `dense: {{width: 128}}`, got {_describe(layer)}", e.path, False
    present = [k for k in LAYER_KINDS if k in layer]
    if len(present) > 1:
        return f"a layer has exactly one kind ({kinds}); this one has {' and '.join(present)}", e.path, False
    unknown = [k for k in layer if k not in _allowed_keys(DenseLayer) + list(LAYER_KINDS)]
    if unknown:
        suggestion = _did_you_mean(unknown[0], LAYER_KINDS)
        hint = f"did you mean '{suggestion}'?" if suggestion else f"a layer is one of: {kinds}"
        return f"unknown layer kind '{unknown[0]}'; {hint}", e.path + (unknown[0],), True
    return f"a layer needs one of the keys: {kinds}", e.path, False


def _issues(error: ValidationError, source: SourceMap) -> list[Issue]:
    """Located, human issues for every error pydantic found, sorted by position."""
    errors = _merge_unions([_Error.of(e) for e in error.errors()])
    # a missing key that an unknown key resembles (`form:` for `from:`) is said by the unknown key's issue
    suggested = {e.path[:-1] + (_unknown_key(e)[1],) for e in errors if e.kind == "extra_forbidden"}
    issues = []
    for e in errors:
        if not (e.kind == "missing" and e.path in suggested):
            message, where, at_key = _message(e)
            issues.append(Issue(e.path, message, *source.locate(where, at_key)))
    return _sorted(issues, source.file)


def _sorted(issues: Iterable[Issue], file: str) -> list[Issue]:
    unique = {str(i): i for i in issues}.values()
    return sorted(unique, key=lambda i: (i.file != file, i.line or 0, i.col or 0, str(i)))


# ---------------------------------------------------------------------------------------------- public


def load_spec_text(text: str | bytes, filename: str = "<string>", overrides: Sequence[str] = ()) -> Spec:
    """Validate a spec given as YAML text (or UTF-8 bytes), after applying ``dotted.path=value`` overrides.

    Raises :class:`SpecError` listing every problem, each located as ``FILE:LINE:COL`` (``--set:1:COL``
    for an override)."""
    data, source = _read_document(text, filename)
    issues: list[Issue] = []
    for override in overrides:
        try:
            _apply_override(data, source, override)
        except SpecError as e:
            issues += e.issues
    if issues:
        raise SpecError(issues)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(_issues(e, source)) from None
    spec._source = source
    return spec


def load_spec(path: str | FsPath, overrides: Sequence[str] = ()) -> Spec:
    """Read and validate the spec file at ``path`` (see :func:`load_spec_text`)."""
    try:
        data = FsPath(path).read_bytes()
    except OSError as e:
        reason = "no such file" if isinstance(e, FileNotFoundError) else e.strerror or str(e)
        raise SpecError([Issue((), f"cannot read the spec: {reason}", str(path), 1, 1)]) from None
    return load_spec_text(data, str(path), overrides)

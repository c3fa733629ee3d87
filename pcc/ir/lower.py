"""Lowering: a validated :class:`~pcc.spec.models.Spec` becomes a :class:`~pcc.ir.graph.Graph`.

Both the ``layers:`` chain shorthand and the general ``graph:`` form lower to the same IR; the structural
checks (unknown nodes, cycles, dangling nodes, width mismatches) run on the IR, so they hold for both.
Every problem becomes a located :class:`~pcc.errors.SpecError`, all of them at once.
"""

from __future__ import annotations

from dataclasses import replace
from graphlib import CycleError, TopologicalSorter

from pcc.errors import Issue, SpecError
from pcc.ir.graph import INPUT, OUTPUT, Edge, Graph, Node
from pcc.spec.models import Edge as SpecEdge
from pcc.spec.models import Spec


MODE_CLAMPS: dict[str, tuple[tuple[str, str], ...]] = {
    "discriminative": ((INPUT, "x"), (OUTPUT, "y")),
    "generative": ((INPUT, "y"), (OUTPUT, "x")),
    "unsupervised": ((OUTPUT, "x"),),
}
"""Which node holds which slot of a batch (x, y) in training, per ``model.mode``; unclamped nodes are free."""


def lower(spec: Spec, shapes: tuple[int, int] | None = None) -> Graph:
    """Lower ``spec`` to the graph IR. ``shapes`` is (x dim D, y dim C); read from the dataset if None.

    The input (root) and output (sink) widths are those of the slots the mode clamps them to; a free root
    (``mode: unsupervised``) has ``model.latent_width`` units."""
    if shapes is None:
        from pcc.data import peek_shapes

        shapes = peek_shapes(spec.data)
    issues: list[Issue] = []
    model = spec.model
    clamps = MODE_CLAMPS[model.mode]
    slot_width = dict(zip(("x", "y"), shapes))
    d_in, d_out = (slot_width[dict(clamps)[n]] if n in dict(clamps) else model.latent_width for n in (INPUT, OUTPUT))
    if model.layers is not None:
        nodes, edges = _lower_chain(spec, d_in, d_out, issues)
    else:
        nodes, edges = _lower_graph(spec, d_in, d_out, issues)
    graph = None
    if not issues:
        graph = _check(nodes, edges, spec, issues)
    for name in model.precision:
        if name not in {n.name for n in nodes} or name == INPUT:
            issues.append(Issue(("model", "precision", name), f"no node named '{name}' carries an energy"))
    learned = _learned_precision(model, [n.name for n in nodes if n.name != INPUT], issues)
    if issues:
        raise SpecError(_locate(spec, issues))
    assert graph is not None
    bidir = model.bidirectional and (model.bidirectional.alpha_f, model.bidirectional.alpha_b)
    return replace(graph, learned_precision=learned, clamps=clamps, amortised=spec.inference.init == "amortised",
                   bidirectional=bidir or None, dtype=model.dtype, matmul_precision=model.matmul_precision)


def _learned_precision(model, energy_nodes: list[str], issues: list[Issue]) -> tuple[str, ...]:
    """The nodes of ``model.learn_precision`` (``true``: every node with a Gaussian energy)."""
    gaussian = [n for n in energy_nodes if not (n == OUTPUT and model.output_energy == "cross_entropy")]
    if model.learn_precision is True:
        return tuple(gaussian)
    for i, name in enumerate(model.learn_precision or ()):
        if name not in gaussian:
            why = ("a cross-entropy output has no Gaussian normaliser" if name == OUTPUT and name in energy_nodes
                   else f"no node named '{name}' carries an energy")
            issues.append(Issue(("model", "learn_precision", i), f"{why}; nodes with a learnable precision: "
                                                                  f"{', '.join(gaussian)}"))
    return tuple(dict.fromkeys(model.learn_precision or ()))


def _locate(spec: Spec, issues: list[Issue]) -> list[Issue]:
    try:
        from pcc.spec.loader import locate_issues
    except ImportError:  # pragma: no cover - loader always present in a full install
        return issues
    return locate_issues(spec, issues)


def _lower_chain(spec: Spec, d_in: int, d_out: int, issues: list[Issue]):
    """``layers:`` → a chain input → h1 → … → output; a repeated layer becomes one stacked node."""
    model = spec.model
    nodes = [Node(INPUT, d_in, "identity", "input")]
    edges: list[Edge] = []
    prev = nodes[0]
    last = len(model.layers) - 1
    for i, layer in enumerate(model.layers):
        path = ("model", "layers", i)
        kind = "residual" if hasattr(layer, "residual") else "dense"
        op = getattr(layer, kind)
        is_out = i == last
        width = op.width or (d_out if is_out else prev.width if kind == "residual" else None)
        if width is None:
            issues.append(Issue(path + (kind,), "`width` is required on every dense layer but the last"))
            return nodes, edges
        if is_out and width != d_out:
            issues.append(Issue(path + (kind, "width"),
                                f"the last layer is the output and must have the width of the data it holds, "
                                f"{d_out}, not {width}"))
        hidden_act = op.activation or model.activation
        bias = model.bias if op.bias is None else op.bias
        ops = ("dense", "identity") if kind == "residual" else ("dense",)
        if kind == "residual" and prev.width != width:
            issues.append(Issue(path + (kind, "width"),
                                f"a residual layer's identity skip needs equal widths: {prev.name} has "
                                f"{prev.width} units, this layer {width}"))
        # A stack shares one (R, N, N) parameter, so a first copy that changes width stands alone.
        copies = [layer.repeat]
        if kind == "dense" and layer.repeat > 1 and prev.width != width:
            copies = [1, layer.repeat - 1]
        if is_out and copies[-1] > 1:
            copies = copies[:-1] + [copies[-1] - 1, 1]
        for j, repeat in enumerate(copies):
            final = is_out and j == len(copies) - 1
            name = OUTPUT if final else (layer.name if layer.name and len(copies) == 1 else None)
            name = name or f"h{len(nodes)}"
            role = "output" if final else "hidden"
            act = (op.activation or "identity") if final else hidden_act
            node = Node(name, width, act, role, repeat, path)
            edges += [Edge(prev.name, name, o, bias and o == "dense", path) for o in ops]
            nodes.append(node)
            prev = node
    return nodes, edges


def _lower_graph(spec: Spec, d_in: int, d_out: int, issues: list[Issue]):
    """``graph:`` → nodes and edges as written; ``input`` is implicit and ``output`` required."""
    model = spec.model
    nodes = {INPUT: Node(INPUT, d_in, "identity", "input")}
    edges: list[Edge] = []
    if INPUT in model.graph:
        issues.append(Issue(("model", "graph", INPUT), "'input' is the data node and cannot be declared"))
    if OUTPUT not in model.graph:
        issues.append(Issue(("model", "graph"), "the graph needs a node named 'output' (the target)"))
    for name, gnode in model.graph.items():
        path = ("model", "graph", name)
        if name == INPUT:
            continue
        is_out = name == OUTPUT
        width = gnode.width or (d_out if is_out else None)
        if width is None:
            issues.append(Issue(path, f"node '{name}' needs a `width`"))
            continue
        if is_out and width != d_out:
            issues.append(Issue(path + ("width",),
                                f"'output' must have the width of the data it holds, {d_out}, not {width}"))
        act = gnode.activation or ("identity" if is_out else model.activation)
        nodes[name] = Node(name, width, act, "output" if is_out else "hidden", 1, path)
        for j, item in enumerate(gnode.inputs):
            e = item if isinstance(item, SpecEdge) else SpecEdge(**{"from": item})
            bias = model.bias if e.bias is None else e.bias
            edges.append(Edge(e.from_, name, e.op, bias and e.op == "dense", path + ("inputs", j)))
    for e in edges:
        if e.src not in nodes and e.src not in model.graph:
            from difflib import get_close_matches

            hint = get_close_matches(e.src, list(nodes), n=1)
            issues.append(Issue(e.path, f"unknown node '{e.src}'" + (f"; did you mean '{hint[0]}'?" if hint else "")))
    return list(nodes.values()), edges


def _check(nodes: list[Node], edges: list[Edge], spec: Spec, issues: list[Issue]) -> Graph | None:
    """Topological order, cycles, dangling nodes, identity-edge widths."""
    by_name = {n.name: n for n in nodes}
    order_graph = {n.name: {e.src for e in edges if e.dst == n.name} for n in nodes}
    try:
        order = list(TopologicalSorter(order_graph).static_order())
    except CycleError as err:
        cycle = err.args[1]
        issues.append(Issue(by_name[cycle[0]].path, "cycle: " + " -> ".join(cycle)))
        return None
    feeds_output = {OUTPUT}
    for name in reversed(order):
        if any(e.src == name and e.dst in feeds_output for e in edges):
            feeds_output.add(name)
    for n in nodes:
        if n.name not in feeds_output and n.name != INPUT:
            issues.append(Issue(n.path, f"node '{n.name}' is dangling: nothing connects it to 'output'"))
    seen = set()
    for e in edges:
        if (e.src, e.dst, e.op) in seen:
            issues.append(Issue(e.path, f"duplicate {e.op} edge {e.src} -> {e.dst}"))
        seen.add((e.src, e.dst, e.op))
        src, dst = by_name[e.src], by_name[e.dst]
        if e.op == "identity" and src.width != dst.width:
            issues.append(Issue(e.path, f"identity edge {e.src} -> {e.dst} joins different widths "
                                        f"({src.width} and {dst.width})"))
        if dst.repeat > 1 and e.op == "identity" and src.width != dst.width:
            issues.append(Issue(e.path, "a stacked node needs equal widths in and out"))
    if issues:
        return None
    m = spec.model
    return Graph(
        nodes=tuple(by_name[name] for name in order),
        edges=tuple(edges),
        ordering=m.ordering,
        output_energy=m.output_energy,
        precision=tuple(sorted(m.precision.items())),
    )

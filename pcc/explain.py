"""``pcc explain``: what a spec compiles to, without importing jax.

Every node and edge with its shape, parameter count, init, forward multiplier and learning-rate scale,
plus the inference and learning plan, as a plain dict (``--json``) or rich tables.
"""

from __future__ import annotations

from typing import Any

from pcc.ir.chunks import batch_group_count, chunk_counts, chunk_sizes
from pcc.param.rules import parameterise_spec
from pcc.spec.models import ODE, Spec, carries_errors, chunks_training_inference, update_steps


def explain(spec: Spec, shapes: tuple[int, int] | None = None) -> dict[str, Any]:
    """A JSON-ready description of the compiled network and its loops."""
    graph, table = parameterise_spec(spec, shapes)
    m, inf, learn = spec.model, spec.inference, spec.learning
    in_loop, chunks = chunks_training_inference(spec), _layer_chunks(graph, spec)  # where chunks and groups apply
    nodes = [{
        "name": n.name, "role": n.role, "width": n.width, "repeat": n.repeat, "activation": n.activation,
        "shape": ([n.repeat] if n.repeat > 1 else []) + ["B", n.width],
        "precision": graph.precision_of(n.name) if n.role != "input" else None,
        "learned_precision": n.name in graph.learned_precision,
    } for n in graph.nodes]
    edges = []
    for e in graph.edges:
        src, dst = graph.node(e.src), graph.node(e.dst)
        row: dict[str, Any] = {"src": e.src, "dst": e.dst, "op": e.op}
        if e.op == "dense":
            p = table[e.key]
            shape = ([dst.repeat] if dst.repeat > 1 else []) + [src.width, dst.width]
            count = dst.repeat * (src.width * dst.width + (dst.width if e.bias else 0))
            init = (("N(0,1)" if p.init_scale == 1 else f"N(0,{p.init_scale:g}²)") if p.init == "normal"
                    else f"U(±{p.init_scale:.3g})")
            row.update(shape=shape, params=count, bias=e.bias, init=init, multiplier=p.multiplier,
                       multiplier_rule=p.why, lr_scale=p.lr_scale)
        else:
            row.update(shape=None, params=0, bias=False, init=None, multiplier=1.0, multiplier_rule="identity",
                       lr_scale=None)
        edges.append(row)
    extra = _extra_params(graph)
    steps = "0 (backprop)" if learn.algorithm == "bp" else (
        f"until ‖∇z F‖rms < {inf.tol:g}, at most {inf.steps}" if inf.tol else str(inf.steps))
    if inf.solver == "ode" and learn.algorithm != "bp":
        ode, (t1, dt0) = inf.ode or ODE(), inf.ode_times()
        stop = f", until ‖dz/dt‖rms < {inf.tol:g}" if inf.tol else ""
        steps = f"{ode.method} ({ode.controller}, dt0 {dt0:g}) to t1 = {t1:g}{stop}, at most {ode.max_steps}"
    return {
        "name": spec.name,
        "parameterisation": m.parameterisation,
        "ordering": m.ordering,
        "dtype": m.dtype,
        "matmul_precision": m.matmul_precision,
        "depth": graph.depth,
        "total_params": sum(e["params"] for e in edges) + sum(extra.values()),
        "extra_params": extra,
        "nodes": nodes,
        "edges": edges,
        "mode": m.mode,
        "clamps": {name: slot for name, slot in graph.clamps},
        "inference": {
            "solver": inf.solver, "steps": steps, "step_size": inf.step_size,
            "step_convention": inf.step_convention, "init": inf.init, "state": inf.state,
            "errors": "carried" if carries_errors(spec) else "recomputed",
            "layer_chunks": chunks if in_loop else None,
            "batch_groups": _batch_groups(graph, spec, chunks) if in_loop else None,
            "per_sample_step": inf.step_size / ((inf.tuned_batch_size or spec.data.batch_size)
                                                if inf.step_convention == "batch_mean" else 1),
        },
        "learning": {
            "algorithm": learn.algorithm, "optimizer": learn.optimizer.model_dump(exclude_none=True),
            "epochs": learn.epochs, "schedule": learn.schedule.name, "batch_size": spec.data.batch_size,
            "output_energy": m.output_energy, "learned_precision": list(graph.learned_precision),
            "nudge": learn.nudge.model_dump() if learn.nudge else None,
            "updates": sorted(update_steps(learn.updates, inf.steps)) if learn.updates is not None else None,
        },
    }


def _layer_chunks(graph, spec: Spec) -> dict[str, Any] | None:
    """How inference splits each stack: its chunk sizes (under ``auto``, those on a CPU; one chunk elsewhere)."""
    setting = spec.parallel.layer_chunks
    counts = chunk_counts(graph, setting, spec.data.batch_size, cpu=True)
    stacks = {n.name: chunk_sizes(n.repeat, counts[n.name]) for n in graph.nodes if n.repeat > 1}
    return {"setting": setting, "sizes": stacks} if stacks else None


def _batch_groups(graph, spec: Spec, chunks: dict[str, Any] | None) -> dict[str, Any] | None:
    """How many groups of samples inference runs side by side (under ``auto``, on a CPU of several cores where
    one device runs the step and no stack is in layer chunks: ``chunks`` is :func:`_layer_chunks`'s answer);
    None for one group."""
    setting, size = spec.parallel.batch_groups, spec.data.batch_size
    chunked = chunks is not None and any(len(sizes) > 1 for sizes in chunks["sizes"].values())
    groups = batch_group_count(graph, setting, size, cores=1 if chunked and setting == "auto" else 2)
    return {"setting": setting, "groups": groups, "samples": -(-size // groups)} if groups > 1 else None


def _extra_params(graph) -> dict[str, int]:
    """Parameters beside the forward edges: bottom-up maps, learned log-precisions, the amortiser."""
    extra = {}
    if graph.bidirectional:
        extra["bottom_up"] = sum(graph.node(e.dst).repeat * graph.node(e.src).width * (graph.node(e.dst).width + e.bias)
                                 for e in graph.edges if e.op == "dense")
    if graph.learned_precision:
        extra["log_precision"] = sum(graph.node(n).repeat for n in graph.learned_precision)
    if graph.amortised:
        x = graph.x_node
        extra["amortiser"] = sum(n.repeat * n.width * (x.width + 1) for n in graph.nodes if n.name != x.name)
    return extra


def render(info: dict[str, Any]) -> None:
    """Print :func:`explain`'s result as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{info['name']}[/]: {info['parameterisation']} parameterisation, "
                  f"{info['ordering']} ordering, depth L = {info['depth']}, {info['total_params']:,} parameters, "
                  f"{info['dtype']} (matmul precision {info['matmul_precision']})")
    clamps = ", ".join(f"{name} ← {slot}" for name, slot in info["clamps"].items())
    console.print(f"[bold]mode[/]: {info['mode']} ({clamps}; every other node free)")
    nodes = Table("node", "role", "shape", "activation", "precision", title="nodes")
    for n in info["nodes"]:
        nodes.add_row(n["name"], n["role"], "×".join(map(str, n["shape"])), n["activation"],
                      "" if n["precision"] is None else f"{n['precision']:g}" + (" (learned)" if n["learned_precision"]
                                                                                 else ""))
    console.print(nodes)
    edges = Table("edge", "op", "weight shape", "params", "init", "multiplier", "rule", "lr scale", title="edges")
    for e in info["edges"]:
        edges.add_row(f"{e['src']} → {e['dst']}", e["op"], "×".join(map(str, e["shape"] or [])) or "-",
                      f"{e['params']:,}", e["init"] or "-", f"{e['multiplier']:.6g}", e["multiplier_rule"],
                      "-" if e["lr_scale"] is None else f"{e['lr_scale']:.4g}")
    console.print(edges)
    if info["extra_params"]:
        console.print("other parameters: " + ", ".join(f"{k.replace('_', ' ')} {v:,}"
                                                        for k, v in info["extra_params"].items()))
    inf, learn = info["inference"], info["learning"]
    console.print(f"[bold]inference[/]: {inf['solver']} on the {inf['state']}, steps {inf['steps']}, step size "
                  f"{inf['step_size']:g} ({inf['step_convention']}; per-sample step {inf['per_sample_step']:.4g}), "
                  f"init {inf['init']}, errors {inf['errors']}")
    if inf["layer_chunks"]:
        chunks = inf["layer_chunks"]
        where = " on a CPU, one chunk on accelerators" if chunks["setting"] == "auto" else ""
        console.print("[bold]layer chunks[/] (parallel.layer_chunks " + str(chunks["setting"]) + "): " + "; ".join(
            f"{name} in {len(sizes)} chunk{'s' * (len(sizes) > 1)} of "
            f"{' or '.join(map(str, sorted(set(sizes), reverse=True)))} layers"
            for name, sizes in chunks["sizes"].items()) + where)
    if inf["batch_groups"]:
        groups = inf["batch_groups"]
        where = (" on a CPU of several cores when one device runs the step; one group on accelerators"
                 if groups["setting"] == "auto" else "")
        console.print(f"[bold]batch groups[/] (parallel.batch_groups {groups['setting']}): the batch in "
                      f"{groups['groups']} groups of up to {groups['samples']} samples, side by side{where}")
    opt = ", ".join(f"{k}={v}" for k, v in learn["optimizer"].items())
    console.print(f"[bold]learning[/]: {learn['algorithm']}, {opt}, {learn['epochs']} epoch(s), schedule "
                  f"{learn['schedule']}, batch {learn['batch_size']}, output energy {learn['output_energy']}")
    if learn["nudge"]:
        nudge = learn["nudge"]
        final = f" → {nudge['beta_final']:g} ({nudge['schedule']})" if nudge["beta_final"] else ""
        beta = f"β {nudge['beta']:g}{final}"
        console.print(f"[bold]nudging[/]: {nudge['mode']}, {beta}")
    if learn["updates"] is not None:
        console.print(f"[bold]weight steps[/] at inference steps {learn['updates']} "
                      f"(of 0 … {info['inference']['steps']})")

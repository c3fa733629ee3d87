"""Parameterisation rules: for every dense edge of a graph, its init, forward multiplier and LR scale.

All three rules derive from the graph, not from one layout. For a dense edge ``src → dst`` with
fan-in n (the source width), K dense edges into ``dst`` and network depth L (weight layers on the longest
path):

====== =========== ============================ ============================ ================================
rule   init        from ``input``               hidden (× 1/√L if ``dst``     into ``output``
                                                has an identity skip)
====== =========== ============================ ============================ ================================
sp     U(±1/√n)    1                            1                            1/γ
ntp    N(0, 1)     g/√(n·K)                     g/√(n·K)                     g/(γ·√(n·K))
mupc   N(0, 1)     g/√(n·K)                     g/√(n·K)                     g/(γ·n·√K)
====== =========== ============================ ============================ ================================

For chains and residual stacks this is exactly the table of THEORY.md §3 (a_1 = 1/√D, a_l = 1/√N or
1/√(N·L) with skips, a_L = 1/N under μPC). Each weight is initialised once; the multiplier is applied in the
forward pass only (JPC's ntp applied 1/√n twice: in the init *and* the multiplier).

Optional per-leaf learning-rate scales (``learning.lr_scaling``, μPC only): residual-branch weights get
lr/√(n·L) under scale-invariant optimisers (adam family) and lr·γ²·n under sgd; other leaves 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

from pcc.ir.graph import INPUT, OUTPUT, Edge, Graph, bottom_up_key

ADAPTIVE = {"adam", "adamw", "rmsprop", "lamb", "lion", "adagrad"}


@dataclass(frozen=True)
class EdgeParam:
    """How one dense edge is parameterised."""

    init: Literal["normal", "uniform"]
    init_scale: float  # std (normal) or bound (uniform)
    multiplier: float
    lr_scale: float = 1.0
    why: str = ""  # the rule that produced the multiplier, for `pcc explain`


Rule = Callable[[Graph, Edge, float, float], EdgeParam]
RULES: dict[str, Rule] = {}


def rule(name: str):
    def register(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return register


def _edge_facts(graph: Graph, edge: Edge) -> tuple[int, int, bool]:
    fan_in = graph.node(edge.src).width
    k = max(graph.dense_in_degree(edge.dst), 1)
    residual_branch = graph.has_skip(edge.dst) and edge.src != INPUT and edge.dst != OUTPUT
    return fan_in, k, residual_branch


@rule("sp")
def sp(graph: Graph, edge: Edge, gain: float, gamma: float) -> EdgeParam:
    fan_in, _, _ = _edge_facts(graph, edge)
    mult = 1 / gamma if edge.dst == OUTPUT and edge.src != INPUT else 1.0
    return EdgeParam("uniform", 1 / math.sqrt(fan_in), mult, why="1" if mult == 1 else "1/γ")


def _scaled(graph: Graph, edge: Edge, gain: float, gamma: float, readout_power: float) -> EdgeParam:
    """ntp (readout_power ½) and mupc (readout_power 1): N(0,1) weights, multipliers from the graph."""
    fan_in, k, residual_branch = _edge_facts(graph, edge)
    k_note = "" if k == 1 else f"·K={k}"
    if edge.src == INPUT:
        return EdgeParam("normal", 1.0, gain / math.sqrt(fan_in * k), why=f"1/√(D{k_note})" if k_note else "1/√D")
    if edge.dst == OUTPUT:
        mult = gain / (gamma * fan_in**readout_power * math.sqrt(k))
        return EdgeParam("normal", 1.0, mult, why=("1/N" if readout_power == 1 else "1/√N") + k_note)
    depth = graph.depth if residual_branch else 1
    why = f"1/√(N{k_note}·L={depth})" if residual_branch else (f"1/√(N{k_note})" if k_note else "1/√N")
    return EdgeParam("normal", 1.0, gain / math.sqrt(fan_in * k * depth), why=why)


@rule("ntp")
def ntp(graph: Graph, edge: Edge, gain: float, gamma: float) -> EdgeParam:
    return _scaled(graph, edge, gain, gamma, readout_power=0.5)


@rule("mupc")
def mupc(graph: Graph, edge: Edge, gain: float, gamma: float) -> EdgeParam:
    return _scaled(graph, edge, gain, gamma, readout_power=1.0)


def lr_scale(graph: Graph, edge: Edge, optimizer: str, gamma: float) -> float:
    """μPC per-leaf learning-rate scale of a dense edge (1 off residual branches)."""
    fan_in, _, residual_branch = _edge_facts(graph, edge)
    if not residual_branch:
        return 1.0
    if optimizer in ADAPTIVE:
        return 1 / math.sqrt(fan_in * graph.depth)
    return gamma**2 * fan_in


def parameterise(graph: Graph, name: str, *, gain: float = 1.0, gamma: float = 1.0,
                 lr_scaling: bool = False, optimizer: str = "adam") -> dict[str, EdgeParam]:
    """The parameterisation of every dense edge, keyed by :attr:`Edge.key`."""
    table = {}
    for edge in graph.edges:
        if edge.op != "dense":
            continue
        p = RULES[name](graph, edge, gain, gamma)
        if lr_scaling and name == "mupc":
            p = EdgeParam(p.init, p.init_scale, p.multiplier, lr_scale(graph, edge, optimizer, gamma), p.why)
        table[edge.key] = p
        if graph.bidirectional:
            table[bottom_up_key(edge.key)] = bottom_up(graph, edge, name, gain)
    return table


def bottom_up(graph: Graph, edge: Edge, name: str, gain: float) -> EdgeParam:
    """The bottom-up map V: dst → src of a dense edge (bidirectional PC): the rule's init with a hidden
    multiplier of fan-in n = width(dst): sp U(±1/√n), a = 1; ntp and mupc N(0, 1), a = g/√n."""
    n = graph.node(edge.dst).width
    if name == "sp":
        return EdgeParam("uniform", 1 / math.sqrt(n), 1.0, why="1")
    return EdgeParam("normal", 1.0, gain / math.sqrt(n), why="1/√N")


def parameterise_spec(spec, shapes: tuple[int, int] | None = None) -> tuple[Graph, dict[str, EdgeParam]]:
    """Lower ``spec`` to its graph and parameterise it as the spec says: where ``pcc.compile`` and
    ``pcc explain`` both start. ``shapes`` is (input dim, target dim), read from the dataset if None."""
    from pcc.ir.lower import lower

    graph = lower(spec, shapes)
    m, learn = spec.model, spec.learning
    return graph, parameterise(graph, m.parameterisation, gain=m.gain, gamma=m.output_gamma,
                               lr_scaling=learn.lr_scaling, optimizer=learn.optimizer.name)

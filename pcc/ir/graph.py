"""The typed, immutable graph IR.

A predictive coding network is a DAG of *nodes* (activities) joined by *edges* (ops). A node's prediction is
the sum of its incoming edges applied to their sources; its energy is the squared error between its activity
and that prediction. ``input`` is the one root and ``output`` the one sink; ``clamps`` says which nodes are
held at which slot of a batch ``(x, y)`` (the mode: discriminative ``input ← x, output ← y``; generative
``input ← y, output ← x``; unsupervised ``output ← x`` with a free root). Every other node is free.

A node with ``repeat = R > 1`` is a *stacked chain*: R copies of the node, copy 0 fed by the node's incoming
edges and copy k by copy k−1 through the same ops. Its activities are one ``(R, B, N)`` array and each dense
edge into it one ``(R, fan_in, N)`` parameter, so depth never shows up in the traced program's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

Role = Literal["input", "hidden", "output"]
INPUT, OUTPUT = "input", "output"


@dataclass(frozen=True)
class Node:
    """An activity of ``width`` units (``repeat`` copies when stacked)."""

    name: str
    width: int
    activation: str = "identity"
    role: Role = "hidden"
    repeat: int = 1
    path: tuple = ()  # where in the spec it was declared

    @property
    def layers(self) -> int:
        """Weight layers this node stands for (``repeat``; 0 for the input)."""
        return 0 if self.role == INPUT else self.repeat

    def label(self, k: int) -> str:
        return f"{self.name}[{k}]" if self.repeat > 1 else self.name


@dataclass(frozen=True)
class Edge:
    """An op from ``src`` into ``dst``. Ops are named; the op registry (``pcc.ir.ops``) defines them."""

    src: str
    dst: str
    op: str = "dense"
    bias: bool = False
    path: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.src}->{self.dst}:{self.op}"


@dataclass(frozen=True)
class Graph:
    """Nodes in topological order (``input`` first) and the edges between them."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    ordering: str = "w_phi"  # "w_phi": a W φ(z); "phi_w": φ(a W z)
    output_energy: str = "mse"
    precision: tuple[tuple[str, float], ...] = ()
    learned_precision: tuple[str, ...] = ()  # nodes whose precision is a parameter (initialised at `precision`)
    clamps: tuple[tuple[str, str], ...] = ((INPUT, "x"), (OUTPUT, "y"))  # node ← batch slot, in training
    amortised: bool = False  # an amortiser x → every free node initialises inference (hybrid PC)
    bidirectional: tuple[float, float] | None = None  # (α_f, α_b): a bottom-up energy beside the top-down one
    dtype: str = "float32"  # storage dtype of weights and activities ("bfloat16": f32 accumulation and energies)
    matmul_precision: str = "highest"  # float32 matmul precision of every dense op ("highest", "high", "default")

    @cached_property
    def by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        return self.by_name[name]

    def incoming(self, name: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.dst == name)

    def dense_in_degree(self, name: str) -> int:
        return sum(e.op == "dense" for e in self.incoming(name))

    def has_skip(self, name: str) -> bool:
        return any(e.op == "identity" for e in self.incoming(name))

    @property
    def input(self) -> Node:
        return self.by_name[INPUT]

    @property
    def output(self) -> Node:
        return self.by_name[OUTPUT]

    @property
    def free(self) -> tuple[Node, ...]:
        """Nodes whose activities inference updates in training: every node not clamped (all hidden nodes,
        and the root when the mode leaves it free)."""
        clamped = {name for name, _ in self.clamps}
        return tuple(n for n in self.nodes if n.name not in clamped)

    @property
    def x_node(self) -> Node:
        """The node that holds the batch's x."""
        return self.by_name[next(name for name, slot in self.clamps if slot == "x")]

    @property
    def energy_nodes(self) -> tuple[Node, ...]:
        """Nodes that carry an energy term (every node with a prediction)."""
        return tuple(n for n in self.nodes if n.role != INPUT)

    def precision_of(self, name: str) -> float:
        return dict(self.precision).get(name, 1.0)

    @cached_property
    def depth(self) -> int:
        """L: weight layers on the longest input→output path (a stack of R counts R)."""
        longest: dict[str, int] = {INPUT: 0}
        for n in self.nodes[1:]:
            longest[n.name] = max(longest[e.src] for e in self.incoming(n.name)) + n.repeat
        return longest[OUTPUT]

    @cached_property
    def layer_labels(self) -> tuple[str, ...]:
        """One label per weight layer (per copy of a stacked node), in topological order."""
        return tuple(n.label(k) for n in self.energy_nodes for k in range(n.repeat))


def bottom_up_key(name: str) -> str:
    """The errors' key of node ``name``'s bottom-up error z_in − g(z_name) (bidirectional PC)."""
    return f"{name}^"

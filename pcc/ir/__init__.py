"""The typed, immutable graph IR and its lowering from a spec. Knows nothing of flax or YAML."""

from pcc.ir.graph import Edge, Graph, Node
from pcc.ir.lower import lower

__all__ = ["Edge", "Graph", "Node", "lower"]

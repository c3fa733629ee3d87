"""Bridge from a compiled pcc network to the closed forms: a linear chain's :class:`LinearChain`."""

from __future__ import annotations

import numpy as np

from pcc.errors import PccError
from pcc.theory.linear import LinearChain


def linear_chain(compiled, params) -> LinearChain:
    """The :class:`LinearChain` of a compiled linear chain network (identity activations, no biases).

    Stacked nodes are split into their copies; the multipliers are the ones baked into the modules.
    """
    from flax import nnx

    graph = compiled.graph
    pure = nnx.to_pure_dict(params)["edges"]
    weights, multipliers, skips, precisions = [], [], [], []
    for node in graph.energy_nodes:
        incoming = graph.incoming(node.name)
        dense = [e for e in incoming if e.op == "dense"]
        skip = any(e.op == "identity" for e in incoming)
        if len(dense) != 1 or len(incoming) > 2 or dense[0].bias:
            raise PccError(f"node '{node.name}' is not a linear chain layer (one dense edge, optional skip, no bias)")
        if node.activation != "identity" or graph.node(dense[0].src).activation != "identity":
            raise PccError(f"closed forms need identity activations; '{node.name}' uses {node.activation}")
        kernel = np.asarray(pure[node.name][dense[0].src]["kernel"], np.float64)
        mult = compiled.table[dense[0].key].multiplier
        for k in range(node.repeat):
            weights.append(kernel[k] if node.repeat > 1 else kernel)
            multipliers.append(mult)
            skips.append(skip)
            precisions.append(graph.precision_of(node.name))
    return LinearChain(weights, multipliers, skips, output_precision=precisions[-1],
                       hidden_precisions=precisions[:-1])

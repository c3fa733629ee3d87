"""The one energy of a predictive coding network; everything else differentiates it.

For a sample i with node values z_n (input and output clamped in discriminative mode) and predictions
μ_n = Σ_{edges into n} op(z_src), the energy is

    F_i = Σ_n λ_n · E_n(z_n, μ_n),   E_n = ½‖z_n − μ_n‖²   (−Σ y log softmax(μ) at a cross-entropy output)

summed over the copies of a stacked node. It is defined per sample: inference descends Σ_i F_i (so each
sample's activities follow their own gradient, whatever the batch size) and learning descends the batch
mean.

Loops carry the prediction errors e_n = z_n − μ_n (μ_n = z_n − e_n whenever needed). F is a sum of local
terms of the errors, so every gradient is the chain rule through the error map e(z, θ):

    ∂F/∂z = (∂e/∂z)ᵀ ∂F/∂e,      ∂F/∂θ = (∂e/∂θ)ᵀ ∂F/∂e,

where ∂F/∂e is elementwise autodiff of the energy alone and the Jacobian products are one vjp of the
prediction ops (whose forward values are already carried, so XLA prunes them). An inference step therefore
costs one back-projection pass and one prediction pass.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from pcc.ir.graph import INPUT, OUTPUT, Graph, Node
from pcc.nn.network import PCNetwork, Values

Predictions = dict[str, jax.Array]
"""Energy node name → μ (same shape as the node's value)."""
Errors = dict[str, jax.Array]
"""Energy node name → e = z − μ."""


def node_energy(graph: Graph, node: Node, z: jax.Array, err: jax.Array) -> jax.Array:
    """λ_n E_n per sample from the value z_n and the error e_n = z_n − μ_n: shape ``(B,)``, or ``(R, B)``
    for a stacked node. ``½‖e‖²``, or at a cross-entropy output ``−Σ z log softmax(μ)`` with μ = z − e."""
    if node.name == OUTPUT and graph.output_energy == "cross_entropy":
        e = -jnp.sum(z * jax.nn.log_softmax(z - err, axis=-1), axis=-1)
    else:
        e = 0.5 * jnp.sum(jnp.square(err), axis=-1)
    return graph.precision_of(node.name) * e


def predictions(net: PCNetwork, values: Values) -> Predictions:
    """μ of every energy node from the current values."""
    return {n.name: net.predict(n.name, values) for n in net.graph.energy_nodes}


def errors(net: PCNetwork, values: Values) -> Errors:
    """e_n = z_n − μ_n of every energy node."""
    return {n.name: net.error(n.name, values) for n in net.graph.energy_nodes}


def layer_energies(graph: Graph, values: Values, err: Errors) -> jax.Array:
    """Per weight layer and sample, shape ``(L, B)``, in the order of ``graph.layer_labels``."""
    rows = []
    for node in graph.energy_nodes:
        e = node_energy(graph, node, values[node.name], err[node.name])
        rows.append(e if node.repeat > 1 else e[None])
    return jnp.concatenate(rows, axis=0)


def total(graph: Graph, values: Values, err: Errors) -> jax.Array:
    """F_i per sample, shape ``(B,)``."""
    return layer_energies(graph, values, err).sum(axis=0)


def energy(net: PCNetwork, values: Values) -> jax.Array:
    """F_i per sample from the values alone (errors computed here)."""
    return total(net.graph, values, errors(net, values))


def output_loss(net: PCNetwork, prediction: jax.Array, y: jax.Array) -> jax.Array:
    """The loss of a prediction (the output node's energy with the target clamped), per sample."""
    return node_energy(net.graph, net.graph.output, y, y - prediction)


def local_grads(error_map: Callable, wrt, values: Values, err: Errors, graph: Graph):
    """(∂e/∂wrt)ᵀ ∂F/∂e: the gradient of Σ_i F_i w.r.t. ``wrt`` (activities, weights, or both).

    ``error_map(wrt) -> Errors`` is the error map as a function of what we differentiate; ``err`` its
    current value (carried by the loop; the map's forward values are not recomputed).
    """
    dfde = jax.grad(lambda e: total(graph, values, e).sum())(err)
    _, vjp = jax.vjp(error_map, wrt)
    (grad,) = vjp(dfde)
    return grad

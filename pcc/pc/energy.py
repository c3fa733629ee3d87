"""The one energy of a predictive coding network; everything else differentiates it.

For a sample i with node values z_n (input and output clamped in discriminative mode) and predictions
μ_n = Σ_{edges into n} op(z_src), the energy is

    F_i = Σ_n λ_n · E_n,   E_n = ½‖z_n − μ_n‖²   (cross-entropy −Σ y log softmax(μ) at the output if asked)

summed over the copies of a stacked node. It is defined per sample: inference descends Σ_i F_i (so each
sample's activities follow their own gradient, whatever the batch size) and learning descends the batch
mean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pcc.ir.graph import OUTPUT, Node
from pcc.nn.network import PCNetwork, Values


def node_energy(net: PCNetwork, node: Node, values: Values, mu: jax.Array | None = None) -> jax.Array:
    """λ_n E_n per sample: shape ``(B,)``, or ``(R, B)`` for a stacked node."""
    graph = net.graph
    mu = net.predict(node.name, values) if mu is None else mu
    z = values[node.name]
    if node.name == OUTPUT and graph.output_energy == "cross_entropy":
        e = -jnp.sum(z * jax.nn.log_softmax(mu, axis=-1), axis=-1)
    else:
        e = 0.5 * jnp.sum(jnp.square(z - mu), axis=-1)
    return graph.precision_of(node.name) * e


def layer_energies(net: PCNetwork, values: Values) -> jax.Array:
    """Per weight layer and sample, shape ``(L, B)``, in the order of ``graph.layer_labels``."""
    rows = []
    for node in net.graph.energy_nodes:
        e = node_energy(net, node, values)
        rows.append(e if node.repeat > 1 else e[None])
    return jnp.concatenate(rows, axis=0)


def energy(net: PCNetwork, values: Values) -> jax.Array:
    """F_i per sample, shape ``(B,)``."""
    total = 0.0
    for node in net.graph.energy_nodes:
        e = node_energy(net, node, values)
        total = total + (e.sum(0) if node.repeat > 1 else e)
    return total


def output_loss(net: PCNetwork, prediction: jax.Array, y: jax.Array) -> jax.Array:
    """The loss of a prediction (the output node's energy with the target clamped), per sample."""
    return node_energy(net, net.graph.output, {OUTPUT: y}, mu=prediction)

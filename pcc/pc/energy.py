"""The one energy of a predictive coding network; everything else differentiates it.

For a sample i with node values z_n (input and output clamped in discriminative mode) and predictions
μ_n = Σ_{edges into n} op(z_src), the energy is

    F_i = Σ_n λ_n · E_n(z_n, μ_n),   E_n = ½‖z_n − μ_n‖²   (−Σ y log softmax(μ) at a cross-entropy output)

summed over the copies of a stacked node. It is defined per sample: inference descends Σ_i F_i (so each
sample's activities follow their own gradient, whatever the batch size) and learning descends the batch
mean.

Because F is a sum of local terms, its gradients are local too. With the error signal
ε_m = −∂(λ_m E_m)/∂μ_m of every node,

    ∂F/∂z_n = ∂(λ_n E_n)/∂z_n − Σ_{m fed by n} (∂μ_m/∂z_n)ᵀ ε_m,      ∂F/∂θ = −Σ_m (∂μ_m/∂θ)ᵀ ε_m,

where both ε and the own term are autodiff of E_n alone and the Jacobian products are vjps of the
prediction ops. :func:`local_grads` evaluates this with the predictions already at hand, so an inference
step costs one prediction pass and one back-projection pass.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from pcc.ir.graph import INPUT, OUTPUT, Graph, Node
from pcc.nn.network import PCNetwork, Values

Predictions = dict[str, jax.Array]
"""Energy node name → μ (same shape as the node's value)."""


def node_energy(graph: Graph, node: Node, z: jax.Array, mu: jax.Array) -> jax.Array:
    """λ_n E_n(z_n, μ_n) per sample: shape ``(B,)``, or ``(R, B)`` for a stacked node."""
    if node.name == OUTPUT and graph.output_energy == "cross_entropy":
        e = -jnp.sum(z * jax.nn.log_softmax(mu, axis=-1), axis=-1)
    else:
        e = 0.5 * jnp.sum(jnp.square(z - mu), axis=-1)
    return graph.precision_of(node.name) * e


def predictions(net: PCNetwork, values: Values) -> Predictions:
    """μ of every energy node from the current values."""
    return {n.name: net.predict(n.name, values) for n in net.graph.energy_nodes}


def layer_energies(graph: Graph, values: Values, mu: Predictions) -> jax.Array:
    """Per weight layer and sample, shape ``(L, B)``, in the order of ``graph.layer_labels``."""
    rows = []
    for node in graph.energy_nodes:
        e = node_energy(graph, node, values[node.name], mu[node.name])
        rows.append(e if node.repeat > 1 else e[None])
    return jnp.concatenate(rows, axis=0)


def total(graph: Graph, values: Values, mu: Predictions) -> jax.Array:
    """F_i per sample, shape ``(B,)``."""
    return layer_energies(graph, values, mu).sum(axis=0)


def energy(net: PCNetwork, values: Values) -> jax.Array:
    """F_i per sample from the values alone (predictions computed here)."""
    return total(net.graph, values, predictions(net, values))


def output_loss(net: PCNetwork, prediction: jax.Array, y: jax.Array) -> jax.Array:
    """The loss of a prediction (the output node's energy with the target clamped), per sample."""
    return node_energy(net.graph, net.graph.output, y, prediction)


def signals(graph: Graph, values: Values, mu: Predictions) -> tuple[Predictions, dict[str, jax.Array]]:
    """(ε_m = −∂λE_m/∂μ_m for every energy node, ∂λE_n/∂z_n for every node) by autodiff of E alone."""
    def f(z, m):
        return sum(node_energy(graph, n, z[n.name], m[n.name]).sum() for n in graph.energy_nodes)

    own, dmu = jax.grad(f, argnums=(0, 1))({n: values[n] for n in mu}, mu)
    return jax.tree.map(jnp.negative, dmu), own


def local_grads(predict: Callable, wrt, values: Values, mu: Predictions, graph: Graph):
    """Back-project the error signals: returns (ε, ∂F/∂wrt's sources part, own terms).

    ``predict(wrt) -> Predictions`` is the prediction map as a function of what we differentiate (the
    free activities, the weights, or both); its forward values are not needed and are pruned by XLA.
    """
    eps, own = signals(graph, values, mu)
    _, vjp = jax.vjp(predict, wrt)
    (back,) = vjp(eps)
    return eps, back, own

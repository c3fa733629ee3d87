"""The one energy of a predictive coding network; everything else differentiates it.

For a sample i with node values z_n (input and output clamped in discriminative mode) and predictions
μ_n = Σ_{edges into n} op(z_src), the energy is

    F_i = Σ_n λ_n · E_n(z_n, μ_n),   E_n = ½‖z_n − μ_n‖²   (−Σ y log softmax(μ) at a cross-entropy output)

summed over the copies of a stacked node. Bidirectional PC weights it by α_f and adds α_b ½‖z_{l−1} −
g_l(z_l)‖² per layer, a bottom-up map's error (:func:`bidirectional_energy`). A node with a learned
precision (``model.learn_precision``) adds the Gaussian's normaliser: λ_n E_n − ½ d_n log λ_n, with log λ_n
a parameter. It is defined per sample: inference descends Σ_i F_i (so each sample's activities follow their own gradient, whatever the batch size)
and learning descends the batch mean.

Loops carry the prediction errors e_n = z_n − μ_n (μ_n = z_n − e_n whenever needed). F is a sum of local
terms of its *local variables* ℓ — the errors (and the log precisions, and the values of nudged nodes) — so
every gradient is the chain rule through the map ℓ(z, θ):

    ∂F/∂z = (∂ℓ/∂z)ᵀ ∂F/∂ℓ,      ∂F/∂θ = (∂ℓ/∂θ)ᵀ ∂F/∂ℓ,

where ∂F/∂ℓ is elementwise autodiff of the energy alone and the Jacobian products are one vjp of the
prediction ops (whose forward values are already carried, so XLA prunes them). An inference step therefore
costs one back-projection pass and one prediction pass.
"""

from __future__ import annotations

from typing import Callable, Iterable

import jax
import jax.numpy as jnp

from pcc.ir.graph import OUTPUT, Graph, Node, bottom_up_key
from pcc.nn.network import PCNetwork, Values

Predictions = dict[str, jax.Array]
"""Energy node name → μ (same shape as the node's value)."""
Errors = dict[str, jax.Array]
"""Energy node name → e = z − μ."""


LogPrecisions = dict[str, jax.Array]
"""Node name → log λ_n of the nodes with a learned precision: shape ``()``, or ``(R,)`` for a stacked node."""


def node_energy(graph: Graph, node: Node, z: jax.Array, err: jax.Array,
                log_precision: jax.Array | None = None) -> jax.Array:
    """λ_n E_n per sample from the value z_n and the error e_n = z_n − μ_n: shape ``(B,)``, or ``(R, B)``
    for a stacked node. ``½‖e‖²``, or at a cross-entropy output ``−Σ z log softmax(μ)`` with μ = z − e.
    With a learned ``log_precision``: λ_n ½‖e‖² − ½ d_n log λ_n. Computed and reduced in float32 whatever the
    storage dtype of z and e (``model.dtype``)."""
    z, err = z.astype(jnp.float32), err.astype(jnp.float32)
    if node.name == OUTPUT and graph.output_energy == "cross_entropy":
        e = -jnp.sum(z * jax.nn.log_softmax(z - err, axis=-1), axis=-1)
    else:
        e = 0.5 * jnp.sum(jnp.square(err), axis=-1)
    if log_precision is None:
        return graph.precision_of(node.name) * e
    log_lam = log_precision[:, None] if node.repeat > 1 else log_precision
    return jnp.exp(log_lam) * e - 0.5 * node.width * log_lam


def predictions(net: PCNetwork, values: Values) -> Predictions:
    """μ of every energy node from the current values."""
    return {n.name: net.predict(n.name, values) for n in net.graph.energy_nodes}


def errors(net: PCNetwork, values: Values, fixed: Predictions | None = None) -> Errors:
    """e_n = z_n − μ_n of every energy node (and, in bidirectional PC, its bottom-up error b_n under
    :func:`~pcc.ir.graph.bottom_up_key`). ``fixed``: the signed predictions
    (:meth:`~pcc.nn.network.PCNetwork.signed_prediction`) of nodes whose sources do not change, computed once."""
    fixed = fixed or {}
    err = {n.name: net.error(n.name, values, fixed.get(n.name)) for n in net.graph.energy_nodes}
    if net.graph.bidirectional:
        err |= {bottom_up_key(n.name): net.bottom_up_error(n.name, values) for n in net.graph.energy_nodes}
    return err


def carry_errors(net: PCNetwork, old: Values, new: Values, err: Errors, moved: Iterable[str]) -> Errors:
    """The errors at ``new`` from those at ``old``: e + Δe with Δe from the changes of the ``moved`` (free)
    nodes' values (:meth:`PCNetwork.error_change`), so a node whose sources and value did not change keeps its
    error bit for bit, and a tiny true change keeps its own relative precision instead of drowning in the
    rounding of μ. Exact where μ is linear in φ of its sources (``w_phi``) and there is no bottom-up energy:
    :func:`pcc.spec.models.carries_errors` decides where inference uses it."""
    unmoved = {n: None for n in new if n not in moved}
    dz = {n: new[n] - old[n] for n in moved} | unmoved
    dphi = {n: net._phi(n)(new[n]) - net._phi(n)(old[n]) for n in moved} | unmoved
    return {n.name: (err[n.name] + net.error_change(n.name, dz, dphi)).astype(net.dtype)
            for n in net.graph.energy_nodes}


def layer_energies(graph: Graph, values: Values, err: Errors, logp: LogPrecisions | None = None) -> jax.Array:
    """Per weight layer and sample, shape ``(L, B)``, in the order of ``graph.layer_labels``."""
    rows = []
    logp = logp or {}
    for node in graph.energy_nodes:
        e = node_energy(graph, node, values[node.name], err[node.name], logp.get(node.name))
        if graph.bidirectional:
            e = bidirectional_energy(graph, e, err[bottom_up_key(node.name)])
        rows.append(e if node.repeat > 1 else e[None])
    return jnp.concatenate(rows, axis=0)


def bidirectional_energy(graph: Graph, top_down: jax.Array, bottom_up_err: jax.Array) -> jax.Array:
    """Layer l's energy in bidirectional PC: α_f λ_l E_l + α_b ½‖z_{l−1} − g_l(z_l)‖² per sample."""
    alpha_f, alpha_b = graph.bidirectional
    return alpha_f * top_down + alpha_b * 0.5 * jnp.sum(jnp.square(bottom_up_err.astype(jnp.float32)), axis=-1)


def total(graph: Graph, values: Values, err: Errors, logp: LogPrecisions | None = None) -> jax.Array:
    """F_i per sample, shape ``(B,)``."""
    return layer_energies(graph, values, err, logp).sum(axis=0)


def energy(net: PCNetwork, values: Values) -> jax.Array:
    """F_i per sample from the values alone (errors computed here)."""
    return total(net.graph, values, errors(net, values))


def output_loss(net: PCNetwork, prediction: jax.Array, y: jax.Array) -> jax.Array:
    """The loss of a prediction (the output node's energy with the target clamped), per sample."""
    return node_energy(net.graph, net.graph.output, y, y - prediction)


def local_grads(local_map: Callable, wrt, local, energy: Callable[..., jax.Array]):
    """(∂ℓ/∂wrt)ᵀ ∂F/∂ℓ: the gradient of Σ_i F_i w.r.t. ``wrt`` (activities, weights, or both).

    ``local_map(wrt) -> ℓ`` gives the energy's local variables (the errors, ...) as a function of what we
    differentiate, ``local`` their current value (carried by the loop; the map's forward values are not
    recomputed) and ``energy(ℓ)`` is F_i per sample.
    """
    dfdl = jax.grad(lambda l: energy(l).sum())(local)
    _, vjp = jax.vjp(local_map, wrt)
    (grad,) = vjp(dfdl)
    return grad

"""Task A and Task B in FabricPC (``pip install fabricpc``; run in ``.venv-fabricpc``, see ``setup.sh``).

FabricPC's idiom (its README): nodes joined by ``Edge``s into ``graph(...)`` with an ``InferenceSGD``
solver and the default ``FeedforwardStateInit``; the train step is the jitted, buffer-donating step that
``fabricpc.train`` runs (``trainer._make_step``; ``make_train_step``, its public twin for custom loops,
does not donate and also returns the settled graph state).

Same math as pcc, with one custom node (custom nodes are FabricPC's documented extension point): the
built-in ``Linear``/``LinearResidual`` compute ``act(W x) (+ skip)``, i.e. tanh *after* the weights, and
``MuPCConfig`` scales the node's *inputs* (a x before the transform) and multiplies the top-down activity
gradients by tanh's "Jacobian gain" 1.261, so inference would not be gradient descent on F. ``Dense``
below computes ``a tanh(x) W (+ x on its skip slot)`` with the multiplier a a constant of the node, and
autodiff gives the exact gradients. Conventions: FabricPC sums the energy over the batch (its activity
gradient is the per-sample ``dF_i/dz_i``, so ``eta_infer = 0.125`` as it stands) and divides the weight
gradient by the batch size before the optimiser (the batch mean).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from common import Task, bench, cli
from fabricpc.core.energy import graph_energy
from fabricpc.core.inference import InferenceSGD
from fabricpc.core.initializers import ZerosInitializer
from fabricpc.core.topology import Edge
from fabricpc.core.types import GraphParams, NodeParams
from fabricpc.graph_assembly import TaskMap, graph
from fabricpc.graph_initialization import initialize_params
from fabricpc.nodes import Linear
from fabricpc.nodes.base import NodeBase
from fabricpc.nodes.linear_residual import LinearResidual
from fabricpc.training import trainer


class Dense(NodeBase):
    """``z_mu = a phi(x_in) W + x_skip``, no bias; ``phi = tanh``, or the identity on the raw input."""

    def __init__(self, shape, name, a: float = 1.0, phi: bool = True):
        super().__init__(shape=shape, name=name, weight_init=ZerosInitializer(), use_bias=False, a=a, phi=phi)

    get_slots = staticmethod(LinearResidual.get_slots)  # "in" (weights) and "skip" (identity)
    initialize_params = staticmethod(LinearResidual.initialize_params)

    @staticmethod
    def predict(params, inputs, state, node_info):
        a, phi = node_info.node_config["a"], node_info.node_config["phi"]
        z_mu = 0.0
        for key, x in inputs.items():
            if key.endswith(":in"):
                z_mu = z_mu + a * ((jnp.tanh(x) if phi else x) @ params.weights[key])
            else:
                z_mu = z_mu + x
        return z_mu, None


def build(task: Task, weights):
    """The graph, and a function from ``weights`` (``(fan_in, fan_out)`` each) to its params."""
    a, skips = task.multipliers(), task.skips()
    nodes = [Linear(shape=(task.d_in,), name="x")]
    edges = []
    for l, w in enumerate(weights):
        prev, node = nodes[-1], Dense(shape=(w.shape[1],), name=f"z{l + 1}", a=a[l], phi=l > 0)
        edges.append(Edge(source=prev, target=node.slot("in")))
        if skips[l]:
            edges.append(Edge(source=prev, target=node.slot("skip")))
        nodes.append(node)
    structure = graph(nodes=nodes, edges=edges, task_map=TaskMap(x=nodes[0], y=nodes[-1]),
                      inference=InferenceSGD(eta_infer=task.eta, infer_steps=task.steps))
    template = initialize_params(structure, jax.random.PRNGKey(0))

    def params(weights) -> GraphParams:
        return GraphParams(nodes={**template.nodes, **{
            dst.name: NodeParams(weights={f"{src.name}->{dst.name}:in": jnp.asarray(w)}, biases={})
            for src, dst, w in zip(nodes, nodes[1:], weights)}})

    return structure, params


def run(task: Task, x, y, weights, steps: int) -> dict:
    structure, params = build(task, weights)
    opt = optax.adam(task.lr)
    train_step = trainer._make_step(structure, opt, algorithm="pc", with_state=False, donate=True)
    batch, key = {"x": jnp.asarray(x), "y": jnp.asarray(y)}, jax.random.PRNGKey(0)

    def step(state):
        params, opt_state, metrics = train_step(*state, batch, key)
        return (params, opt_state), metrics["energy"]

    res = bench(step, (params(weights), opt.init(params(weights))), steps)
    res["energy"] = final_energies(structure, params(weights), opt, batch, key)
    res["notes"] = ["custom Dense node (a tanh(z) W + skip); step = trainer._make_step(donate=True), as train() runs"]
    return res


def final_energies(structure, params, opt, batch, key, n: int = 2) -> list[float]:
    """Batch-mean energy at the final activities of the first ``n`` steps (not timed).

    FabricPC's ``metrics["energy"]`` sums the node energies of the last *gradient evaluation*, i.e. at the
    activities before the T-th update; here they are recomputed at the settled activities.
    """
    step = trainer.make_train_step(structure, opt)
    clamps = trainer.build_clamps(batch, structure, clamp_target=True)

    @jax.jit
    def energy(params, state):
        state = InferenceSGD.forward_value_and_grad(params, state, clamps, structure)
        return graph_energy(state, structure) / state.batch_size

    opt_state, out = opt.init(params), []
    for _ in range(n):
        new_params, opt_state, _, state = step(params, opt_state, batch, key)
        out.append(float(energy(params, state)))
        params = new_params
    return out


if __name__ == "__main__":
    cli("fabricpc", run)

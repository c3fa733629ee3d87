"""Task A and Task B in PCX (``pip install pcx``; run in ``.venv-pcx``, see ``setup.sh``).

PCX's idiom (the pattern of its example notebooks; they are not in the wheel, so it was written from the
installed source): an ``EnergyModule`` whose forward is ``x = vode(layer(...))``, a ``pxf.vmap``-ed
per-sample energy reduced over the batch with ``psum``, a ``pxf.jit``-ed ``train_on_batch`` that
forward-initialises the vodes (``STATUS.INIT``), takes ``T`` ``pxf.value_and_grad`` steps on the vodes with
an ``optax.sgd`` optimiser and one on the weights with ``optax.adam``. The T inference steps are a Python
loop unrolled into the trace by default (fastest steps, slowest compile: T x L layer bodies); ``--scan``
runs them as ``pxf.scan`` instead (impl ``pcx-scan``).

Same math as pcc: PCX lets the forward be any code, so the W tanh(z) ordering, the multipliers, the
identity skips and the bias-free layers are written as they are. Conventions: the energy is summed over the
batch, so its gradient w.r.t. a sample's activities is the per-sample ``dF_i/dz_i`` and the vode step is
``sgd(0.125)`` as it stands; the weight gradient of that sum is scaled by ``1/B`` (``scale_by``) to the
batch mean before Adam.
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import optax
import pcx as px
import pcx.functional as pxf
import pcx.nn as pxnn
import pcx.predictive_coding as pxc
import pcx.utils as pxu
from common import Task, bench, cli


class Net(pxc.EnergyModule):
    def __init__(self, task: Task, weights) -> None:
        super().__init__()
        self.a = px.static(task.multipliers())
        self.skip = px.static(task.skips())
        self.layers = []
        for w in weights:  # eqx.nn.Linear stores W^T, (fan_out, fan_in)
            layer = pxnn.Linear(*w.shape, bias=False)
            layer.nn.weight.set(jnp.asarray(w.T))
            self.layers.append(layer)
        self.vodes = [pxc.Vode() for _ in weights]
        self.vodes[-1].h.frozen = True  # the output vode is clamped to the target

    def __call__(self, x, y=None):
        z = x
        for l, (layer, vode) in enumerate(zip(self.layers, self.vodes)):
            u = self.a[l] * layer(z if l == 0 else jnp.tanh(z))
            z = vode(u + z if self.skip[l] else u)
        if y is not None:
            self.vodes[-1].set("h", y)
        return self.vodes[-1].get("u")


@pxf.vmap(pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)), in_axes=(0, 0), out_axes=0)
def forward(x, y, *, model: Net):
    return model(x, y)


@pxf.vmap(pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0)), in_axes=(0,), out_axes=(None, 0),
          axis_name="batch")
def energy(x, *, model: Net):
    y_ = model(x)
    return jax.lax.psum(model.energy(), "batch"), y_


FREE = pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True])  # the hidden vodes
WEIGHTS = pxu.M(pxnn.LayerParam).to([False, True])


@pxf.jit(static_argnums=(0, 1))
def train_on_batch(T: int, unroll: bool, x, y, *, model: Net, optim_w: pxu.Optim, optim_h: pxu.Optim):
    model.train()
    with pxu.step(model, (pxc.STATUS.INIT, None), clear_params=pxc.VodeParam.Cache):
        forward(x, y, model=model)
    optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))

    def inference_step(_, *, model, optim_h):
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, g = pxf.value_and_grad(FREE, has_aux=True)(energy)(x, model=model)
        optim_h.step(model, g["model"], True)
        return (), None

    if unroll:
        for t in range(T):
            inference_step(t, model=model, optim_h=optim_h)
    else:
        pxf.scan(inference_step, xs=jnp.arange(T))(model=model, optim_h=optim_h)
    optim_h.clear()

    with pxu.step(model, clear_params=pxc.VodeParam.Cache):
        (e, _), g = pxf.value_and_grad(WEIGHTS, has_aux=True)(energy)(x, model=model)
    optim_w.step(model, g["model"], scale_by=1.0 / x.shape[0])  # batch-sum -> batch-mean gradient
    return e / x.shape[0]  # batch-mean energy at the final activities


def run(task: Task, x, y, weights, steps: int, unroll: bool = True) -> dict:
    model = Net(task, weights)
    x, y = jnp.asarray(x), jnp.asarray(y)
    with pxu.step(model, (pxc.STATUS.INIT, None), clear_params=pxc.VodeParam.Cache):
        forward(x, y, model=model)  # creates the vodes' values so the optimisers can be initialised
    optim_h = pxu.Optim(lambda: optax.sgd(task.eta))
    optim_w = pxu.Optim(lambda: optax.adam(task.lr), pxu.M(pxnn.LayerParam)(model))

    def step(_):
        e = train_on_batch(task.steps, unroll, x, y, model=model, optim_w=optim_w, optim_h=optim_h)
        return jax.tree_util.tree_leaves(model), e  # the updated weights are blocked on too

    res = bench(step, None, steps)
    res["notes"] = ["inference loop: " + ("Python loop (unrolled)" if unroll else "pxf.scan")]
    return res


if __name__ == "__main__":
    scan = "--scan" in sys.argv
    argv = [a for a in sys.argv[1:] if a != "--scan"]
    cli("pcx-scan" if scan else "pcx", functools.partial(run, unroll=not scan), argv)

"""Modes (``model.mode``): what a compiled network predicts from x alone, and what its evaluation reports.

Training clamps both slots of the batch as the mode says (:data:`pcc.ir.lower.MODE_CLAMPS`). At test time
only x is known:

- ``discriminative`` (input ← x, output ← y): ŷ is the feedforward output; no inference.
- ``generative`` (input ← y, output ← x): the input node is freed and inferred with x clamped at the output;
  ŷ is the inferred input (accuracy is its argmax). The loss is the output energy of the prediction the true
  label generates, ℓ(x, f(y)); the energy is F after inference.
- ``unsupervised`` (output ← x, a free latent root): inference with x clamped infers the latent z_0*; the
  prediction is the reconstruction x̂ = f(z_0*) generated from it by a feedforward pass (not μ_out after
  inference, which free hidden nodes as wide as x fit exactly), the loss ½‖x − x̂‖², the energy F after
  inference.

Inpainting (:func:`inpaint`) clamps the node holding x only where a mask is 1 and infers the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from pcc.errors import PccError
from pcc.ir.graph import INPUT, OUTPUT
from pcc.pc import energy as E
from pcc.pc.learning import Clamp, Program


@dataclass(frozen=True)
class Mode:
    """``predict(program, params, x, key) -> (prediction, F after inference or None)`` from x alone;
    ``loss(program, params, x, y, prediction)`` per sample; ``accuracy``: whether the prediction scores y."""

    predict: Callable[..., tuple[jax.Array, jax.Array | None]]
    loss: Callable[..., jax.Array]
    accuracy: bool = True


def _feedforward(p: Program, params, x, key):
    return p.net(params).forward(x)[OUTPUT], None


def _infer_input(p: Program, params, x, key):
    result = p.with_clamps(**{INPUT: None}).infer(params, x, x, key)  # nothing reads the y slot any more
    return result.activities[INPUT], result.energy


def _reconstruct(p: Program, params, x, key):
    result = p.infer(params, x, x, key)
    return p.net(params).forward(result.activities[INPUT])[OUTPUT], result.energy


def _generated_loss(p: Program, params, x, y, prediction):
    net = p.net(params)
    return E.output_loss(net, net.forward(y)[OUTPUT], x)


MODES: dict[str, Mode] = {
    "discriminative": Mode(_feedforward, lambda p, params, x, y, pred: E.output_loss(p.net(params), pred, y)),
    "generative": Mode(_infer_input, _generated_loss),
    "unsupervised": Mode(_reconstruct, lambda p, params, x, y, pred: 0.5 * jnp.sum(jnp.square(x - pred), -1),
                         accuracy=False),
}


def inpaint(p: Program, params, x, mask, key) -> jax.Array:
    """x completed where ``mask`` is 0: the node holding x is clamped where ``mask`` is 1, every node the
    test-time mode does not clamp is inferred, and the node's values after inference are returned."""
    (node,) = [n for n, c in p.clamps.items() if c.slot == "x"]
    if node == INPUT:
        raise PccError("inpainting infers part of the observation x; in `mode: discriminative` x is the input, "
                       "which has no energy to infer it from: use `mode: generative` or `unsupervised`")
    test = p.with_clamps(**{n: None for n, c in p.clamps.items() if c.slot == "y"}, **{node: Clamp("x", mask)})
    result = test.infer(params, x, x, key)
    return test.values(result.activities, x, x)[node]

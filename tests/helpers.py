"""Small builders shared by the compiler tests."""

from __future__ import annotations

import copy

import numpy as np

from pcc.spec.models import Spec


def make_spec(layers, *, param="sp", act="tanh", inference=None, learning=None, **model) -> Spec:
    """A spec dict → validated Spec, with short defaults for tests."""
    return Spec.model_validate({
        "model": {"parameterisation": param, "activation": act, "layers": layers, **model},
        "inference": {"steps": 5, "step_size": 0.1, **(inference or {})},
        "learning": {"optimizer": {"name": "sgd", "lr": 1.0}, **(learning or {})},
    })


def chain_layers(widths, residual_repeat=0, residual_width=None):
    """dense widths, then an optional residual stack, then the output layer."""
    layers = [{"dense": {"width": w}} for w in widths]
    if residual_repeat:
        layers.append({"residual": {"width": residual_width or widths[-1]}, "repeat": residual_repeat})
    layers.append({"dense": {}})
    return layers


def batch(seed, b, d, c, classes=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, d)).astype(np.float32)
    if classes:
        y = np.eye(c, dtype=np.float32)[rng.integers(0, c, b)]
    else:
        y = rng.normal(size=(b, c)).astype(np.float32)
    return x, y


def copy_state(state):
    """A deep copy of a TrainState (train_step donates its input)."""
    import jax

    return jax.tree.map(lambda a: np.array(a), copy.copy(state))

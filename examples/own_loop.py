"""Compile a spec and write your own training loop with the Python API.

    python examples/own_loop.py
"""

import jax
import numpy as np

import pcc
from pcc.data import batches, load_dataset

spec = pcc.load_spec("specs/quickstart.yaml", overrides=["learning.epochs=3"])
data = load_dataset(spec.data, spec.seed)
model = pcc.compile(spec, shapes=(data.input_dim, data.output_dim))
state = model.init()

for epoch in range(spec.learning.epochs):
    for x, y in batches(data.x_train, data.y_train, spec.data.batch_size, seed=spec.seed, epoch=epoch):
        state, metrics = model.train_step(state, (x, y))
    test = model.evaluate(state, [(data.x_test, data.y_test)])
    print(f"epoch {epoch}: train loss {float(metrics.loss):.4f}, energy after inference "
          f"{float(metrics.energy_final):.4f}, test accuracy {test.accuracy:.3f}")

# Inspect inference on a few test samples: energy per layer after T steps.
result = model.infer(state, data.x_test[:8], data.y_test[:8])
for label, e in zip(model.graph.layer_labels, np.asarray(jax.device_get(result.layer_energies)).mean(1)):
    print(f"  {label:>8}: {e:.5f}")

"""Multi-process data parallelism with jax.distributed: run one copy per process (or host).

    python examples/distributed.py 127.0.0.1:12355 2 0 &   # process 0 (the coordinator)
    python examples/distributed.py 127.0.0.1:12355 2 1     # process 1

Every process iterates the same seeded batches and places its own rows of each global batch; the weight
gradient is averaged across all devices of all processes inside the one jitted train step.
"""

import sys

from pcc.parallel import initialize

initialize(sys.argv[1], num_processes=int(sys.argv[2]), process_id=int(sys.argv[3]))

import jax  # noqa: E402

import pcc  # noqa: E402
from pcc.data import batches, load_dataset  # noqa: E402

spec = pcc.load_spec("specs/quickstart.yaml", overrides=["learning.epochs=2"])
data = load_dataset(spec.data, spec.seed)
model = pcc.compile(spec, shapes=(data.input_dim, data.output_dim))
state = model.init()
for epoch in range(spec.learning.epochs):
    for x, y in batches(data.x_train, data.y_train, spec.data.batch_size, seed=spec.seed, epoch=epoch):
        state, metrics = model.train_step(state, (x, y))
    if jax.process_index() == 0:
        print(f"epoch {epoch}: loss {float(metrics.loss):.4f} on a {dict(model.mesh.shape)} mesh")

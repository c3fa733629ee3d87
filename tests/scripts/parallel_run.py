"""Run 20 train steps and print the loss curve as JSON (used by tests/test_parallel.py in subprocesses).

    parallel_run.py DATA MODEL [COORDINATOR NUM_PROCESSES PROCESS_ID]
"""

import json
import sys

data, model = sys.argv[1], int(sys.argv[2])
if len(sys.argv) > 3:
    from pcc.parallel import initialize

    initialize(sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))

import numpy as np  # noqa: E402

import pcc  # noqa: E402
import pcc.data  # noqa: E402
from pcc.spec.models import Spec  # noqa: E402

spec = Spec.model_validate({
    "data": {"batch_size": 32},
    "model": {"parameterisation": "mupc", "layers": [
        {"dense": {"width": 32}}, {"residual": {"width": 32}, "repeat": 4}, {"dense": {}}]},
    "inference": {"steps": 5},
    "parallel": {"data": data if data == "auto" else int(data), "model": model, "layer_chunks": 2},
})
compiled = pcc.compile(spec, shapes=(16, 4))
state = compiled.init()
rng = np.random.default_rng(0)
batches = [(rng.normal(size=(32, 16)).astype(np.float32), np.eye(4, dtype=np.float32)[rng.integers(0, 4, 32)])
           for _ in range(20)]
curve, passed = [], True
for x, y in pcc.data.prefetch(batches, compiled.place_batch):  # placed ahead, as the runner does
    passed = passed and compiled.place_batch((x, y))[0] is x
    state, metrics = compiled.train_step(state, (x, y))
    curve.append([float(metrics.loss), float(metrics.energy_final)])
mesh = compiled.mesh
print(json.dumps({"mesh": None if mesh is None else dict(mesh.shape), "curve": curve, "placed_pass_through": passed}))

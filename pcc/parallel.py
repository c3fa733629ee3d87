"""Scale-out on JAX's own machinery: a device mesh with a ``data`` axis (and optionally ``model``).

Batches are split along ``data``; weights are replicated, except dense kernels whose output width divides
the ``model`` axis, which are split by output units. The train step stays one jitted program and XLA inserts
the collectives (the batch-mean weight gradient and the metrics become all-reduces). Inference needs no
communication under data parallelism: every sample settles on its own. Multi-host runs call
:func:`initialize` (``jax.distributed.initialize``) first; each process then feeds its own slice of the
global batch (every process iterates the same seeded batches and places its own rows).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from pcc.errors import PccError
from pcc.spec.models import Parallel


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
    """Join a multi-process run (every process runs the same spec; see the README for the launch).

    On CPUs the cross-process collectives go through gloo."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)


def make_mesh(parallel: Parallel, batch_size: int) -> Mesh | None:
    """The mesh the spec asks for, or None when a single device does all the work."""
    devices = jax.devices()
    model = parallel.model
    data = len(devices) // model if parallel.data == "auto" else parallel.data
    if data * model > len(devices) or data < 1:
        raise PccError(f"parallel: data={parallel.data} × model={model} devices asked for, "
                       f"but {len(devices)} are present ({devices[0].platform})")
    if data * model == 1:
        return None
    if batch_size % data:
        raise PccError(f"data.batch_size {batch_size} is not divisible by the {data} devices on the data axis; "
                       "choose a multiple, or set parallel.data")
    from jax.sharding import AxisType

    grid = np.asarray(devices[: data * model]).reshape(data, model)
    return Mesh(grid, ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def state_shardings(mesh: Mesh, state: Any) -> Any:
    """Replicate every leaf, except dense kernels (…, n, m) with m divisible by the model axis."""
    model = mesh.shape["model"]

    def spec(path, leaf):
        name = jax.tree_util.keystr(path)
        if model > 1 and "kernel" in name and leaf.ndim >= 2 and leaf.shape[-1] % model == 0:
            return NamedSharding(mesh, P(*([None] * (leaf.ndim - 1)), "model"))
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(spec, state)


def shard_batch(mesh: Mesh, array: Any) -> jax.Array:
    """The global batch placed along the data axis (each process fills only its own devices' rows)."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, batch_sharding(mesh), lambda index: array[index])

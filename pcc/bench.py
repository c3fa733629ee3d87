"""``pcc bench``: compile time, steady-state step time, and the fraction of the machine's matmul peak.

Everything is measured in one process with ``block_until_ready``, on one batch kept on the device (the
runner prefetches its batches, so their copies overlap the steps before them). The FLOPs a train step
strictly needs are counted from the graph: per inference step two matmuls (prediction and error
back-projection) for every dense edge whose source is free, the clamped input's projection once, and the
feedforward initialisation and the weight gradient once; a matmul of a (B, n) by an (n, m) matrix costs
2·B·n·m. The peak is measured with the matmul the spec's dense ops use: float32 at
``model.matmul_precision``, or bfloat16 inputs with float32 accumulation under ``model.dtype: bfloat16``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from pcc.ir.graph import Graph
from pcc.spec.models import Spec, chunks_training_inference


def flops_per_step(graph: Graph, batch: int, steps: int, algorithm: str) -> int:
    """FLOPs of one train step that the math strictly needs (see the module docstring)."""
    free = {n.name for n in graph.free}
    per_pass, free_pass = 0, 0
    for e in graph.edges:
        if e.op != "dense":
            continue
        dst = graph.node(e.dst)
        mm = 2 * batch * graph.node(e.src).width * dst.width
        per_pass += mm * dst.repeat
        # copy 0 of a stack reads the edge's source; copies 1.. read the (free) previous copy
        free_pass += mm * (dst.repeat if e.src in free else dst.repeat - 1)
    inference = 0 if algorithm == "bp" else 2 * steps * free_pass
    # feedforward (one pass), the weight gradient (one pass); bp adds the input back-projections too
    return inference + 2 * per_pass + (per_pass if algorithm == "bp" else 0)


def _time(fn: Callable[[], Any], repeats: int) -> list[float]:
    import jax

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times


def matmul_peak(n: int = 1024, repeats: int = 10, dtype: str = "float32", precision: str | None = None) -> float:
    """Measured matmul FLOP/s of the default device (best of ``repeats`` n³ products): float32 at
    ``precision`` (None: JAX's default), or ``dtype`` inputs accumulated in float32 (as pcc's dense op)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    wide = None if dtype == "float32" else jnp.float32
    mm = jax.jit(lambda a: jnp.matmul(a, a, precision=precision, preferred_element_type=wide))
    jax.block_until_ready(mm(a))
    return 2 * n**3 / min(_time(lambda: mm(a), repeats))


@dataclass(frozen=True)
class BenchResult:
    """What ``pcc bench`` measured."""

    name: str
    device: str
    dtype: str  # model.dtype: the matmul inputs the peak is measured with
    matmul_precision: str
    layer_chunks: dict[str, list[int]]  # layers per chunk of each stack inference splits (parallel.layer_chunks)
    batch_groups: int  # groups of samples inference runs side by side (parallel.batch_groups)
    batch_size: int
    compile_s: float  # tracing + lowering + XLA's compile of the train step
    compile_phases: dict[str, float]  # the same in its three parts: trace, lower, xla
    first_step_s: float  # from the call to the first step's result: the compile and one step
    step_ms: dict[str, float]
    samples_per_s: float
    flops_per_step: int
    achieved_flops: float
    peak_flops: float
    fraction_of_peak: float
    peak_memory_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench(spec: Spec, *, steps: int = 30, warmup: int = 3) -> BenchResult:
    """Compile ``spec`` and time its train step on random data of the spec's shapes."""
    import jax

    from pcc.compiler import compile as compile_spec
    from pcc.data import peek_shapes

    d_in, d_out = peek_shapes(spec.data)
    model = compile_spec(spec, shapes=(d_in, d_out))
    rng = np.random.default_rng(spec.seed)
    b = spec.data.batch_size
    x, y = model.place_batch((rng.random((b, d_in), np.float32),
                              np.eye(d_out, dtype=np.float32)[rng.integers(0, d_out, b)]))
    holder = {"state": jax.block_until_ready(model.init())}

    def step():
        holder["state"], metrics = model.train_step(holder["state"], (x, y))
        return holder["state"], metrics

    start = time.perf_counter()
    traced = model.trace_train_step(holder["state"], (x, y))
    traced_at = time.perf_counter()
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    lowered.compile()  # the program the first call then runs
    compiled_at = time.perf_counter()
    jax.block_until_ready(step())
    first_step_s = time.perf_counter() - start
    phases = {"trace": traced_at - start, "lower": lowered_at - traced_at, "xla": compiled_at - lowered_at}
    _time(step, warmup)
    times = np.array(_time(step, steps))
    flops = flops_per_step(model.graph, b, spec.inference.steps, spec.learning.algorithm)
    dtype, precision = spec.model.dtype, spec.model.matmul_precision
    in_loop = chunks_training_inference(spec)  # the train step's inference runs chunks and groups
    peak = matmul_peak(dtype=dtype, precision=precision)
    median = float(np.median(times))
    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return BenchResult(
        name=spec.name, device=f"{device.platform}:{device.device_kind}", dtype=dtype, matmul_precision=precision,
        layer_chunks=model.program.layout.chunking.sizes if model.program.layout and in_loop else {},
        batch_groups=model.program.groups if in_loop else 1,
        batch_size=b, compile_s=compiled_at - start, compile_phases=phases, first_step_s=first_step_s,
        step_ms={"median": 1e3 * median, "min": 1e3 * float(times.min()), "max": 1e3 * float(times.max())},
        samples_per_s=b / median, flops_per_step=flops, achieved_flops=flops / median, peak_flops=peak,
        fraction_of_peak=flops / median / peak,
        peak_memory_bytes=(stats or {}).get("peak_bytes_in_use"),
    )

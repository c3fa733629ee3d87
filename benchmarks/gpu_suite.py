"""One accelerator session, in sections run in this order until ``--budget`` seconds are spent:

- ``bench``: ``pcc bench`` on Task A, Task B and a width-1024 MLP at matmul precision highest and default,
  and in bfloat16, with the hand-written reference timed beside them at both precisions;
- ``runner``: the step time of real training (Task A and B on Fashion-MNIST, batches prefetched by the
  runner, metrics logged every 10 steps), to set beside ``pcc bench``'s; and ``pcc train`` of Task B twice in
  fresh processes sharing a fresh compilation cache (the second should skip XLA's compile and autotuning);
- ``variants``: what a launch-bound step spends its time on. Task A and Task B's train step timed with the
  batch passed as numpy (copied in every step) and kept on the device, with the inference loop written out
  (``unroll``), with the per-step metrics reduced to the loss (``lean``), and Task B in 4 and 16 layer chunks
  (to choose ``parallel.layer_chunks: auto`` on the accelerator); the optimised HLO of Task A's step and the
  reference's, to count kernels;
- ``rounding``: the paper's μPC ResNet at width 512 for 300 steps with the errors carried and recomputed, at
  true float32 and at the backend's default matmul precision: carried errors should train in every cell
  (docs/results.md, "Rounding");
- ``depth``: the paper's depth runs (μPC, sp and BP ResNets on Fashion-MNIST, one epoch each), deepest first;
- ``flags``: the same Task A/B timings under XLA flags that capture more of the step in CUDA graphs (each in
  a fresh process);
- ``trace``: a profiler trace of five Task A steps of pcc and of the reference (Perfetto JSON).

    python benchmarks/gpu_suite.py OUT_DIR [--fmnist DIR] [--budget SECONDS] [--sections a,b] [--steps N]

Writes OUT_DIR/gpu_results.json (rewritten after every item, so a cut-short session keeps what it did).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import pcc  # noqa: E402
import pcc.pc.inference as inference  # noqa: E402
from pcc.bench import bench  # noqa: E402
from pcc.pc.learning import Program, StepMetrics  # noqa: E402

HERE = Path(__file__).parent
TASKS = {"a": str(HERE / "task_a.yaml"), "b": str(HERE / "task_b.yaml")}
WIDE = ["model.layers.0.dense.width=1024", "model.layers.1.dense.width=1024", "model.layers.2.dense.width=1024",
        "name=mlp-1024"]
SECTIONS = ("bench", "runner", "variants", "rounding", "depth", "flags", "trace")
FLAGS = {
    "graphs_while": "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONDITIONAL,WHILE",
    "graphs_while_min1": ("--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONDITIONAL,"
                          "WHILE --xla_gpu_graph_min_graph_size=1"),
    "no_graphs": "--xla_gpu_enable_command_buffer=",
}


def stats(times: list[float]) -> dict:
    t = 1e3 * np.asarray(times)
    return {"median": float(np.median(t)), "min": float(t.min()), "max": float(t.max())}


def run_steps(step, state, x, y, steps: int):
    """(compile + first step seconds, step-time stats, final state) of ``state ← step(state, x, y)``."""
    t = time.perf_counter()
    state, out = step(state, x, y)
    jax.block_until_ready((state, out))
    first = time.perf_counter() - t
    for _ in range(3):
        state, out = step(state, x, y)
    jax.block_until_ready((state, out))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, out = step(state, x, y)
        jax.block_until_ready((state, out))
        times.append(time.perf_counter() - t)
    return first, stats(times), state


def reference(task: str, steps: int, precision: str | None = None) -> dict:
    import reference as R

    with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
        init, step = R.make_task(task, "batched", "local")
        x, y = R.make_data(R.TASKS[task], jax.random.key(1))
        first, ms, _ = run_steps(step, init(jax.random.key(0)), x, y, steps)
    return {"first_step_s": first, "step_ms": ms}


# ------------------------------------------------------------------------------------ variants
def lean_metrics(self, params, free, err, x, y, loss, energy_init, grads, steps):
    """The per-step metrics reduced to the loss (what the step costs without its diagnostics)."""
    zeros = jnp.zeros((len(self.graph.layer_labels),))
    return StepMetrics(loss.mean(), loss.mean(), loss.mean(), zeros, zeros, steps)


@contextlib.contextmanager
def variant(unroll=1, lean=False):
    full = Program.metrics
    inference.UNROLL = unroll
    if lean:
        Program.metrics = lean_metrics
    try:
        yield
    finally:
        inference.UNROLL, Program.metrics = 1, full


def task_batch(spec):
    rng = np.random.default_rng(0)
    b = spec.data.batch_size
    return rng.random((b, 784), np.float32), np.eye(10, dtype=np.float32)[rng.integers(0, 10, b)]


def time_pcc(path: str, overrides: list[str], steps: int, *, on_device=True, hlo: Path | None = None, **knobs):
    spec = pcc.load_spec(path, overrides=overrides)
    with variant(**knobs):
        model = pcc.compile(spec, shapes=(784, 10))
        x, y = task_batch(spec)
        if on_device:
            x, y = jnp.asarray(x), jnp.asarray(y)
        first, ms, state = run_steps(lambda s, x, y: model.train_step(s, (x, y)), model.init(), x, y, steps)
        if hlo is not None:
            text = model._train_step.lower(state, jnp.asarray(x), jnp.asarray(y)).compile().as_text()
            hlo.write_text(text)
    return {"first_step_s": first, "step_ms": ms}


def kernel_counts(text: str) -> dict:
    """Kernel-launching instructions per non-fused computation of an optimised HLO module (the entry and the
    while bodies), by opcode."""
    counts, name = {}, None
    for line in text.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if head:
            name = head.group(1)
            continue
        if name is None or name.startswith(("fused", "triton", "wrapped")) or "computation" in name:
            continue
        op = re.search(r"\s(fusion|custom-call|copy|while|conditional|all-reduce|reduce|dot|transpose|"
                       r"dynamic-update-slice|dynamic-slice|broadcast|concatenate)\(", line)
        if op:
            counts.setdefault(name, {}).setdefault(op.group(1), 0)
            counts[name][op.group(1)] += 1
    return counts


def variants_section(results, save, steps: int, out: Path):
    rows = results["variants"]
    for task in ("a", "b"):
        path = TASKS[task]
        cases = [("numpy_batch", {}, {"on_device": False}), ("device_batch", {}, {}),
                 ("unroll", {}, {"unroll": True}), ("lean", {}, {"lean": True}),
                 ("unroll_lean", {}, {"unroll": True, "lean": True}),
                 ("precision_default", {"model.matmul_precision=default": 1}, {})]
        if task == "b":
            cases += [(f"chunks_{k}", {f"parallel.layer_chunks={k}": 1}, {}) for k in (4, 16)]
        for name, sets, knobs in cases:
            hlo = out / f"hlo_pcc_{task}.txt" if name == "device_batch" else None
            try:
                rows[f"{task}/{name}"] = time_pcc(path, list(sets), steps, hlo=hlo, **knobs)
                if hlo is not None:
                    rows[f"{task}/{name}"]["kernels"] = kernel_counts(hlo.read_text())
            except Exception as err:  # noqa: BLE001 (a failed variant is a row too)
                rows[f"{task}/{name}"] = {"error": f"{type(err).__name__}: {str(err)[:400]}"}
            print(task, name, json.dumps(rows[f"{task}/{name}"])[:300], flush=True)
            save()
        import reference as R

        init, step = R.make_task(task, "batched", "local")
        x, y = R.make_data(R.TASKS[task], jax.random.key(1))
        text = step.lower(init(jax.random.key(0)), x, y).compile().as_text()
        (out / f"hlo_ref_{task}.txt").write_text(text)
        rows[f"{task}/reference_kernels"] = kernel_counts(text)
        save()


def flags_section(results, save, steps: int):
    for name, flags in FLAGS.items():
        env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()}
        cmd = [sys.executable, __file__, "--child", "--steps", str(steps)]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
            line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
            results["flags"][name] = json.loads(line) if done.returncode == 0 else {
                "error": done.stderr[-600:]}
        except Exception as err:  # noqa: BLE001
            results["flags"][name] = {"error": f"{type(err).__name__}: {str(err)[:400]}"}
        print("flags", name, json.dumps(results["flags"][name])[:400], flush=True)
        save()


def child(steps: int):
    """The flags section's measurement, in this (fresh) process: Task A and B, pcc and the reference."""
    row = {}
    for task in ("a", "b"):
        row[f"{task}/device_batch"] = time_pcc(TASKS[task], [], steps)
        row[f"{task}/unroll"] = time_pcc(TASKS[task], [], steps, unroll=True)
        row[f"{task}/reference"] = reference(task, steps)
    print(json.dumps(row))


def trace_section(results, save, out: Path):
    """Five steps of Task A, pcc and the reference, under the profiler; the Perfetto traces are copied out."""
    import reference as R

    for who in ("pcc", "ref"):
        folder = Path(f"/tmp/pcc-trace-{who}")
        shutil.rmtree(folder, ignore_errors=True)
        if who == "pcc":
            spec = pcc.load_spec(TASKS["a"])
            model = pcc.compile(spec, shapes=(784, 10))
            x, y = map(jnp.asarray, task_batch(spec))
            state = model.init()
            step = lambda s, x, y: model.train_step(s, (x, y))  # noqa: E731
        else:
            init, step = R.make_task("a", "batched", "local")
            x, y = R.make_data(R.TASKS["a"], jax.random.key(1))
            state = init(jax.random.key(0))
        _, _, state = run_steps(step, state, x, y, 3)
        with jax.profiler.trace(str(folder), create_perfetto_trace=True):
            for _ in range(5):
                state, o = step(state, x, y)
                jax.block_until_ready((state, o))
        found = sorted(folder.rglob("perfetto_trace.json.gz"))
        if found:
            shutil.copy(found[-1], out / f"trace_{who}_a.json.gz")
        results["trace"][who] = [str(p) for p in found]
        save()


# ------------------------------------------------------------------------------------ training
def train_row(spec, out: str) -> dict:
    """Train ``spec`` into ``out``: its status, accuracies, losses and times (a diverged run is a row too)."""
    t = time.time()
    try:
        summary = pcc.train(spec, out=out, progress=False).to_dict()
    except pcc.PccError as err:
        status = "diverged" if type(err).__name__ == "DivergenceError" else "error"
        summary = {"status": status, "error": str(err)[:500]}
    return {"seconds": time.time() - t, **{k: summary.get(k) for k in (
        "status", "final_test_accuracy", "best_test_accuracy", "final_train_loss", "compile_time", "wall_time",
        "error")}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?")
    ap.add_argument("--fmnist", default=None)
    ap.add_argument("--budget", type=float, default=420)
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        child(args.steps)
        return
    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": str(jax.devices()[0]), "jax": jax.__version__, "bench": {}, "runner": {},
                     "variants": {}, "flags": {}, "trace": {}, "rounding": [], "depth": []}

    def save():
        (out / "gpu_results.json").write_text(json.dumps(results, indent=1))

    def left(what: str) -> bool:
        if time.time() - start < args.budget:
            return True
        results.setdefault("skipped", []).append(what)
        save()
        return False

    data = [f"data.path={args.fmnist}"] if args.fmnist else []
    sections = {
        "bench": lambda: bench_section(results, save, args.steps, left),
        "runner": lambda: left("runner") and runner_section(results, save, data),
        "variants": lambda: left("variants") and variants_section(results, save, args.steps, out),
        "rounding": lambda: rounding_section(results, save, data, left),
        "depth": lambda: depth_section(results, save, data, left),
        "flags": lambda: left("flags") and flags_section(results, save, args.steps),
        "trace": lambda: left("trace") and trace_section(results, save, out),
    }
    for name in SECTIONS:
        if name in args.sections.split(","):
            try:
                sections[name]()
            except Exception as err:  # noqa: BLE001 (a failed section does not stop the others)
                results.setdefault("errors", {})[name] = f"{type(err).__name__}: {str(err)[:400]}"
                save()


def bench_section(results, save, steps: int, left):
    rows = [(f"task_{t}", TASKS[t], []) for t in "ab"] + [("mlp_1024", TASKS["a"], WIDE)]
    for name, path, sets in rows:
        for tag, extra in (("", []), ("/precision_default", ["model.matmul_precision=default"]),
                           ("/bfloat16", ["model.dtype=bfloat16"])):
            if left(f"bench {name}{tag}"):
                r = bench(pcc.load_spec(path, overrides=sets + extra), steps=steps).to_dict()
                results["bench"][name + tag] = r
                print(name + tag, json.dumps(r), flush=True)
                save()
    for t in "ab":
        for precision in ("highest", None):
            if left(f"reference {t}"):
                results["bench"][f"reference_{t}/{precision or 'default'}"] = reference(t, steps, precision)
                save()


def runner_section(results, save, data: list[str]):
    for t in "ab":
        rows: list[dict] = []
        sets = [*data, "learning.epochs=1", "data.limit_train=12800", "run.checkpoint_every_epochs=0",
                "run.log_every=10"]
        pcc.train(pcc.load_spec(TASKS[t], overrides=sets), out=f"/tmp/pcc-runs/runner-{t}", progress=False,
                  callbacks=[lambda row: row.get("kind") == "train" and rows.append(row)])
        first, last = rows[1], rows[-1]  # from the second logged step on: compiled and warm
        ms = 1e3 * (last["wall"] - first["wall"]) / (last["step"] - first["step"])
        results["runner"][f"task_{t}_ms_per_step"] = ms
        print("runner", t, ms, flush=True)
        save()
    cache = Path("/tmp/pcc-xla-cache")
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "PCC_COMPILATION_CACHE": str(cache)}
    for run in ("cold", "warm"):
        folder = f"/tmp/pcc-runs/cache-{run}"
        shutil.rmtree(folder, ignore_errors=True)
        cmd = [sys.executable, "-m", "pcc.cli", "train", TASKS["b"], "--out", folder, "--json",
               *(a for v in [*data, "data.limit_train=1280", "learning.epochs=1", "run.checkpoint_every_epochs=0"]
                 for a in ("--set", v))]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        summary = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-600:]}
        results["runner"][f"compile_cache_{run}"] = {k: summary.get(k) for k in ("compile_time", "wall_time",
                                                                                 "final_test_accuracy", "error")}
        print("cache", run, results["runner"][f"compile_cache_{run}"], flush=True)
        save()


def rounding_section(results, save, data: list[str], left):
    for errors in ("carried", "recomputed"):
        for precision in ("highest", "default"):
            if not left(f"rounding {errors} {precision}"):
                return
            sets = [*data, "model.layers.0.dense.width=512", "data.limit_train=19200", "run.checkpoint_every_epochs=0",
                    f"inference.errors={errors}", f"model.matmul_precision={precision}"]
            row = train_row(pcc.load_spec("specs/paper/mupc-h8.yaml", overrides=sets),
                            f"/tmp/pcc-runs/rounding-{errors}-{precision}")
            results["rounding"].append({"errors": errors, "matmul_precision": precision, **row})
            print(json.dumps(results["rounding"][-1]), flush=True)
            save()


def depth_section(results, save, data: list[str], left):
    for h in (128, 64, 32, 16, 8):
        for kind in ("mupc", "bp", "sp"):
            if not left(f"depth {kind}-h{h}"):
                return
            spec = pcc.load_spec(f"specs/paper/{kind}-h{h}.yaml", overrides=data + ["run.checkpoint_every_epochs=0"])
            row = {"kind": kind, "H": h, **train_row(spec, f"/tmp/pcc-runs/{kind}-h{h}")}
            results["depth"].append(row)
            print(json.dumps(row), flush=True)
            save()


if __name__ == "__main__":
    main()

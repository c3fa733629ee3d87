"""One accelerator session: first the rounding check (the paper's μPC ResNet at width 512 for 300 steps with
the errors carried and recomputed, at true float32 and at the backend's default matmul precision: carried
errors should train in every cell; docs/results.md, "Rounding"), then `pcc bench` on the benchmark tasks
beside the hand-written reference (and Task B with its stack in 4 and 16 layer chunks, to choose
``parallel.layer_chunks: auto`` on the accelerator), then the paper's depth runs (μPC, sp and BP ResNets on Fashion-MNIST, one
epoch each), deepest first.

    python benchmarks/gpu_suite.py OUT_DIR [--fmnist DIR] [--budget SECONDS]

Writes OUT_DIR/gpu_results.json (rewritten after every item, so a cut-short session keeps what it did).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import pcc  # noqa: E402
from pcc.bench import bench  # noqa: E402

WIDE = ["model.layers.0.dense.width=1024", "model.layers.1.dense.width=1024", "model.layers.2.dense.width=1024",
        "name=mlp-1024"]


def reference_ms(task: str, steps: int = 30) -> float:
    import reference as R

    init, step = R.make_task(task, "batched", "local")
    state = init(jax.random.key(0))
    x, y = R.make_data(R.TASKS[task], jax.random.key(1))
    for _ in range(3):
        state, e = step(state, x, y)
    jax.block_until_ready(e)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, e = step(state, x, y)
        jax.block_until_ready((state, e))
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


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
    ap.add_argument("out")
    ap.add_argument("--fmnist", default=None)
    ap.add_argument("--budget", type=float, default=420)
    args = ap.parse_args()
    start = time.time()
    out = Path(args.out)
    results: dict = {"device": str(jax.devices()[0]), "jax": jax.__version__, "rounding": [], "bench": {},
                     "depth": []}

    def save():
        (out / "gpu_results.json").write_text(json.dumps(results, indent=1))

    data = [f"data.path={args.fmnist}"] if args.fmnist else []
    for errors in ("carried", "recomputed"):
        for precision in ("highest", "default"):
            sets = [*data, "model.layers.0.dense.width=512", "data.limit_train=19200", "run.checkpoint_every_epochs=0",
                    f"inference.errors={errors}", f"model.matmul_precision={precision}"]
            summary = train_row(pcc.load_spec("specs/paper/mupc-h8.yaml", overrides=sets),
                                f"/tmp/pcc-runs/rounding-{errors}-{precision}")
            results["rounding"].append({"errors": errors, "matmul_precision": precision, **summary})
            print(json.dumps(results["rounding"][-1]), flush=True)
            save()

    chunks = [(f"task_b_chunks_{k}", "benchmarks/task_b.yaml", [f"parallel.layer_chunks={k}"]) for k in (4, 16)]
    for name, path, overrides in [("task_a", "benchmarks/task_a.yaml", []), ("task_b", "benchmarks/task_b.yaml", []),
                                  *chunks, ("mlp_1024", "benchmarks/task_a.yaml", WIDE)]:
        r = bench(pcc.load_spec(path, overrides=overrides)).to_dict()
        if name in ("task_a", "task_b"):
            r["reference_ms"] = reference_ms(name[-1])
            r["ratio_to_reference"] = r["step_ms"]["median"] / r["reference_ms"]
        results["bench"][name] = r
        print(name, json.dumps(r), flush=True)
        save()

    for h in (128, 64, 32, 16, 8):
        for kind in ("mupc", "bp", "sp"):
            if time.time() - start > args.budget:
                results["stopped"] = f"budget of {args.budget} s reached before {kind}-h{h}"
                save()
                return
            spec = pcc.load_spec(f"specs/paper/{kind}-h{h}.yaml", overrides=data + ["run.checkpoint_every_epochs=0"])
            row = {"kind": kind, "H": h, **train_row(spec, f"/tmp/pcc-runs/{kind}-h{h}")}
            results["depth"].append(row)
            print(json.dumps(row), flush=True)
            save()


if __name__ == "__main__":
    main()

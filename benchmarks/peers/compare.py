"""Peer comparison: one PC train step of Task A and Task B in pcc, the plain-JAX reference, PCX and FabricPC.

One sitting: pcc and ``benchmarks/reference.py`` run in this process, each peer's ``<peer>_tasks.py`` in its
own virtualenv (``setup.sh``) as a worker subprocess. Per task, every implementation is compiled and warmed up
first; then they take turns (never concurrently) timing ``--block`` steps each until ``--steps`` steps each,
so that load drift on a shared machine hits all of them alike. All start from pcc's initial weights and the
same batch (a case file per task), so the energies they report after their first two steps must agree: the
``dF`` column is their largest relative difference from pcc's.

    python benchmarks/peers/compare.py [--tasks a,b] [--impls pcc,reference,pcx,pcx-scan,fabricpc]
                                       [--steps 30] [--block 5] [--json results.json]
    python benchmarks/peers/compare.py --scaling scaling.png [--steps 10] [--json scaling.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "benchmarks")]

import common
import numpy as np

SPECS = {"a": ROOT / "benchmarks/task_a.yaml", "b": ROOT / "benchmarks/task_b.yaml"}
PEERS = {  # impl: (virtualenv, script and flags)
    "pcx": (".venv-pcx", ["pcx_tasks.py"]),  # inference loop unrolled into the trace
    "pcx-scan": (".venv-pcx", ["pcx_tasks.py", "--scan"]),  # inference loop as pxf.scan
    "fabricpc": (".venv-fabricpc", ["fabricpc_tasks.py"]),
}
VARIANTS = {"pcc-stack1": "parallel.layer_chunks=1", "pcc-groups1": "parallel.batch_groups=1"}
"""pcc with one of its defaults off: the stack as one batched matmul; the batch as one group."""
IMPLS = ("pcc", *VARIANTS, "reference", *PEERS)


# --------------------------------------------------------------------------------------------- runners


def pcc_model(task: str, overrides=()):
    import pcc

    return pcc.compile(pcc.load_spec(SPECS[task], overrides=list(overrides)), shapes=(784, 10))


def pcc_weights(model, state) -> list[np.ndarray]:
    """pcc's weights as ``(fan_in, fan_out)`` matrices in layer order (stacked repeats unstacked)."""
    from flax import nnx

    edges = nnx.to_pure_dict(state.params)["edges"]
    out = []
    for node in model.graph.nodes[1:]:
        for leaves in edges[node.name].values():
            k = np.asarray(leaves["kernel"])
            out += [k] if k.ndim == 2 else list(k)
    return out


def pcc_timer(model, x, y) -> common.Timer:
    import jax

    x, y = jax.device_put(x), jax.device_put(y)

    def step(state):
        state, metrics = model.train_step(state, (x, y))
        return state, metrics.energy_final

    return common.Timer(step, model.init())


def start_pcc(task: str, case: str) -> common.Timer:
    """pcc's timer; also writes the case file (pcc's initial weights + the batch) the others start from."""
    model, t = pcc_model(task), common.TASKS[task]
    weights = pcc_weights(model, model.init())
    assert [w.shape for w in weights] == list(zip(t.sizes[:-1], t.sizes[1:])), "pcc's layout is not the task's"
    common.save_case(case, *common.make_data(t), weights)
    return pcc_timer(model, *common.make_data(t))


def start_reference(task: str, case: str) -> common.Timer:
    """``benchmarks/reference.py`` (variant batched, local gradients) from the case file's weights."""
    import jax.numpy as jnp
    import optax
    import reference as R

    x, y, w = common.load_case(common.TASKS[task], case)
    _, step_fn = R.make_task(task, "batched", "local")
    params = {"w_in": jnp.asarray(w[0]), "w_mid": jnp.asarray(np.stack(w[1:-1])), "w_out": jnp.asarray(w[-1])}
    x, y = jnp.asarray(x), jnp.asarray(y)
    timer = common.Timer(lambda s: step_fn(s, x, y), (params, optax.adam(R.TASKS[task].lr).init(params)))
    timer.info["notes"] = ["variant batched, grad local"]
    return timer


class Worker:
    """A peer's ``<peer>_tasks.py`` in its virtualenv, serving timed blocks (``common.Timer.serve``)."""

    def __init__(self, impl: str, task: str, case: str) -> None:
        venv, script = PEERS[impl]
        python = HERE / venv / "bin/python"
        if not python.exists():
            raise RuntimeError(f"{python.relative_to(ROOT)} missing: run benchmarks/peers/setup.sh")
        self.err = tempfile.TemporaryFile("w+")  # noqa: SIM115 -- a file, not a pipe: a chatty worker cannot block
        self.proc = subprocess.Popen([str(python), *script, "--task", task, "--case", case], cwd=HERE,
                                     env={**os.environ, "PEER_SERVE": "1"}, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err)
        self._reply()  # compiled and warmed up

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            self.err.seek(0)
            raise RuntimeError((self.err.read().strip().splitlines() or ["worker died"])[-1])
        return json.loads(line)

    def block(self, k: int) -> list[float]:
        self.proc.stdin.write(f"{k}\n")
        self.proc.stdin.flush()
        return self._reply()["ms"]

    def result(self) -> dict:
        self.proc.stdin.write("0\n")
        self.proc.stdin.flush()
        res = self._reply()  # the script's final JSON line: timings, energies (FabricPC's recomputed), notes
        self.proc.wait()
        return res


def start(impl: str, task: str, case: str):
    if impl == "pcc":
        return start_pcc(task, case)
    if impl in VARIANTS:
        return pcc_timer(pcc_model(task, [VARIANTS[impl]]), *common.make_data(common.TASKS[task]))
    if impl == "reference":
        return start_reference(task, case)
    return Worker(impl, task, case)


# ------------------------------------------------------------------------------------------ comparison


def compare(tasks: list[str], impls: list[str], steps: int, block: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            case, runners, res = os.path.join(tmp, f"task_{task}.npz"), {}, {}
            for impl in ["pcc"] + [i for i in impls if i != "pcc"]:  # pcc first: it writes the case file
                try:
                    runners[impl] = start(impl, task, case)
                    print(f"  task {task} {impl}: ready", file=sys.stderr, flush=True)
                except Exception as e:  # noqa: BLE001 -- a failing implementation is a row, not the end
                    res[impl] = {"error": f"{type(e).__name__}: {e}"}
            for done in [*range(0, steps, block), None]:  # take turns; then collect the results
                for impl in list(runners):
                    try:
                        if done is None:
                            res[impl] = runners[impl].result()
                        else:
                            runners[impl].block(min(block, steps - done))
                    except Exception as e:  # noqa: BLE001
                        res[impl] = {"error": f"{type(e).__name__}: {e}"}
                        del runners[impl]
            base = res["pcc"]
            for impl in impls:
                r = {**res[impl], "task": task, "impl": impl}
                if "error" not in r and "error" not in base:
                    r["ratio"] = r["step_ms"]["median"] / base["step_ms"]["median"]
                    r["ratio_min"] = r["step_ms"]["min"] / base["step_ms"]["min"]
                    r["energy_rel_diff"] = max(abs(e - b) / abs(b) for e, b in zip(r["energy"], base["energy"]))
                rows.append(r)
    return rows


def table(rows: list[dict]) -> str:
    head = f"{'task':<5}{'impl':<12}{'jax':<8}{'compile s':>10}{'ms median':>11}{'ms min':>9}{'ms max':>9}" \
           f"{'ratio':>8}{'r(min)':>8}{'dF':>10}"
    out, nan = [head, "-" * len(head)], float("nan")
    for r in rows:
        if "error" in r:
            out.append(f"{r['task']:<5}{r['impl']:<12}error: {r['error']}")
            continue
        ms = r["step_ms"]
        out.append(f"{r['task']:<5}{r['impl']:<12}{r['jax']:<8}{r['compile_s']:>10.2f}{ms['median']:>11.2f}"
                   f"{ms['min']:>9.2f}{ms['max']:>9.2f}{r.get('ratio', nan):>8.2f}{r.get('ratio_min', nan):>8.2f}"
                   f"{r.get('energy_rel_diff', nan):>10.1e}")
    out.append("ratio = impl median / pcc median, r(min) = impl min / pcc min (same task); dF = largest relative "
               "difference of the batch-mean energy after steps 1 and 2 from pcc's")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- scaling

SCALING = {  # panel: (task, x label, values, overrides of one value)
    "depth": ("b", "weight layers L (Task B)", (8, 32, 128), lambda v: [f"model.layers.1.repeat={v - 2}"]),
    "width": ("a", "hidden width (Task A)", (64, 128, 256, 512),
              lambda v: [f"model.layers.{i}.dense.width={v}" for i in range(3)]),
    "T": ("ab", "inference steps T", (5, 10, 20, 40), lambda v: [f"inference.steps={v}"]),
    "batch": ("ab", "batch size B", (32, 128, 512), lambda v: [f"data.batch_size={v}"]),
}


def scaling(steps: int) -> list[dict]:
    """pcc's timing at every point of :data:`SCALING`."""
    points = []
    for panel, (tasks, _, values, overrides) in SCALING.items():
        for task in tasks:
            for v in values:
                model = pcc_model(task, overrides(v))
                x, y = common.make_data(dataclasses.replace(common.TASKS[task], batch=model.spec.data.batch_size))
                timer = pcc_timer(model, x, y)
                timer.block(steps)
                points.append({"panel": panel, "task": task, "value": v, **timer.result()})
                print(f"  {panel}={v} task {task}: {points[-1]['step_ms']['median']:.2f} ms", file=sys.stderr)
    return points


def plot(points: list[dict], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for ax, (panel, (tasks, label, values, _)) in zip(axes.flat, SCALING.items()):
        for task in tasks:
            pts = [p for p in points if p["panel"] == panel and p["task"] == task]
            ms = [p["step_ms"]["median"] for p in pts]
            err = [[m - p["step_ms"]["min"] for m, p in zip(ms, pts)],
                   [p["step_ms"]["max"] - m for m, p in zip(ms, pts)]]
            ax.errorbar([p["value"] for p in pts], ms, yerr=err, fmt="o-", capsize=3, label=f"Task {task.upper()}")
        ax.set(xscale="log", yscale="log", xlabel=label, ylabel="train step, ms (median; bars min..max)")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(values, [str(v) for v in values])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"pcc train step on {platform.machine()}, {os.cpu_count()} shared cores (CPU)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="a,b")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--steps", type=int, default=30, help="timed steps per implementation (after 3 warm-ups)")
    ap.add_argument("--block", type=int, default=5, help="steps per turn (--block = --steps: one turn each)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--scaling", metavar="PNG", help="plot pcc's scaling curves instead")
    args = ap.parse_args(argv)
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                         check=False).stdout.strip()
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "pcc_git": git, "steps": args.steps,
            "block": args.block}
    if args.scaling:
        rows = scaling(args.steps)
        plot(rows, args.scaling)
        print(f"wrote {args.scaling}")
    else:
        rows = compare(args.tasks.split(","), args.impls.split(","), args.steps, args.block)
        print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({**meta, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

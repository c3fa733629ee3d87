"""Which layers learn, and do larger or accelerated inference steps carry the error signal deeper?

    python examples/deeper_inference.py [OUT_DIR] [--spec SPEC] [--train N]

For the μPC ResNet of ``specs/paper/mupc-h32.yaml`` (H = 32, N = 128, Fashion-MNIST) and several activity
solvers, this runs ``pcc diagnose`` at initialisation, trains on the first N training images (default 19,200:
300 steps) and diagnoses the trained weights. Per run it reports how many weight layers receive a PC update of
at least a tenth of the backprop gradient's norm ("reach"), the median PC-vs-BP cosine over those layers, and
the test accuracy after training. Each variant is the spec plus ``--set`` overrides, printed with the result.
"""

import json
import subprocess
import sys
from pathlib import Path
from statistics import median

VARIANTS = {
    "gd η=0.5/64 (paper)": [],
    "gd η=0.1": ["inference.step_convention=per_sample", "inference.step_size=0.1"],
    "gd η=0.5": ["inference.step_convention=per_sample"],
    "momentum 0.9, η=0.1": ["inference.step_convention=per_sample", "inference.solver=optax",
                            "inference.optimizer={name: sgd, lr: 0.1, momentum: 0.9}"],
    "ode heun t1=20": ["inference.step_convention=per_sample", "inference.solver=ode"],
}


def pcc(*args: str) -> dict:
    done = subprocess.run(["pcc", *args, "--json"], capture_output=True, text=True)
    if done.returncode != 0:  # a diverged run exits 0 with status "diverged"
        sys.exit(f"pcc {' '.join(args)} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def reach(diagnosis: dict, at_least: float = 0.1) -> tuple[int, float, int]:
    """(layers whose PC update is ≥ ``at_least`` × BP's norm, their median cosine, weight layers in all)."""
    layers = [l for l in diagnosis["layers"] if l.get("norm_ratio") is not None]
    deep = [l for l in layers if l["norm_ratio"] >= at_least]
    return len(deep), median(l["cosine"] for l in deep) if deep else float("nan"), len(layers)


def main() -> None:
    args = sys.argv[1:]
    option = lambda name, default: args[args.index(name) + 1] if name in args else default  # noqa: E731
    spec, train = option("--spec", "specs/paper/mupc-h32.yaml"), option("--train", "19200")
    positional = [a for i, a in enumerate(args)
                  if not a.startswith("--") and (i == 0 or not args[i - 1].startswith("--"))]
    out = Path(positional[0] if positional else "runs/deeper-inference")
    saved = out / "deeper_inference.json"
    done = {r["variant"]: r for r in json.loads(saved.read_text())} if saved.exists() else {}
    rows = []
    for name, overrides in VARIANTS.items():
        if name in done:  # measured by an earlier invocation: rerun by deleting deeper_inference.json
            rows.append(done[name])
            continue
        print(f"{name} …", file=sys.stderr, flush=True)
        sets = [x for o in overrides + [f"data.limit_train={train}", "run.progress=false"] for x in ("--set", o)]
        run_dir = out / name.replace(" ", "_").replace("/", "-").replace("=", "").replace(",", "")
        at_init = reach(pcc("diagnose", spec, "--hessian", "none", *sets))
        summary = pcc("train", spec, "--out", str(run_dir), *sets)
        trained = reach(pcc("diagnose", "--checkpoint", str(run_dir), "--hessian", "none")) \
            if summary["status"] == "completed" else (0, float("nan"), at_init[2])
        rows.append({"variant": name, "overrides": overrides, "reach_init": at_init[0], "cos_init": at_init[1],
                     "reach_trained": trained[0], "cos_trained": trained[1], "layers": at_init[2],
                     "status": summary["status"], "test_accuracy": summary.get("final_test_accuracy"),
                     "wall_time": summary.get("wall_time")})
        saved.write_text(json.dumps(rows, indent=2))
    for r in rows:
        print(f"{r['variant']:>22}: reach {r['reach_init']}/{r['layers']} at init (cos {r['cos_init']:.3f}), "
              f"{r['reach_trained']}/{r['layers']} trained (cos {r['cos_trained']:.3f}); {r['status']}, "
              f"test accuracy {r['test_accuracy']}, {r['wall_time']} s")


if __name__ == "__main__":
    main()

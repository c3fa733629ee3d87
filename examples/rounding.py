"""How sensitive μPC + Adam is to rounding: a one-ULP disagreement between the feedforward initialisation and
the energy's own predictions is enough to make a μPC ResNet diverge, unless inference carries its errors.

    python examples/rounding.py [OUT_DIR] [--full]

Under μPC with small-step inference the lowest layers' true errors are ~0 (THEORY.md §5), so whatever the
floating-point arithmetic leaves there is all their weights see, and Adam normalises it to lr-sized updates.
A backend whose kernels round the feedforward pass and the energy's predictions differently (other fusions,
FMA contraction, TF32, another GEMM for the batched layer axis) leaves such noise when inference recomputes
the errors from the activities (``inference.errors: recomputed``); carrying them by their changes (the
default) keeps every unreached layer's error at exactly 0. This script emulates such a backend by rounding the
feedforward activities to nearest with the last mantissa bit dropped (a relative change ≤ 2⁻²³) and trains the
paper's μPC ResNet (H = 8, N = 512, Adam 0.05, Fashion-MNIST): exact; emulated with carried errors; emulated
with recomputed errors; emulated under ePC (``inference.state: errors``, whose errors are the state itself).
"""

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

import pcc
import pcc.nn.network as network
from pcc.ir.graph import INPUT

SPEC = "specs/paper/mupc-h8.yaml"
COMMON = ["model.layers.0.dense.width=512", "run.progress=false"]


def drop_last_bit(x: jax.Array) -> jax.Array:
    """Round float32 ``x`` to nearest with one mantissa bit fewer (ties away from zero)."""
    u = jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jax.lax.bitcast_convert_type((u + jnp.uint32(1)) & jnp.uint32(0xFFFFFFFE), jnp.float32)


def run(name: str, out: Path, overrides: list[str], emulate: bool) -> dict:
    exact = network.PCNetwork.forward

    def forward(self, x, offsets=None):
        return {k: v if k == INPUT else drop_last_bit(v) for k, v in exact(self, x, offsets).items()}

    network.PCNetwork.forward = forward if emulate else exact
    try:
        spec = pcc.load_spec(SPEC, COMMON + overrides)
        summary = pcc.train(spec, out=out / name)
    finally:
        network.PCNetwork.forward = exact
    first = json.loads((out / name / "metrics.jsonl").read_text().splitlines()[0])
    return {"run": name, "status": summary.status, "steps": summary.steps,
            "test_accuracy": summary.final_test_accuracy, "train_loss": summary.final_train_loss,
            "energy_h1_first_log": first.get("energy/h1")}


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = Path(args[0] if args else "runs/rounding")
    subset = [] if "--full" in sys.argv else ["data.limit_train=19200"]
    rows = [run("exact", out, subset, emulate=False),
            run("one-ulp", out, subset, emulate=True),
            run("one-ulp-recomputed", out, subset + ["inference.errors=recomputed"], emulate=True),
            run("one-ulp-epc", out, subset + ["inference.state=errors"], emulate=True)]
    for r in rows:
        print(f"{r['run']:>18}: {r['status']:>9} after {r['steps']:4d} steps, test accuracy "
              f"{r['test_accuracy']:.4f}, train loss {r['train_loss']:.3g}, energy/h1 at the first log "
              f"{r['energy_h1_first_log']:.3g}")
    (out / "rounding.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""pcc's train step with the batch in one group and in several (``parallel.batch_groups``), taking turns in one
process, on Task A and variants of it (batch size, hidden width). Prints median (min) ms per step and the
speed-up of each grouping over one group, measured as in ``peers/compare.py`` (``common.Timer``).

    python benchmarks/batch_groups.py [--groups 1,4] [--steps 100] [--block 5]
    python benchmarks/batch_groups.py --set data.batch_size=512 --set data.batch_size=64
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "peers"), str(HERE)]

import common  # noqa: E402
import numpy as np  # noqa: E402

WIDTH = "model.layers.{k}.dense.width={w}"
CASES = {  # label: overrides of Task A
    "task A (B 128, width 128)": [],
    "B 256": ["data.batch_size=256"],
    "B 512": ["data.batch_size=512"],
    "width 256": [WIDTH.format(k=k, w=256) for k in range(3)],
}


def batch(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Task A's fixed batch, of ``size`` samples."""
    return common.make_data(dataclasses.replace(common.TASKS["a"], batch=size))


def sitting(overrides: list[str], groups: list[int], steps: int, block: int) -> dict[int, list[float]]:
    import compare

    size = next((int(o.split("=")[1]) for o in overrides if o.startswith("data.batch_size=")), 128)
    models = {g: compare.pcc_model("a", [*overrides, f"parallel.batch_groups={g}"]) for g in groups}
    assert [m.program.groups for m in models.values()] == groups
    timers = {g: compare.pcc_timer(m, *batch(size)) for g, m in models.items()}
    for _ in range(-(-steps // block)):
        for timer in timers.values():
            timer.block(block)
    return {g: t.ms for g, t in timers.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", default="1,4", help="groupings to compare; the first is the baseline")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="one case of Task A overrides instead of the default cases (repeatable: one case each)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--block", type=int, default=5)
    args = ap.parse_args(argv)
    groups = [int(g) for g in args.groups.split(",")]
    cases = {o: o.split() for o in args.set} if args.set else CASES
    for label, overrides in cases.items():
        ms = sitting(overrides, groups, args.steps, args.block)
        base = statistics.median(ms[groups[0]])
        cells = [f"{g} groups {statistics.median(v):6.2f} ({min(v):.2f}) ms x{base / statistics.median(v):.2f}"
                 for g, v in ms.items()]
        print(f"{label:<28}" + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

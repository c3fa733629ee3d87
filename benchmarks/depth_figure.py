"""Accuracy against depth for μPC, sp and BP from the run folders of benchmarks/paper_cpu.sh.

    python benchmarks/depth_figure.py RUNS_DIR OUT_PNG

RUNS_DIR holds ``{mupc,sp,bp}-h{H}/summary.json``; a run that diverged is drawn at chance with a cross.
Prints the table behind the figure as markdown.
"""

import json
import sys
from pathlib import Path

from pcc.figures import pyplot, save

DEPTHS = (8, 16, 32, 64, 128)
NETS = {"mupc": "μPC", "sp": "sp PC", "bp": "BP (Depth-μP)"}
CHANCE = 0.1


def load(runs: Path) -> dict[str, dict[int, dict]]:
    table: dict[str, dict[int, dict]] = {}
    for net in NETS:
        for h in DEPTHS:
            path = runs / f"{net}-h{h}" / "summary.json"
            if path.exists():
                table.setdefault(net, {})[h] = json.loads(path.read_text())
    return table


def cell(s: dict) -> str:
    if s["status"] != "completed":
        return f"{s['status']} at step {s['steps']}"
    return f"{100 * s['final_test_accuracy']:.1f} % ({s['wall_time']:.0f} s)"


def main() -> None:
    runs, out = Path(sys.argv[1]), Path(sys.argv[2])
    table = load(runs)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for net, label in NETS.items():
        rows = sorted(table.get(net, {}).items())
        ok = [(h, s["final_test_accuracy"]) for h, s in rows if s["status"] == "completed"]
        bad = [h for h, s in rows if s["status"] != "completed"]
        line = ax.plot(*zip(*ok), marker="o", label=label)[0] if ok else None
        if bad:
            ax.scatter(bad, [CHANCE] * len(bad), marker="x", s=60,
                       color=line.get_color() if line else None, label=None if line else f"{label} (diverged)")
    ax.axhline(CHANCE, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xticks=DEPTHS, xticklabels=[str(h) for h in DEPTHS], xlabel="hidden layers H",
           ylabel="test accuracy after one epoch", ylim=(0, 1), title="Fashion-MNIST, width 128 (× = diverged)")
    ax.legend()
    save(fig, out)
    print("| H | " + " | ".join(NETS.values()) + " |\n|---|" + "---|" * len(NETS))
    for h in DEPTHS:
        print(f"| {h} | " + " | ".join(cell(table[n][h]) if h in table.get(n, {}) else "–" for n in NETS) + " |")


if __name__ == "__main__":
    main()

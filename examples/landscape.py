"""The origin saddle of a deep linear net: updates to escape it by BP (∇ MSE) and by PC (∇ F* at equilibrium).

    python examples/landscape.py [OUT_DIR]

THEORY.md §4: at the origin the MSE loss is flat to order H, while the equilibrated energy F* is a strict saddle.
Same small init, same data (x ~ N(0, I_8), linear teacher of spectral norm 1, 64 samples), same learning rate;
"escape" = the first update after which the MSE is at most half its initial value (median over seeds). Prints a
markdown table and writes OUT_DIR/landscape.png and OUT_DIR/landscape.json (default OUT_DIR: landscape-out).
"""

import json
import sys
from pathlib import Path

import numpy as np

from pcc.figures import pyplot, save
from pcc.theory.landscape import saddle_escape

out = Path(sys.argv[1] if len(sys.argv) > 1 else "landscape-out")
depths, seeds, init_scales = [2, 4, 8], [0, 1, 2], [0.1, 0.2, 0.4]
lr, max_updates, threshold = 0.1, 20000, 0.5


def median(values):
    """Median update count; a run that never escaped counts as +inf."""
    return float(np.median([np.inf if v is None else v for v in values]))


def show(v):
    return f"> {max_updates}" if np.isinf(v) else f"{v:.0f}"


rows = []
print(f"| init scale | H | BP updates | PC updates | BP/PC | PC updates (F*) | max(F* − MSE) |\n|{'---|' * 7}")
for eps in init_scales:
    for h in depths:
        runs = [saddle_escape(h, init_scale=eps, lr=lr, max_updates=max_updates, seed=s, threshold=threshold)
                for s in seeds]
        bp, pc = median([r.bp.escape for r in runs]), median([r.pc.escape for r in runs])
        energy = median([r.pc.energy_escape for r in runs])
        gap = max(r.max_gap for r in runs)
        ratio = "n/a" if np.isinf(pc) else f"> {max_updates / pc:.1f}" if np.isinf(bp) else f"{bp / pc:.1f}"
        print(f"| {eps} | {h} | {show(bp)} | {show(pc)} | {ratio} | {show(energy)} | {gap:.1e} |", flush=True)
        rows.append({"init_scale": eps, "depth": h, "bp": [r.bp.escape for r in runs],
                     "pc": [r.pc.escape for r in runs], "pc_energy": [r.pc.energy_escape for r in runs],
                     "max_gap": gap})

settings = {"lr": lr, "max_updates": max_updates, "threshold": threshold, "seeds": seeds, "width": 8, "batch": 64}
out.mkdir(parents=True, exist_ok=True)
(out / "landscape.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))

# Loss curves at one depth (full runs, not stopped at the escape) and escape counts against depth.
h, eps, n = 4, 0.2, 1500
run = saddle_escape(h, init_scale=eps, lr=lr, max_updates=n, until_escape=False)
plt = pyplot()
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
t = np.arange(n + 1)
left.plot(t, run.bp.mse, label="BP: MSE")
left.plot(t, run.pc.mse, label="PC: MSE")
left.plot(t, run.pc.fstar, "--", label="PC: F* (its objective)")
left.plot(t, run.bp.fstar, ":", color="gray", label="BP: F*")
left.axhline(threshold * run.bp.mse[0], color="k", lw=0.5)
left.set(yscale="log", xlabel="weight update", ylabel="batch-mean loss", title=f"H = {h}, init scale {eps}, lr {lr}")
left.legend()
for eps_, style in zip(init_scales, [":", "-", "--"]):
    sel = [r for r in rows if r["init_scale"] == eps_]
    for key, colour, what in [("bp", "C0", "BP: MSE"), ("pc", "C1", "PC: MSE"), ("pc_energy", "C2", "PC: F*")]:
        meds = [min(median(r[key]), max_updates) for r in sel]
        right.plot(depths, meds, style, color=colour, marker="o", label=f"{what}, init {eps_}")
right.axhline(max_updates, color="k", lw=0.5, ls=":")
right.set(yscale="log", xlabel="H (hidden layers)", ylabel=f"updates until loss ≤ {threshold} × initial",
          title="median escape (capped at the budget)", xticks=depths)
right.legend(fontsize=8)
print(f"wrote {save(fig, out / 'landscape.png')} and {out / 'landscape.json'}")

#!/usr/bin/env bash
# The thesis claims on a CPU, one epoch of Fashion-MNIST each (docs/results.md): width and depth transfer
# grids (pcc sweep) and the accuracy-vs-depth series (pcc train). Finished runs are skipped on a rerun.
# Usage: benchmarks/paper_cpu.sh OUT_DIR        (about 1.5 h on a 2-core CPU)
set -euo pipefail
out=${1:?usage: benchmarks/paper_cpu.sh OUT_DIR}
mkdir -p "$out/depth"
lrs=learning.optimizer.lr=0.1,0.05,0.01,0.003
etas=inference.step_size=5,0.5,0.05

# Width transfer: H = 8, N ∈ {64, 128, 512}, full epoch.
for p in mupc sp; do
  pcc sweep "specs/paper/$p-h8.yaml" --grid model.layers.0.dense.width=64,128,512 --grid "$lrs" --grid "$etas" \
    --out "$out/width-$p" --json > "$out/width-$p.json"
done

# Accuracy vs depth: μPC, sp and BP (Depth-μP) at H ∈ {8 … 128}, the paper specs as they are.
for p in mupc sp bp; do
  for h in 8 16 32 64 128; do
    [ -f "$out/depth/$p-h$h/summary.json" ] && continue
    pcc train "specs/paper/$p-h$h.yaml" --out "$out/depth/$p-h$h" --json > "$out/depth/$p-h$h.json" || true
  done
done

# Depth transfer: N = 128 on the first 19,200 training images (300 steps); H = 128 on a reduced grid.
for p in mupc sp; do
  for h in 8 32; do
    pcc sweep "specs/paper/$p-h$h.yaml" --grid "$lrs" --grid "$etas" --set data.limit_train=19200 \
      --out "$out/depth-$p-h$h" --json > "$out/depth-$p-h$h.json"
  done
  pcc sweep "specs/paper/$p-h128.yaml" --grid learning.optimizer.lr=0.1,0.05,0.01 --grid inference.step_size=5 \
    --set data.limit_train=19200 --out "$out/depth-$p-h128" --json > "$out/depth-$p-h128.json"
done

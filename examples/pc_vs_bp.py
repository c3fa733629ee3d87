"""Train the same network and parameterisation with predictive coding and with backprop, side by side.

    python examples/pc_vs_bp.py [SPEC]
"""

import sys

import pcc

path = sys.argv[1] if len(sys.argv) > 1 else "specs/quickstart.yaml"
results = {}
for algorithm in ("pc", "bp"):
    spec = pcc.load_spec(path, overrides=[f"learning.algorithm={algorithm}", f"name=compare-{algorithm}"])
    summary = pcc.train(spec, out=f"runs/compare-{algorithm}", progress=False)
    results[algorithm] = summary
    print(f"{algorithm}: test accuracy {summary.final_test_accuracy:.4f}, loss {summary.final_test_loss:.4f}, "
          f"{summary.wall_time:.1f} s")
print("pc - bp accuracy:", f"{results['pc'].final_test_accuracy - results['bp'].final_test_accuracy:+.4f}")

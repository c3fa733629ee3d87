"""κ(H_z) at initialisation for linear residual chains, μPC against sp, and the fitted growth exponent.

    python examples/conditioning.py [WIDTH]

THEORY.md §5: under μPC κ grows like H² (a 1-D Laplacian along depth); under sp with skips it blows up.
"""

import sys

import numpy as np

from pcc.theory import condition_number, mupc_chain

width = int(sys.argv[1]) if len(sys.argv) > 1 else 64
depths = [4, 8, 16, 32, 64]
for name in ("mupc", "sp"):
    kappas = [float(np.median([condition_number(mupc_chain(seed, 64, width, h, 10, skips=True, parameterisation=name))
                               for seed in range(3)])) for h in depths]
    slope = np.polyfit(np.log(depths), np.log(kappas), 1)[0]
    print(f"{name:>4}: " + "  ".join(f"H={h}: {k:.3g}" for h, k in zip(depths, kappas)) + f"   exponent {slope:.2f}")

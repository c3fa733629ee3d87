#!/usr/bin/env bash
# One virtualenv per peer library, benchmarks/peers/.venv-<peer> (they pin different JAX versions; pip picks
# each one's jax). Usage: bash benchmarks/peers/setup.sh [pcx] [fabricpc]   (default: both)
set -euo pipefail
cd "$(dirname "$0")"
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(pcx fabricpc)
for p in "${peers[@]}"; do
  echo "== .venv-$p"
  "${PYTHON:-python3}" -m venv ".venv-$p"
  ".venv-$p/bin/pip" install -q --upgrade pip
  ".venv-$p/bin/pip" install -q "$p"
  ".venv-$p/bin/python" -c "import importlib.metadata as m, jax; print('$p', m.version('$p'), 'jax', jax.__version__)"
done

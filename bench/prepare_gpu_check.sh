#!/usr/bin/env bash
# Fill .gpu-check/ for bench/gpu_check.sh on a GPU machine without network, from a machine
# that reaches PyPI (run from the repository root):
#   .gpu-check/py3XY/   wheels for each Python in $PY_VERSIONS (default 3.10-3.13): trl, datasets,
#                       gguf and every dependency of theirs, except what the GPU machine already
#                       has (torch, transformers, peft, accelerate and their own dependencies)
#   .gpu-check/tokenizer/  the SmolLM2 tokenizer (for the randomly initialised models)
#   .gpu-check/gguf.part-aa, -ab  the real SmolLM2-135M-Instruct GGUF (98 MB) in two parts, each
#                       below a 64 MiB transfer limit; gpu_check.sh joins them into .gpu-check/gguf/
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.gpu-check
mkdir -p "$OUT"
HAVE="torch transformers peft accelerate numpy packaging pyyaml regex requests safetensors tokenizers
      huggingface-hub tqdm filelock fsspec jinja2 markupsafe sympy networkx psutil typing-extensions
      certifi charset-normalizer idna urllib3 mpmath hf-xet"
for v in ${PY_VERSIONS:-3.10 3.11 3.12 3.13}; do
  d="$OUT/py${v/./}"
  mkdir -p "$d"
  # the closure of what is missing, resolved for that Python on Linux x86-64
  uv pip compile --quiet --python-version "$v" --python-platform x86_64-manylinux_2_28 - <<REQ \
    | grep -E '^[a-zA-Z0-9]' | sed 's/ .*//' > "$d/requirements.txt"
trl==1.16.0
datasets
gguf
REQ
  grep -viE "^($(echo $HAVE | tr ' ' '|')|nvidia-.*|triton|setuptools)==" "$d/requirements.txt" > "$d/missing.txt" || true
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$v" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$d" -r "$d/missing.txt"
done
uv run python - <<'PY'
from transformers import AutoTokenizer
from gsm8k_lab.models import embedded_model_dir, _embedded_gguf_path
import shutil
AutoTokenizer.from_pretrained(embedded_model_dir()).save_pretrained(".gpu-check/tokenizer")
shutil.copy(_embedded_gguf_path(), ".gpu-check/SmolLM2-135M-Instruct.Q4_1.gguf")
PY
split -b 50m ".gpu-check/SmolLM2-135M-Instruct.Q4_1.gguf" "$OUT/gguf.part-" && rm "$OUT/SmolLM2-135M-Instruct.Q4_1.gguf"
du -sh "$OUT"/*

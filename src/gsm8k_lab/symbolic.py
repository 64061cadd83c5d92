"""GSM-Symbolic: a fixed generalisation set built from reasoning-gym's GSM-Symbolic generators.

GSM-Symbolic (Mirzadeh et al., 2024) turns GSM8K *test* problems into templates
and fills them with new names and numbers. A model that learned the reasoning,
not the test set, keeps its accuracy there; the drop from GSM8K to GSM-Symbolic
is the report's generalisation column.

``gsm-symbolic`` (or ``gsm-symbolic:N``) as a data source means the first N
(default 500) problems of ``reasoning_gym.create_dataset("gsm_symbolic",
seed=1234)``, built once into the cache (``GSM8K_LAB_CACHE``) as GSM8K-style
JSONL (``{"question", "answer": "<reasoning>\\n#### N"}``) with a provenance
file (package version, seed, size, the source templates, sha256) and checked by
that sha256 on every load. These are variants of test problems: evaluation
only, never training data.

reasoning-gym (Apache-2.0) is an optional extra: ``uv sync --extra symbolic``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from .config import SettingError, UsageError

NAME = "gsm-symbolic"
DEFAULT_SIZE = 500
SEED = 1234


def is_symbolic(source: str) -> bool:
    return source == NAME or source.startswith(NAME + ":")


def size_of(source: str) -> int:
    if source == NAME:
        return DEFAULT_SIZE
    text = source.split(":", 1)[1]
    if not text.isdigit() or int(text) < 1:
        raise ValueError(text)
    return int(text)


def load(source: str, path: str) -> list[dict]:
    """The set's records (built on first use), sha256-checked against its provenance."""
    try:
        n = size_of(source)
    except ValueError:
        raise SettingError(path, source, "{name} {value}: expected gsm-symbolic or gsm-symbolic:N with N a "
                           "positive integer") from None
    file = cache_dir() / f"gsm-symbolic-{n}-seed{SEED}.jsonl"
    prov_file = file.with_suffix(".provenance.json")
    if not (file.is_file() and prov_file.is_file()):
        build(n, file, prov_file)
    raw = file.read_bytes()
    provenance = json.loads(prov_file.read_text(encoding="utf-8"))
    if hashlib.sha256(raw).hexdigest() != provenance.get("sha256"):
        raise UsageError(f"the GSM-Symbolic set {file} does not match its provenance sha256 (delete both files "
                         "to build it again)")
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def build(n: int, file: Path, prov_file: Path) -> None:
    try:
        import reasoning_gym
    except ImportError:
        raise UsageError("the gsm-symbolic data source needs reasoning-gym: uv sync --extra symbolic") from None
    from .runs import atomic_write_json, atomic_write_text

    print(f"[gsm8k-lab] building the GSM-Symbolic set once: {n} problems, seed {SEED} -> {file}", flush=True)
    records, templates = [], set()
    for entry in reasoning_gym.create_dataset("gsm_symbolic", size=n, seed=SEED):
        meta = entry.get("metadata", {})
        reasoning = str(meta.get("answer_cot") or "").strip()
        records.append({"question": entry["question"], "answer": f"{reasoning}\n#### {entry['answer']}".lstrip(),
                        "source_index": meta.get("source_index")})
        templates.add(meta.get("source_index"))
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(file, text)
    atomic_write_json(prov_file, {
        "package": "reasoning-gym", "version": importlib.metadata.version("reasoning-gym"),
        "generator": "gsm_symbolic", "seed": SEED, "size": n,
        "templates": sorted(t for t in templates if t is not None),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "license": "reasoning-gym: Apache-2.0; templates derived from GSM8K (MIT)",
    })


def cache_dir() -> Path:
    return Path(os.environ.get("GSM8K_LAB_CACHE", Path.home() / ".cache" / "gsm8k-lab"))

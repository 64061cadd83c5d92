"""GSM-Symbolic: templated variants of GSM8K test problems, paired with the problems they come from.

GSM-Symbolic (Mirzadeh et al., 2024) turns GSM8K *test* problems into templates
and fills them with new names and numbers. A model that learned the reasoning,
not the test set, keeps its accuracy there. The drop is only meaningful when
both sides are the same problems under the same prompt, so the set comes in
two halves that share their problem indices (the GSM8K test index):

- ``gsm-symbolic`` (or ``gsm-symbolic:N``): one variant per template of
  reasoning-gym's ``gsm_symbolic`` generators (the 85 it marks as correct),
  each drawn with ``Random(SEED + template)``, the question exactly as the
  template writes it. reasoning-gym's dataset appends "Give the result as your
  final answer. Do not include units." to each question; that instruction is
  not used here, so variants and originals see the same system prompt and
  nothing else;
- ``gsm-symbolic-originals`` (or ``:N``): the GSM8K test problem each of those
  templates was made from, from the bundled test split.

Both are ordered by test index; ``:N`` takes the first N of that order. A
run's evaluation on ``gsm-symbolic:N`` also evaluates ``gsm-symbolic-originals:N``
(see :func:`with_originals`), and the report pairs the two on the test index.
Only 3 templates come from the first 64 test problems and 37 from the first
512, so pairing the variants with a run's main test evaluation would leave
almost nothing to compare; the originals are evaluated on their own instead.

Which test problem a template comes from was found by text match (each
template's fixed words against every test question; :data:`TEMPLATE_SOURCES`,
checked in ``tests/test_symbolic.py``). The variants are built once into the
cache (``GSM8K_LAB_CACHE``) as GSM8K-style JSONL with a provenance file and
must match :data:`EXPECTED_SHA256`, the digest pinned here; a reasoning-gym
that builds a different set is refused. Evaluation only, never training data.

reasoning-gym (Apache-2.0) is an optional extra: ``uv sync --extra symbolic``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Callable
from pathlib import Path
from random import Random

from . import runtime
from .answers import parse_gold
from .config import SettingError, UsageError
from .runs import atomic_write_json, atomic_write_text, jsonl_lines

NAME = "gsm-symbolic"
ORIGINALS = "gsm-symbolic-originals"
SEED = 1234

#: reasoning-gym gsm_symbolic template -> index in the GSM8K test split of the problem it was made from
#: (the 85 templates reasoning-gym lists as correct in ``tasks_ok``).
TEMPLATE_SOURCES: dict[int, int] = {
    0: 989, 1: 930, 2: 982, 3: 242, 4: 469, 5: 677, 6: 365, 7: 99, 8: 116, 9: 843, 10: 496, 11: 406, 12: 220,
    13: 1099, 14: 300, 15: 1053, 16: 149, 17: 955, 18: 800, 19: 1264, 20: 491, 21: 984, 22: 265, 23: 164,
    24: 991, 25: 43, 26: 269, 27: 1165, 28: 661, 29: 458, 30: 740, 31: 1189, 33: 636, 34: 1025, 36: 1021,
    38: 520, 39: 364, 40: 456, 41: 788, 42: 266, 43: 579, 44: 1111, 45: 125, 46: 20, 47: 158, 48: 799,
    49: 434, 50: 1074, 51: 357, 52: 546, 53: 184, 54: 684, 55: 232, 56: 1305, 57: 918, 58: 400, 59: 103,
    60: 1133, 62: 921, 64: 1141, 66: 107, 67: 1020, 68: 858, 69: 655, 70: 1247, 71: 11, 72: 1268, 73: 976,
    75: 480, 78: 1277, 80: 728, 81: 401, 82: 1063, 83: 1084, 84: 554, 85: 440, 88: 1031, 89: 1164, 91: 145,
    92: 74, 93: 432, 94: 336, 95: 1023, 96: 937, 99: 873,
}
SIZE = len(TEMPLATE_SOURCES)

#: sha256 of the whole variants file (all templates, seed SEED), as reasoning-gym 0.1.25 builds it.
EXPECTED_SHA256 = "9ac4655a990d3f7dd3df88a5e396f9e2f150feba56f35a4fc0e6cc8ce2357a83"


def is_symbolic(source: str) -> bool:
    """Either half of the set (variants or originals), with or without ``:N``."""
    return _name(source) in (NAME, ORIGINALS)


def is_variants(source: str) -> bool:
    return _name(source) == NAME


def size_of(source: str) -> int:
    """N of ``name:N`` (the whole set without it); ValueError for anything else."""
    if ":" not in source:
        return SIZE
    text = source.split(":", 1)[1]
    if not text.isdigit() or not 1 <= int(text) <= SIZE:
        raise ValueError(text)
    return int(text)


def originals_of(source: str) -> str:
    """The originals half that pairs with a variants source (same N)."""
    return ORIGINALS + source[len(NAME):]


def with_originals(source: str) -> list[str]:
    """The sources one further evaluation runs: a variants set and its originals; any other source alone."""
    return [source, originals_of(source)] if is_variants(source) else [source]


def load(source: str, path: str, test_records: Callable[[], list[dict]]) -> list[dict]:
    """The first N records of either half, each with ``test_index`` (variants built on first use);
    ``test_records`` reads the GSM8K test split, where the originals come from."""
    try:
        n = size_of(source)
    except ValueError:
        raise SettingError(path, source, "{name} {value}: expected " + f"{_name(source)} or {_name(source)}:N with N "
                           f"from 1 to {SIZE}") from None
    if is_variants(source):
        return variants()[:n]
    test = test_records()
    return [{"question": test[i]["question"], "answer": test[i]["answer"], "test_index": i, "template": t}
            for t, i in _by_test_index()][:n]


def variants() -> list[dict]:
    """Every template's variant, ordered by test index, from the cache (built once, sha256-checked)."""
    file = runtime.cache_dir() / f"gsm-symbolic-paired-seed{SEED}.jsonl"
    prov_file = file.with_suffix(".provenance.json")
    if not (file.is_file() and prov_file.is_file()):
        build(file, prov_file)
    raw = file.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != EXPECTED_SHA256:
        raise UsageError(f"the GSM-Symbolic set {file} has sha256 {digest[:12]}…, not the pinned "
                         f"{EXPECTED_SHA256[:12]}… (delete it and its provenance file to build it again; if it "
                         "differs again, the installed reasoning-gym builds other variants)")
    return [json.loads(line) for line in jsonl_lines(raw.decode("utf-8")) if line.strip()]


def provenance(source: str) -> dict:
    """What a run records about the set it was evaluated on."""
    return {"set": "variants" if is_variants(source) else "originals", "seed": SEED,
            "variants_sha256": EXPECTED_SHA256}


def build(file: Path, prov_file: Path) -> None:
    try:
        import reasoning_gym
    except ImportError:
        raise UsageError("the gsm-symbolic data source needs reasoning-gym: uv sync --extra symbolic") from None
    print(f"[gsm8k-lab] building the GSM-Symbolic set once: {SIZE} templates, seed {SEED} -> {file}", flush=True)
    generators = reasoning_gym.create_dataset("gsm_symbolic", size=1, seed=SEED).generators
    records = []
    for template, test_index in _by_test_index():
        entry = generators[template](Random(SEED + template), 1.0)
        answer = str(entry["metadata"]["answer_cot"]).strip()
        if parse_gold(answer) != float(str(entry["answer"]).replace(",", "")):  # the worked answer is the answer
            raise UsageError(f"reasoning-gym's gsm_symbolic template {template} gave a worked answer that does not "
                             f"end in its answer {entry['answer']}")
        records.append({"question": entry["question"], "answer": answer, "test_index": test_index,
                        "template": template})
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(file, text)
    atomic_write_json(prov_file, {
        "package": "reasoning-gym", "version": importlib.metadata.version("reasoning-gym"),
        "generator": "gsm_symbolic", "seed": SEED, "size": SIZE, "templates": TEMPLATE_SOURCES,
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "expected_sha256": EXPECTED_SHA256,
        "license": "reasoning-gym: Apache-2.0; templates derived from GSM8K (MIT)",
    })



def _name(source: str) -> str:
    return source.split(":", 1)[0]


def _by_test_index() -> list[tuple[int, int]]:
    """(template, test index) pairs in test-index order."""
    return sorted(TEMPLATE_SOURCES.items(), key=lambda kv: kv[1])

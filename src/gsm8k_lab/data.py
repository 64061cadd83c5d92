"""GSM8K loading, budgets and prompt/target formatting (the seed's ``dataset_utils.py``).

Sources:
- ``bundled``: the copy shipped in this package (train 7,473, test 1,319), its
  sha256 checked on every load;
- ``hub``: ``openai/gsm8k`` config ``main`` through ``datasets`` (needs network);
- a path to a JSONL file of ``{"question", "answer"}`` lines (one split).

Budgets: training runs take the first N problems of one seeded shuffle of the
train split, the same for every run, so SFT and GRPO at the same budget see the
same problems and a larger budget contains every smaller one. Evaluation takes
the first N test problems in file order, as published GSM8K subsets do.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .answers import PATTERNS, parse_gold
from .config import (
    REASONING_END,
    REASONING_START,
    SOLUTION_END,
    SOLUTION_START,
    SPLITS,
    SYSTEM_PROMPT,
    SettingError,
    UsageError,
)

BUNDLED_SHA256 = {
    "train": "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
    "test": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
}
HUB_DATASET = ("openai/gsm8k", "main")

# GSM8K writes calculator calls as <<48/2=24>> before the result ("48/2 = <<48/2=24>>24").
# They are tool-use artefacts, not reasoning: targets drop them and keep the prose.
_CALCULATOR = re.compile(r"<<[^<>]*>>")


@dataclass(frozen=True)
class Problem:
    index: int  # position in its split (file order)
    question: str
    answer: str  # the worked solution ending in "#### N"
    gold: float


def load_split(split: str, source: str = "bundled", path: str = "data.source") -> list[Problem]:
    """All problems of a split, in file order; ``path`` names the setting that chose ``source``."""
    if split not in SPLITS:
        raise SettingError("traces.split", split, "{name} must be one of " + ", ".join(SPLITS) + ", got {value}")
    from . import symbolic

    if symbolic.is_symbolic(source):
        if split == "train":
            raise SettingError(path, source, "{name} {value} is an evaluation set (variants of GSM8K test "
                               "problems): never training data")
        records = symbolic.load(source, path)
    elif source == "bundled":
        records = _read_jsonl(_bundled_path(split), path, verify_sha256=BUNDLED_SHA256[split])
    elif source == "hub":
        records = _load_hub(split)
    else:
        file = Path(source)
        if not file.is_file():
            raise SettingError(path, source, "{name} {value} is neither 'bundled', 'hub', 'gsm-symbolic' nor a JSONL "
                               "file")
        records = _read_jsonl(file, path)
    problems = []
    for i, rec in enumerate(records):
        if not (isinstance(rec, dict) and all(isinstance(rec.get(k), str) for k in ("question", "answer"))):
            got = ", ".join(f"{k} {type(rec[k]).__name__ if k in rec else 'missing'}" for k in ("question", "answer")) \
                if isinstance(rec, dict) else type(rec).__name__
            raise SettingError(path, source, "{name} {value} " + f"{split} line {i + 1}: expected question/answer "
                               f"as text, got {got}")
        try:
            problems.append(Problem(i, rec["question"], rec["answer"], parse_gold(rec["answer"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise SettingError(path, source, "{name} {value} " + f"{split} line {i + 1}: expected question/answer "
                               f"with '#### N' ({exc})") from None
    if not problems:
        raise SettingError(path, source, "{name} {value} holds no problems: expected JSONL lines with question and "
                           "answer")
    return problems


def split_size(split: str, source: str, path: str = "data.source") -> int:
    return len(load_split(split, source, path))


def take_budget(problems: list[Problem], n: int, seed: int) -> list[Problem]:
    """The first ``n`` problems of the split's fixed seeded shuffle (nested budgets)."""
    order = list(range(len(problems)))
    random.Random(seed).shuffle(order)
    return [problems[i] for i in order[:n]]


def take_first(problems: list[Problem], n: int) -> list[Problem]:
    return problems[:n]


def load_traces(file: str | Path, path: str = "traces_file") -> list[Problem]:
    """A traces file: JSONL of ``{"question", "answer": "<reasoning>\\n\\n#### N"}``.

    Every line is checked; the first bad one is named with its number. ``path``
    names the argument that gave the file, for errors.
    """
    file = Path(file)
    shown = str(file)
    if not file.is_file():
        raise SettingError(path, shown, "{name} {value} does not exist")
    problems: list[Problem] = []
    for lineno, line in enumerate(_text_lines(file, path), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise SettingError(path, shown, "{name} {value}: " + f"line {lineno} is not valid JSON") from None
        if not (isinstance(rec, dict) and all(isinstance(rec.get(k), str) for k in ("question", "answer"))):
            raise SettingError(path, shown, "{name} {value}: " + f"line {lineno} needs string fields "
                               "'question' and 'answer'")
        try:
            gold = parse_gold(rec["answer"])
        except ValueError:
            raise SettingError(path, shown, "{name} {value}: " + f"line {lineno} answer lacks the "
                               "'#### N' marker") from None
        problems.append(Problem(len(problems), rec["question"], rec["answer"], gold))
    if not problems:
        raise SettingError(path, shown, "{name} {value} is empty: expected JSONL lines with question and answer")
    return problems


# --------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------
def build_messages(question: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": question},
    ]


def build_prompt(tokenizer, question: str) -> str:
    """The generation prompt: chat template, then the opening reasoning tag.

    Evaluation, SFT and GRPO all use this one string, so training and testing
    see the same context. Tokenizers without a chat template get a plain layout.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            build_messages(question), tokenize=False, add_generation_prompt=True
        )
    else:
        text = f"{SYSTEM_PROMPT}\n\nQuestion: {question}\nAnswer: "
    return text + REASONING_START


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt's token ids as generation sees them: the text alone, no special tokens added
    (the chat template already wrote any BOS)."""
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def trl_prompt(tokenizer, prompt: str) -> str:
    """The prompt text for TRL's GRPO, which tokenizes with the tokenizer's special tokens added.

    A Llama-3-style tokenizer prepends BOS, and its chat template already starts
    with BOS: without this the rollouts would see it twice, a context that
    evaluation never sees. Here the template's BOS is dropped from the text so
    the ids TRL builds equal :func:`prompt_ids`.
    """
    bos = getattr(tokenizer, "bos_token", None)
    if bos and prompt.startswith(bos):
        if tokenizer(prompt)["input_ids"] != prompt_ids(tokenizer, prompt):
            return prompt[len(bos):]
    return prompt


def format_target(answer: str) -> str:
    """A GSM8K solution (or a trace) rewritten as the completion the model should write.

    ``"a = <<1+1=2>>2\\n#### 2"`` becomes
    ``"a = 2<end_working_out><SOLUTION>2</SOLUTION>"`` (the prompt already opened
    ``<start_working_out>``).
    """
    m = PATTERNS["gold_marker"].search(answer)
    if not m:
        raise ValueError("answer lacks the '#### N' marker")
    reasoning = _CALCULATOR.sub("", answer[: m.start()]).strip()
    final = m.group(1).replace(",", "").strip()
    return f"{reasoning}{REASONING_END}{SOLUTION_START}{final}{SOLUTION_END}"


def reasoning_to_trace(reasoning: str, final: str) -> str:
    """The traces-file answer layout: ``"<reasoning>\\n\\n#### N"``."""
    return f"{reasoning.strip()}\n\n#### {final}"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _bundled_path(split: str) -> Path:
    return Path(str(resources.files("gsm8k_lab") / "data" / "gsm8k" / f"{split}.jsonl"))


def _read_jsonl(file: Path, path: str, verify_sha256: str | None = None) -> list[dict]:
    raw = file.read_bytes()
    if verify_sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != verify_sha256:
            raise UsageError(
                f"bundled data file {file} is corrupted: sha256 {digest[:12]}…, "
                f"expected {verify_sha256[:12]}… (reinstall the package)"
            )
    records = []
    for lineno, line in enumerate(_text_lines(file, path, raw), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise SettingError(path, str(file), "{name} {value}: " + f"line {lineno} is not valid JSON") from None
    return records


def _text_lines(file: Path, path: str, raw: bytes | None = None) -> list[str]:
    """The file's lines as UTF-8 text, or a SettingError for a binary file."""
    raw = file.read_bytes() if raw is None else raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SettingError(path, str(file), "{name} {value} is not UTF-8 text (line " + f"{line}); "
                           "expected JSONL") from None
    if "\x00" in text:
        raise SettingError(path, str(file), "{name} {value} is a binary file; expected JSONL")
    return text.splitlines()


def _load_hub(split: str) -> list[dict]:
    from datasets import load_dataset

    try:
        ds = load_dataset(*HUB_DATASET, split=split)
    except Exception as exc:  # network or cache failure: say what to do instead
        raise UsageError(
            f"could not load {HUB_DATASET[0]} ({HUB_DATASET[1]}) from the hub ({type(exc).__name__}); "
            "use the bundled copy when offline"
        ) from None
    return [{"question": r["question"], "answer": r["answer"]} for r in ds]

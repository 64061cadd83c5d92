"""GSM8K loading, budgets and the rules that keep training and evaluation data apart (the seed's
``dataset_utils.py``; the prompt and the target are in :mod:`gsm8k_lab.task`).

Sources:
- ``bundled``: the copy shipped in this package (train 7,473, test 1,319), its
  sha256 checked on every load;
- ``hub``: ``openai/gsm8k`` config ``main`` through ``datasets`` (needs network);
- a path to a JSONL file of ``{"question", "answer"}`` lines (one split).

Regions of the train split (:class:`TrainRegions`): one seeded shuffle
(``data.budget_seed``), cut into three disjoint parts::

    [ budgets: first N ...                | prep (P) | validation (V) ]

Training runs take the first N problems of the shuffle, the same for every run,
so SFT and GRPO at the same budget see the same problems and a larger budget
contains every smaller one; the prep stage takes the P problems just before the
validation problems, so no budget repeats them and every SFT or GRPO run starts
on problems the prep model never saw; validation is the shuffle's last V
problems, never trained on (a budget that would reach prep or validation is
refused). Evaluation takes the first N problems of ``eval.split``: the test
split in file order, as published GSM8K subsets do, or the validation problems
from the shuffle's end backwards (so a smaller validation split, and a smaller
evaluation on it, is the head of a larger one).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

from . import symbolic
from .answers import parse_gold
from .config import SPLITS, SettingError, UsageError
from .runs import json_line, jsonl_lines

BUNDLED_SHA256 = {
    "train": "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
    "test": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
}
HUB_DATASET = ("openai/gsm8k", "main")

@dataclass(frozen=True)
class Problem:
    index: int  # position in its split's file (validation: in train; GSM-Symbolic: the test problem it pairs with)
    question: str
    answer: str  # the worked solution ending in "#### N"
    gold: float


def load_split(split: str, source: str = "bundled", path: str = "data.source") -> list[Problem]:
    """All problems of a split, in file order; ``path`` names the setting that chose ``source``."""
    if split not in SPLITS:
        raise SettingError("traces.split", split, "{name} must be one of " + ", ".join(SPLITS) + ", got {value}")
    if symbolic.is_symbolic(source):
        if split == "train":
            raise SettingError(path, source, "{name} {value} is an evaluation set (variants of GSM8K test "
                               "problems): never training data")

        def test_records() -> list[dict]:  # the originals come from the bundled test split
            return [rec for _, rec in _read_jsonl(_bundled_path("test"), path, verify_sha256=BUNDLED_SHA256["test"])]

        records = list(enumerate(symbolic.load(source, path, test_records), 1))
    elif source == "bundled":  # parsed once per process while the file is unchanged
        file = _bundled_path(split)
        st = file.stat()
        return list(_bundled_problems(split, str(file), st.st_mtime_ns, st.st_size, path))
    elif source == "hub":
        records = list(enumerate(_load_hub(split), 1))
    else:
        file = Path(source)
        if not file.is_file():
            raise SettingError(path, source, "{name} {value} is neither 'bundled', 'hub', 'gsm-symbolic' nor a JSONL "
                               "file")
        records = _read_jsonl(file, path)
    return _problems(records, split, source, path)


def split_size(split: str, source: str, path: str = "data.source") -> int:
    return len(load_split(split, source, path))


@dataclass(frozen=True)
class TrainRegions:
    """The train split's seeded shuffle cut into budgets, prep and validation (disjoint by construction)."""

    problems: list[Problem]
    seed: int
    validation_size: int
    prep_size: int

    @cached_property
    def order(self) -> list[int]:
        order = list(range(len(self.problems)))
        random.Random(self.seed).shuffle(order)
        return order

    @property
    def capacity(self) -> int:
        """The most problems a budget can take without reaching prep or validation."""
        return len(self.problems) - self.validation_size - self.prep_size

    def budget(self, n: int | None, path: str = "sft.train_samples") -> list[Problem]:
        """The first ``n`` problems of the shuffle (None: every problem before prep); ``path`` names the count."""
        n = self.capacity if n is None else n
        if n > self.capacity:
            raise SettingError(path, n, "{name}={value} reaches into the held-out problems: of the train split's "
                               f"{len(self.problems)} problems the last {self.validation_size} of its shuffle are "
                               f"validation (data.validation_size) and the {self.prep_size} before them prep "
                               f"(sft.prep_train_samples), so a budget takes at most {max(self.capacity, 0)}")
        return self._take(self.order[:n])

    def prep(self) -> list[Problem]:
        """The prep stage's problems: the ``prep_size`` just before validation."""
        if self.capacity < 0:
            raise SettingError("sft.prep_train_samples", self.prep_size, "{name}={value} and the "
                               f"{self.validation_size} validation problems (data.validation_size) are more than the "
                               f"train split's {len(self.problems)} problems")
        end = len(self.problems) - self.validation_size
        return self._take(self.order[end - self.prep_size:end])

    def validation(self, n: int | None = None) -> list[Problem]:
        """The first ``n`` validation problems (None: all), read from the shuffle's end backwards, so a
        smaller validation split or evaluation is the head of a larger one."""
        if self.validation_size == 0:
            raise SettingError("eval.split", "validation", "{name} {value} needs held-out problems, but "
                               "data.validation_size is 0")
        if self.validation_size > len(self.problems):
            raise SettingError("data.validation_size", self.validation_size, "{name}={value} is more than the "
                               f"train split's {len(self.problems)} problems")
        region = self.order[len(self.problems) - self.validation_size:][::-1]  # from the end, so sizes nest
        return self._take(region[:n] if n is not None else region)

    def provenance(self, region: str, problems: list[Problem]) -> dict:
        """Where ``problems`` (of ``region``) came from, for run.json and evaluation metrics."""
        return {"region": region, "n": len(problems), "budget_seed": self.seed,
                "validation_size": self.validation_size, "prep_size": self.prep_size, **problems_digest(problems)}

    def _take(self, indices: list[int]) -> list[Problem]:
        return [self.problems[i] for i in indices]


def train_regions(problems: list[Problem], settings) -> TrainRegions:
    """The regions of the train split ``problems`` under these settings."""
    return TrainRegions(problems, settings.data.budget_seed, settings.data.validation_size,
                        settings.sft.prep_train_samples)


def problems_digest(problems: list[Problem]) -> dict:
    """sha256 of the selected problems' indices (in order) and of their text: two runs with equal
    digests trained or were evaluated on exactly the same problems."""
    indices = ",".join(str(p.index) for p in problems)
    text = "".join(json.dumps([p.index, p.question, p.answer], ensure_ascii=False) + "\n" for p in problems)
    return {"indices_sha256": hashlib.sha256(indices.encode()).hexdigest(),
            "problems_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def eval_problems(settings) -> tuple[list[Problem], dict]:
    """The problems an evaluation runs on (the first ``eval.samples`` of ``eval.split``) and their provenance."""
    if settings.eval.split == "validation":
        regions = train_regions(load_split("train", settings.data.train_source, "data.train_source"), settings)
        problems = regions.validation(settings.eval.samples)
        return problems, {"split": "validation", "source": settings.data.train_source,
                          **regions.provenance("validation", problems)}
    test = load_split("test", settings.data.source)
    problems = test[: settings.eval.samples or len(test)]
    extra = symbolic.provenance(settings.data.source) if symbolic.is_symbolic(settings.data.source) else {}
    return problems, {"split": "test", "source": settings.data.source, "n": len(problems),
                      **problems_digest(problems), **extra}


def eval_split_size(settings) -> int:
    """How many problems ``eval.split`` holds (what ``eval.samples`` is checked against)."""
    if settings.eval.split == "validation":
        if symbolic.is_symbolic(settings.data.source):
            raise SettingError("data.source", settings.data.source, "{name} {value} is a test set; eval.split "
                               "validation draws from data.train_source")
        return len(train_regions(load_split("train", settings.data.train_source, "data.train_source"),
                                 settings).validation())
    return len(load_split("test", settings.data.source))


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
    for lineno, rec in jsonl_records(file, path):
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


def jsonl_records(file: Path, path: str, raw: bytes | None = None) -> list[tuple[int, object]]:
    """Every record of a JSONL file with its line number, blank lines skipped: one JSON value per
    line, lines ended by a newline (or CRLF), a byte-order mark at the start allowed. Anything else
    (not UTF-8, a binary file, a line that is not JSON, nested too deeply to read, or text holding a
    lone surrogate, which no tokenizer takes) is a SettingError naming ``path``, the file and the line."""
    shown = str(file)
    raw = file.read_bytes() if raw is None else raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SettingError(path, shown, "{name} {value} is not UTF-8 text (line " + f"{line}); "
                           "expected JSONL") from None
    if "\x00" in text:
        raise SettingError(path, shown, "{name} {value} is a binary file; expected JSONL")
    records = []
    for lineno, line in enumerate(jsonl_lines(text), 1):
        if not line.strip():
            continue
        try:
            rec = json_line(line)
        except ValueError as exc:
            raise SettingError(path, shown, "{name} {value}: " + f"line {lineno} {exc}") from None
        surrogate = _lone_surrogate(line, rec)
        if surrogate:
            raise SettingError(path, shown, "{name} {value}: " + f"line {lineno} holds a lone surrogate "
                               f"({surrogate}), half of a UTF-16 pair and not a character; expected text")
        records.append((lineno, rec))
    return records


# --------------------------------------------------------------------------
# Training and evaluation data apart
# --------------------------------------------------------------------------
def check_eval_data_apart(settings, *training_files: str | None) -> None:
    """A run never evaluates on a file it trains on: neither ``data.source`` nor any of
    ``eval.extra_sources`` may be the training data (``data.train_source``, the bundled train
    split when that is the source, or a traces file); the same file under another name (a hard
    link, a symbolic link) or a copy of it (the same bytes) counts as the same."""
    train = settings.data.train_source
    train_files = [f for f in (_bundled_path("train") if train == "bundled" else Path(train),
                               *(Path(f) for f in training_files if f)) if f.is_file()]
    for path, source in (("data.source", settings.data.source),
                         *(("eval.extra_sources", s) for s in settings.eval.extra_sources)):
        if Path(source).is_file() and any(_same_file(train, Path(source)) for train in train_files):
            raise SettingError(path, source, "{name} {value} is also the training data: a run must not be "
                               "evaluated on the problems it trains on")


def check_traces_apart(settings, traces_file: str) -> None:
    """Traces never come from the problems evaluation uses: a line that says ``"split": "test"``
    (as generate_traces records) or whose question is a problem of the evaluation data's test
    split (which also catches files written before lines recorded their split) is refused."""
    test_questions = {p.question.strip() for p in load_split("test", settings.data.source)}
    for lineno, rec in jsonl_records(Path(traces_file), "traces_file"):  # load_traces has checked every record
        if rec.get("split") == "test" or rec["question"].strip() in test_questions:
            raise SettingError("traces_file", traces_file, "{name} {value}: " + f"line {lineno} is a test problem "
                               "(traces generated from the test split): a run must not train on the problems "
                               "it is evaluated on")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _problems(records, split: str, source: str, path: str) -> list[Problem]:
    problems = []
    for i, (line, rec) in enumerate(records):
        if not (isinstance(rec, dict) and all(isinstance(rec.get(k), str) for k in ("question", "answer"))):
            got = ", ".join(f"{k} {type(rec[k]).__name__ if k in rec else 'missing'}" for k in ("question", "answer")) \
                if isinstance(rec, dict) else type(rec).__name__
            raise SettingError(path, source, "{name} {value} " + f"{split} line {line}: expected question/answer "
                               f"as text, got {got}")
        try:
            # a GSM-Symbolic problem is known by the test problem it pairs with
            index = rec["test_index"] if symbolic.is_symbolic(source) else i
            problems.append(Problem(index, rec["question"], rec["answer"], parse_gold(rec["answer"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise SettingError(path, source, "{name} {value} " + f"{split} line {line}: expected question/answer "
                               f"with '#### N' ({exc})") from None
    if not problems:
        raise SettingError(path, source, "{name} {value} holds no problems: expected JSONL lines with question and "
                           "answer")
    return problems


def _same_file(a: Path, b: Path) -> bool:
    """One file (device and inode, through any link) or two files with the same content."""
    if os.path.samefile(a, b):
        return True
    if a.stat().st_size != b.stat().st_size:
        return False
    return _sha256(a) == _sha256(b)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _bundled_path(split: str) -> Path:
    return Path(str(resources.files("gsm8k_lab") / "data" / "gsm8k" / f"{split}.jsonl"))


def _read_jsonl(file: Path, path: str, verify_sha256: str | None = None) -> list[tuple[int, object]]:
    raw = file.read_bytes()
    if verify_sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != verify_sha256:
            raise UsageError(
                f"bundled data file {file} is corrupted: sha256 {digest[:12]}…, "
                f"expected {verify_sha256[:12]}… (reinstall the package)"
            )
    return jsonl_records(file, path, raw)


@functools.lru_cache(maxsize=8)
def _bundled_problems(split: str, file: str, _mtime_ns: int, _size: int, path: str) -> tuple[Problem, ...]:
    """A bundled split read, sha256-checked and parsed once per process while the file is unchanged
    (the file's modification time and size are part of the key)."""
    records = _read_jsonl(Path(file), path, verify_sha256=BUNDLED_SHA256[split])
    return tuple(_problems(records, split, "bundled", path))


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(line: str, rec) -> str | None:
    """The first lone surrogate in a record's strings (keys too), as its escape; None when there is none.
    Only a \\uD800-\\uDFFF escape makes one (UTF-8 text cannot hold it), so other lines are not walked."""
    if not _SURROGATE_ESCAPE.search(line):
        return None
    todo = [rec]
    while todo:  # without recursion: the record may be nested nearly as deep as json reads
        value = todo.pop()
        if isinstance(value, dict):
            todo += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            todo += value
        elif isinstance(value, str) and (found := _SURROGATE.search(value)):
            return f"\\u{ord(found.group()):04x}"
    return None


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

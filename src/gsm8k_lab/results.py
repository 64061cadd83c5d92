"""What finished runs recorded, read back: one :class:`RunResult` per run directory.

Only what runs wrote is read (``run.json``, their evaluation CSVs and ``train_log.jsonl``); a run
whose record or CSV is broken is skipped with a warning. :mod:`.report` compares them and
:mod:`.figures` draws them.
"""

from __future__ import annotations

import csv
import json
import os
import stat
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .config import UsageError
from .evaluate import per_problem_scores
from .runs import BASE_STAGE, RunStatus, read_jsonl
from .stats import Paired, paired_comparison, wilson_interval
from .symbolic import is_variants, originals_of
from .task import assistant_text, parse_completion

#: The step-matched SFT arm: SFT for as many optimizer steps as GRPO on the same problems.
MATCHED_SFT = "SFT (GRPO's steps)"
METHOD_ORDER = ["base model", "prep SFT", "SFT", MATCHED_SFT, "GRPO", "SFT on GRPO traces"]
#: Compute: a forward and backward pass costs about 6 x parameters FLOPs per token (2 forward, 4
#: backward; a LoRA backward still runs through every frozen layer), one forward 2 x parameters; GRPO
#: with a KL term (beta > 0) runs the reference model forward on every trained token too.
FLOPS_FORMULA = ("6 x parameters x trained tokens (+ 2 x parameters x trained tokens for GRPO's KL reference "
                 "when beta > 0) + 2 x parameters x generated tokens (rollouts; for SFT on GRPO traces the "
                 "tokens sampled to make its traces)")


@dataclass
class RunResult:
    path: str
    method: str
    experiment: str
    budget: int
    seed: int
    n_eval: int
    samples_per_problem: int
    accuracy: float
    ci_low: float
    ci_high: float
    thinking: float
    answer: float
    symbolic_accuracy: float | None
    symbolic_drop: float | None
    optimizer_steps: int
    epochs: float | None
    learning_rate: float | None
    problems_seen: int  # training problems presented (GRPO: prompts, each with its group of completions)
    completions_sampled: int  # GRPO's rollouts; 0 for SFT
    train_tokens_generated: int
    train_seconds: float
    eval_seconds: float
    device: str
    csv: str
    grpo_traces: int | None = None  # SFT on traces: training examples that are accepted GRPO traces
    answer_ci: tuple[float, float] | None = field(default=None, repr=False)
    thinking_ci: tuple[float, float] | None = field(default=None, repr=False)
    log: str = field(default="", repr=False)
    eval_split: str = "test"  # the problems every number of this run comes from
    symbolic_original: float | None = None  # accuracy on the test problems the GSM-Symbolic variants come from
    symbolic_pairs: int = 0
    symbolic_drop_ci_low: float | None = None
    symbolic_drop_ci_high: float | None = None
    symbolic_p: float | None = None
    # what the evaluation's completions look like: cut at the token budget, length, closed or unclosed answers
    truncated: float | None = None  # share of completions that hit max_new_tokens
    mean_tokens: float | None = None
    answer_closed: float | None = None  # share with a number in a closed SOLUTION block
    answer_unclosed: float | None = None  # share whose number comes from an unclosed final block
    answer_uncut: float | None = None  # answer share among completions that were not cut
    eval_engine: str = ""  # transformers or vllm
    eval_dtype: str = ""  # bf16, fp16, fp32
    # what training computed
    tokens_trained: int | None = None
    parameters: int | None = None
    traces_tokens: int | None = None  # SFT on GRPO traces: tokens sampled to make the traces it trained on
    traces_seconds: float | None = None
    kl: bool = False  # GRPO with beta > 0: the reference model's forward pass counts too

    scores: dict[int, dict[str, float]] | None = field(default=None, repr=False)  # per problem, from the CSV

    @property
    def flops(self) -> float | None:
        """Training compute by :data:`FLOPS_FORMULA`; None when the run did not record its tokens."""
        if self.parameters is None or self.tokens_trained is None:
            return None
        generated = self.train_tokens_generated + (self.traces_tokens or 0)
        return (6 + 2 * self.kl) * self.parameters * self.tokens_trained + 2 * self.parameters * generated

    @property
    def evaluated_with(self) -> str:
        """Engine and dtype of the evaluation, as ``transformers/fp32``."""
        return f"{self.eval_engine or '?'}/{self.eval_dtype or '?'}"

    @property
    def grpo_trace_share(self) -> float | None:
        return self.grpo_traces / self.budget if self.grpo_traces is not None and self.budget else None


def collect_runs(roots: list[str | Path]) -> list[RunResult]:
    """Every finished run under the folders; a run whose record or CSV is broken is skipped with a
    warning (one line each). Only regular files are opened: a FIFO named run.json would block."""
    runs = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise UsageError(f"report folder {str(root)!r} does not exist")
        for run_file in sorted(root.rglob("run.json")):
            try:
                result = _collect(run_file)
            except _Broken as exc:
                _warn(run_file.parent, str(exc))
                continue
            if result is not None:
                runs.append(result)
    if not runs:
        raise UsageError(f"no finished runs under {', '.join(map(str, roots))}: "
                         "expected run directories whose run.json says status complete")
    return runs


def sorted_runs(runs: list[RunResult]) -> list[RunResult]:
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(runs, key=lambda r: (r.budget, order.get(r.method, 99), r.seed, r.path))


def curves(log_path: str) -> dict[str, list[tuple[int, float]]]:
    """key -> [(step, value)] from a run's train_log.jsonl (a torn last record is left out)."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for rec in read_jsonl(Path(log_path))[0] if log_path else []:
        step = rec.get("step")
        for key, value in rec.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(step, int):
                out[key].append((step, float(value)))
    return out


def completion_profile(csv_path: str | Path) -> dict:
    """What an evaluation's completions look like, from its CSV: the share cut at the token budget,
    the mean length, the answer share split into closed blocks and unclosed final blocks, and the
    answer share among the completions that were not cut."""
    if not Path(csv_path).is_file():
        return {}
    rows = list(_csv_rows(Path(csv_path)))
    if not rows:
        return {}
    cut = [r["truncated"] == "True" for r in rows]
    answered = [r["has_answer"] == "True" for r in rows]
    closed = [a and parse_completion(assistant_text(r["completion"])).closed for a, r in zip(answered, rows)]
    uncut = [a for a, c in zip(answered, cut) if not c]
    n = len(rows)
    return {"truncated": sum(cut) / n, "mean_tokens": sum(float(r["completion_tokens"] or 0) for r in rows) / n,
            "answer_closed": sum(closed) / n, "answer_unclosed": (sum(answered) - sum(closed)) / n,
            "answer_uncut": sum(uncut) / len(uncut) if uncut else None}


def symbolic_pairing(run_dir: Path, info: dict) -> Paired | None:
    """A run's GSM-Symbolic result paired on the GSM8K test index: for each template, its original test problem
    (first) against its variant (second), both under the same prompt; None when the run has no such pair
    (not evaluated there, or evaluated before the originals were, or a CSV of the pair is missing or broken)."""
    extra = info.get("eval_extra", {})
    if not isinstance(extra, dict):
        raise _Broken("run.json's eval_extra is not an object")
    for source, variants in extra.items():
        originals = extra.get(originals_of(source)) if is_variants(source) else None
        if not originals:
            continue
        if not (isinstance(originals, dict) and isinstance(variants, dict)):
            raise _Broken(f"run.json's eval_extra for {source} is not an object")
        files = [run_dir / "debug" / str(summary.get("csv")) for summary in (originals, variants)]
        try:
            orig, var = (_scores(f) for f in files)
        except _Broken as exc:
            _warn(run_dir, f"{exc}: no GSM-Symbolic column", skipped=False)
            return None
        common = sorted(set(orig) & set(var))
        if common:
            return paired_comparison([orig[i]["correct"] for i in common], [var[i]["correct"] for i in common])
    return None


class _Broken(Exception):
    """What makes a run unreadable for the report (its warning)."""


def _collect(run_file: Path) -> RunResult | None:
    """The run recorded in ``run_file``, None when it is not finished; a _Broken saying why it cannot be read."""
    if not _regular(run_file):
        raise _Broken("run.json is not a regular file")
    try:
        info = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise _Broken("run.json is not readable JSON") from None
    if not isinstance(info, dict) or info.get("status") != RunStatus.COMPLETE.value:
        return None
    try:
        result = _result(run_file.parent, info)
    except KeyError as exc:
        raise _Broken(f"run.json lacks {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise _Broken(f"run.json holds a value of the wrong type ({_first_line(exc)})") from None
    result.scores = _scores(Path(result.csv))
    try:
        for key, value in completion_profile(result.csv).items():
            setattr(result, key, value)
    except (KeyError, ValueError, csv.Error):  # a CSV without the columns: the profile stays unknown
        pass
    return result


def _scores(csv_file: Path) -> dict[int, dict[str, float]]:
    """Per-problem scores of an evaluation CSV, or a _Broken naming it."""
    if not csv_file.exists():
        raise _Broken(f"its evaluation CSV {csv_file} is missing")
    if not _regular(csv_file):
        raise _Broken(f"its evaluation CSV {csv_file} is not a regular file")
    try:
        scores = per_problem_scores(csv_file)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise _Broken(f"its evaluation CSV {csv_file} is not readable ({_first_line(exc)})") from None
    if not scores:
        raise _Broken(f"its evaluation CSV {csv_file} holds no rows")
    return scores


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _regular(path: Path) -> bool:
    """A regular file (through links): the only kind opened, since opening a FIFO waits for a writer."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _section(info: dict, key: str, required: bool = False) -> dict:
    if key not in info and not required:
        return {}
    value = info[key]
    if not isinstance(value, dict):
        raise _Broken(f"run.json's {key} is not an object")
    return value


def _result(run_dir: Path, info: dict) -> RunResult:
    ev, data, train = _section(info, "eval", required=True), _section(info, "data"), _section(info, "train")
    stage = info.get("stage", "")
    timings = _section(info, "timings")
    settings = _section(info, "settings", required=True)
    sft = settings.get("sft")
    matched = stage == "full_sft" and isinstance(sft, dict) and bool(sft.get("match_grpo_steps"))
    method = {BASE_STAGE: "base model", "prep_sft": "prep SFT", "grpo": "GRPO"}.get(
        stage, "SFT on GRPO traces" if data.get("source") == "traces" else MATCHED_SFT if matched else "SFT")
    section = settings.get("grpo" if stage == "grpo" else "sft", {}) if stage != BASE_STAGE else {}
    if not isinstance(section, dict):
        raise _Broken(f"run.json's settings.{'grpo' if stage == 'grpo' else 'sft'} is not an object")
    sym = symbolic_pairing(run_dir, info)
    seen = int(train.get("examples_seen", 0))  # per-device batches count completions in GRPO
    group = int(train.get("num_generations", section.get("num_generations", 1)) or 1) if stage == "grpo" else 1
    n_eval = int(ev["n"])
    return RunResult(
        path=str(run_dir), method=method,
        experiment="experiment 2" if method == "SFT on GRPO traces" else "experiment 1",
        budget=int(data.get("n", 0)), seed=int(settings["seed"]), n_eval=n_eval,
        samples_per_problem=int(ev.get("samples_per_problem", 1)), accuracy=ev["accuracy"],
        ci_low=ev["accuracy_ci95_low"], ci_high=ev["accuracy_ci95_high"],
        thinking=ev["thinking_proportion"], answer=ev["answer_proportion"],
        symbolic_accuracy=sym.mean_b if sym else None, symbolic_drop=-sym.difference if sym else None,
        optimizer_steps=int(train.get("global_steps", 0)),
        epochs=_float(train.get("epochs", section.get("epochs"))),
        learning_rate=_float(section.get("prep_learning_rate") if stage == "prep_sft"
                             and section.get("prep_learning_rate") is not None else section.get("learning_rate")),
        problems_seen=seen // group, completions_sampled=seen if stage == "grpo" else 0,
        train_tokens_generated=int(train.get("tokens_generated", 0)),
        train_seconds=float(timings.get("train_seconds", 0.0)), eval_seconds=float(timings.get("eval_seconds", 0.0)),
        device=str(_section(info, "environment").get("device", "")),
        csv=str(run_dir / "debug" / ev["csv"]),
        grpo_traces=_grpo_traces(data) if method == "SFT on GRPO traces" else None,
        answer_ci=_interval(ev, "answer_proportion", n_eval), thinking_ci=_interval(ev, "thinking_proportion", n_eval),
        log=str(run_dir / "train_log.jsonl"),
        eval_split=str(ev.get("split", "test")),
        symbolic_original=sym.mean_a if sym else None, symbolic_pairs=sym.n if sym else 0,
        symbolic_drop_ci_low=-sym.ci_high if sym else None, symbolic_drop_ci_high=-sym.ci_low if sym else None,
        symbolic_p=sym.p_value if sym else None,
        **_evaluated_with(ev),
        tokens_trained=_int(train.get("tokens_trained")), parameters=_int(train.get("model_parameters")),
        kl=stage == "grpo" and bool(_float(section.get("beta"))),
        **(_traces_cost(data) if method == "SFT on GRPO traces" else {}),
    )


def _grpo_traces(data: dict) -> int | None:
    """How many of the examples an SFT-on-traces run trained on (the traces file's first ``n``
    lines) are accepted GRPO completions rather than original solutions; None when the file is gone."""
    path, n = data.get("traces_file"), int(data.get("n", 0))
    if not path or not Path(path).is_file():
        return None
    records = read_jsonl(Path(path))[0][:n]
    return sum(rec.get("source") == "grpo" for rec in records)


def _interval(ev: dict, key: str, n: int) -> tuple[float, float]:
    """A proportion's recorded 95% interval, or its Wilson interval for records that lack it."""
    recorded = ev.get(f"{key}_ci95")
    if isinstance(recorded, list) and len(recorded) == 2:
        return (float(recorded[0]), float(recorded[1]))
    return wilson_interval(round(float(ev[key]) * n), n)


def _evaluated_with(ev: dict) -> dict:
    """Engine and dtype of an evaluation: recorded, or read from the backend's description in older records."""
    engine, dtype = str(ev.get("engine") or ""), str(ev.get("dtype") or "")
    backend = str(ev.get("backend") or "")
    if not engine and backend:
        engine = backend.split()[0]
    if not dtype:
        dtype = next((short for long, short in (("bfloat16", "bf16"), ("float16", "fp16"), ("float32", "fp32"))
                      if long in backend), "")
    return {"eval_engine": engine, "eval_dtype": dtype}


def _traces_cost(data: dict) -> dict:
    """The tokens and seconds that making a traces file cost, from its stats sidecar (when recorded)."""
    path = data.get("traces_file")
    stats = Path(str(path) + ".stats.json") if path else None
    if stats is None or not stats.is_file():
        return {}
    try:
        info = json.loads(stats.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return {"traces_tokens": _int(info.get("tokens_generated")), "traces_seconds": _float(info.get("seconds"))}


def _csv_rows(path: Path):
    with open(path, newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def _int(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _warn(run_dir: Path, why: str, skipped: bool = True) -> None:
    print(f"warning: {'skipping ' if skipped else ''}{run_dir}: {why}", file=sys.stderr)

"""Evaluation: per-example records streamed to CSV, then metrics written atomically.

Rows are appended as each batch finishes (and flushed), so a killed evaluation
resumes without regenerating finished problems; the final CSV is rewritten in
problem order. Metrics:

- accuracy: share of problems whose SOLUTION number equals the gold number;
- thinking proportion: share with a non-empty reasoning block;
- answer proportion: share with a number readable from a SOLUTION block;
- a 95% Wilson interval of accuracy, lm-evaluation-harness strict and flexible
  scores over the whole completion, mean completion tokens, truncated share and
  generation throughput.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import time
from pathlib import Path

from .answers import (
    assistant_text,
    gold_text,
    harness_flexible,
    harness_strict,
    numbers_match,
    parse_completion,
)
from .config import GenerationSettings, SettingError, Settings
from .data import Problem
from .generation import Completion, GenerationBackend, decoding
from .runs import atomic_write_json, atomic_write_text, check_same_settings, drop_torn_tail

COLUMNS = [
    "index", "question", "gold_answer", "completion", "extracted_answer", "correct",
    "has_thinking", "has_answer", "completion_tokens", "truncated", "strict_match", "flexible_match",
]
_BOOL_COLUMNS = ("correct", "has_thinking", "has_answer", "truncated", "strict_match", "flexible_match")


def score(problem: Problem, completion: Completion) -> dict:
    """One per-example record."""
    text = assistant_text(completion.text)
    parsed = parse_completion(text)
    gold = gold_text(problem.answer)
    return {
        "index": problem.index,
        "question": problem.question,
        "gold_answer": _fmt_number(problem.gold),
        "completion": completion.text,
        "extracted_answer": "" if parsed.value is None else _fmt_number(parsed.value),
        "correct": numbers_match(parsed.value, problem.gold),
        "has_thinking": parsed.has_thinking,
        "has_answer": parsed.has_answer,
        "completion_tokens": completion.n_tokens,
        "truncated": completion.truncated,
        "strict_match": harness_strict(completion.text, gold),
        "flexible_match": harness_flexible(completion.text, gold),
    }


def evaluate(backend: GenerationBackend, problems: list[Problem], prompts: list[str],
             gen: GenerationSettings, csv_path: str | Path, resume: bool = False,
             extra: dict | None = None, fingerprint: dict | None = None) -> dict:
    """Generate, score and write ``csv_path`` plus ``<stem>_metrics.txt``/``.json`` beside it.

    Rows are appended and fsynced per batch; ``resume`` keeps the complete rows already written
    (a torn last row is cut off in place, which needs no free space) and generates the rest.
    ``fingerprint`` (the settings that determine the rows) is recorded beside the CSV.
    """
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (metrics_path(csv_path), metrics_path(csv_path).with_suffix(".json")):
        stale.unlink(missing_ok=True)  # written again at the end; never left beside other rows
    try:
        if fingerprint is not None:
            atomic_write_json(settings_path(csv_path), fingerprint)
        done = _continue_csv(csv_path, problems) if resume else {}
        if not resume or not csv_path.exists():
            _rewrite(csv_path, [])
        todo = [i for i, p in enumerate(problems) if p.index not in done]
        gen_seconds, gen_tokens = 0.0, 0
        if todo:
            t0 = time.perf_counter()
            with csv_path.open("a", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                for idx, completions in backend.generate_iter([prompts[i] for i in todo], gen, desc="evaluating"):
                    for j, comps in zip(idx, completions):
                        row = score(problems[todo[j]], comps[0])
                        writer.writerow(row)
                        done[row["index"]] = row
                        gen_tokens += row["completion_tokens"]
                    fh.flush()
                    os.fsync(fh.fileno())
            gen_seconds = time.perf_counter() - t0
        rows = sorted(done.values(), key=lambda r: r["index"])
        _rewrite(csv_path, rows)  # in problem order
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise SettingError("output_file", str(csv_path), f"no space left on the device writing {csv_path}; the rows "
                           "written so far are kept: free space and continue with {resume}") from None
    metrics = compute_metrics(rows)
    metrics.update({
        "generated_problems": len(todo),
        "generation_seconds": round(gen_seconds, 2),
        "problems_per_second": round(len(todo) / gen_seconds, 3) if gen_seconds else None,
        "tokens_per_second": round(gen_tokens / gen_seconds, 1) if gen_seconds else None,
        "backend": backend.describe(),
        "decoding": decoding(gen),
        "csv": csv_path.name,
    })
    if extra:
        metrics.update(extra)
    write_metrics(metrics_path(csv_path), metrics)
    return metrics


def compute_metrics(rows: list[dict]) -> dict:
    n = len(rows)
    if n == 0:
        raise ValueError("no evaluated rows")
    mean = lambda key: sum(bool(r[key]) for r in rows) / n  # noqa: E731
    correct = sum(bool(r["correct"]) for r in rows)
    lo, hi = wilson_interval(correct, n)
    return {
        "n": n,
        "accuracy": correct / n,
        "accuracy_ci95_low": lo,
        "accuracy_ci95_high": hi,
        "thinking_proportion": mean("has_thinking"),
        "answer_proportion": mean("has_answer"),
        "strict_match": mean("strict_match"),
        "flexible_match": mean("flexible_match"),
        "mean_completion_tokens": sum(int(r["completion_tokens"]) for r in rows) / n,
        "truncated_proportion": mean("truncated"),
    }


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sound near 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def metrics_path(csv_path: str | Path) -> Path:
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}_metrics.txt")


def write_metrics(txt_path: Path, metrics: dict) -> None:
    """Human-readable ``key: value`` text and the same as JSON beside it, both atomic."""
    atomic_write_json(txt_path.with_suffix(".json"), metrics)
    atomic_write_text(txt_path, "".join(f"{k}: {_fmt(v)}\n" for k, v in metrics.items()))


def format_table(metrics: dict) -> str:
    keys = [("accuracy", "accuracy"), ("thinking_proportion", "thinking"), ("answer_proportion", "answer"),
            ("strict_match", "strict (harness)"), ("flexible_match", "flexible (harness)"),
            ("mean_completion_tokens", "mean tokens"), ("truncated_proportion", "truncated"),
            ("n", "n"), ("tokens_per_second", "tokens/s")]
    lines = []
    for key, label in keys:
        v = metrics.get(key)
        if key == "accuracy":
            v = f"{v:.1%}  (95% CI {metrics['accuracy_ci95_low']:.1%}–{metrics['accuracy_ci95_high']:.1%})"
        elif isinstance(v, float) and key.endswith(("proportion", "match")):
            v = f"{v:.1%}"
        lines.append(f"  {label:<20} {_fmt(v)}")
    return "\n".join(lines)


def read_rows(csv_path: Path, problems: list[Problem]) -> dict[int, dict]:
    """Rows already written for these problems; a torn last row from a kill is dropped."""
    return {r["index"]: r for r in _complete_rows(csv_path, problems)[0]}


def settings_path(csv_path: str | Path) -> Path:
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}_settings.json")


def eval_fingerprint(settings: Settings, model_ref, n: int) -> dict:
    """What determines an evaluation's rows: the model, the problems and the decoding."""
    fp = {"model": model_ref.describe(), "data.source": settings.data.source, "eval.samples": n}
    fp.update({f"eval.generation.{k}": v for k, v in decoding(settings.eval.generation).items()
               if k not in ("greedy", "stop")})
    return fp


def _complete_rows(csv_path: Path, problems: list[Problem]) -> tuple[list[dict], int, int]:
    """The rows of an append-only CSV that are whole and belong to these problems, in file order;
    the byte length they fill (with the header); the file's length.

    A row counts only when it parses with every column, its values type-check, it is one of
    these problems, and its bytes are exactly what the writer would have written: a row cut by
    a kill (even inside a multi-byte character) is never taken, and nothing after it is.
    """
    if not csv_path.is_file():
        return [], 0, 0
    raw = csv_path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # cut inside a character: only what precedes it is text
        text = raw[: exc.start].decode("utf-8", errors="ignore")
    wanted = {p.index: p for p in problems}
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[dict] = []
    good = 0
    try:
        header = next(reader, None)
        if header != COLUMNS:
            return [], 0, len(raw)
        good = len(_csv_bytes([COLUMNS]))
        for fields in reader:
            if len(fields) != len(COLUMNS):
                break
            try:
                row = _typed(dict(zip(COLUMNS, fields)))
            except ValueError:
                break
            p = wanted.get(row["index"])
            line = _csv_bytes([fields])
            if p is None or p.question != row["question"] or raw[good:good + len(line)] != line:
                break
            rows.append(row)
            good += len(line)
    except csv.Error:  # an unterminated quote at the torn end
        pass
    return rows, good, len(raw)


def _continue_csv(csv_path: Path, problems: list[Problem]) -> dict[int, dict]:
    """Keep the complete rows for resuming; cut a torn tail off in place (no second copy needed)."""
    rows, good, size = _complete_rows(csv_path, problems)
    if size and good == 0:
        _rewrite(csv_path, [])
    elif good < size:
        drop_torn_tail(csv_path, good, f"{len(rows)} complete rows are kept")
    return {r["index"]: r for r in rows}


def _csv_bytes(rows: list[list]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode("utf-8")


# --------------------------------------------------------------------------
def _typed(raw: dict) -> dict:
    row = dict(raw)
    row["index"] = int(raw["index"])
    row["completion_tokens"] = int(raw["completion_tokens"])
    for key in _BOOL_COLUMNS:
        if raw[key] not in ("True", "False"):
            raise ValueError(key)
        row[key] = raw[key] == "True"
    return row


def _rewrite(csv_path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(csv_path, buf.getvalue())


def _fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def prepare_evaluation(settings: Settings, output_dir: str | Path, output_file: str, resume: bool = False,
                       overwrite: bool = False):
    """Check everything before any work (settings against the data, model, output); returns (model, CSV path)."""
    from .config import validate
    from .data import load_split
    from .models import resolve_model
    from .runs import check_file_name, check_writable_dir

    check_file_name("output_file", output_file, ".csv")
    test_size = len(load_split("test", settings.data.source))
    validate(settings, {"test": test_size}, counts=["eval.samples"])
    n = settings.eval.samples or test_size
    output_dir = check_writable_dir(output_dir)
    debug = output_dir / "debug"
    if debug.exists() and not debug.is_dir():
        raise SettingError("output_dir", str(output_dir), "{name} {value} cannot hold results: debug is a file")
    csv_path = debug / output_file
    if csv_path.exists() and not (resume or overwrite):
        raise SettingError("output_file", str(csv_path), "{name} {value} already exists; pass {resume} to continue "
                           "it or {overwrite} to replace it")
    ref = resolve_model(settings.model.name)
    if resume and csv_path.exists() and settings_path(csv_path).is_file():
        try:
            recorded = json.loads(settings_path(csv_path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            recorded = None
        check_same_settings("output_file", str(csv_path), recorded, eval_fingerprint(settings, ref, n))
    return ref, csv_path


def evaluate_model(settings: Settings, model_ref, csv_path: str | Path, resume: bool = False) -> dict:
    """Evaluate a model reference on the first ``eval.samples`` test problems.

    The entry point shared by ``evaluate_model.py`` and the training scripts'
    automatic evaluation; the settings were validated before any work started.
    """
    from .data import build_prompt, load_split
    from .generation import make_backend

    test = load_split("test", settings.data.source)
    problems = test[: settings.eval.samples or len(test)]
    t0 = time.perf_counter()
    backend = make_backend(settings, model_ref, "eval.generation")
    try:
        prompts = [build_prompt(backend.tokenizer, p.question) for p in problems]
        model_name = str(model_ref.run_dir or model_ref.base)
        print(f"[gsm8k-lab] evaluating {model_name} on {len(problems)} test problems with {backend.describe()}",
              flush=True)
        return evaluate(backend, problems, prompts, settings.eval.generation, csv_path, resume=resume,
                        extra={"model": model_name, "data_source": settings.data.source,
                               "load_seconds": round(time.perf_counter() - t0, 1)},
                        fingerprint=eval_fingerprint(settings, model_ref, len(problems)))
    finally:
        backend.close()

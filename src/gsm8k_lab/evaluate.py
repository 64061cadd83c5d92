"""Evaluation: per-example records streamed to CSV, then metrics written atomically.

Rows are appended as each batch finishes (and flushed), so a killed evaluation
resumes without regenerating finished problems; the final CSV is rewritten in
problem order. With ``eval.samples_per_problem`` K > 1 every problem gets K
sampled completions, one row each (a ``sample`` column says which); K = 1 is
the seed's greedy evaluation, with the seed's columns. Metrics:

- accuracy: share of completions whose SOLUTION number equals the gold number,
  averaged per problem (mean@K; the seed's accuracy when K = 1), with a 95%
  Wilson interval (K = 1) or a seeded bootstrap over problems (K > 1);
- thinking proportion: share with a non-empty reasoning block;
- answer proportion: share with a number readable from a SOLUTION block;
- with K > 1: unbiased pass@k for k = 1, 2, 4, ..., K and majority-vote
  accuracy, each with a bootstrap interval;
- lm-evaluation-harness strict (``#### N``) and flexible (last number) rules over
  the whole completion: a cross-check of this scorer and of format drift, not
  numbers comparable with published lm-eval results (those prompt few-shot for
  ``#### N``; these completions answer a chat prompt in SOLUTION tags);
- mean completion tokens, truncated share and generation throughput.

``extracted_answer`` and ``gold_answer`` hold exact values (integers as integers,
other numbers in their shortest exact decimal form), so majority votes read back
from the CSV compare exact values.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from . import runtime
from .answers import gold_text, harness_flexible, harness_strict
from .config import GenerationSettings, SettingError, Settings, validate
from .data import Problem, eval_problems, eval_split_size, load_split
from .folders import Kind, check_output_folder
from .generation import Completion, GenerationBackend, decoding, make_backend
from .models import check_dtypes, preflight, resolve_model
from .runs import (
    BASE_STAGE,
    RunDir,
    atomic_write_json,
    atomic_write_text,
    check_can_write,
    check_file_name,
    check_same_settings,
    check_writable_dir,
    drop_torn_tail,
    fsync_dir,
)
from .stats import bootstrap_interval, ks_for, majority_vote, pass_at_k, wilson_interval
from .symbolic import with_originals
from .task import assistant_text, build_prompt, judge, parse_completion

COLUMNS = [
    "index", "question", "gold_answer", "completion", "extracted_answer", "correct",
    "has_thinking", "has_answer", "completion_tokens", "truncated", "strict_match", "flexible_match",
]
_BOOL_COLUMNS = ("correct", "has_thinking", "has_answer", "truncated", "strict_match", "flexible_match")


def columns(samples: int = 1) -> list[str]:
    """The CSV columns: the seed's for one completion per problem, with ``sample`` for several."""
    return COLUMNS if samples == 1 else [COLUMNS[0], "sample", *COLUMNS[1:]]


def prepare_evaluation(settings: Settings, output_dir: str | Path, output_file: str, resume: bool = False,
                       overwrite: bool = False):
    """Check everything before any work (settings against the data, model, output); returns (model, CSV path).
    The weights load in the evaluation's dtype (``eval.dtype``; fp32 on a CPU unless asked)."""
    check_file_name("output_file", output_file, ".csv")
    test_size = eval_split_size(settings)
    splits = {"test": test_size}
    if settings.data.train_source == "bundled" or settings.eval.split == "validation":
        # the held-out regions must fit the train split even here (cheap for the bundled copy; a validation
        # evaluation has just read the split): settings an evaluation accepts stay valid for training
        splits["train"] = len(load_split("train", settings.data.train_source, "data.train_source"))
    validate(settings, splits, counts=["eval.samples", "data.validation_size"])
    check_dtypes(settings)  # before model.dtype becomes the evaluation's dtype, which may differ on a CPU
    settings.model.dtype = runtime.evaluation_dtype(settings)
    n = settings.eval.samples or test_size
    ref = resolve_model(settings.model.name)
    # an evaluation folder of its own, or the run directory of the run it evaluates (after training)
    output_dir = check_output_folder("output_dir", output_dir, Kind.EVALUATION, allow=_runs_evaluated(output_dir, ref))
    output_dir = check_writable_dir(output_dir)
    debug = output_dir / "debug"
    if debug.exists() and not debug.is_dir():
        raise SettingError("output_dir", str(output_dir), "{name} {value} cannot hold results: debug is a file")
    check_can_write(debug, "output_dir", str(output_dir))
    csv_path = debug / output_file
    for output in output_files(csv_path):  # each is replaced by a file: a folder there would fail after the work
        if output.exists() and not output.is_file():
            kind = "a directory" if output.is_dir() else "not a regular file"
            raise SettingError("output_file", str(csv_path), "{name} {value} cannot be written: " + f"{output} is "
                               f"{kind}, where the evaluation writes a file")
    if csv_path.exists() and not (resume or overwrite):
        raise SettingError("output_file", str(csv_path), "{name} {value} already exists; pass {resume} to continue "
                           "it or {overwrite} to replace it")
    preflight(settings, ref, ("eval.generation",))
    if resume and csv_path.exists():
        recorded, why = _recorded_settings(settings_path(csv_path))
        if recorded is None:
            raise SettingError("output_file", str(csv_path), "{name} {value} cannot be resumed: " + f"its settings "
                               f"record {settings_path(csv_path).name} {why}: cannot tell which settings made it; "
                               "pass {overwrite} to start again")
        check_same_settings("output_file", str(csv_path), recorded, eval_fingerprint(settings, ref, n))
    return ref, csv_path


def evaluate_model(settings: Settings, model_ref, csv_path: str | Path, resume: bool = False) -> dict:
    """Evaluate a model reference on the first ``eval.samples`` problems of ``eval.split``.

    The entry point shared by ``evaluate_model.py`` and the training scripts'
    automatic evaluation; the settings were validated before any work started.
    The metrics record the split and the provenance of its problems. A finished evaluation resumed
    (with its own settings, checked before) is left as it is; an overwrite replaces one only once the
    new evaluation has rows (see :func:`evaluate`).
    """
    problems, provenance = eval_problems(settings)
    finished = finished_metrics(csv_path, problems, settings.eval.samples_per_problem) if resume else None
    if finished is not None:
        print(f"[gsm8k-lab] {csv_path} is already complete with these settings: nothing to do", flush=True)
        return finished
    t0 = time.perf_counter()
    backend = make_backend(settings, model_ref, "eval.generation")
    try:
        prompts = [build_prompt(backend.tokenizer, p.question) for p in problems]
        model_name = str(model_ref.run_dir or model_ref.base)
        print(f"[gsm8k-lab] evaluating {model_name} on {len(problems)} {settings.eval.split} problems with "
              f"{backend.describe()}", flush=True)
        return evaluate(backend, problems, prompts, settings.eval.generation, csv_path, resume=resume,
                        extra={"model": model_name, "data_source": provenance["source"],
                               "engine": backend.name, "dtype": runtime.current(settings).dtype_name,
                               "split": settings.eval.split, "provenance": provenance,
                               "load_seconds": round(time.perf_counter() - t0, 1)},
                        fingerprint=eval_fingerprint(settings, model_ref, len(problems)),
                        samples=settings.eval.samples_per_problem)
    finally:
        backend.close()


def extra_evaluations(settings: Settings) -> dict[str, int]:
    """Each further evaluation set of ``eval.extra_sources`` (loaded, so a bad one is refused now)
    and its problem count: the first eval.samples problems, or all of a smaller set. A GSM-Symbolic
    set brings the test problems its variants come from, so the report can pair them."""
    out = {}
    for source in (s for given in settings.eval.extra_sources for s in with_originals(given)):
        size = len(load_split("test", source, "eval.extra_sources"))
        out[source] = min(size, settings.eval.samples or size)
    return out


def evaluation_argv(settings_file: Path, run_dir: Path, csv_name: str, source: str | None = None,
                    samples: int | None = None, model: str | None = None) -> list[str]:
    """The ``gsm8k-lab`` command line that evaluates a finished run with its recorded settings, as
    ``evaluate_model.py`` would (the evaluation after training runs it in a fresh process);
    optionally on another evaluation set, or of another model (a base model's evaluation run)."""
    other = ["--data", source, "--eval-samples", str(samples)] if source else []
    return ["evaluate", "--config", str(settings_file), "--model-path", str(model or run_dir),
            "--output-dir", str(run_dir), "--output-file", csv_name, "--resume", *other]


def score(problem: Problem, completion: Completion, sample: int | None = None) -> dict:
    """One per-example (per-sample) record."""
    text = assistant_text(completion.text)
    parsed = parse_completion(text)
    gold = gold_text(problem.answer)
    return {
        "index": problem.index,
        **({"sample": sample} if sample is not None else {}),
        "question": problem.question,
        "gold_answer": _fmt_number(problem.gold),
        "completion": completion.text,
        "extracted_answer": "" if parsed.value is None else _fmt_number(parsed.value),
        "correct": judge(parsed.value, problem.gold),
        "has_thinking": parsed.has_thinking,
        "has_answer": parsed.has_answer,
        "completion_tokens": completion.n_tokens,
        "truncated": completion.truncated,
        "strict_match": harness_strict(completion.text, gold),
        "flexible_match": harness_flexible(completion.text, gold),
    }


def evaluate(backend: GenerationBackend, problems: list[Problem], prompts: list[str],
             gen: GenerationSettings, csv_path: str | Path, resume: bool = False,
             extra: dict | None = None, fingerprint: dict | None = None, samples: int = 1) -> dict:
    """Generate, score and write ``csv_path`` plus ``<stem>_metrics.txt``/``.json`` beside it.

    Rows are appended and fsynced per batch; ``resume`` keeps the complete rows already written
    (a torn last row is cut off in place, which needs no free space) and generates the rest.
    ``fingerprint`` (the settings that determine the rows) is recorded beside the CSV.
    A new evaluation (not ``resume``) is written beside any earlier one until its first rows are
    on disk, and only then takes its place: a failure before that changes nothing.
    """
    target = csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    staging = None
    if not resume:
        staging = Path(tempfile.mkdtemp(prefix=f".{csv_path.name}.new-", dir=csv_path.parent))
        csv_path = staging / target.name
    for stale in (metrics_path(csv_path), metrics_path(csv_path).with_suffix(".json")):
        stale.unlink(missing_ok=True)  # written again at the end; never left beside other rows
    try:
        if fingerprint is not None:
            atomic_write_json(settings_path(csv_path), fingerprint)
        done = _continue_csv(csv_path, problems, samples) if resume else {}
        if not resume or not csv_path.exists():
            _rewrite(csv_path, [], samples)
        todo = [i for i, p in enumerate(problems) if p.index not in done]
        gen_seconds, gen_tokens = 0.0, 0
        if todo:
            t0 = time.perf_counter()
            with csv_path.open("a", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns(samples))
                for idx, completions in backend.generate_iter([prompts[i] for i in todo], gen, n=samples,
                                                              desc="evaluating"):
                    for j, comps in zip(idx, completions):
                        problem = problems[todo[j]]
                        rows = [score(problem, c, k if samples > 1 else None) for k, c in enumerate(comps)]
                        writer.writerows(rows)
                        done[problem.index] = rows
                        gen_tokens += sum(r["completion_tokens"] for r in rows)
                    fh.flush()
                    os.fsync(fh.fileno())
                    if staging is not None:  # the first rows are durable: they replace the old evaluation
                        _swap_in(staging, target)
                        staging, csv_path = None, target
            gen_seconds = time.perf_counter() - t0
        if staging is not None:  # nothing was generated (no problem to do)
            _swap_in(staging, target)
            staging, csv_path = None, target
        rows = [r for i in sorted(done) for r in done[i]]
        _rewrite(csv_path, rows, samples)  # in problem order
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise SettingError("output_file", str(target), f"no space left on the device writing {target}; the rows "
                           "written so far are kept: free space and continue with {resume}") from None
    finally:
        if staging is not None:  # failed before the new evaluation had rows: the old one stays as it was
            shutil.rmtree(staging, ignore_errors=True)
    metrics = compute_metrics(rows, samples)
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


def compute_metrics(rows: list[dict], samples: int = 1, seed: int = 0) -> dict:
    """Metrics over the rows (one per completion; ``samples`` completions per problem)."""
    if not rows:
        raise ValueError("no evaluated rows")
    groups: dict[int, list[dict]] = {}
    for r in rows:
        groups.setdefault(int(r["index"]), []).append(r)
    problems = list(groups.values())
    n = len(problems)

    def share(key: str) -> list[float]:  # per problem: the share of its completions with the property
        return [sum(bool(r[key]) for r in g) / len(g) for g in problems]

    def interval(per_problem: list[float]) -> tuple[float, float]:
        if samples == 1:  # one binary value per problem: Wilson, as the seed's accuracy always had
            return wilson_interval(round(sum(per_problem)), n)
        return bootstrap_interval(per_problem, seed=seed)

    correct, thinking, answer = share("correct"), share("has_thinking"), share("has_answer")
    lo, hi = interval(correct)
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    metrics = {
        "n": n,
        "samples_per_problem": samples,
        "accuracy": mean(correct),
        "accuracy_ci95_low": lo,
        "accuracy_ci95_high": hi,
        "thinking_proportion": mean(thinking),
        "answer_proportion": mean(answer),
        "answer_proportion_ci95": list(interval(answer)),
        "thinking_proportion_ci95": list(interval(thinking)),
        "strict_match": mean(share("strict_match")),
        "flexible_match": mean(share("flexible_match")),
        "mean_completion_tokens": sum(int(r["completion_tokens"]) for r in rows) / len(rows),
        "truncated_proportion": mean(share("truncated")),
    }
    if samples > 1:
        counts = [sum(bool(r["correct"]) for r in g) for g in problems]
        metrics["pass_at_k"] = {}
        for k in ks_for(samples):
            per = [pass_at_k(len(g), c, k) for g, c in zip(problems, counts)]
            metrics["pass_at_k"][str(k)] = {"value": mean(per), "ci95": list(bootstrap_interval(per, seed=seed))}
        votes = [float(judge(majority_vote([_number(r["extracted_answer"]) for r in g]),
                                     float(g[0]["gold_answer"]))) for g in problems]
        metrics["majority_accuracy"] = mean(votes)
        metrics["majority_accuracy_ci95"] = list(bootstrap_interval(votes, seed=seed))
    return metrics


def per_problem_scores(csv_path: str | Path) -> dict[int, dict[str, float]]:
    """For each problem of an evaluation CSV: the share of its completions that are correct,
    have an answer, have a reasoning block (what paired comparisons compare), were cut at the token
    budget. A CSV without those columns, or with a row whose index is not an integer or whose flag is
    not True/False, is a ValueError naming the line."""
    keys = ("correct", "has_answer", "has_thinking", "truncated")
    groups: dict[int, list[dict]] = {}
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("index", *keys) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError("no column " + ", ".join(missing))
        for r in reader:
            try:
                index = int(r["index"])
            except (TypeError, ValueError):
                raise ValueError(f"line {reader.line_num}: index {r['index']!r} is not an integer") from None
            wrong = next((k for k in keys if r[k] not in ("True", "False")), None)
            if wrong:
                raise ValueError(f"line {reader.line_num}: {wrong} {r[wrong]!r} is neither True nor False")
            groups.setdefault(index, []).append(r)
    return {i: {key: sum(r[key] == "True" for r in g) / len(g) for key in keys} for i, g in groups.items()}


def finished_metrics(csv_path: str | Path, problems: list[Problem], samples: int = 1) -> dict | None:
    """The metrics of an evaluation of exactly these problems that is complete (every row written,
    nothing torn, metrics beside it); None when something is left to do."""
    csv_path = Path(csv_path)
    try:
        metrics = json.loads(metrics_path(csv_path).with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    rows, good, size = _complete_rows(csv_path, problems, samples)
    whole = good == size and {r["index"] for r in rows} == {p.index for p in problems}
    return metrics if whole and isinstance(metrics, dict) and metrics.get("n") == len(problems) else None


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
    k = metrics.get("samples_per_problem", 1)
    for key, label in keys:
        v = metrics.get(key)
        if key == "accuracy":
            label = "accuracy" if k == 1 else f"mean@{k} accuracy"
            v = f"{v:.1%}  (95% CI {metrics['accuracy_ci95_low']:.1%}–{metrics['accuracy_ci95_high']:.1%})"
        elif isinstance(v, float) and key.endswith(("proportion", "match")):
            ci = metrics.get(f"{key}_ci95")
            v = f"{v:.1%}" + (f"  (95% CI {ci[0]:.1%}–{ci[1]:.1%})" if ci else "")
        lines.append(f"  {label:<20} {_fmt(v)}")
        if key == "accuracy" and k > 1:
            for kk, r in metrics["pass_at_k"].items():
                lines.append(f"  {'pass@' + kk:<20} {r['value']:.1%}  (95% CI {r['ci95'][0]:.1%}–{r['ci95'][1]:.1%})")
            ci = metrics["majority_accuracy_ci95"]
            vote = metrics["majority_accuracy"]
            lines.append(f"  {'majority vote':<20} {vote:.1%}  (95% CI {ci[0]:.1%}–{ci[1]:.1%})")
    return "\n".join(lines)


def read_rows(csv_path: Path, problems: list[Problem], samples: int = 1) -> dict[int, list[dict]]:
    """Rows already written for these problems, by problem; a torn last row from a kill is dropped."""
    return _by_problem(_complete_rows(csv_path, problems, samples)[0])


def settings_path(csv_path: str | Path) -> Path:
    csv_path = Path(csv_path)
    return csv_path.with_name(f"{csv_path.stem}_settings.json")


def output_files(csv_path: str | Path) -> list[Path]:
    """Every file an evaluation writes: the CSV, its metrics (text and JSON) and its settings record."""
    return [Path(csv_path), metrics_path(csv_path), metrics_path(csv_path).with_suffix(".json"),
            settings_path(csv_path)]


def eval_fingerprint(settings: Settings, model_ref, n: int) -> dict:
    """What determines an evaluation's rows: the model, the problems and the decoding."""
    fp = {"model": model_ref.describe(), "data.source": settings.data.source, "eval.samples": n,
          "eval.samples_per_problem": settings.eval.samples_per_problem, "eval.dtype": settings.model.dtype}
    if settings.eval.split != "test":  # recorded only when set, so test evaluations made before still resume
        fp.update({"eval.split": settings.eval.split, "data.train_source": settings.data.train_source,
                   "data.budget_seed": settings.data.budget_seed,
                   "data.validation_size": settings.data.validation_size})
    fp.update({f"eval.generation.{k}": v for k, v in decoding(settings.eval.generation).items()
               if k not in ("greedy", "stop")})
    return fp


def _complete_rows(csv_path: Path, problems: list[Problem], samples: int = 1) -> tuple[list[dict], int, int]:
    """The rows of an append-only CSV that are whole and belong to these problems, in file order;
    the byte length they fill (with the header); the file's length.

    A row counts only when it parses with every column, its values type-check, it is one of
    these problems, and its bytes are exactly what the writer would have written: a row cut by
    a kill (even inside a multi-byte character) is never taken, and nothing after it is. A
    problem whose samples are not all there (they are written together) is dropped too.
    """
    if not csv_path.is_file():
        return [], 0, 0
    raw = csv_path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # cut inside a character: only what precedes it is text
        text = raw[: exc.start].decode("utf-8", errors="ignore")
    wanted = {p.index: p for p in problems}
    cols = columns(samples)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[dict] = []
    ends: list[int] = []
    good = 0
    try:
        if next(reader, None) != cols:
            return [], 0, len(raw)
        good = len(_csv_bytes([cols]))
        for fields in reader:
            if len(fields) != len(cols):
                break
            try:
                row = _typed(dict(zip(cols, fields)))
            except ValueError:
                break
            p = wanted.get(row["index"])
            line = _csv_bytes([fields])
            if p is None or p.question != row["question"] or raw[good:good + len(line)] != line \
                    or not 0 <= row.get("sample", 0) < samples:
                break
            rows.append(row)
            good += len(line)
            ends.append(good)
    except csv.Error:  # an unterminated quote at the torn end
        pass
    while rows and sum(r["index"] == rows[-1]["index"] for r in rows) < samples:  # a part of a problem
        last = rows[-1]["index"]
        while rows and rows[-1]["index"] == last:
            rows.pop()
            ends.pop()
        good = ends[-1] if ends else len(_csv_bytes([cols]))
    return rows, good, len(raw)


def _swap_in(staging: Path, csv_path: Path) -> None:
    """Put the new evaluation (CSV and settings in ``staging``) in place of the old one: the old
    metrics and settings record go first, so neither ever sits beside rows it does not describe (a
    kill in between leaves rows without a settings record, which a resume refuses)."""
    for stale in (metrics_path(csv_path), metrics_path(csv_path).with_suffix(".json"), settings_path(csv_path)):
        stale.unlink(missing_ok=True)
    fsync_dir(csv_path.parent)
    os.replace(staging / csv_path.name, csv_path)
    new_settings = settings_path(staging / csv_path.name)
    if new_settings.exists():
        os.replace(new_settings, settings_path(csv_path))
    shutil.rmtree(staging, ignore_errors=True)
    fsync_dir(csv_path.parent)


def _recorded_settings(path: Path) -> tuple[dict | None, str]:
    """The settings an evaluation CSV was made with, or None and why they cannot be told."""
    if not path.exists():
        return None, "is missing"
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None, "is not readable JSON"
    if not isinstance(recorded, dict) or not recorded:
        return None, "holds no settings"
    return recorded, ""


def _continue_csv(csv_path: Path, problems: list[Problem], samples: int = 1) -> dict[int, list[dict]]:
    """Keep the complete rows for resuming; cut a torn tail off in place (no second copy needed)."""
    rows, good, size = _complete_rows(csv_path, problems, samples)
    if size and good == 0:
        _rewrite(csv_path, [], samples)
    elif good < size:
        drop_torn_tail(csv_path, good, f"{len(rows)} complete rows are kept")
    return _by_problem(rows)


def _by_problem(rows: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for r in rows:
        out.setdefault(r["index"], []).append(r)
    return out


def _number(text: str) -> float | None:
    try:
        return float(text) if text != "" else None
    except ValueError:
        return None


def _csv_bytes(rows: list[list]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode("utf-8")


# --------------------------------------------------------------------------
def _typed(raw: dict) -> dict:
    row = dict(raw)
    row["index"] = int(raw["index"])
    if "sample" in raw:
        row["sample"] = int(raw["sample"])
    row["completion_tokens"] = int(raw["completion_tokens"])
    for key in _BOOL_COLUMNS:
        if raw[key] not in ("True", "False"):
            raise ValueError(key)
        row[key] = raw[key] == "True"
    return row


def _rewrite(csv_path: Path, rows: list[dict], samples: int = 1) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(samples))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(csv_path, buf.getvalue())


def _fmt_number(x: float) -> str:
    """Integers as integers, other numbers in their shortest exact form (repr round-trips a float)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _runs_evaluated(output_dir: str | Path, ref) -> tuple[Kind, ...]:
    """(Kind.RUN,) when ``output_dir`` is the run directory whose model ``ref`` is: the run itself
    (its adapter) or, for a base-model run, the model that run recorded; else ()."""
    run = RunDir(output_dir)
    if ref.run_dir is not None and Path(ref.run_dir).resolve() == run.root.resolve():
        return (Kind.RUN,)
    info = run.read()
    if isinstance(info, dict) and info.get("stage") == BASE_STAGE and \
            isinstance(info.get("fingerprint"), dict) and info["fingerprint"].get("model") == ref.describe():
        return (Kind.RUN,)
    return ()

"""Reasoning traces by rejection sampling from a GRPO run.

For each problem the first sampled completion that is **in format and correct**
(``format_exact`` and ``answer_correct`` of :mod:`gsm8k_lab.rewards`) becomes its
trace; after ``max_attempts`` failures the original GSM8K solution is used.
Sampling goes in rounds: round *r* samples one completion for each problem
still unsolved, so the cost follows the number of unsolved problems rather
than attempts x problems, and every round is a batched pass of the engine (in
parts of :data:`ROUND_CHUNK` problems).

Output: JSONL lines ``{"question", "answer": "<reasoning>\\n\\n#### N",
"source": "grpo"|"fallback", "attempts": k, "split": "train"|"test"}`` (the input
of SFT on traces; ``split`` names the GSM8K split the problems came from, so
training refuses traces of test problems), ``<file>.settings.json`` (what
determines the traces: the fingerprint a resume is checked against, kept once
the run is finished) and ``<file>.stats.json``:

- ``total_samples``: problems covered (``grpo_successes + fallback_count``);
- ``grpo_successes``: problems whose trace is a GRPO completion;
- ``fallback_count``: problems that kept the original solution;
- ``success_rate``: ``grpo_successes / total_samples``;
- ``avg_attempts_for_successes``: mean attempt number at which successes
  were found (null when there are none);
- ``avg_attempts_overall``: mean attempts spent per problem, a fallback
  counting ``max_attempts``;
- ``tokens_generated``: completion tokens sampled over every attempt (what the traces
  cost; the report charges it to the SFT run that trains on them).

**Resuming writes exactly what an uninterrupted run writes.** Each attempt
samples from its own seed, derived from the sampling seed, the question and the
attempt number (``keys`` of :mod:`gsm8k_lab.generation.base`), never from a
stream shared by a batch. Every draw's outcome, success or failure, is appended
to ``<file>.progress.jsonl`` as batches finish. A round samples its problems in
fixed parts of :data:`ROUND_CHUNK` (in problem order); a resume skips the parts
whose every outcome is on disk and samples the part the kill cut short again
**whole**, keeping the outcomes already written. Sampling a part whole, with
the same rows side by side, matters in bf16: there a row's logits depend in
their last bits on the rows beside it (its attention runs over the columns the
batch pads it to, and sums in another order when they change), so the same
seeds alone would let some completions change.
With the same batch size, dtype, backend and threads, two runs (one of them
killed anywhere and resumed) are byte-identical. The progress file is removed
only once the settings, the stats and the traces file are written. Resuming a
finished run with the same settings changes nothing; with other settings it
is refused, naming each difference.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import GenerationSettings, SettingError, Settings, validate
from .data import Problem, load_split, train_regions
from .folders import Kind, check_output_folder
from .generation import GenerationBackend, decoding, make_backend
from .models import preflight, resolve_model
from .rewards import answer_correct, format_exact
from .runs import (
    atomic_write_json,
    atomic_write_text,
    check_can_write,
    check_file_name,
    check_same_settings,
    check_writable_dir,
    drop_torn_tail,
    fsync_dir,
    read_jsonl,
)
from .task import REASONING_END, REASONING_START, assistant_text, build_prompt, parse_completion, reasoning_to_trace

#: Problems of a round sampled together: a resume samples an unfinished part again whole.
ROUND_CHUNK = 256


@dataclass
class TraceJob:
    problems: list[Problem]
    prompts: list[str]
    output_path: Path
    max_attempts: int
    gen: GenerationSettings  # temperature etc.; each attempt samples under (seed, question, attempt)
    fingerprint: dict | None = None  # what determines the traces; a resume must match it
    split: str = "train"  # the split the problems come from, recorded on every line


def generate_traces(settings: Settings, output_dir: str | Path, output_file: str, resume: bool = False,
                    overwrite: bool = False) -> tuple[Path, dict]:
    """Validate, load the run (``settings.model.name``), sample; returns the traces path and its stats."""
    job_problems, out, fingerprint = prepare_traces(settings, output_dir, output_file, resume, overwrite)
    if resume and is_finished(out):
        print(f"[gsm8k-lab] the traces in {out} are finished: nothing to do", flush=True)
        return out, json.loads(stats_path(out).read_text(encoding="utf-8"))
    ref = resolve_model(settings.model.name)
    t = settings.traces
    backend = make_backend(settings, ref, "traces.generation")
    try:
        prompts = [build_prompt(backend.tokenizer, p.question) for p in job_problems]
        print(f"[gsm8k-lab] traces for {len(job_problems)} {t.split} problems from {ref.run_dir}, up to "
              f"{t.max_attempts} attempts at temperature {t.generation.temperature}", flush=True)
        job = TraceJob(job_problems, prompts, out, t.max_attempts, t.generation, fingerprint, t.split)
        return out, run_rejection_sampling(backend, job, resume=resume)
    finally:
        backend.close()


def prepare_traces(settings: Settings, output_dir: str | Path, output_file: str, resume: bool,
                   overwrite: bool) -> tuple[list[Problem], Path, dict]:
    """Check everything before any work: settings, model, data, output (and, to resume, that the
    run, unfinished or finished, was made with the same settings); returns the problems, the path,
    the fingerprint."""
    check_file_name("output_file", output_file, ".jsonl")
    t = settings.traces
    source, source_path = ((settings.data.train_source, "data.train_source") if t.split == "train"
                           else (settings.data.source, "data.source"))
    problems_all = load_split(t.split, source, source_path)
    regions = train_regions(problems_all, settings) if t.split == "train" else None
    validate(settings, {"traces": len(problems_all)}, counts=["traces.num_samples"])
    ref = resolve_model(settings.model.name)
    if ref.run_dir is None:
        raise SettingError("model.name", settings.model.name or "the embedded model",
                           "{name} {value} is not a run directory (expected model/ with an adapter)")
    preflight(settings, ref, ("traces.generation",))
    # train: the budget region of the shuffle, so traces cover the problems the budgets train on and
    # never the prep or validation problems
    problems = regions.budget(t.num_samples, "traces.num_samples") if regions else problems_all[:t.num_samples]
    n = len(problems)
    check_output_folder("output_dir", output_dir, Kind.TRACES)
    out = check_writable_dir(output_dir) / output_file
    check_can_write(out.parent, "output_dir", str(output_dir))
    unfinished = progress_path(out).exists()
    finished = is_finished(out)
    if finished and not (overwrite or resume):
        raise SettingError("output_file", str(out), "{name} {value} already exists; pass {overwrite} to replace it")
    if (unfinished or out.exists()) and not (resume or overwrite):
        raise SettingError("output_file", str(out), "{name} {value} belongs to an unfinished run; pass {resume} "
                           "to continue it or {overwrite} to start again")
    fingerprint = {"traces.split": t.split, "model": ref.describe(), "data.source": source,
                   "data.budget_seed": settings.data.budget_seed, "traces.num_samples": n,
                   "traces.max_attempts": t.max_attempts,
                   **{f"traces.generation.{k}": v for k, v in decoding(t.generation).items() if k != "greedy"}}
    if resume and unfinished:
        check_same_settings("output_file", str(out), _progress_settings(progress_path(out)), fingerprint)
    elif resume and finished:  # traces finished before settings were kept beside them: nothing to compare
        recorded = settings_path(out)
        check_same_settings("output_file", str(out),
                            json.loads(recorded.read_text(encoding="utf-8")) if recorded.is_file() else None,
                            fingerprint)
    return problems, out, fingerprint


def run_rejection_sampling(backend: GenerationBackend, job: TraceJob, resume: bool = False) -> dict:
    """Sample in rounds, write the traces file, its settings and stats; returns the stats.

    Completion is marked by the progress file's removal: the settings and stats are written
    first, then the traces file, then the progress file goes; a kill anywhere
    in between leaves the progress file, and ``resume`` rewrites them. A new run over an
    earlier one (overwrite) writes its progress beside it until its first batch is on disk,
    so a failure before that leaves the earlier files exactly as they were.
    """
    progress = progress_path(job.output_path)
    resuming = resume and progress.exists() and _progress_settings(progress) is not None
    done = _read_progress(progress) if resuming else Outcomes()
    chunk = _progress_header(progress).get("chunk", ROUND_CHUNK) if resuming else ROUND_CHUNK
    job.output_path.parent.mkdir(parents=True, exist_ok=True)
    staging = None  # an overwrite's progress, beside the old run's files until its first batch is on disk
    if not resuming:
        # a fresh start, or a header torn by a kill (then nothing after it was kept either)
        header = json.dumps({"settings": job.fingerprint or {}, "chunk": chunk}) + "\n"
        if any(p.exists() for p in (progress, job.output_path, stats_path(job.output_path))):
            staging = progress.with_name(f".{progress.name}.new")
        atomic_write_text(staging or progress, header)
    solved = done.solved
    try:
        with (staging or progress).open("a", encoding="utf-8") as log:
            for attempt in range(done.rounds + 1, job.max_attempts + 1):
                # the round's problems: unsolved before it (those solved in it before a kill included)
                todo = [i for i in range(len(job.problems)) if solved.get(i, {}).get("attempts", attempt) >= attempt]
                if not todo:
                    break
                parts = [todo[c:c + chunk] for c in range(0, len(todo), chunk)]
                for n, part in enumerate(parts, 1):
                    if all(done.has(i, attempt) for i in part):
                        continue  # every outcome of this part is on disk
                    desc = f"attempt {attempt}/{job.max_attempts}" + (f" ({n}/{len(parts)})" if len(parts) > 1 else "")
                    keys = [[job.problems[i].question, attempt] for i in part]
                    for idx, comps in backend.generate_iter([job.prompts[i] for i in part], job.gen, desc=desc,
                                                            keys=keys):
                        for j, c in zip(idx, comps):
                            i = part[j]
                            if done.has(i, attempt):
                                continue  # sampled before the kill: the record on disk stands
                            done.tokens[i, attempt] = c[0].n_tokens
                            if accept(c[0].text, job.problems[i].gold):
                                solved[i] = {"attempts": attempt, "answer": completion_to_trace(c[0].text)}
                                log.write(json.dumps({"i": i, **solved[i], "tokens": c[0].n_tokens}) + "\n")
                            else:
                                done.failed.add((i, attempt))
                                log.write(json.dumps({"i": i, "failed": attempt, "tokens": c[0].n_tokens}) + "\n")
                        log.flush()
                        os.fsync(log.fileno())
                        staging = _take_over(staging, progress)
                log.write(json.dumps({"round_done": attempt}) + "\n")
                log.flush()
                os.fsync(log.fileno())
        staging = _take_over(staging, progress)
    finally:
        if staging is not None:  # failed before the first batch: the old files are as they were
            staging.unlink(missing_ok=True)
    records = build_records(job.problems, solved, job.max_attempts, job.split)
    stats = {**compute_stats(records, job.max_attempts), "tokens_generated": sum(done.tokens.values())}
    atomic_write_json(settings_path(job.output_path), job.fingerprint or {})
    atomic_write_json(stats_path(job.output_path), stats)
    atomic_write_text(job.output_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    progress.unlink(missing_ok=True)
    return stats


def accept(completion: str, gold: float) -> bool:
    """In format and correct: the same judges as GRPO's rewards."""
    return format_exact([completion])[0] > 0 and answer_correct([completion], gold=[gold])[0] > 0


def completion_to_trace(completion: str) -> str:
    """A completion in the answer format, as a traces-file answer ``"<reasoning>\\n\\n#### N"``."""
    text = assistant_text(completion)
    reasoning = text.split(REASONING_END, 1)[0].replace(REASONING_START, "", 1)
    value = parse_completion(text).value
    final = str(int(value)) if float(value).is_integer() else repr(value)
    # a stray "#### " inside the reasoning would be read as the answer marker
    reasoning = re.sub(r"^####", "", reasoning.strip(), flags=re.MULTILINE)
    return reasoning_to_trace(reasoning, final)


def build_records(problems: list[Problem], solved: dict[int, dict], max_attempts: int,
                  split: str = "train") -> list[dict]:
    records = []
    for i, p in enumerate(problems):
        if i in solved:
            records.append({"question": p.question, "answer": solved[i]["answer"], "source": "grpo",
                            "attempts": solved[i]["attempts"], "split": split})
        else:
            records.append({"question": p.question, "answer": p.answer, "source": "fallback",
                            "attempts": max_attempts, "split": split})
    return records


def compute_stats(records: list[dict], max_attempts: int) -> dict:
    total = len(records)
    successes = [r["attempts"] for r in records if r["source"] == "grpo"]
    return {
        "total_samples": total,
        "grpo_successes": len(successes),
        "fallback_count": total - len(successes),
        "success_rate": len(successes) / total if total else 0.0,
        "avg_attempts_for_successes": sum(successes) / len(successes) if successes else None,
        "avg_attempts_overall": sum(r["attempts"] for r in records) / total if total else 0.0,
    }


def progress_path(output_path: Path) -> Path:
    return output_path.with_name(output_path.name + ".progress.jsonl")


def stats_path(output_path: Path) -> Path:
    return output_path.with_name(output_path.name + ".stats.json")


def settings_path(output_path: Path) -> Path:
    return output_path.with_name(output_path.name + ".settings.json")


def is_finished(output_path: Path) -> bool:
    """The traces file and its stats are written and no progress file says a run is under way."""
    return output_path.is_file() and stats_path(output_path).is_file() and not progress_path(output_path).exists()


# --------------------------------------------------------------------------


@dataclass
class Outcomes:
    """What a progress file holds: solved problems, failed draws ``(i, attempt)``, finished rounds."""

    solved: dict[int, dict] = field(default_factory=dict)
    failed: set[tuple[int, int]] = field(default_factory=set)
    rounds: int = 0
    tokens: dict[tuple[int, int], int] = field(default_factory=dict)  # completion tokens of each draw

    def has(self, i: int, attempt: int) -> bool:
        """Whether the outcome of problem ``i``'s draw ``attempt`` is recorded."""
        return (i, attempt) in self.failed or self.solved.get(i, {}).get("attempts") == attempt


def _read_progress(path: Path) -> Outcomes:
    """The outcomes on disk; a torn last record (a kill) is cut off before appending."""
    records, good, torn = read_jsonl(path)
    if torn:
        drop_torn_tail(path, good, "its problems are sampled again")
    out = Outcomes()
    for rec in records:
        if "round_done" in rec:
            out.rounds = max(out.rounds, rec["round_done"])
        elif "failed" in rec:
            out.failed.add((rec["i"], rec["failed"]))
            out.tokens[rec["i"], rec["failed"]] = int(rec.get("tokens", 0))
        elif "i" in rec:
            out.solved[rec["i"]] = {"attempts": rec["attempts"], "answer": rec["answer"]}
            out.tokens[rec["i"], rec["attempts"]] = int(rec.get("tokens", 0))
    return out


def _progress_header(path: Path) -> dict:
    records = read_jsonl(path)[0]
    return records[0] if records and "settings" in records[0] else {}


def _progress_settings(path: Path) -> dict | None:
    return _progress_header(path).get("settings")


def _take_over(staging: Path | None, progress: Path) -> None:
    """The new run's first batch is on disk: its progress file becomes the one a resume continues."""
    if staging is not None:
        os.replace(staging, progress)
        fsync_dir(progress.parent)
    return None

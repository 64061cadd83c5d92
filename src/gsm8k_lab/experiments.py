"""Experiment 1 and 2 as resumable sweeps.

Experiment 1 (the seed's Appendix A): the base model evaluated as it is, prep SFT
once, then for each budget and training seed a full SFT (one epoch), an SFT with
GRPO's optimizer-step count (``experiment.step_matched_sft``) and a GRPO run from
the prep model, each evaluated::

    <root>/base_model        <root>/prep_sft
    <root>/<n>/full_sft      <root>/<n>/full_sft_matched      <root>/<n>/grpo
                                        (seed suffix "-seed<k>" with several seeds)

The prep model is one run (the first seed), shared by every seed: the seeds
replicate the stage the research question is about.

Experiment 2 (Appendix B): traces from a chosen GRPO run, SFT on them at a
budget, compared with SFT on the original solutions at the same budget::

    <traces-root>/grpo_traces_train.jsonl (+ .stats.json)
    <traces-root>/<n>                      SFT on the traces
    <root>/<n>/full_sft                    SFT on the original solutions (trained if missing)

A step whose run directory is complete is skipped and an unfinished one is
resumed, so a killed sweep continues where it stopped. Each ends in a report.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import SettingError, Settings, validate
from .data import eval_split_size, load_split, train_regions
from .grpo import prepare_grpo, train_grpo
from .runs import RunDir, setting_differences
from .sft import prepare_sft, train_sft
from .traces import generate_traces, progress_path, stats_path
from .training import child_environment, evaluate_base, prepare_base, run_fingerprint


@dataclass
class Step:
    """One run of a sweep: what it is (for ``plan``), where it goes, and how to run it."""

    name: str
    run_dir: Path
    action: Callable[[bool], object]  # called with resume=True/False
    done: Callable[[], bool] | None = None  # default: the run directory is complete
    kind: str = ""  # base (evaluation only), sft, grpo or traces
    settings: Settings | None = None  # the run's own settings (budget, seed, model)
    stage: str = ""  # SFT: prep or full
    traces_file: Path | None = None  # SFT on traces

    def is_done(self) -> bool:
        return self.done() if self.done else RunDir(self.run_dir).is_complete()


def run_steps(steps: list[Step]) -> list[str]:
    """Run each step unless it is already done (resuming an unfinished one); returns what ran.
    Every finished step is checked first (:func:`check_finished`), so a refusal comes before any work."""
    for step in steps:
        check_finished(step)
    ran = []
    for step in steps:
        if step.is_done():
            print(f"[gsm8k-lab] skip {step.name}: {step.run_dir} is complete", flush=True)
            continue
        resume = RunDir(step.run_dir).has_partial()
        print(f"[gsm8k-lab] {'resume' if resume else 'run'} {step.name} -> {step.run_dir}", flush=True)
        step.action(resume)
        ran.append(step.name)
    return ran


def train_grpo_step(settings: Settings, run_dir: Path, resume: bool) -> None:
    """A sweep's GRPO run: in this process, or, with a colocated vLLM engine, in a process of its own. The
    engine's shutdown destroys the default process group TRL set up for it, so a second colocated training
    in the same process would build its engine without one; a fresh process per run starts each clean.
    The child reads these settings from a file (the run's own, as ``--config`` takes a tree) and none from
    the environment; its exit status is the sweep's when it fails."""
    g = settings.grpo
    if not (g.use_vllm and g.vllm_mode == "colocate"):
        train_grpo(settings, run_dir, resume=resume)
        return
    with tempfile.TemporaryDirectory(prefix="gsm8k-lab-grpo-") as tmp:
        config = Path(tmp) / "settings.json"
        config.write_text(json.dumps(settings.to_dict()), encoding="utf-8")
        argv = [sys.executable, "-m", "gsm8k_lab", "train-grpo", "--config", str(config), "--output-dir",
                str(run_dir), *(["--resume"] if resume else [])]
        print(f"[gsm8k-lab] GRPO with a colocated vLLM engine runs in its own process: {' '.join(argv[2:])}",
              flush=True)
        code = subprocess.run(argv, env=child_environment()).returncode
    if code:
        print(f"[gsm8k-lab] the GRPO run {run_dir} failed (exit {code}); the sweep resumes it when run again",
              file=sys.stderr, flush=True)
        raise SystemExit(code)


def check_finished(step: Step) -> None:
    """A finished run is reused only when it was made with the step's own settings (the fingerprint
    its run.json recorded, as ``--resume`` compares it); a SettingError naming the run and each
    difference otherwise. Steps not finished yet are checked when they run."""
    if step.kind not in ("base", "sft", "grpo") or not step.is_done():
        return
    s = step.settings
    if step.kind == "base":
        job = prepare_base(s, step.run_dir)
    elif step.kind == "sft":
        job = prepare_sft(s, step.stage, step.run_dir, str(step.traces_file) if step.traces_file else None)
    else:
        job = prepare_grpo(s, step.run_dir)
    recorded = RunDir(step.run_dir).read().get("fingerprint")
    diffs = setting_differences(recorded, run_fingerprint(s, job))
    if diffs:
        raise SettingError("root", str(step.run_dir), "{name}: the finished run {value} (" + step.name
                           + ") was made with other settings: " + "; ".join(diffs) + "; a sweep reuses a run only "
                           "with its own settings: give them again, or another folder for the new runs")


def check_experiment(settings: Settings, which: int) -> None:
    """Every budget of a whole experiment against the data, before its first step trains."""
    train = load_split("train", settings.data.train_source, "data.train_source")
    budgets = "experiment.budgets" if which == 1 else "experiment.traces_budget"
    validate(settings, {"train": len(train), "test": eval_split_size(settings)},
             counts=["sft.prep_train_samples", "eval.samples", budgets])
    regions = train_regions(train, settings)
    regions.prep()  # prep and validation fit in the split
    for n in settings.experiment.budgets if which == 1 else [settings.experiment.traces_budget]:
        regions.budget(n, budgets)  # no budget reaches the held-out problems


def experiment1_steps(settings: Settings, root: str | Path) -> list[Step]:
    root = Path(root)
    prep, base = root / "prep_sft", root / "base_model"
    steps = [Step("base model", base, lambda r: evaluate_base(settings, base, resume=r), kind="base",
                  settings=settings),
             Step("prep SFT", prep, lambda r: train_sft(settings, "prep", prep, resume=r), kind="sft",
                  settings=settings, stage="prep")]
    seeds = settings.experiment.seeds
    for k in range(seeds):
        suffix = "" if seeds == 1 else f"-seed{k}"
        for n in sorted(set(settings.experiment.budgets)):
            c = step_settings(settings, n, seed=settings.seed + k, model=prep)
            sft_dir, grpo_dir = root / str(n) / f"full_sft{suffix}", grpo_run_dir(root, n, k, seeds)
            steps.append(Step(f"SFT {n}{suffix}", sft_dir,
                              lambda r, c=c, d=sft_dir: train_sft(c, "full", d, resume=r),
                              kind="sft", settings=c, stage="full"))
            if settings.experiment.step_matched_sft:
                m = copy.deepcopy(c)
                m.sft.match_grpo_steps = True
                matched = root / str(n) / f"full_sft_matched{suffix}"
                steps.append(Step(f"SFT {n} GRPO's steps{suffix}", matched,
                                  lambda r, m=m, d=matched: train_sft(m, "full", d, resume=r),
                                  kind="sft", settings=m, stage="full"))
            steps.append(Step(f"GRPO {n}{suffix}", grpo_dir,
                              lambda r, c=c, d=grpo_dir: train_grpo_step(c, d, resume=r), kind="grpo", settings=c))
    return steps


def experiment2_steps(settings: Settings, grpo_run: str | Path, root: str | Path,
                      traces_root: str | Path) -> list[Step]:
    root, traces_root = Path(root), Path(traces_root)
    prep = root / "prep_sft"
    budget = settings.experiment.traces_budget
    traces = traces_root / "grpo_traces_train.jsonl"
    steps = [trace_step(settings, Path(grpo_run), traces, budget)]
    seeds = settings.experiment.seeds
    for k in range(seeds):
        suffix = "" if seeds == 1 else f"-seed{k}"
        c = step_settings(settings, budget, seed=settings.seed + k, model=prep)
        orig, on_traces = root / str(budget) / f"full_sft{suffix}", traces_root / f"{budget}{suffix}"
        steps.append(Step(f"SFT {budget}{suffix} (original)", orig,
                          lambda r, c=c, d=orig: train_sft(c, "full", d, resume=r),
                          kind="sft", settings=c, stage="full"))
        steps.append(Step(f"SFT {budget}{suffix} (GRPO traces)", on_traces,
                          lambda r, c=c, d=on_traces: train_sft(c, "full", d, traces_file=str(traces), resume=r),
                          kind="sft", settings=c, stage="full", traces_file=traces))
    return steps


def grpo_run_dir(root: str | Path, n: int, k: int = 0, seeds: int = 1) -> Path:
    """Where experiment 1 puts the GRPO run of budget ``n`` and seed index ``k`` (experiment 2
    takes its traces from seed index 0)."""
    return Path(root) / str(n) / ("grpo" if seeds == 1 else f"grpo-seed{k}")


def trace_step(settings: Settings, grpo_run: Path, traces: Path, budget: int) -> Step:
    """Trace generation as a sweep step: done once the traces file and its stats are complete."""
    c = copy.deepcopy(settings)
    c.model.name = str(grpo_run)
    c.traces.split = "train"
    c.traces.num_samples = settings.traces.num_samples or budget

    def action(_resume: bool) -> None:
        generate_traces(c, traces.parent, traces.name, resume=progress_path(traces).exists() or traces.exists())

    return Step("traces", traces.parent, action,
                done=lambda: traces.is_file() and stats_path(traces).is_file() and not progress_path(traces).exists(),
                kind="traces", settings=c, traces_file=traces)


def step_settings(settings: Settings, n: int, seed: int, model: Path) -> Settings:
    """A training step's settings: the budget, the seed and the model it starts from."""
    c = copy.deepcopy(settings)
    c.sft.train_samples = n
    c.grpo.train_samples = n
    c.seed = seed
    c.model.name = str(model)
    return c

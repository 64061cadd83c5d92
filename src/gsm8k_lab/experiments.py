"""Experiment 1 and 2 as resumable sweeps, and the small preset that runs both on a CPU.

Experiment 1 (the seed's Appendix A): prep SFT once, then for each budget a full
SFT and a GRPO run from the prep model, each evaluated::

    <root>/prep_sft
    <root>/<n>/full_sft      <root>/<n>/grpo          (seed suffix "-seed<k>" when --seeds > 1)

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Config, UsageError
from .runs import RunDir


@dataclass
class Step:
    name: str
    run_dir: Path
    action: Callable[[bool], object]  # called with resume=True/False
    done: Callable[[], bool] | None = None  # default: the run directory is complete

    def is_done(self) -> bool:
        return self.done() if self.done else RunDir(self.run_dir).is_complete()


def run_steps(steps: list[Step]) -> list[str]:
    """Run each step unless it is already done (resuming an unfinished one); returns what ran."""
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


def experiment1_steps(cfg: Config, budgets: list[int], root: str | Path, seeds: int = 1) -> list[Step]:
    from .grpo import train_grpo
    from .sft import train_sft

    root = Path(root)
    prep = root / "prep_sft"
    steps = [Step("prep SFT", prep, lambda r: train_sft(cfg, "prep", prep, base_model=cfg.model.name, resume=r))]
    for k in range(seeds):
        suffix = "" if seeds == 1 else f"-seed{k}"
        for n in budgets:
            c = budget_config(cfg, n, seed=cfg.seed + k)
            sft_dir, grpo_dir = root / str(n) / f"full_sft{suffix}", root / str(n) / f"grpo{suffix}"
            steps.append(Step(f"SFT {n}{suffix}", sft_dir,
                              lambda r, c=c, d=sft_dir: train_sft(c, "full", d, base_model=str(prep), resume=r)))
            steps.append(Step(f"GRPO {n}{suffix}", grpo_dir,
                              lambda r, c=c, d=grpo_dir: train_grpo(c, d, base_model=str(prep), resume=r)))
    return steps


def experiment2_steps(cfg: Config, grpo_run: str | Path, budget: int, root: str | Path, traces_root: str | Path,
                      num_samples: int | None = None, max_attempts: int = 5, temperature: float = 0.8,
                      seeds: int = 1) -> list[Step]:
    from .sft import train_sft

    root, traces_root = Path(root), Path(traces_root)
    prep = root / "prep_sft"
    traces = traces_root / "grpo_traces_train.jsonl"
    steps = [trace_step(cfg, Path(grpo_run), traces, num_samples or budget, max_attempts, temperature)]
    for k in range(seeds):
        suffix = "" if seeds == 1 else f"-seed{k}"
        c = budget_config(cfg, budget, seed=cfg.seed + k)
        orig, on_traces = root / str(budget) / f"full_sft{suffix}", traces_root / f"{budget}{suffix}"
        steps.append(Step(f"SFT {budget}{suffix} (original)", orig,
                          lambda r, c=c, d=orig: train_sft(c, "full", d, base_model=str(prep), resume=r)))
        steps.append(Step(f"SFT {budget}{suffix} (GRPO traces)", on_traces,
                          lambda r, c=c, d=on_traces: train_sft(c, "full", d, base_model=str(prep),
                                                                traces_file=str(traces), resume=r)))
    return steps


def trace_step(cfg: Config, grpo_run: Path, traces: Path, num_samples: int, max_attempts: int,
               temperature: float) -> Step:
    """Trace generation as a sweep step: done once the traces file and its stats exist."""
    from .traces import generate_traces, progress_path, stats_path

    def action(_resume: bool) -> None:
        generate_traces(cfg, str(grpo_run), traces.parent, traces.name, "train", num_samples, max_attempts,
                        temperature, resume=progress_path(traces).exists())

    return Step("traces", traces.parent, action,
                done=lambda: traces.is_file() and stats_path(traces).is_file())


def budget_config(cfg: Config, n: int, seed: int) -> Config:
    c = copy.deepcopy(cfg)
    c.sft.train_samples = n
    c.grpo.train_samples = n
    c.seed = seed
    return c


def check_budgets(raw: list[str]) -> list[int]:
    from .config import parse_count

    budgets = [parse_count("--budgets", b, allow_all=False) for b in raw]
    if not budgets:
        raise UsageError("--budgets needs at least one positive integer")
    return sorted(set(budgets))


def apply_preset(cfg: Config) -> None:
    """The small preset: both experiments on 2 CPU cores within about an hour.

    It shrinks sizes that the seed's scripts also take (PREP_TRAIN_SAMPLES=32,
    EVAL_SAMPLES=64, ``train_grpo.py --max-completion-length 128``), so runs made
    by those scripts with the same settings fit into the preset's folders and are reused.
    """
    cfg.sft.prep_train_samples = PRESET["prep_train_samples"]
    cfg.eval.samples = PRESET["eval_samples"]
    cfg.grpo.max_completion_length = PRESET["grpo_max_completion_length"]


PRESET = {"prep_train_samples": 32, "eval_samples": 64, "grpo_max_completion_length": 128,
          "budgets": [32, 64], "traces_budget": 64, "max_attempts": 2, "temperature": 0.8}

"""Trace generation: round-based rejection sampling vs a naive loop, same problems and seed, one run.

Naive: each problem on its own, sampled up to --max-attempts times until one completion is
in format and correct. Rounds: each round samples all still-unsolved problems together
through the batched engine. Prints problems/s of each and the ratio.

    uv run python bench/traces_throughput.py --model-path outputs/preset/compare-train-samples/prep_sft
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from gsm8k_lab import runtime
from gsm8k_lab.config import GenerationSettings, Settings
from gsm8k_lab.data import load_split, train_regions
from gsm8k_lab.generation import generate
from gsm8k_lab.generation.hf import TransformersBackend
from gsm8k_lab.models import load_model, load_tokenizer, resolve_model
from gsm8k_lab.task import build_prompt
from gsm8k_lab.traces import TraceJob, accept, run_rejection_sampling


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-path", help="run directory or model (default: the embedded base model)")
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--max-attempts", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    torch.set_grad_enabled(False)  # generation only (after parsing: a parse-only import keeps autograd)

    ref = resolve_model(args.model_path)
    settings = Settings()
    device = runtime.current(settings).device
    tok = load_tokenizer(ref)
    model = load_model(ref, settings)
    problems = train_regions(load_split("train"), settings).budget(args.problems)  # what the budgets train on
    prompts = [build_prompt(tok, p.question) for p in problems]
    params = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=0)

    t0 = time.perf_counter()
    single = TransformersBackend(model, tok, batch_size=1)
    naive_solved, naive_samples = 0, 0
    for p, prompt in zip(problems, prompts):
        for attempt in range(1, args.max_attempts + 1):
            (comps,) = generate(single, [prompt], replace(params, seed=params.seed + attempt), desc="naive")
            naive_samples += 1
            if accept(comps[0].text, p.gold):
                naive_solved += 1
                break
    t_naive = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        job = TraceJob(problems, prompts, Path(tmp) / "t.jsonl", args.max_attempts, params)
        t0 = time.perf_counter()
        stats = run_rejection_sampling(TransformersBackend(model, tok, batch_size=args.batch_size), job)
        t_rounds = time.perf_counter() - t0

    n = len(problems)
    print(f"\nmodel {ref.run_dir or ref.base} on {device}, {n} train problems, up to {args.max_attempts} attempts, "
          f"temperature {args.temperature}, max_new_tokens {args.max_new_tokens}")
    print(f"{'':<8}{'seconds':>10}{'problems/s':>12}{'solved':>8}{'samples':>9}")
    print(f"{'naive':<8}{t_naive:>10.1f}{n / t_naive:>12.3f}{naive_solved:>8}{naive_samples:>9}")
    rounds_samples = round(stats["avg_attempts_overall"] * n)
    print(f"{'rounds':<8}{t_rounds:>10.1f}{n / t_rounds:>12.3f}{stats['grpo_successes']:>8}{rounds_samples:>9}")
    print(f"speed-up (problems/s, rounds / naive): {t_naive / t_rounds:.2f}x")


if __name__ == "__main__":
    main()

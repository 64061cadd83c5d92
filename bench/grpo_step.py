"""GRPO step time on the CPU: TRL's own rollouts vs the refill engine, at the small preset's geometry.

Each variant trains GRPO from the same model on the same problems for the same number of
steps (2 prompts x 4 completions x 128 tokens per step, fp32 by default) in its own run
directory, in one run, one after the other; then the median step time (TRL's ``step_time``),
the ratio to TRL's default, and the rewards each variant logged:

- ``trl``: TRL's ``model.generate`` on the LoRA-wrapped policy (dynamic KV cache);
- ``trl static cache``: the same with ``cache_implementation="static"``;
- ``refill``: the refill engine through TRL's ``rollout_func`` (LoRA unmerged);
- ``refill merged``: the same with the adapter merged into the weights for each rollout;
- ``refill, beta 0``: refill without the KL term, so without the reference model's forward
  pass (an algorithm change, shown for what it costs, not a default).

    uv run python bench/grpo_step.py [--model-path RUN_OR_MODEL] [--steps 4] [--dtype fp32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

VARIANTS = {
    "trl": {"grpo.rollout_engine": "trl"},
    "trl static cache": {"grpo.rollout_engine": "trl", "grpo.cache_implementation": "static"},
    "refill": {"grpo.rollout_engine": "refill"},
    "refill merged": {"grpo.rollout_engine": "refill-merged"},
    "refill, beta 0": {"grpo.rollout_engine": "refill", "grpo.beta": 0.0},  # no reference forward (DAPO's choice)
}


def main() -> None:
    from gsm8k_lab import runtime
    from gsm8k_lab.config import PRESETS, Settings
    from gsm8k_lab.grpo import train_grpo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-path", help="model or run directory (default: the embedded model)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--only", nargs="*", help="variants to run")
    args = ap.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, changes in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            s = Settings()
            for path, value in PRESETS["small"].items():
                if path.startswith(("grpo.", "eval.")):
                    s.set(path, value)
            s.model.name, s.model.dtype = args.model_path, args.dtype
            s.grpo.train_samples = 2 * args.steps  # 2 prompts a step
            s.eval.samples, s.eval.generation.max_new_tokens = 1, 8  # the evaluation is not what is timed
            s.grpo.save_steps = 10**6
            for path, value in changes.items():
                s.set(path, value)
            runtime.reset()
            out = Path(tmp) / name.replace(" ", "_")
            train_grpo(s, out)
            log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
            steps = [r for r in log if "step_time" in r]
            results[name] = {
                "median_step_s": statistics.median(r["step_time"] for r in steps),
                "reward": statistics.mean(r["reward"] for r in steps),
                "format_exact": statistics.mean(r["rewards/format_exact/mean"] for r in steps),
                "mean_length": statistics.mean(r["completions/mean_length"] for r in steps),
            }
    rt = runtime.current()
    flags = sorted(set(__import__("re").findall(r"avx512_bf16|avx512f|avx2|amx_bf16", open("/proc/cpuinfo").read())))
    base = results.get("trl")
    print(f"\nGRPO, {args.steps} steps of 2 prompts x 4 completions x 128 tokens, {args.dtype} on {rt.device} "
          f"({rt.threads} threads; CPU flags: {' '.join(flags)})")
    print(f"{'':<18}{'median step s':>14}{'ratio':>8}{'reward':>9}{'format_exact':>14}{'mean length':>13}")
    for name, r in results.items():
        ratio = f"{base['median_step_s'] / r['median_step_s']:.2f}x" if base else "-"
        print(f"{name:<18}{r['median_step_s']:>14.1f}{ratio:>8}{r['reward']:>9.3f}{r['format_exact']:>14.3f}"
              f"{r['mean_length']:>13.1f}")


if __name__ == "__main__":
    main()

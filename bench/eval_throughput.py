"""Evaluation throughput: the batched engine vs a naive one-problem-at-a-time `generate` loop.

Same model (the embedded default unless --model-path), same dtype, same 32 test
problems, same greedy decoding, stop rule and max new tokens, in one run.
Prints problems/s and tokens/s of each and the ratio.

    uv run python bench/eval_throughput.py [--problems 32] [--max-new-tokens 256] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import time

import torch

from gsm8k_lab import runtime
from gsm8k_lab.config import GenerationSettings, Settings
from gsm8k_lab.data import build_prompt, load_split
from gsm8k_lab.generation import STOP, generate
from gsm8k_lab.generation.hf import TransformersBackend
from gsm8k_lab.models import load_model, load_tokenizer, resolve_model


def naive(model, tokenizer, prompts, params):
    """What a first script would do: one `generate` call per problem."""
    total = 0
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=params.max_new_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None,
                                 pad_token_id=tokenizer.pad_token_id, stop_strings=list(STOP),
                                 tokenizer=tokenizer)
        total += out.shape[1] - ids["input_ids"].shape[1]
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-path")
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()

    ref = resolve_model(args.model_path)
    settings = Settings()
    settings.model.dtype = args.dtype
    rt = runtime.current(settings)
    dtype, device = rt.dtype, rt.device
    tokenizer = load_tokenizer(ref)
    model = load_model(ref, settings)
    problems = load_split("test")[: args.problems]
    prompts = [build_prompt(tokenizer, p.question) for p in problems]
    params = GenerationSettings(max_new_tokens=args.max_new_tokens)

    engine = TransformersBackend(model, tokenizer, batch_size=args.batch_size)
    t0 = time.perf_counter()
    results = generate(engine, prompts, params, desc="engine")
    t_engine = time.perf_counter() - t0
    tok_engine = sum(c[0].n_tokens for c in results)

    tokenizer.padding_side = "left"
    t0 = time.perf_counter()
    tok_naive = naive(model, tokenizer, prompts, params)
    t_naive = time.perf_counter() - t0

    n = len(prompts)
    print(f"\nmodel {ref.base}, {str(dtype).replace('torch.', '')} on {device}, {n} problems, "
          f"max_new_tokens={args.max_new_tokens}, engine batch {args.batch_size}")
    print(f"{'':<8}{'seconds':>10}{'problems/s':>12}{'tokens':>9}{'tokens/s':>10}")
    print(f"{'naive':<8}{t_naive:>10.1f}{n / t_naive:>12.3f}{tok_naive:>9}{tok_naive / t_naive:>10.1f}")
    print(f"{'engine':<8}{t_engine:>10.1f}{n / t_engine:>12.3f}{tok_engine:>9}{tok_engine / t_engine:>10.1f}")
    print(f"speed-up (problems/s, engine / naive): {t_naive / t_engine:.2f}x")


if __name__ == "__main__":
    main()

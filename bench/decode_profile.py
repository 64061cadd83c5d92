"""Where a decode step of the default CPU engine goes: a profile of the refill loop at batch 64.

Greedy evaluation of the first N test problems (the embedded model unless --model-path) through
``generation/refill.py``, once per dtype, each part timed by a wrapper put on from outside, nothing in
the engine changed (torch's profiler records millions of events here and takes longer to summarise
them than the run): the decoder's forward, within it the attention kernel and the linear layers, the
LM head, sampling, rows leaving (the rows that stay move into the freed slots), rows admitted
(columns shifted right for a longer prompt), the KV buffers' allocation and the rest of the loop
(masks, positions, Python).
Prints each part's seconds and share of the wall time of generation.

    uv run python bench/decode_profile.py [--problems 64] [--max-new-tokens 256] [--dtypes fp32 bf16]
"""

from __future__ import annotations

import argparse
import functools
import re
import time

SECONDS: dict[str, float] = {}


def labelled(name, fn):
    """``fn`` timing its calls into SECONDS[name] (wall clock: torch's CPU ops are synchronous)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SECONDS[name] = SECONDS.get(name, 0.0) + time.perf_counter() - t0

    return wrapper


def profile(model, tokenizer, prompts, max_new_tokens: int) -> tuple[float, int, dict]:
    import torch

    from gsm8k_lab.config import GenerationSettings
    from gsm8k_lab.generation import refill

    SECONDS.clear()
    saved = {name: getattr(refill, name) for name in ("gqa_attention", "_select", "_compact", "_shift_right")}
    for name, label in (("gqa_attention", "attention"), ("_select", "rows leave"),
                        ("_compact", "buffer compaction"), ("_shift_right", "rows admitted")):
        setattr(refill, name, labelled(label, saved[name]))
    sampler_call = refill.Sampler.__call__
    refill.Sampler.__call__ = labelled("sampling", sampler_call)
    allocate = refill.RowCache.allocate
    refill.RowCache.allocate = labelled("allocation", allocate)
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    patched = [decoder, head]
    decoder.forward = labelled("decoder", decoder.forward)
    head.forward = labelled("lm head", head.forward)
    for module in decoder.modules():
        if isinstance(module, torch.nn.Linear):
            module.forward = labelled("linear layers", module.forward)
            patched.append(module)
    gen = GenerationSettings(max_new_tokens=max_new_tokens)
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    jobs = [(i, 0) for i in range(len(prompts))]
    tokens = 0
    try:
        t0 = time.perf_counter()
        for _, _, out, _ in refill.decode(model, encoded, jobs, gen, 64, {tokenizer.eos_token_id}, lambda t: False):
            tokens += len(out)
        seconds = time.perf_counter() - t0
    finally:
        for name, fn in saved.items():
            setattr(refill, name, fn)
        refill.Sampler.__call__ = sampler_call
        refill.RowCache.allocate = allocate
        for module in patched:
            del module.forward
    return seconds, tokens, dict(SECONDS)


def main() -> None:
    import torch

    from gsm8k_lab import runtime
    from gsm8k_lab.config import Settings
    from gsm8k_lab.data import load_split
    from gsm8k_lab.models import load_model, load_tokenizer, resolve_model
    from gsm8k_lab.task import build_prompt

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-path")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"))
    args = ap.parse_args()
    ref = resolve_model(args.model_path)
    tokenizer = load_tokenizer(ref)
    prompts = [build_prompt(tokenizer, p.question) for p in load_split("test")[: args.problems]]
    flags = sorted(set(re.findall(r"avx512_bf16|avx512f|avx2|amx_bf16", open("/proc/cpuinfo").read())))
    for dtype in args.dtypes:
        runtime.reset()
        settings = Settings()
        settings.model.dtype = dtype
        rt = runtime.current(settings)
        model = load_model(ref, settings)
        with torch.no_grad():
            seconds, tokens, total = profile(model, tokenizer, prompts, args.max_new_tokens)
        print(f"\n{dtype}: {len(prompts)} problems x {args.max_new_tokens} tokens at batch 64, {rt.threads} threads, "
              f"CPU flags {' '.join(flags)}, torch {torch.__version__}: {seconds:.1f} s, {tokens} tokens, "
              f"{tokens / seconds:.0f} tokens/s (timed by part)")
        decoder, linears, attention = (total.get(k, 0.0) for k in ("decoder", "linear layers", "attention"))
        parts = [("decoder forward (prefill and decode steps)", decoder),
                 ("  linear layers", linears),
                 ("  attention (scores, softmax, values)", attention),
                 ("  the rest (norms, rotary, KV writes, framework)", decoder - linears - attention),
                 ("lm head", total.get("lm head", 0.0)),
                 ("sampling", total.get("sampling", 0.0)),
                 ("rows leave (the rest move into freed slots)", total.get("rows leave", 0.0)),
                 ("rows admitted (columns shifted right)", total.get("rows admitted", 0.0)),
                 ("buffer compaction", total.get("buffer compaction", 0.0)),
                 ("KV buffers allocated (memory first touched)", total.get("allocation", 0.0))]
        accounted = sum(v for k, v in parts if not k.startswith("  "))
        parts.append(("the loop itself (masks, positions, Python)", seconds - accounted))
        print("| part | s | share |\n| --- | ---: | ---: |")
        for name, value in parts:
            print(f"| {name} | {value:.1f} | {value / seconds:.0%} |")
        del model


if __name__ == "__main__":
    main()

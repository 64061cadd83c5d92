"""GPU check: a randomly initialised model of SmolLM2-135M's shape (no download), then on the GPU

1. evaluation throughput of the transformers backend (batched engine vs one problem at a time),
2. the same through vLLM when it is installed,
3. a few SFT and GRPO steps through the real training code,

and a small table at the end. Run it with ``bash bench/gpu_check.sh``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def versions() -> dict:
    from gsm8k_lab.runs import environment_info

    return environment_info()["versions"]


def build_model(folder: Path, tokenizer_dir: str) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)


def eval_throughput(folder: Path, n: int, max_new: int, batch: int) -> dict:
    import torch

    from gsm8k_lab.data import build_prompt, load_split
    from gsm8k_lab.generation import SamplingParams, TransformersBackend, generate
    from gsm8k_lab.models import load_model, load_tokenizer, resolve_model

    ref = resolve_model(str(folder))
    tok = load_tokenizer(ref)
    model = load_model(ref, torch.bfloat16, "cuda")
    prompts = [build_prompt(tok, p.question) for p in load_split("test")[:n]]
    res = {}
    runs = (("batched", batch, prompts, ("</SOLUTION>",)), ("batched, no stop string", batch, prompts, ()),
            ("one at a time", 1, prompts[:2], ("</SOLUTION>",)))
    for label, bs, ps, stop in runs:
        params = SamplingParams(max_new_tokens=max_new, stop=stop)
        generate(TransformersBackend(model, tok, batch_size=bs), ps[:2], SamplingParams(max_new_tokens=8, stop=stop))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = generate(TransformersBackend(model, tok, batch_size=bs), ps, params, desc=label)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        toks = sum(c[0].n_tokens for c in out)
        res[label] = {"problems": len(ps), "seconds": round(dt, 2), "problems_s": round(len(ps) / dt, 2),
                      "tokens_s": round(toks / dt, 1)}
    return res


def vllm_throughput(folder: Path, n: int, max_new: int) -> dict | str:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "vllm not installed: skipped"
    from gsm8k_lab.vllm_backend import VLLMBackend

    from gsm8k_lab.data import build_prompt, load_split
    from gsm8k_lab.generation import SamplingParams, generate
    from gsm8k_lab.models import resolve_model

    backend = VLLMBackend(resolve_model(str(folder)), "bf16", gpu_memory_utilization=0.5)
    prompts = [build_prompt(backend.tokenizer, p.question) for p in load_split("test")[:n]]
    t0 = time.perf_counter()
    out = generate(backend, prompts, SamplingParams(max_new_tokens=max_new))
    dt = time.perf_counter() - t0
    return {"problems": n, "seconds": round(dt, 2), "problems_s": round(n / dt, 2),
            "tokens_s": round(sum(c[0].n_tokens for c in out) / dt, 1)}


def _cfg():
    from gsm8k_lab.config import Config

    cfg = Config()
    cfg.sft.prep_train_samples = 64
    cfg.sft.prep_epochs = 1
    cfg.sft.per_device_batch_size = 16
    cfg.grpo.train_samples = 8
    cfg.grpo.num_generations = 8
    cfg.grpo.max_completion_length = 128
    cfg.eval.samples = 32
    cfg.eval.max_new_tokens = 128
    cfg.eval.batch_size = 64
    return cfg


def grpo_steps(folder: Path, work: Path) -> dict:
    from gsm8k_lab.grpo import train_grpo

    grpo = train_grpo(_cfg(), work / "grpo", base_model=str(folder))
    log = [json.loads(x) for x in (work / "grpo" / "train_log.jsonl").read_text().splitlines()]
    step_times = sorted(r["step_time"] for r in log if "step_time" in r)
    return {"steps": grpo["train"]["global_steps"], "train_s": grpo["timings"]["train_seconds"],
            "eval_s": grpo["timings"]["eval_seconds"], "completions_per_step": 16,
            "median_step_s": round(step_times[len(step_times) // 2], 2) if step_times else None}


def sft_steps(folder: Path, work: Path) -> dict:
    import torch

    from gsm8k_lab.models import load_model, resolve_model
    from gsm8k_lab.sft import train_sft

    sft = train_sft(_cfg(), "prep", work / "prep", base_model=str(folder))
    merged = load_model(resolve_model(str(work / "prep")), torch.bfloat16, "cuda")
    finite = all(torch.isfinite(p).all().item() for p in merged.parameters())
    return {"steps": sft["train"]["global_steps"], "train_s": sft["timings"]["train_seconds"],
            "eval_s": sft["timings"]["eval_seconds"], "weights_finite": finite}


PARTS = {"eval": lambda f, w: eval_throughput(f, n=128, max_new=128, batch=64),
         "vllm": lambda f, w: vllm_throughput(f, n=128, max_new=128),
         "grpo": grpo_steps, "sft": sft_steps}


def main() -> int:
    """``--part NAME`` runs one part (each in its own process, so a CUDA error in one
    cannot poison the next) and writes ``<work>/<NAME>.json``; ``--part table`` prints them."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--part", required=True, choices=[*PARTS, "setup", "table"])
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    work = Path(args.work)
    folder = work / "smollm2-shape"
    if args.part == "setup":
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device: this check needs a GPU", file=sys.stderr)
            return 2
        info = {"device": torch.cuda.get_device_name(0), "versions": versions()}
        print(json.dumps(info, indent=1), flush=True)
        tok_dir = os.environ.get("TOKENIZER_DIR")
        if not tok_dir or not Path(tok_dir).is_dir():
            from gsm8k_lab.models import embedded_model_dir

            tok_dir = str(embedded_model_dir())
        build_model(folder, tok_dir)
        (work / "setup.json").write_text(json.dumps(info))
        return 0
    if args.part == "table":
        return print_table(work)
    try:
        result = PARTS[args.part](folder, work / "runs")
    except Exception as exc:  # record and go on: the table says what failed
        result = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        print(result, file=sys.stderr)
    (work / f"{args.part}.json").write_text(json.dumps(result))
    return 0


def print_table(work: Path) -> int:
    def load(name):
        f = work / f"{name}.json"
        return json.loads(f.read_text()) if f.is_file() else "not run"

    info = load("setup")
    parts = {k: load(k) for k in PARTS}
    summary = {"setup": info, **parts}
    print("\n" + json.dumps(summary, indent=1))
    device = info["device"] if isinstance(info, dict) else "?"
    print(f"\nGPU check on {device} (random weights of SmolLM2-135M's shape, bf16, 128 new tokens)")
    ev = parts["eval"]
    if isinstance(ev, dict):
        for label, r in ev.items():
            print(f"  eval, transformers, {label:<26}{r['problems_s']:>9} problems/s {r['tokens_s']:>9} tok/s")
    else:
        print(f"  eval, transformers: {ev}")
    v = parts["vllm"]
    print("  eval, vLLM" + (f"{'':<36}{v['problems_s']:>9} problems/s {v['tokens_s']:>9} tok/s"
                            if isinstance(v, dict) else f": {v}"))
    g = parts["grpo"]
    print("  GRPO, 8 prompts x 8 completions x 128 tokens: " + (
        f"{g['steps']} steps in {g['train_s']} s (median step {g['median_step_s']} s)" if isinstance(g, dict) else g))
    t = parts["sft"]
    print("  prep SFT, 64 examples, batch 16: " + (
        f"{t['steps']} steps in {t['train_s']} s, merged weights finite: {t['weights_finite']}"
        if isinstance(t, dict) else t))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

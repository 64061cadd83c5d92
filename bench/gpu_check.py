"""GPU check: a randomly initialised model of SmolLM2-135M's shape (no download), then on the GPU

1. evaluation throughput of the transformers backend (batched engine vs one problem at a time),
2. the same through vLLM when it is installed,
3. a few SFT and GRPO steps through the real training code,

and a small table at the end. Run it with ``bash bench/gpu_check.sh``.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def versions() -> dict:
    out = {}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "pyarrow", "vllm"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "-"
    return out


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
    params = SamplingParams(max_new_tokens=max_new)
    res = {}
    for label, bs, ps in (("batched", batch, prompts), ("one at a time", 1, prompts[:8])):
        generate(TransformersBackend(model, tok, batch_size=bs), ps[:2], SamplingParams(max_new_tokens=8))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = generate(TransformersBackend(model, tok, batch_size=bs), ps, params, desc=label)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        toks = sum(c[0].n_tokens for c in out)
        res[label] = {"problems": len(ps), "seconds": round(dt, 2), "problems_s": round(len(ps) / dt, 2),
                      "tokens_s": round(toks / dt, 1)}
    del model
    torch.cuda.empty_cache()
    return res


def vllm_throughput(folder: Path, n: int, max_new: int) -> dict | str:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "vllm not installed: skipped"
    from gsm8k_lab.data import build_prompt, load_split
    from gsm8k_lab.generation import SamplingParams, generate
    from gsm8k_lab.models import resolve_model
    from gsm8k_lab.vllm_backend import VLLMBackend

    backend = VLLMBackend(resolve_model(str(folder)), "bf16", gpu_memory_utilization=0.5)
    prompts = [build_prompt(backend.tokenizer, p.question) for p in load_split("test")[:n]]
    t0 = time.perf_counter()
    out = generate(backend, prompts, SamplingParams(max_new_tokens=max_new))
    dt = time.perf_counter() - t0
    return {"problems": n, "seconds": round(dt, 2), "problems_s": round(n / dt, 2),
            "tokens_s": round(sum(c[0].n_tokens for c in out) / dt, 1)}


def training(folder: Path, work: Path) -> dict:
    from gsm8k_lab.config import Config
    from gsm8k_lab.grpo import train_grpo
    from gsm8k_lab.sft import train_sft

    cfg = Config()
    cfg.sft.prep_train_samples = 64
    cfg.sft.prep_epochs = 1
    cfg.sft.per_device_batch_size = 16
    cfg.grpo.train_samples = 16
    cfg.grpo.num_generations = 8
    cfg.grpo.max_completion_length = 128
    cfg.eval.samples = 64
    cfg.eval.max_new_tokens = 128
    cfg.eval.batch_size = 64
    out = {}
    sft = train_sft(cfg, "prep", work / "prep", base_model=str(folder))
    out["sft"] = {"steps": sft["train"]["global_steps"], "train_s": sft["timings"]["train_seconds"],
                  "eval_s": sft["timings"]["eval_seconds"]}
    grpo = train_grpo(cfg, work / "grpo", base_model=str(work / "prep"))
    log = [json.loads(x) for x in (work / "grpo" / "train_log.jsonl").read_text().splitlines()]
    step_times = [r["step_time"] for r in log if "step_time" in r]
    out["grpo"] = {"steps": grpo["train"]["global_steps"], "train_s": grpo["timings"]["train_seconds"],
                   "eval_s": grpo["timings"]["eval_seconds"],
                   "median_step_s": round(sorted(step_times)[len(step_times) // 2], 2) if step_times else None,
                   "completions_per_step": 16}
    return out


def main() -> int:
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
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "smollm2-shape"
        build_model(folder, tok_dir)
        info["eval_transformers"] = eval_throughput(folder, n=256, max_new=256, batch=64)
        info["eval_vllm"] = vllm_throughput(folder, n=256, max_new=256)
        info["training"] = training(folder, Path(tmp) / "runs")
    print("\n" + json.dumps(info, indent=1))
    print(f"\nGPU check on {info['device']} (random weights of SmolLM2-135M's shape, bf16)")
    print(f"{'what':<42}{'result':>36}")
    for label, r in info["eval_transformers"].items():
        print(f"{'eval, transformers, ' + label:<42}{r['problems_s']:>10} problems/s {r['tokens_s']:>10} tok/s")
    v = info["eval_vllm"]
    print(f"{'eval, vLLM':<42}" + (f"{v['problems_s']:>10} problems/s {v['tokens_s']:>10} tok/s"
                                   if isinstance(v, dict) else f"{v:>36}"))
    t = info["training"]
    print(f"{'prep SFT, 64 examples, batch 16':<42}{t['sft']['steps']:>6} steps {t['sft']['train_s']:>10} s")
    print(f"{'GRPO, 16 prompts x 8 generations x 128':<42}{t['grpo']['steps']:>6} steps {t['grpo']['train_s']:>10} s"
          f"  (median step {t['grpo']['median_step_s']} s)")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

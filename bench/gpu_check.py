"""GPU check: the pipeline's GPU path on one card, each part in its own process, then a table.

Parts (``--part NAME``; ``bash bench/gpu_check.sh`` runs them all):

- ``setup``: device and versions; builds randomly initialised models of SmolLM2-135M's
  shape and of Qwen2.5-1.5B's shape (no download);
- ``eval``: throughput of the transformers engine (batched, one at a time);
- ``vllm``: the same problems through vLLM, when it is installed;
- ``grpo``: GRPO on the 1.5B-shaped model at the default geometry (8 prompts x 8
  completions per optimizer step, 512 tokens): step time and peak GPU memory;
- ``grpo_vllm``: two GRPO steps with rollouts from a colocated vLLM engine (weights synced out of
  place after each step), then the run's evaluation in a fresh process;
- ``train_eval``: ``train_sft.py --stage prep`` on the small model, whose automatic
  evaluation runs in a fresh process in the same command;
- ``real``: the real embedded SmolLM2-135M-Instruct (from ``$GGUF_DIR`` or the
  installed package) on the first 64 test problems, greedy, 512 tokens, compared
  with the CPU reference in ``docs/gpu_check_cpu_reference.json``.

``GPU_CHECK_SMALL=1`` shrinks every size so the script itself can be checked on a CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMALL = os.environ.get("GPU_CHECK_SMALL") == "1"
REFERENCE = REPO / "docs" / "gpu_check_cpu_reference.json"


def build_model(folder: Path, tokenizer_dir: str, shape: str) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    special = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if SMALL:
        # heads of 64: vLLM's CPU attention takes no smaller ones
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256,
                                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                             head_dim=64, tie_word_embeddings=True, **special))
    elif shape == "smollm2":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=576, intermediate_size=1536,
                                             num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                             max_position_embeddings=8192, rope_theta=100000.0,
                                             tie_word_embeddings=True, **special))
    else:  # Qwen2.5-1.5B's shape (its own vocabulary is larger: 151,936 rows; here the SmolLM2 tokenizer's)
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=1536, intermediate_size=8960,
                                             num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                                             max_position_embeddings=32768, rope_theta=1000000.0,
                                             tie_word_embeddings=True, **special))
    torch.manual_seed(0)
    model.to(torch.bfloat16).save_pretrained(folder)
    tok.save_pretrained(folder)


def _settings(**changes):
    from gsm8k_lab.config import Settings

    s = Settings()
    for path, value in changes.items():
        s.set(path, value)
    return s


def eval_throughput(work: Path) -> dict:

    from gsm8k_lab.config import GenerationSettings
    from gsm8k_lab.data import load_split
    from gsm8k_lab.generation import generate
    from gsm8k_lab.generation.hf import TransformersBackend
    from gsm8k_lab.models import load_model, load_tokenizer, resolve_model
    from gsm8k_lab.task import build_prompt

    ref = resolve_model(str(work / "smollm2-shape"))
    tok = load_tokenizer(ref)
    model = load_model(ref, _settings())
    n, max_new = (8, 16) if SMALL else (128, 128)
    prompts = [build_prompt(tok, p.question) for p in load_split("test")[:n]]
    res = {}
    for label, bs, ps in (("batch 64", 64, prompts), ("one at a time", 1, prompts[:4])):
        gen = GenerationSettings(max_new_tokens=max_new, batch_size=bs)
        generate(TransformersBackend(model, tok), ps[:2], GenerationSettings(max_new_tokens=8, batch_size=bs))
        _sync()
        t0 = time.perf_counter()
        out = generate(TransformersBackend(model, tok), ps, gen, desc=label)
        _sync()
        dt = time.perf_counter() - t0
        res[label] = {"problems": len(ps), "seconds": round(dt, 2), "problems_s": round(len(ps) / dt, 2),
                      "tokens_s": round(sum(c[0].n_tokens for c in out) / dt, 1)}
    return res


def vllm_throughput(work: Path) -> dict | str:
    from gsm8k_lab.generation import vllm_available

    if not vllm_available():
        return "vllm not installed: skipped"
    from gsm8k_lab.config import GenerationSettings
    from gsm8k_lab.data import load_split
    from gsm8k_lab.generation import generate
    from gsm8k_lab.generation.vllm import VLLMBackend
    from gsm8k_lab.models import resolve_model
    from gsm8k_lab.task import build_prompt

    backend = VLLMBackend(resolve_model(str(work / "smollm2-shape")), _settings(**{"vllm.gpu_memory_utilization": 0.5}))
    n, max_new = (8, 16) if SMALL else (128, 128)
    prompts = [build_prompt(backend.tokenizer, p.question) for p in load_split("test")[:n]]
    t0 = time.perf_counter()
    out = generate(backend, prompts, GenerationSettings(max_new_tokens=max_new))
    backend.close()
    dt = time.perf_counter() - t0
    return {"problems": len(prompts), "seconds": round(dt, 2), "problems_s": round(len(prompts) / dt, 2),
            "tokens_s": round(sum(c[0].n_tokens for c in out) / dt, 1)}


def grpo_default_geometry(work: Path) -> dict:
    """One optimizer step of the default GRPO geometry on the 1.5B-shaped model."""
    import torch

    from gsm8k_lab.grpo import train_grpo

    changes = {"model.name": str(work / "qwen1p5b-shape"), "grpo.train_samples": 8, "eval.samples": 8,
               "eval.generation.max_new_tokens": 64}
    if SMALL:
        changes.update({"grpo.num_generations": 2, "grpo.gradient_accumulation_steps": 1,
                        "grpo.rollout.max_new_tokens": 8, "grpo.train_samples": 2, "eval.samples": 2,
                        "eval.generation.max_new_tokens": 8})
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    info = train_grpo(_settings(**changes), work / "runs" / "grpo")
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    log = [json.loads(x) for x in (work / "runs" / "grpo" / "train_log.jsonl").read_text().splitlines()]
    step_times = sorted(r["step_time"] for r in log if "step_time" in r)
    t = info["train"]
    return {"steps": t["global_steps"], "completions_per_step": t["completions_per_step"],
            "prompts_per_step": t["prompts_per_step"], "max_completion_length": t["max_completion_length"],
            "train_s": info["timings"]["train_seconds"], "eval_s": info["timings"]["eval_seconds"],
            "median_step_s": round(step_times[len(step_times) // 2], 2) if step_times else None,
            "peak_gpu_gib": round(peak, 1) if peak is not None else None}


def grpo_vllm_colocate(work: Path) -> dict | str:
    """Two GRPO steps on the small-shaped model with rollouts from a colocated vLLM engine: the engine
    starts beside training, takes the weights after each step (out of place: the frozen base does not
    move) and the run evaluates in a fresh process."""
    import torch

    from gsm8k_lab.generation import vllm_available

    if not vllm_available():
        return "vllm not installed: skipped"
    if not torch.cuda.is_available():
        return "no GPU: TRL's vLLM rollouts need one (skipped)"
    from gsm8k_lab.generation import weight_sync
    from gsm8k_lab.grpo import train_grpo

    syncs = []
    original = weight_sync.merged_weights

    def counted(model, fix_name=lambda n: n):
        syncs.append(1)
        yield from original(model, fix_name)

    weight_sync.merged_weights = counted
    changes = {"model.name": str(work / "smollm2-shape"), "grpo.train_samples": 4, "grpo.num_generations": 4,
               "grpo.per_device_batch_size": 8, "grpo.gradient_accumulation_steps": 1,
               "grpo.rollout.max_new_tokens": 128, "grpo.use_vllm": True, "grpo.vllm_mode": "colocate",
               "grpo.colocate_gpu_memory_utilization": 0.2, "eval.samples": 16,
               "eval.generation.max_new_tokens": 64}
    torch.cuda.reset_peak_memory_stats()
    info = train_grpo(_settings(**changes), work / "runs" / "grpo_vllm")
    log = [json.loads(x) for x in (work / "runs" / "grpo_vllm" / "train_log.jsonl").read_text().splitlines()]
    step_times = sorted(r["step_time"] for r in log if "step_time" in r)
    t = info["train"]
    return {"steps": t["global_steps"], "weight_syncs": len(syncs), "rollout_engine": info["generation"].get(
                "rollout_engine"), "weight_sync": info["generation"].get("weight_sync"),
            "train_s": info["timings"]["train_seconds"], "eval_s": info["timings"]["eval_seconds"],
            "median_step_s": round(step_times[len(step_times) // 2], 2) if step_times else None,
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1), "eval_n": info["eval"]["n"]}


def train_then_eval(work: Path) -> dict:
    """The seed's Step 2 as a user runs it: training, then its evaluation in a fresh process."""
    out = work / "runs" / "prep"
    env = {**os.environ, "PREP_TRAIN_SAMPLES": "8" if SMALL else "64", "EVAL_SAMPLES": "4" if SMALL else "64"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(REPO / "src" / "train_sft.py"), "--stage", "prep", "--output-dir",
                        str(out), "--base-model", str(work / "smollm2-shape"), "--per-device-batch-size", "16",
                        "--eval-max-new-tokens", "16" if SMALL else "128", "--eval-batch-size", "64"],
                       env=env, capture_output=True, text=True)
    if r.returncode:
        return f"failed (exit {r.returncode}): {r.stderr.strip().splitlines()[-1][:200]}"
    info = json.loads((out / "run.json").read_text())
    return {"command_s": round(time.perf_counter() - t0, 1), "train_s": info["timings"]["train_seconds"],
            "eval_s": info["timings"]["eval_seconds"], "eval_backend": info["eval"]["backend"],
            "status": info["status"]}


def real_model(work: Path) -> dict | str:
    """The real SmolLM2-135M-Instruct on the first 64 test problems, against the CPU reference."""
    gguf_dir = os.environ.get("GGUF_DIR")
    env = {**os.environ, "GSM8K_LAB_CACHE": str(work / "cache")}
    if gguf_dir:  # the GGUF carried in parts: convert it in place of the package's copy
        cmd = [sys.executable, "-c", "import sys; from pathlib import Path; from gsm8k_lab import models; "
               "models._embedded_gguf_path = lambda: Path(sys.argv[1]); print(models.embedded_model_dir())",
               str(Path(gguf_dir) / "SmolLM2-135M-Instruct.Q4_1.gguf")]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode:
            return f"conversion failed: {r.stderr.strip().splitlines()[-1][:200]}"
    n = "4" if SMALL else "64"
    r = subprocess.run([sys.executable, str(REPO / "src" / "evaluate_model.py"), "--output-dir", str(work / "real"),
                        "--output-file", "real.csv", "--eval-samples", n, "--max-new-tokens",
                        "16" if SMALL else "512", "--batch-size", "64", "--backend", "transformers"],
                       env=env, capture_output=True, text=True)
    if r.returncode:
        return f"failed (exit {r.returncode}): {r.stderr.strip().splitlines()[-1][:200]}"
    metrics = json.loads((work / "real" / "debug" / "real_metrics.json").read_text())
    result = {k: metrics[k] for k in ("n", "accuracy", "thinking_proportion", "answer_proportion",
                                      "mean_completion_tokens", "backend")}
    if REFERENCE.is_file() and not SMALL:
        ref = json.loads(REFERENCE.read_text())
        import csv

        with open(work / "real" / "debug" / "real.csv", newline="") as fh:
            here = [row["completion"] for row in csv.DictReader(fh)]
        same = sum(a == b for a, b in zip(here, ref["completions"])) / len(here)
        result["cpu_reference"] = {k: ref["metrics"][k] for k in result if k in ref["metrics"]}
        result["identical_completions"] = round(same, 3)
    return result


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


PARTS = {"eval": eval_throughput, "vllm": vllm_throughput, "grpo": grpo_default_geometry,
         "grpo_vllm": grpo_vllm_colocate, "train_eval": train_then_eval, "real": real_model}


def main() -> int:
    """``--part NAME`` runs one part (each in its own process, so a CUDA error in one
    cannot poison the next) and writes ``<work>/<NAME>.json``; ``--part table`` prints them."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--part", required=True, choices=[*PARTS, "setup", "table"])
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    work = Path(args.work)
    if args.part == "setup":
        import torch

        if not torch.cuda.is_available() and not SMALL:
            print("no CUDA device: this check needs a GPU (GPU_CHECK_SMALL=1 checks the script on a CPU)",
                  file=sys.stderr)
            return 2
        from gsm8k_lab.runs import environment_info

        env = environment_info()
        info = {"device": env.get("device"), "python": env["python"], "versions": env["versions"]}
        print(json.dumps(info, indent=1), flush=True)
        tok_dir = os.environ.get("TOKENIZER_DIR")
        if not tok_dir or not Path(tok_dir).is_dir():
            from gsm8k_lab.models import embedded_model_dir

            tok_dir = str(embedded_model_dir())
        build_model(work / "smollm2-shape", tok_dir, "smollm2")
        build_model(work / "qwen1p5b-shape", tok_dir, "qwen1p5b")
        (work / "setup.json").write_text(json.dumps(info))
        return 0
    if args.part == "table":
        return print_table(work)
    try:
        result = PARTS[args.part](work)
    except Exception as exc:  # record and go on: the table says what failed
        result = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        print(result, file=sys.stderr)
    (work / f"{args.part}.json").write_text(json.dumps(result))
    return 0


def print_table(work: Path) -> int:
    def load(name):
        f = work / f"{name}.json"
        return json.loads(f.read_text()) if f.is_file() else "not run"

    summary = {"setup": load("setup"), **{k: load(k) for k in PARTS}}
    print("\n" + json.dumps(summary, indent=1))
    device = summary["setup"]["device"] if isinstance(summary["setup"], dict) else "?"
    print(f"\nGPU check on {device}")
    for name in PARTS:
        print(f"  {name:<11} {json.dumps(summary[name])}")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

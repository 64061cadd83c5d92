"""The training-memory estimate against what a real LoRA training step keeps, on the CPU.

For each dtype and micro-batch, one forward of the model (the embedded SmolLM2-135M-Instruct unless
--model-path) with the pipeline's LoRA adapter and TRL's fused LM head, as the trainers run it; the
bytes autograd saves for backward (tensors counted once per storage, parameters excluded) are the
measured activations. Then a backward and an AdamW step, in a fresh process per row, and the
process's peak resident memory above what it held once the model was loaded (``ru_maxrss``) against
the estimate's total less the weights. Printed side by side with their ratios.

    uv run python bench/training_memory.py [--dtypes fp32 bf16] [--batches 8x200 4x768]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def measure(model_path: str | None, dtype_name: str, batch: int, length: int) -> dict:
    import resource

    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from gsm8k_lab.config import Settings
    from gsm8k_lab.memory import BYTES, ModelShape, estimate_training, forward_saving
    from gsm8k_lab.models import base_path, resolve_model
    from gsm8k_lab.training import lora_config

    torch.manual_seed(0)
    settings = Settings()
    path = base_path(resolve_model(model_path))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    add_fused_lm_head(model)
    model = get_peft_model(model, lora_config(settings))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (batch, length))
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out, saved = forward_saving(model, ids)
    out.loss.backward()
    optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    shape = ModelShape.from_folder(path)
    lora = settings.lora
    m = estimate_training(shape, dtype_name, lora.r, lora.target_modules, batch * length, False,
                          lora_dropout=lora.dropout)
    return {"saved": saved,
            "estimated_saved": m.activations + batch * length * shape.hidden * BYTES[dtype_name],
            "step_peak": peak - loaded, "estimated_step": m.total - m.weights}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-path")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--batches", nargs="+", default=["8x200", "4x768"],
                   help="micro-batches as ROWSxTOKENS (the small preset's GRPO: 8 completions of a ~70-token "
                        "question + 128; SFT's default: 4 examples of up to 768)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:  # a row, in its own process (ru_maxrss is the process's peak)
        dtype_name, shape = args.one.split(":")
        batch, length = map(int, shape.split("x"))
        print(json.dumps(measure(args.model_path, dtype_name, batch, length)))
        return
    mib = 1 << 20
    print("| dtype | micro-batch | saved for backward MiB | estimated | ratio | step peak above the loaded model MiB | "
          "estimated | ratio |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for dtype_name in args.dtypes:
        for batch in args.batches:
            cmd = [sys.executable, __file__, "--one", f"{dtype_name}:{batch}"]
            if args.model_path:
                cmd += ["--model-path", args.model_path]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            print(f"| {dtype_name} | {batch} | {r['saved'] / mib:.0f} | {r['estimated_saved'] / mib:.0f} | "
                  f"{r['saved'] / r['estimated_saved']:.2f} | {r['step_peak'] / mib:.0f} | "
                  f"{r['estimated_step'] / mib:.0f} | {r['step_peak'] / r['estimated_step']:.2f} |", flush=True)


if __name__ == "__main__":
    main()

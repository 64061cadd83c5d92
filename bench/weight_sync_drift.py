"""How far TRL's in-place merge and unmerge move a frozen base, against the out-of-place sync.

Before every vLLM weight sync TRL merges the LoRA adapter into the base weights in place and unmerges
it afterwards; in bf16 the two do not cancel. This runs N such cycles on the model (the embedded
SmolLM2-135M-Instruct unless --model-path) with a LoRA adapter of the project's default shape whose B
weights are drawn at a trained adapter's scale, in each dtype, and prints, side by side, the share of
base weights that changed and the largest change, for TRL's sync and for ``merged_weights``.

    uv run python bench/weight_sync_drift.py [--cycles 128] [--dtypes bf16 fp32] [--b-std 0.01]
"""

from __future__ import annotations

import argparse


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from gsm8k_lab.config import Settings
    from gsm8k_lab.generation.weight_sync import merged_weights
    from gsm8k_lab.models import base_path, resolve_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-path")
    p.add_argument("--cycles", type=int, default=128)
    p.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"])
    p.add_argument("--b-std", type=float, default=0.01, help="std of the adapter's B weights")
    args = p.parse_args()
    settings = Settings()
    path = base_path(resolve_model(args.model_path))
    lora = settings.lora
    print("| dtype | sync | cycles | base weights changed | largest change |\n| --- | --- | ---: | ---: | ---: |")
    for name in args.dtypes:
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[name]
        for sync in ("TRL in place", "out of place"):
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha,
                                                     target_modules=list(lora.target_modules)))
            with torch.no_grad():
                for n, w in model.named_parameters():
                    if "lora_B" in n:
                        w.normal_(0, args.b_std)
            base = {n: w.detach().clone() for n, w in model.named_parameters() if "lora_" not in n}
            for _ in range(args.cycles):
                if sync == "TRL in place":
                    model.merge_adapter()
                    model.unmerge_adapter()
                else:
                    for _ in merged_weights(model):
                        pass
            changed = total = 0
            largest = 0.0
            for n, w in model.named_parameters():
                if n in base:
                    diff = (w.detach().float() - base[n].float()).abs()
                    changed += int((diff > 0).sum())
                    total += diff.numel()
                    largest = max(largest, float(diff.max()))
            print(f"| {name} | {sync} | {args.cycles} | {100 * changed / total:.3f}% | {largest:.2e} |", flush=True)


if __name__ == "__main__":
    main()

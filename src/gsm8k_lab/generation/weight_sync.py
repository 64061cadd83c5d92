"""The weights TRL sends to its vLLM rollout engine, computed without touching the trained model.

TRL syncs a LoRA model by merging the adapter into the base weights in place, reading them, and
unmerging (``merge_adapter``/``unmerge_adapter``: ``W += delta`` then ``W -= delta``). In bf16 the two
are not inverses: each cycle rounds, the frozen base drifts a little every optimizer step, and so does
the KL reference (the same base with the adapter off); the evaluation then applies the adapter to the
clean base, which is not what was trained. Here each adapted weight is ``W + delta`` as a new tensor
(the same rounding as a merge, so vLLM receives the same weights) and ``W`` never changes.
"""

from __future__ import annotations

from collections.abc import Iterator


def merged_weights(model, fix_name=lambda name: name) -> Iterator[tuple[str, object]]:
    """(name as vLLM expects it, tensor) for every weight of a PEFT ``model`` with its active adapters
    applied, out of place; ``fix_name`` is TRL's own renaming (``_fix_param_name_to_vllm``)."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = {name: module for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)}
    for name, param in model.named_parameters():
        if model.prefix in name or "original_module" in name:  # adapter weights; a saved module's frozen copy
            continue
        tensor = param.data
        owner, _, leaf = name.rpartition(".base_layer.")
        layer = layers.get(owner)
        if layer is not None and leaf == "weight" and not layer.merged:
            with torch.no_grad():
                for adapter in (a for a in layer.active_adapters if a in layer.lora_A):
                    # as a merge rounds: the sum in the wider dtype (the adapter's fp32), then once to the base's
                    tensor = (tensor + layer.get_delta_weight(adapter)).to(param.dtype)
        vllm_name = name.removeprefix("base_model.model.").replace(".base_layer", "")
        yield fix_name(vllm_name.replace("modules_to_save.default.", "")), tensor


def sync_out_of_place(trainer) -> bool:
    """Make a GRPO trainer's vLLM weight sync use :func:`merged_weights`; True when it does. Sharded
    training (DeepSpeed ZeRO-3, FSDP), which gathers parameters to merge them, keeps TRL's own sync."""
    generation = getattr(trainer, "vllm_generation", None)
    if generation is None or generation._dist.is_fsdp or generation._dist.is_zero3:
        return False
    from peft import PeftModel

    if not isinstance(generation.model, PeftModel):
        return False
    generation._iter_named_params = lambda: merged_weights(
        generation.model, lambda n: generation._fix_param_name_to_vllm(n, extra_prefixes=["modules_to_save.default."]))
    return True

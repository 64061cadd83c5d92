"""A run's model as one standard PEFT adapter: the exact composition of its chain, and its model card.

A chained run (full SFT or GRPO on top of the prep SFT run) trains a fresh LoRA adapter on base
weights with the earlier adapters merged in, so what it trained is the base plus every stage's
update. A LoRA update is ``B @ A * s`` (``s`` the adapter's scaling, per layer), and a sum of them is
one LoRA adapter of the summed rank: the ``s_i * A_i`` stacked, the ``B_i`` side by side, scaling 1.
Saved that way, ``<run>/model/`` is the trained model for any tool that loads a PEFT adapter on the
base (``PeftModel``, ``AutoPeftModelForCausalLM``, vLLM's LoRA), not only for this project's loader.

That is PEFT's ``add_weighted_adapter(combination_type="cat")`` with weights 1, done here because
PEFT's is exact only in part: it creates the combined adapter in the base layers' dtype (bf16 when
training in bf16, which rounds the stacked matrices), and it copies the first adapter's config,
whose ``use_rslora`` would scale the sum by sqrt(rank) instead of 1. Here the stacking is in fp32
and the config is written for it. An adapter that is not plain LoRA (DoRA, biases, modules saved
whole, ...) is no sum of ``B @ A`` products: :func:`why_not_composable` says so, and the run then
keeps its own adapter alone, as before (its model card and lineage.json say how to load the chain).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

ADAPTER_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
#: Config fields an adapter may set to anything: the stacking reads scaling and placement from the
#: loaded layers, and writes its own rank, alpha, targets and scaling rule.
_FREE = {"r", "lora_alpha", "lora_dropout", "target_modules", "rank_pattern", "alpha_pattern", "use_rslora",
         "layers_to_transform", "layers_pattern", "exclude_modules", "fan_in_fan_out", "init_lora_weights",
         "base_model_name_or_path", "revision", "inference_mode", "task_type", "peft_type", "peft_version",
         "auto_mapping"}
#: Initialisations that leave the base weights alone when an adapter is loaded (PiSSA, OLoRA, LoftQ... change them).
_PLAIN_INIT = (True, False, "gaussian")


class NotComposable(Exception):
    """The chain holds an adapter whose update is not a sum of LoRA products (the message says which)."""


def why_not_composable(configs: list[dict]) -> str | None:
    """What keeps these adapters (their adapter_config.json objects, in chain order) from being stacked
    exactly, or None: each must be LoRA, plainly initialised, with every other field at PEFT's default."""
    from peft import LoraConfig

    defaults = _plain(LoraConfig().to_dict())
    for i, config in enumerate(configs, 1):
        if config.get("peft_type") != "LORA":
            return f"adapter {i} of the chain is {config.get('peft_type')}, not LoRA"
        if config.get("init_lora_weights", True) not in _PLAIN_INIT:
            return f"adapter {i} of the chain was initialised with {config['init_lora_weights']!r}"
        for key, value in _plain(config).items():
            if key not in _FREE and (value != defaults[key] if key in defaults else value):
                return f"adapter {i} of the chain sets {key}={value!r}"
    return None


def compose(model, parents: list[Path], dest: Path) -> list[int]:
    """Write into ``dest`` (adapter_config.json, adapter_model.safetensors) the one adapter that is the
    ``parents`` adapters, in order, and then ``model``'s active adapter; return the rank each contributes.

    The parents are loaded into ``model`` (a PeftModel) for their per-layer scaling, as PEFT computes it
    (rank and alpha patterns, rsLoRA), and removed again; the base weights are not read, so it does not
    matter that they have the parents merged in. Raises NotComposable, having written nothing."""
    import torch
    from safetensors.torch import save_file

    own = model.active_adapter
    configs = [json.loads((p / ADAPTER_FILE).read_text(encoding="utf-8")) for p in parents]
    reason = why_not_composable([*configs, _plain(model.peft_config[own].to_dict())])
    if reason:
        raise NotComposable(reason)
    names = [f"chain_{i:02d}" for i in range(len(parents))]
    loaded = []
    try:
        for name, parent in zip(names, parents):
            model.load_adapter(str(parent), adapter_name=name)
            loaded.append(name)
        stacks, ranks = _stacks(model, [*names, own])
    finally:
        for name in loaded:
            model.delete_adapter(name)
    rank = max(a.shape[0] for _, a, _ in stacks.values())
    tensors = {}
    for key, (embedding, a, b) in stacks.items():
        a = torch.cat([a, a.new_zeros(rank - a.shape[0], a.shape[1])])  # rows past a layer's own rank: zero
        b = torch.cat([b, b.new_zeros(b.shape[0], rank - b.shape[1])], dim=1)
        prefix = f"base_model.model.{key}."
        names_ab = ("lora_embedding_A", "lora_embedding_B") if embedding else ("lora_A.weight", "lora_B.weight")
        tensors[prefix + names_ab[0]], tensors[prefix + names_ab[1]] = a.contiguous(), b.contiguous()
    config = model.peft_config[own]
    config = replace(config, r=rank, lora_alpha=rank, use_rslora=False, rank_pattern={}, alpha_pattern={},
                     target_modules=_targets(model, list(stacks)), layers_to_transform=None, layers_pattern=None,
                     exclude_modules=None, init_lora_weights=True, inference_mode=True,
                     base_model_name_or_path=config.base_model_name_or_path
                     or getattr(model.base_model.model, "name_or_path", None))
    save_file(tensors, str(dest / WEIGHTS_FILE), metadata={"format": "pt"})
    config.save_pretrained(str(dest))
    return ranks


def model_card(dest: Path, lineage: dict, base_text: str, hub_id: str | None, base_path: str,
               ranks: list[int] | None, reason: str | None = None) -> str:
    """``README.md`` of a run's model/: where the base came from, the stages, what the adapter is, how to load it.
    ``ranks`` are what each adapter of the chain contributes to the composed one (None: not composed, ``reason``)."""
    dest = Path(dest).resolve()
    front = ["---", "library_name: peft", *([f"base_model: {hub_id}"] if hub_id else []),
             "tags:", "- lora", "- gsm8k-lab", "---", ""]
    stages = lineage.get("stages") or []
    lines = [*front, f"# {dest.parent.name}", "",
             "A LoRA adapter trained by gsm8k-lab (GSM8K: supervised fine-tuning, GRPO).", "",
             "## Lineage", "", f"- Base model: {base_text}.",
             "- Stages, in order (each trained on the base with the stages before it merged in):", ""]
    lines += [f"  {i}. {_stage_text(s)}{' (this run)' if i == len(stages) else ''}" for i, s in enumerate(stages, 1)]
    parents = lineage.get("parents") or []
    if parents:
        lines += ["", "- `parents/` keeps the adapters this run was trained on top of, as it loaded them ("
                  + ", ".join(f"`{p}/`" for p in parents) + "): a checkpoint in the run's `checkpoints/` holds "
                  "only this run's own adapter and loads on top of them. `lineage.json` records the chain."]
    if ranks is None:
        lines += ["", f"**This adapter is this run's own stage alone**: the chain could not be composed into one "
                  f"adapter exactly ({reason}). Loading it on the base alone leaves out the adapters it was "
                  "trained on top of: merge them first, in order, as gsm8k-lab does:", "", "```python",
                  "from peft import PeftModel", "from transformers import AutoModelForCausalLM", "",
                  f"model = AutoModelForCausalLM.from_pretrained({base_path!r})",
                  "for adapter in " + repr([str(dest / p) for p in parents] + [str(dest)]) + ":",
                  "    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()", "```", ""]
        return "\n".join(lines)
    if len(ranks) > 1:
        parts = " + ".join(f"{r} ({p})" for r, p in zip(ranks, [*(f"`{p}/`" for p in parents), "this run"]))
        lines += ["", f"- This adapter is the exact composition of the chain: the LoRA matrices of the adapters "
                  f"above stacked (rank {sum(ranks)} = {parts}; each one's scaling folded into its A matrices, "
                  "`lora_alpha` = rank), so the base plus this one adapter is the base plus every stage, with "
                  "nothing to merge first."]
    lines += ["", "## Loading", "", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              f"base = AutoModelForCausalLM.from_pretrained({base_path!r})",
              f"model = PeftModel.from_pretrained(base, {str(dest)!r})  # .merge_and_unload(): a plain model",
              f"tokenizer = AutoTokenizer.from_pretrained({str(dest)!r})", "```", "",
              f"`peft.AutoPeftModelForCausalLM.from_pretrained({str(dest)!r})` does the same in one call; vLLM "
              f"serves it as a LoRA adapter (`enable_lora=True`, a `max_lora_rank` of at least {sum(ranks)}).", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _stacks(model, names: list[str]) -> tuple[dict, list[int]]:
    """Per adapted layer of ``model``: (is an embedding, the adapters' ``s * A`` stacked, their ``B`` side by
    side), in fp32 on the CPU; and the largest rank each adapter has in any layer."""
    import torch
    from peft.tuners.lora.layer import Embedding, Linear, LoraLayer

    stacks, ranks = {}, [0] * len(names)
    for key, layer in model.base_model.model.named_modules():
        if not isinstance(layer, LoraLayer):
            continue
        present = [(i, n) for i, n in enumerate(names) if n in layer.lora_A or n in layer.lora_embedding_A]
        if not present:
            continue
        variants = getattr(layer, "lora_variant", {})
        if not isinstance(layer, (Linear, Embedding)) or any(variants.get(n) for _, n in present) or any(
                n in layer.lora_B and layer.lora_B[n].bias is not None for _, n in present):
            raise NotComposable(f"layer {key} holds a {type(layer).__name__} LoRA that is not a plain B @ A product")
        a_parts, b_parts = [], []
        for i, name in present:
            embedding = isinstance(layer, Embedding)
            a = layer.lora_embedding_A[name] if embedding else layer.lora_A[name].weight
            b = layer.lora_embedding_B[name] if embedding else layer.lora_B[name].weight
            a_parts.append(a.detach().to("cpu", torch.float32) * layer.scaling[name])
            b_parts.append(b.detach().to("cpu", torch.float32))
            ranks[i] = max(ranks[i], a.shape[0])
        stacks[key] = (isinstance(layer, Embedding), torch.cat(a_parts), torch.cat(b_parts, dim=1))
    if not stacks:
        raise NotComposable("the model has no LoRA layers")
    return stacks, ranks


def _targets(model, keys: list[str]) -> list[str]:
    """``target_modules`` for the composed adapter: the layer names (``q_proj``...) when they select exactly
    the layers it adapts, else every layer's full path (adapters that differed in layers or exclusions)."""
    from peft import LoraConfig
    from peft.tuners.lora.layer import LoraLayer
    from peft.tuners.tuners_utils import check_target_module_exists

    named = [k for k, _ in model.base_model.model.named_modules() if k]
    layers = {k for k, m in model.base_model.model.named_modules() if isinstance(m, LoraLayer)}
    plain = [k for k in named if not any(k.startswith(layer + ".") for layer in layers)]  # not LoRA's own parts
    short = sorted({k.rsplit(".", 1)[-1] for k in keys})
    probe = LoraConfig(target_modules=short)
    return short if {k for k in plain if check_target_module_exists(probe, k)} == set(keys) else sorted(keys)


def _plain(config: dict) -> dict:
    """A config as its JSON file holds it (sets as sorted lists)."""
    return json.loads(json.dumps(config, default=lambda v: sorted(v) if isinstance(v, (set, frozenset)) else str(v)))


def _stage_text(stage: dict) -> str:
    if stage.get("run"):
        name = f"`{stage['stage']}`" if stage.get("stage") else "a stage"
        return f"{name}, run folder `{stage['run']}`" + (f" ({stage['checkpoint']})" if stage.get("checkpoint") else "")
    return f"an adapter from `{stage.get('adapter')}`"

"""The weights sent to a vLLM rollout engine: TRL's in-place merge and unmerge drift a bf16 base;
the out-of-place sync sends the same weights and leaves the base exactly as it was."""

import pytest


def _lora_model(tiny_model_dir, dtype):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # a trained adapter: not the zero init
    return model


def _base(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def test_trls_in_place_merge_drifts_a_bf16_base_and_the_out_of_place_sync_does_not(tiny_model_dir):
    import torch

    from gsm8k_lab.generation.weight_sync import merged_weights

    model = _lora_model(tiny_model_dir, torch.bfloat16)
    before = _base(model)
    model.merge_adapter()  # what TRL sends: the merged weights, read under vLLM's names
    sent = {n.removeprefix("base_model.model.").replace(".base_layer", ""): p.detach().clone()
            for n, p in model.named_parameters() if "lora_" not in n}
    model.unmerge_adapter()
    for _ in range(31):  # 32 syncs as TRL makes them: one per optimizer step
        model.merge_adapter()
        model.unmerge_adapter()
    drifted = sum(int((p != before[n]).sum()) for n, p in _base(model).items())
    assert drifted > 0  # the frozen base and the KL reference have moved

    model = _lora_model(tiny_model_dir, torch.bfloat16)
    for _ in range(32):
        ours = dict(merged_weights(model))
    assert ours.keys() == sent.keys()
    assert all(torch.equal(ours[n], sent[n]) for n in sent)  # bit for bit what a merge gives vLLM
    assert all(torch.equal(p, before[n]) for n, p in _base(model).items())  # the base untouched


@pytest.mark.parametrize("zero3,fsdp,installed", [(False, False, True), (True, False, False), (False, True, False)])
def test_the_out_of_place_sync_replaces_trls_unless_training_is_sharded(tiny_model_dir, zero3, fsdp, installed):
    import torch

    from gsm8k_lab.generation.weight_sync import sync_out_of_place

    class Dist:
        is_zero3, is_fsdp = zero3, fsdp

    class Generation:
        _dist = Dist()
        model = _lora_model(tiny_model_dir, torch.float32)

        def _iter_named_params(self):
            raise AssertionError("TRL's in-place merge")

        def _fix_param_name_to_vllm(self, name, extra_prefixes=None):
            return name

    class Trainer:
        vllm_generation = Generation()

    trainer = Trainer()
    assert sync_out_of_place(trainer) is installed
    if installed:
        names = [n for n, _ in trainer.vllm_generation._iter_named_params()]
        assert "model.layers.0.self_attn.q_proj.weight" in names and not any("lora_" in n for n in names)

"""The training-memory estimate, against hand computations, and its use for gradient checkpointing."""

from types import SimpleNamespace

import pytest

from gsm8k_lab.memory import BYTES, GiB, ModelShape, estimate_training, forward_saving, needs_checkpointing

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Qwen2.5-1.5B-Instruct's config (the fields the estimate reads)
QWEN_1_5B = SimpleNamespace(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                            num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)
SMOLLM2 = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                          num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True)


def test_parameters_and_lora_by_hand():
    s = ModelShape.from_config(SMOLLM2)
    # per layer: q,o 576x576 each; k,v 576x192 each; 3 MLP 576x1536; two norms
    per_layer = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576
    assert s.parameters == 30 * per_layer + 49152 * 576 + 576 == 134_515_008  # SmolLM2-135M
    # rank 16 on every projection: r * (in + out) each
    per_layer_lora = 16 * (2 * (576 + 576) + 2 * (576 + 192) + 3 * (576 + 1536))
    assert s.lora_parameters(16, ALL) == 30 * per_layer_lora
    assert s.lora_parameters(16, ["q_proj"]) == 30 * 16 * (576 + 576)


def test_estimate_by_hand():
    s = ModelShape(layers=2, hidden=8, intermediate=16, vocab=100, heads=2, kv_heads=1, head_dim=4, parameters=1000)
    lora = s.lora_parameters(2, ["q_proj"])  # 2 layers x 2 x (8 + 8) = 64
    assert lora == 64
    m = estimate_training(s, "bf16", 2, ["q_proj"], tokens_per_micro_batch=10, checkpointing=False, vllm_bytes=7,
                          lora_dropout=0.1)
    assert m.weights == 2 * 1000 + 4 * 64 and m.optimizer == 12 * 64
    # per token and layer: bf16 values (7h + 2kv + 4i), the norms' fp32 temporaries (2 x 3 x 4h), q_proj's dropped
    # fp32 input and mask (5 bytes x h) and its fp32 rank-2 A output
    layer = 2 * (7 * 8 + 2 * 4 + 4 * 16) + 2 * 3 * 4 * 8 + 5 * 8 + 4 * 2
    assert m.activations == 10 * 2 * layer
    assert m.logits == 10 * 100 * (4 + 4) + 10 * 8 * 2 and m.vllm == 7  # a fused-head tile of 10 x 100, in fp32
    assert m.total == m.weights + m.optimizer + m.activations + m.logits + 7
    ckpt = estimate_training(s, "bf16", 2, ["q_proj"], 10, checkpointing=True, lora_dropout=0.1)
    assert ckpt.activations == 10 * (2 * 2 * 8 + layer)  # each layer's input + one layer's set
    # no dropout: no copies of the inputs; fp32: the norms compute in place of their input's dtype
    assert estimate_training(s, "bf16", 2, ["q_proj"], 10, False).activations == 10 * 2 * (layer - 5 * 8)
    assert estimate_training(s, "fp32", 2, ["q_proj"], 10, False, lora_dropout=0.1).activations == \
        10 * 2 * (4 * (7 * 8 + 2 * 4 + 4 * 16) + 5 * 8 + 4 * 2)


def test_the_fused_lm_head_holds_one_tile_not_the_whole_logits():
    """TRL projects at most 4,096 tokens x 32,768 vocabulary entries at a time: a 150k vocabulary over 12k tokens
    costs one tile (about 1 GiB), not the 17 GiB of whole bf16 logits and their fp32 log-softmax and gradient."""
    s = ModelShape.from_config(QWEN_1_5B)
    m = estimate_training(s, "bf16", 16, ALL, 16 * 759, False)
    assert m.logits == 4096 * 32768 * 8 + 16 * 759 * 1536 * 2
    assert m.logits < 1.1 * GiB


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_the_activation_estimate_matches_what_autograd_keeps(tiny_model_dir, dtype):
    """Within 15% of the bytes autograd saves for backward in a real forward of the tiny model with the pipeline's
    LoRA (dropout on, fp32 adapters) and TRL's fused LM head; the same check on SmolLM2-135M is
    bench/training_memory.py."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from gsm8k_lab.config import Settings
    from gsm8k_lab.training import lora_config

    torch.manual_seed(0)
    settings = Settings()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype={"fp32": torch.float32,
                                                                        "bf16": torch.bfloat16}[dtype])
    add_fused_lm_head(model)
    model = get_peft_model(model, lora_config(settings))
    model.train()
    batch, length = 4, 128
    ids = torch.randint(0, model.config.vocab_size, (batch, length))
    _, measured = forward_saving(model, ids)
    shape = ModelShape.from_folder(tiny_model_dir)
    lora = settings.lora
    m = estimate_training(shape, dtype, lora.r, lora.target_modules, batch * length, False, lora_dropout=lora.dropout)
    estimated = m.activations + batch * length * shape.hidden * BYTES[dtype]  # + the hidden states the head keeps
    assert 1 / 1.15 < measured / estimated < 1.15, (measured, estimated)


def test_grpo_at_gpu_defaults_on_a_1_5b_model_needs_checkpointing_on_80_gb():
    """The defaults: 16 completions a micro-batch, each the longest prompt of a 1024-problem budget
    (247 tokens with SmolLM2's chat template) + 512 completion tokens; a colocated vLLM with 0.3
    of the device."""
    s = ModelShape.from_config(QWEN_1_5B)
    tokens, device = 16 * (247 + 512), 80 * GiB
    plain = estimate_training(s, "bf16", 16, ALL, tokens, False, int(0.3 * device), lora_dropout=0.05)
    assert plain.total > 0.9 * device
    assert needs_checkpointing(s, "bf16", 16, ALL, tokens, device, int(0.3 * device), lora_dropout=0.05)
    assert estimate_training(s, "bf16", 16, ALL, tokens, True, int(0.3 * device), lora_dropout=0.05).total \
        < 0.9 * device
    # SFT at its defaults (4 examples of at most 768 tokens) fits without it
    assert not needs_checkpointing(s, "bf16", 16, ALL, 4 * 768, device, lora_dropout=0.05)


def test_grpo_in_server_mode_on_a_1_5b_model_keeps_checkpointing_on():
    """With the rollouts on a vLLM server, the training GPU holds no engine, and a step without checkpointing
    needs about 75 of 80 GiB (activations with LoRA's dropout copies and the norms' fp32 temporaries):
    checkpointing stays on unless the estimate leaves the headroom backward's temporaries need (FITS)."""
    s = ModelShape.from_config(QWEN_1_5B)
    tokens, device = 16 * (247 + 512), 80 * GiB
    plain = estimate_training(s, "bf16", 16, ALL, tokens, False, lora_dropout=0.05)
    assert 70 * GiB < plain.total < 80 * GiB
    assert needs_checkpointing(s, "bf16", 16, ALL, tokens, device, lora_dropout=0.05)
    # a short rollout (64 tokens) leaves real headroom: no checkpointing
    assert not needs_checkpointing(s, "bf16", 16, ALL, 16 * (247 + 64), device, lora_dropout=0.05)


def test_training_turns_checkpointing_on_where_a_gpu_step_would_not_fit(tmp_path, monkeypatch, capsys):
    """Unset, gradient checkpointing follows the estimate on a GPU (a 1.5B model, GRPO's default micro-batch,
    on 80 GB with a colocated engine) and stays off on a CPU; a setting always wins."""
    from transformers import Qwen2Config

    from gsm8k_lab import runtime, training
    from gsm8k_lab.config import Settings
    from gsm8k_lab.models import ModelRef

    Qwen2Config(**vars(QWEN_1_5B)).save_pretrained(tmp_path)  # the shape only: no weights are read
    s = Settings()
    s.grpo.use_vllm = True
    job = training.TrainingJob(stage="grpo", output_dir=tmp_path / "run", parent=ModelRef(str(tmp_path)),
                               build_trainer=None, data={}, train=s.grpo,
                               micro_batch_tokens=lambda tok: 16 * (247 + 512))
    gpu = runtime.Runtime("cuda", "bf16", 1, 1)
    monkeypatch.setattr("torch.cuda.get_device_properties", lambda i: SimpleNamespace(total_memory=80 * GiB))
    estimate = training.training_memory(s, job, gpu, tokenizer=None)
    assert estimate.checkpointing and estimate.vllm == int(0.3 * 80 * GiB)
    assert "gradient checkpointing on" in capsys.readouterr().out
    assert not training.training_memory(s, job, runtime.Runtime("cpu", "bf16", 2, 1), None).checkpointing
    s.grpo.gradient_checkpointing = False
    assert not training.training_memory(s, job, gpu, None).checkpointing

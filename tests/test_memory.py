"""The training-memory estimate, against hand computations, and its use for gradient checkpointing."""

from types import SimpleNamespace

from gsm8k_lab.memory import GiB, ModelShape, estimate_training, needs_checkpointing

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
    m = estimate_training(s, "bf16", 2, ["q_proj"], tokens_per_micro_batch=10, checkpointing=False, vllm_bytes=7)
    assert m.weights == 2 * 1000 + 4 * 64 and m.optimizer == 12 * 64
    assert m.activations == 2 * 10 * 2 * (10 * 8 + 4 * 16)  # bytes x tokens x layers x (10h + 4i)
    assert m.logits == 10 * 100 * (2 + 4 + 4) and m.vllm == 7
    assert m.total == m.weights + m.optimizer + m.activations + m.logits + 7
    ckpt = estimate_training(s, "bf16", 2, ["q_proj"], 10, checkpointing=True)
    assert ckpt.activations == 2 * 10 * (2 * 8 + 10 * 8 + 4 * 16)  # each layer's input + one layer's set


def test_grpo_at_gpu_defaults_on_a_1_5b_model_needs_checkpointing_on_80_gb():
    """The defaults: 16 completions a micro-batch, each the longest prompt of a 1024-problem budget
    (247 tokens with SmolLM2's chat template) + 512 completion tokens; a colocated vLLM with 0.3
    of the device."""
    s = ModelShape.from_config(QWEN_1_5B)
    tokens, device = 16 * (247 + 512), 80 * GiB
    plain = estimate_training(s, "bf16", 16, ALL, tokens, False, int(0.3 * device))
    assert plain.total > 0.9 * device
    assert needs_checkpointing(s, "bf16", 16, ALL, tokens, device, int(0.3 * device))
    assert estimate_training(s, "bf16", 16, ALL, tokens, True, int(0.3 * device)).total < 0.9 * device
    # SFT at its defaults (4 examples of at most 768 tokens) fits without it
    assert not needs_checkpointing(s, "bf16", 16, ALL, 4 * 768, device)


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

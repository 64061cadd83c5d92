"""How much memory a LoRA training step needs, estimated from the model's config before it loads.

Printed before SFT and GRPO start, and used to turn gradient checkpointing on by
default on a GPU where the step would not fit without it. The parts:

- **weights**: every parameter in the run's dtype (LoRA's own in fp32);
- **optimizer**: AdamW's two fp32 moments and the fp32 gradient, for LoRA's parameters only;
- **activations**: what backward needs per token of a micro-batch. Without checkpointing,
  per layer about ``10 h + 4 i`` values of the run's dtype (the attention block's inputs,
  projections and output, the gated MLP's three ``i``-wide tensors and one more; attention
  scores are not stored by SDPA/flash kernels), for ``h`` the hidden and ``i`` the MLP
  size (after Korthikanti et al., 2022, for a gated MLP). With checkpointing, each layer's
  input plus one layer's full set, recomputed during backward;
- **logits**: the vocabulary-wide logits of the micro-batch in the run's dtype and their
  fp32 log-softmax and gradient (TRL computes per-token log-probabilities from them);
- **vLLM**: the share of the device a colocated rollout engine reserves.

Generation (evaluation, traces) needs the weights and a KV cache of
:meth:`ModelShape.kv_bytes_per_token` per position of every row.

An estimate, not a measurement: it is meant to say which side of the device's memory a
configuration falls on, and which setting moves it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

#: One gibibyte: every memory figure the project prints is in GiB.
GiB = 1 << 30
#: Bytes of one value of each dtype.
BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
#: Checkpointing is switched on when the estimate exceeds this share of the device's memory.
FITS = 0.9


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    parameters: int

    @classmethod
    def from_config(cls, config) -> ModelShape:
        c = getattr(config, "text_config", None) or config
        heads = c.num_attention_heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        kv_heads = getattr(c, "num_key_value_heads", None) or heads
        h, i, n, v = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
        per_layer = h * heads * head_dim * 2 + h * kv_heads * head_dim * 2 + 3 * h * i + 2 * h
        tied = getattr(c, "tie_word_embeddings", False)
        return cls(n, h, i, v, heads, kv_heads, head_dim, n * per_layer + v * h * (1 if tied else 2) + h)

    @classmethod
    def from_folder(cls, folder: str | Path) -> ModelShape:
        from transformers import AutoConfig

        return cls.from_config(AutoConfig.from_pretrained(str(folder)))

    def lora_parameters(self, r: int, targets: list[str]) -> int:
        """Parameters of rank-``r`` adapters on the named projections of every layer."""
        h, i = self.hidden, self.intermediate
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        shapes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                  "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
        return self.layers * sum(r * (a + b) for name, (a, b) in shapes.items() if name in targets)

    def kv_bytes_per_token(self, dtype_name: str) -> int:
        """Keys and values of every layer for one token (what a KV cache holds per position)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * BYTES[dtype_name]


@dataclass(frozen=True)
class TrainingMemory:
    weights: int
    optimizer: int
    activations: int
    logits: int
    vllm: int
    tokens_per_micro_batch: int
    checkpointing: bool

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.activations + self.logits + self.vllm

    def describe(self) -> str:
        parts = ", ".join(f"{k} {getattr(self, k) / GiB:.2f}" for k in ("weights", "optimizer", "activations",
                                                                         "logits", "vllm"))
        return (f"{self.total / GiB:.1f} GiB ({parts}; {self.tokens_per_micro_batch} tokens a micro-batch, "
                f"gradient checkpointing {'on' if self.checkpointing else 'off'})")

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def estimate_training(shape: ModelShape, dtype_name: str, lora_r: int, lora_targets: list[str],
                      tokens_per_micro_batch: int, checkpointing: bool, vllm_bytes: int = 0) -> TrainingMemory:
    """The peak memory of one training step (see the module docstring for each part)."""
    b = BYTES[dtype_name]
    lora = shape.lora_parameters(lora_r, lora_targets)
    per_token_layer = 10 * shape.hidden + 4 * shape.intermediate
    t, n = tokens_per_micro_batch, shape.layers
    if checkpointing:
        activations = b * t * (n * shape.hidden + per_token_layer)
    else:
        activations = b * t * n * per_token_layer
    logits = t * shape.vocab * (b + 4 + 4)
    return TrainingMemory(weights=b * shape.parameters + 4 * lora, optimizer=3 * 4 * lora, activations=activations,
                          logits=logits, vllm=vllm_bytes, tokens_per_micro_batch=t, checkpointing=checkpointing)


def needs_checkpointing(shape: ModelShape, dtype_name: str, lora_r: int, lora_targets: list[str],
                        tokens_per_micro_batch: int, device_bytes: int, vllm_bytes: int = 0) -> bool:
    """Whether the step fits only with gradient checkpointing (the estimate without it exceeds
    :data:`FITS` of the device's memory)."""
    plain = estimate_training(shape, dtype_name, lora_r, lora_targets, tokens_per_micro_batch, False, vllm_bytes)
    return plain.total > FITS * device_bytes

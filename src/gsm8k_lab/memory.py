"""How much memory a LoRA training step needs, estimated from the model's config before it loads.

Printed before SFT and GRPO start, and used to turn gradient checkpointing on by
default on a GPU where the step would not fit without it. The parts:

- **weights**: every parameter in the run's dtype (LoRA's own in fp32);
- **optimizer**: AdamW's two fp32 moments and the fp32 gradient, for LoRA's parameters only;
- **activations**: what backward keeps per token of a micro-batch, per layer (in bytes, ``b`` the
  run dtype's): ``b (7 h + 2 kv + 4 i)`` for the values in the run's dtype (the norms' inputs and
  outputs, q, k, v and the attention output, the gated MLP's three ``i``-wide tensors and the
  down projection's input; SDPA/flash kernels store no attention scores), for ``h`` the hidden,
  ``kv`` the key/value width and ``i`` the MLP size; in bf16/fp16 the two RMSNorms' fp32
  temporaries, ``2 x 3 x 4 h``; LoRA's own: with dropout, each adapted module's dropped input in
  fp32 and its mask (``5`` bytes per input feature, q, k and v each keeping their own copy) and
  the rank-``r`` fp32 output of every ``A``. With checkpointing, each layer's input plus one
  layer's full set, recomputed during backward. Checked against the tensors autograd saves in a
  real forward of a LoRA model (tests/test_memory.py, bench/training_memory.py): within 15% on
  the tiny test model and 5% on SmolLM2-135M, in fp32 and bf16;
- **logits**: TRL's trainers patch a fused LM head in (``trl.trainer.utils.add_fused_lm_head``):
  the vocabulary-wide logits are never stored whole, only a tile of at most 4,096 tokens by
  32,768 vocabulary entries at a time, in fp32, with its gradient (``8`` bytes per entry), and
  the last hidden states it projects;
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
#: Checkpointing is switched on when the estimate exceeds this share of the device's memory. The
#: estimate counts what a step keeps for backward (within 5% of what autograd saved, measured); the
#: step's peak adds backward's temporaries: 1.6-2.0x the estimate in a CPU process's resident memory
#: (bench/training_memory.py), so a step trains without checkpointing only with that headroom.
FITS = 0.6
#: The tile of TRL's fused LM head (trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE and
#: trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE): tokens and vocabulary entries projected at a time.
FUSED_TOKENS, FUSED_VOCAB = 4096, 32768


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
                      tokens_per_micro_batch: int, checkpointing: bool, vllm_bytes: int = 0,
                      lora_dropout: float = 0.0) -> TrainingMemory:
    """The peak memory of one training step (see the module docstring for each part)."""
    b = BYTES[dtype_name]
    lora = shape.lora_parameters(lora_r, lora_targets)
    t, n = tokens_per_micro_batch, shape.layers
    layer = activation_bytes_per_token_layer(shape, dtype_name, lora_r, lora_targets, lora_dropout)
    if checkpointing:
        activations = t * (n * b * shape.hidden + layer)
    else:
        activations = t * n * layer
    logits = min(t, FUSED_TOKENS) * min(shape.vocab, FUSED_VOCAB) * (4 + 4) + t * shape.hidden * b
    return TrainingMemory(weights=b * shape.parameters + 4 * lora, optimizer=3 * 4 * lora, activations=activations,
                          logits=logits, vllm=vllm_bytes, tokens_per_micro_batch=t, checkpointing=checkpointing)


def activation_bytes_per_token_layer(shape: ModelShape, dtype_name: str, lora_r: int, lora_targets: list[str],
                                     lora_dropout: float) -> int:
    """Bytes backward keeps per token in one decoder layer, without checkpointing (module docstring)."""
    b = BYTES[dtype_name]
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_heads * shape.head_dim
    values = b * (7 * h + 2 * kv + 4 * i)
    norms = 0 if b == 4 else 2 * 3 * 4 * h  # RMSNorm computes in fp32
    inputs = {"q_proj": h, "k_proj": h, "v_proj": h, "o_proj": shape.heads * shape.head_dim,
              "gate_proj": h, "up_proj": h, "down_proj": i}
    adapted = [name for name in inputs if name in lora_targets]
    dropped = 5 * sum(inputs[name] for name in adapted) if lora_dropout > 0 else 0
    return values + norms + dropped + 4 * lora_r * len(adapted)


def forward_saving(model, input_ids):
    """A training forward of ``model`` (TRL's fused LM head: ``fused_lm_head=True``) on ``input_ids`` as its own
    labels, and the bytes autograd saved for backward: each storage counted once, parameters left out. What
    the activations estimate is checked against (tests/test_memory.py, bench/training_memory.py)."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = max(saved.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        out = model(input_ids=input_ids, labels=input_ids, fused_lm_head=True)
    return out, sum(n for ptr, n in saved.items() if ptr not in params)


def needs_checkpointing(shape: ModelShape, dtype_name: str, lora_r: int, lora_targets: list[str],
                        tokens_per_micro_batch: int, device_bytes: int, vllm_bytes: int = 0,
                        lora_dropout: float = 0.0, fits: float = FITS) -> bool:
    """Whether the step fits only with gradient checkpointing (the estimate without it exceeds
    ``fits`` of the device's memory, :data:`FITS` by default)."""
    plain = estimate_training(shape, dtype_name, lora_r, lora_targets, tokens_per_micro_batch, False, vllm_bytes,
                              lora_dropout)
    return plain.total > fits * device_bytes

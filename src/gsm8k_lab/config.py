"""Every default of the pipeline in one place (the seed's ``tr_config.py``).

Precedence, lowest to highest: the defaults below, environment variables
(``TRAIN_SAMPLES``, ``PREP_TRAIN_SAMPLES``, ``EVAL_SAMPLES``, ``NUM_GENERATIONS``,
``OUTPUT_DIR``, ``MODEL_NAME``), then command-line flags. Each section is a
dataclass whose fields carry a default and a help string, so ``run.json`` can
record the resolved configuration as it was used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# --------------------------------------------------------------------------
# The answer format the model is taught. One place defines it.
# --------------------------------------------------------------------------
REASONING_START = "<start_working_out>"
REASONING_END = "<end_working_out>"
SOLUTION_START = "<SOLUTION>"
SOLUTION_END = "</SOLUTION>"

SYSTEM_PROMPT = (
    "You are given a math problem. Think about the problem and show your working "
    f"between {REASONING_START} and {REASONING_END}. "
    f"Then give the final numerical answer between {SOLUTION_START} and {SOLUTION_END}."
)

#: Budgets of Experiment 1 (training problems per run).
EXPERIMENT_BUDGETS = (256, 512, 1024, 2048)


class UsageError(ValueError):
    """A bad input from the user: reported as one line, exit code 2."""


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class ModelSettings:
    name: str | None = _f(
        None,
        "Hugging Face hub id or local folder; None means the embedded SmolLM2-135M-Instruct.",
    )
    dtype: str = _f("auto", "auto (bf16 where the device supports it, else fp32), bf16, fp16, fp32.")
    attn_implementation: str | None = _f(
        None, "Attention kernel (sdpa, flash_attention_2, eager); None lets transformers choose."
    )


@dataclass
class LoraSettings:
    r: int = _f(16, "LoRA rank.")
    alpha: int = _f(32, "LoRA alpha (scale = alpha / r).")
    dropout: float = _f(0.05, "Dropout on the LoRA branch.")
    target_modules: list = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "Linear layers that get an adapter.",
    )


@dataclass
class SFTSettings:
    prep_train_samples: int = _f(64, "Problems in the prep stage (PREP_TRAIN_SAMPLES).")
    train_samples: int | None = _f(
        1024, "Problems in the full stage (TRAIN_SAMPLES); None means the whole split."
    )
    epochs: float = _f(1.0, "Passes over the training problems.")
    prep_epochs: float = _f(2.0, "Passes in the prep stage (few problems, so more passes).")
    learning_rate: float = _f(2e-4, "Peak learning rate (LoRA).")
    per_device_batch_size: int = _f(4, "Examples per device per step.")
    gradient_accumulation_steps: int = _f(1, "Micro-batches per optimizer step.")
    max_length: int = _f(768, "Longest tokenised example (prompt + target); longer ones are cut.")
    warmup_ratio: float = _f(0.05, "Share of steps used for linear warm-up.")
    lr_scheduler: str = _f("cosine", "Learning-rate schedule.")
    save_steps: int = _f(50, "Checkpoint every N optimizer steps (resume point).")
    logging_steps: int = _f(5, "Log training curves every N steps.")
    gradient_checkpointing: bool = _f(False, "Trade compute for memory.")


@dataclass
class GRPOSettings:
    train_samples: int | None = _f(1024, "Problems (TRAIN_SAMPLES); None means the whole split.")
    num_generations: int = _f(4, "Completions per prompt, the GRPO group (NUM_GENERATIONS).")
    per_device_batch_size: int | None = _f(
        None, "Completions per device per step (None: two prompts' groups); "
        "times processes and accumulation it must be a multiple of num_generations."
    )
    gradient_accumulation_steps: int = _f(1, "Micro-batches per optimizer step.")
    epochs: float = _f(1.0, "Passes over the training problems.")
    learning_rate: float = _f(2e-5, "Peak learning rate (LoRA).")
    beta: float = _f(
        0.04, "KL coefficient against the reference model (the adapter switched off); 0 disables it."
    )
    loss_type: str = _f("dapo", "TRL loss: grpo, dapo, dr_grpo, bnpo.")
    temperature: float = _f(1.0, "Sampling temperature of the rollouts.")
    max_completion_length: int = _f(256, "Longest completion in tokens.")
    warmup_ratio: float = _f(0.05, "Share of steps used for linear warm-up.")
    lr_scheduler: str = _f("cosine", "Learning-rate schedule.")
    save_steps: int = _f(25, "Checkpoint every N optimizer steps (resume point).")
    logging_steps: int = _f(1, "Log training curves every N steps.")
    use_vllm: bool = _f(False, "Roll out with vLLM (TRL use_vllm).")
    vllm_mode: str = _f("colocate", "colocate (one GPU) or server (trl vllm-serve).")
    vllm_gpu_memory_utilization: float = _f(0.3, "GPU memory share for vLLM in colocate mode.")
    gradient_checkpointing: bool = _f(False, "Trade compute for memory.")


@dataclass
class EvalSettings:
    samples: int | None = _f(512, "Test problems (EVAL_SAMPLES); None means all 1,319.")
    batch_size: int = _f(16, "Prompts generated together.")
    max_new_tokens: int = _f(512, "Generation budget per completion.")
    temperature: float = _f(0.0, "0 means greedy decoding.")
    top_p: float = _f(1.0, "Nucleus sampling (when temperature > 0).")
    top_k: int = _f(0, "Top-k sampling, 0 disables (when temperature > 0).")
    min_p: float = _f(0.0, "Min-p sampling, 0 disables (when temperature > 0).")
    seed: int = _f(0, "Sampling seed.")
    backend: str = _f("auto", "Generation backend: auto, transformers, vllm.")


@dataclass
class Config:
    output_root: str = _f("outputs", "Root for default run directories (OUTPUT_DIR).")
    seed: int = _f(42, "Training seed.")
    data_source: str = _f(
        "bundled", "bundled (the shipped GSM8K copy), hub (openai/gsm8k main), or a JSONL path."
    )
    data_seed: int = _f(
        1234, "Seed of the one shuffle from which every budget takes its first N problems."
    )
    model: ModelSettings = field(default_factory=ModelSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    sft: SFTSettings = field(default_factory=SFTSettings)
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    report_to: str = _f("none", "Tracking backend for TRL (none, tensorboard, wandb, trackio).")

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------
# Environment variables
# --------------------------------------------------------------------------
def parse_count(name: str, raw: str, *, allow_all: bool = True) -> int | None:
    """Parse a sample count: a positive integer, or ``all`` (returned as None)."""
    text = str(raw).strip()
    if allow_all and text.lower() == "all":
        return None
    expected = "a positive integer" + (" or 'all'" if allow_all else "")
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name} must be {expected}, got {raw!r}") from None
    if value <= 0:
        raise UsageError(f"{name} must be {expected}, got {raw!r}")
    return value


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Defaults overridden by the pipeline's environment variables."""
    env = os.environ if env is None else env
    cfg = Config()
    if env.get("OUTPUT_DIR"):
        cfg.output_root = env["OUTPUT_DIR"]
    if env.get("MODEL_NAME"):
        cfg.model.name = env["MODEL_NAME"]
    if "TRAIN_SAMPLES" in env:
        n = parse_count("TRAIN_SAMPLES", env["TRAIN_SAMPLES"])
        cfg.sft.train_samples = n
        cfg.grpo.train_samples = n
    if "PREP_TRAIN_SAMPLES" in env:
        cfg.sft.prep_train_samples = parse_count(
            "PREP_TRAIN_SAMPLES", env["PREP_TRAIN_SAMPLES"], allow_all=False
        )
    if "EVAL_SAMPLES" in env:
        cfg.eval.samples = parse_count("EVAL_SAMPLES", env["EVAL_SAMPLES"])
    if "NUM_GENERATIONS" in env:
        n = parse_count("NUM_GENERATIONS", env["NUM_GENERATIONS"], allow_all=False)
        if n < 2:
            raise UsageError(
                f"NUM_GENERATIONS must be at least 2 (GRPO compares completions within a group), got {n}"
            )
        cfg.grpo.num_generations = n
    return cfg


def check_sample_count(name: str, n: int | None, available: int) -> int:
    """Resolve a count against a split: None means all; more than the split is refused."""
    if n is None:
        return available
    if n > available:
        raise UsageError(
            f"{name}={n} is larger than the split ({available} problems); "
            f"use at most {available} or 'all'"
        )
    return n

"""GRPO with TRL's ``GRPOTrainer``, a LoRA adapter and the rewards of :mod:`gsm8k_lab.rewards`.

Prompts are the evaluation prompts (chat template + ``<start_working_out>``),
the ``TRAIN_SAMPLES`` problems of the shared budget shuffle, so GRPO and SFT at
the same budget see the same problems. Each step samples ``NUM_GENERATIONS``
completions per prompt; the per-device batch counts completions, so it must be
a multiple of the group size (default: two prompts per step and device).
"""

from __future__ import annotations

from pathlib import Path

from .config import Config, UsageError, check_sample_count
from .data import build_prompt, load_split, take_budget
from .rewards import REWARD_FUNCTIONS


def train_grpo(cfg: Config, output_dir: str | Path, base_model: str | None = None,
               resume: bool = False, overwrite: bool = False) -> dict:
    g = cfg.grpo
    if g.num_generations < 2:
        raise UsageError(f"NUM_GENERATIONS must be at least 2 (GRPO compares completions within a group), "
                         f"got {g.num_generations}")
    batch = per_device_batch(g.per_device_batch_size, g.num_generations)
    processes = int(_env_int("WORLD_SIZE", 1))
    global_batch = batch * processes * g.gradient_accumulation_steps
    if global_batch % g.num_generations:
        raise UsageError(
            f"NUM_GENERATIONS={g.num_generations} does not divide the GRPO batch of {global_batch} completions "
            f"({batch} per device x {processes} processes x {g.gradient_accumulation_steps} accumulation); "
            f"use a batch size that is a multiple of {g.num_generations}"
        )
    if g.loss_type not in ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo"):
        raise UsageError(f"GRPO loss type must be grpo, dapo, dr_grpo, bnpo, cispo or sapo, got {g.loss_type!r}")
    train = load_split("train", cfg.data_source)
    n = check_sample_count("TRAIN_SAMPLES", g.train_samples, len(train))
    problems = take_budget(train, n, cfg.data_seed)
    from .training import TrainingJob, lora_config, run_training  # heavy imports after validation

    def build_trainer(model, tokenizer, common: dict, callbacks: list):
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        dataset = Dataset.from_list([
            {"prompt": build_prompt(tokenizer, p.question), "gold": p.gold} for p in problems
        ])
        tokenizer.padding_side = "left"
        args = GRPOConfig(
            **common,
            num_train_epochs=g.epochs,
            learning_rate=g.learning_rate,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=g.gradient_accumulation_steps,
            num_generations=g.num_generations,
            max_completion_length=g.max_completion_length,
            temperature=g.temperature,
            beta=g.beta,
            loss_type=g.loss_type,
            lr_scheduler_type=g.lr_scheduler,
            warmup_steps=g.warmup_ratio,
            save_steps=g.save_steps,
            logging_steps=g.logging_steps,
            use_vllm=g.use_vllm,
            vllm_mode=g.vllm_mode,
            vllm_gpu_memory_utilization=g.vllm_gpu_memory_utilization,
            log_completions=False,
        )
        return GRPOTrainer(model=model, reward_funcs=list(REWARD_FUNCTIONS), args=args,
                           train_dataset=dataset, processing_class=tokenizer,
                           peft_config=lora_config(cfg), callbacks=callbacks)

    job = TrainingJob(stage="grpo", output_dir=Path(output_dir), base_model=base_model,
                      build_trainer=build_trainer,
                      describe_data={"source": cfg.data_source, "split": "train", "n": n,
                                     "budget_seed": cfg.data_seed, "num_generations": g.num_generations},
                      gradient_checkpointing=g.gradient_checkpointing)
    return run_training(cfg, job, resume=resume, overwrite=overwrite)


def per_device_batch(configured: int | None, num_generations: int) -> int:
    """Completions per device per step: the configured value, or two prompts' groups."""
    return configured or 2 * num_generations


def _env_int(name: str, default: int) -> int:
    import os

    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default

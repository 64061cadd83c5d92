"""Supervised fine-tuning with TRL's ``SFTTrainer`` and a LoRA adapter.

Stages:
- ``prep``: ``PREP_TRAIN_SAMPLES`` problems, to teach the answer format;
- ``full``: ``TRAIN_SAMPLES`` problems, usually on top of the prep run.

Each example is a prompt/completion pair: the prompt is the exact generation
prompt of evaluation (chat template + ``<start_working_out>``), the completion
the GSM8K solution in the answer format (calculator annotations dropped, see
:func:`gsm8k_lab.data.format_target`) followed by EOS. The loss is on the
completion tokens only. With ``--traces-file`` the completions come from that
JSONL instead (first ``TRAIN_SAMPLES`` lines).
"""

from __future__ import annotations

from pathlib import Path

from .config import Config, UsageError, check_sample_count
from .data import build_prompt, format_target, load_split, load_traces, take_budget

STAGES = ("prep", "full")


def train_sft(cfg: Config, stage: str, output_dir: str | Path, base_model: str | None = None,
              traces_file: str | None = None, resume: bool = False, overwrite: bool = False) -> dict:
    if stage not in STAGES:
        raise UsageError(f"--stage must be one of {', '.join(STAGES)}, got {stage!r}")
    if stage == "prep" and traces_file:
        raise UsageError("--traces-file goes with --stage full, not prep")
    problems, data_desc = select_sft_problems(cfg, stage, traces_file)
    from .training import TrainingJob, lora_config, run_training  # heavy imports after validation
    epochs = cfg.sft.prep_epochs if stage == "prep" else cfg.sft.epochs

    def build_trainer(model, tokenizer, common: dict, callbacks: list):
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        dataset = Dataset.from_list([
            {"prompt": build_prompt(tokenizer, p.question), "completion": format_target(p.answer)}
            for p in problems
        ])
        args = SFTConfig(
            **common,
            num_train_epochs=epochs,
            learning_rate=cfg.sft.learning_rate,
            per_device_train_batch_size=cfg.sft.per_device_batch_size,
            gradient_accumulation_steps=cfg.sft.gradient_accumulation_steps,
            lr_scheduler_type=cfg.sft.lr_scheduler,
            warmup_steps=cfg.sft.warmup_ratio,
            max_length=cfg.sft.max_length,
            completion_only_loss=True,
            save_steps=cfg.sft.save_steps,
            logging_steps=cfg.sft.logging_steps,
        )
        return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          peft_config=lora_config(cfg), callbacks=callbacks)

    job = TrainingJob(stage=f"{stage}_sft", output_dir=Path(output_dir), base_model=base_model,
                      build_trainer=build_trainer, describe_data=data_desc,
                      gradient_checkpointing=cfg.sft.gradient_checkpointing)
    return run_training(cfg, job, resume=resume, overwrite=overwrite)


def select_sft_problems(cfg: Config, stage: str, traces_file: str | None):
    """The training problems of a stage, and a description of them for run.json."""
    if traces_file:
        traces = load_traces(traces_file)
        n = check_sample_count("TRAIN_SAMPLES", cfg.sft.train_samples, len(traces))
        return traces[:n], {"source": "traces", "traces_file": str(Path(traces_file).resolve()), "n": n}
    train = load_split("train", cfg.data_source)
    if stage == "prep":
        n = check_sample_count("PREP_TRAIN_SAMPLES", cfg.sft.prep_train_samples, len(train))
    else:
        n = check_sample_count("TRAIN_SAMPLES", cfg.sft.train_samples, len(train))
    return take_budget(train, n, cfg.data_seed), {
        "source": cfg.data_source, "split": "train", "n": n, "budget_seed": cfg.data_seed}

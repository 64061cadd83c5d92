"""What SFT and GRPO runs share: run set-up, LoRA, curves, saving and the automatic evaluation.

A run goes through :func:`run_training`: it prepares the run directory (refusing
to clobber a finished or unfinished run without ``--resume``/``--overwrite``),
loads the base model with its parent adapters merged, lets the stage build and
train its TRL trainer (checkpoints in ``checkpoints/``, resumable), saves the
new adapter atomically into ``model/``, evaluates it, and records everything
in ``run.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from .config import Config
from .models import ModelRef, load_model, load_tokenizer, pick_device, pick_dtype, resolve_model, save_run_model
from .runs import STATUS_COMPLETE, RunDir, environment_info, new_run_id


@dataclass
class TrainingJob:
    """What a stage hands to :func:`run_training`."""

    stage: str  # prep_sft, full_sft, grpo: names the debug files
    output_dir: Path
    base_model: str | None
    build_trainer: Callable  # (model, tokenizer, common_args: dict, callbacks: list) -> trainer
    describe_data: dict  # what the stage trains on, for run.json
    gradient_checkpointing: bool = False  # the stage's own setting


def run_training(cfg: Config, job: TrainingJob, resume: bool, overwrite: bool) -> dict:
    from accelerate import PartialState

    # one process, or each of `accelerate launch`'s; on CPU the processes talk over gloo
    state = PartialState(cpu=not pick_device().startswith("cuda"))
    run = RunDir(job.output_dir)
    # Every process checks before any process writes, so all agree and a refusal writes nothing.
    parent = resolve_model(job.base_model or cfg.model.name, flag="--base-model")
    previous = run.check(resume=resume, overwrite=overwrite)
    state.wait_for_everyone()
    is_main = state.is_main_process
    if is_main and overwrite:
        run.clear()
    run_id = previous.get("run_id") or new_run_id()
    info = {
        **previous,
        "stage": job.stage, "run_id": run_id, "status": previous.get("status", "training"),
        "config": cfg.to_dict(), "model_chain": parent.describe(), "data": job.describe_data,
        "environment": environment_info(), "timings": previous.get("timings", {}),
    }
    if is_main:
        run.write(info)
    state.wait_for_everyone()

    if info["status"] != "trained" and info["status"] != STATUS_COMPLETE:
        t0 = time.perf_counter()
        model, tokenizer = _load_base(cfg, parent)
        checkpoint = run.latest_checkpoint() if resume else None
        if checkpoint is not None:
            print(f"[gsm8k-lab] resuming from {checkpoint}", flush=True)
            _trim_log(run.log_file, _checkpoint_step(checkpoint))
        common = _common_args(cfg, run, job.gradient_checkpointing)
        trainer = job.build_trainer(model, tokenizer, common, [JsonlLogger(run.log_file)])
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        trainer.accelerator.wait_for_everyone()
        if is_main:
            save_run_model(trainer.model, tokenizer, parent, run.model_dir)
            info["timings"]["train_seconds"] = round(time.perf_counter() - t0, 1)
            info["train"] = {
                "global_steps": trainer.state.global_step,
                "examples_seen": _examples_seen(trainer),
                "train_loss": getattr(result, "training_loss", None),
                "num_processes": trainer.accelerator.num_processes,
            }
            info["status"] = "trained"
            run.write(info)
        trainer.accelerator.wait_for_everyone()
        del trainer, model

    if not is_main:
        return info
    from .evaluate import evaluate_model

    t0 = time.perf_counter()
    csv_path = run.debug_dir / f"{job.stage}_{run_id}.csv"
    metrics = evaluate_model(cfg, resolve_model(str(run.root), flag="--output-dir"), csv_path, resume=True)
    info["timings"]["eval_seconds"] = round(time.perf_counter() - t0, 1)
    info["eval"] = {k: metrics[k] for k in ("n", "accuracy", "accuracy_ci95_low", "accuracy_ci95_high",
                                            "thinking_proportion", "answer_proportion", "csv")}
    info["status"] = STATUS_COMPLETE
    run.write(info)
    return info


def lora_config(cfg: Config):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")


class JsonlLogger(TrainerCallback):
    """Appends every log record to ``train_log.jsonl`` (main process only)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs}
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, default=float) + "\n")


# --------------------------------------------------------------------------
def _load_base(cfg: Config, parent: ModelRef):
    device = pick_device()
    dtype = pick_dtype(cfg.model.dtype, device)
    print(f"[gsm8k-lab] training on {device} with {str(dtype).replace('torch.', '')} base weights "
          f"(LoRA weights in fp32)", flush=True)
    tokenizer = load_tokenizer(parent)
    model = load_model(parent, dtype, device="cpu", merge_all=True,
                       attn_implementation=cfg.model.attn_implementation)
    return model, tokenizer


def _common_args(cfg: Config, run: RunDir, gradient_checkpointing: bool) -> dict:
    """TrainingArguments fields that SFT and GRPO share."""
    import torch

    device = pick_device()
    dtype = pick_dtype(cfg.model.dtype, device)
    on_gpu = device.startswith("cuda")
    return dict(
        output_dir=str(run.checkpoints_dir),
        seed=cfg.seed,
        bf16=on_gpu and dtype == torch.bfloat16,
        fp16=on_gpu and dtype == torch.float16,
        use_cpu=not on_gpu,
        save_strategy="steps",
        logging_first_step=True,
        save_total_limit=2,
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        disable_tqdm=False,
        dataloader_num_workers=0,
        # TRL turns checkpointing on by default; here it is opt-in (it slows small models down)
        **{_checkpointing_field(): gradient_checkpointing},
    )


def _checkpointing_field() -> str:
    """transformers renamed gradient_checkpointing to activation_checkpointing in 5.x."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def _examples_seen(trainer) -> int:
    args = trainer.args
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * trainer.accelerator.num_processes
    return int(trainer.state.global_step * per_step)


def _checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[-1])


def _trim_log(log_file: Path, step: int) -> None:
    """Drop curve records past the checkpoint we resume from, so resumed steps are not logged twice."""
    if not log_file.is_file():
        return
    kept = [line for line in log_file.read_text().splitlines() if line.strip()
            and json.loads(line).get("step", 0) <= step]
    from .runs import atomic_write_text

    atomic_write_text(log_file, "".join(line + "\n" for line in kept))


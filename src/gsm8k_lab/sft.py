"""Supervised fine-tuning with TRL's ``SFTTrainer`` and a LoRA adapter.

Stages:
- ``prep``: ``sft.prep_train_samples`` problems, to teach the answer format;
- ``full``: ``sft.train_samples`` problems, usually on top of the prep run.

Each example is a prompt/completion pair: the prompt is the exact generation
prompt of evaluation (chat template + ``<start_working_out>``), the completion
the GSM8K solution in the answer format (calculator annotations dropped, see
:func:`gsm8k_lab.task.format_target`) followed by EOS. The loss is on the
completion tokens only. With a traces file the completions come from that
JSONL instead (its first ``sft.train_samples`` lines).

**One token boundary for training and inference.** Examples reach TRL already
tokenized: the prompt's ids exactly as generation tokenizes the prompt alone,
then the completion's ids. Tokenizing ``prompt + completion`` as one string
(TRL's default) lets a byte-level BPE pre-tokenizer such as Qwen2's or
Llama-3's merge the prompt's final ``>`` with the target's first word
(``'>Natalia'``), so SFT would train on a context that inference never sees.
A separator instead would depend on each pre-tokenizer's rules (Qwen2's merges
``>`` with a following newline too); separate ids hold for every tokenizer.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .config import SettingError, Settings, validate
from .data import (
    Problem,
    check_eval_data_apart,
    check_traces_apart,
    eval_split_size,
    load_split,
    load_traces,
    train_regions,
)
from .evaluate import extra_evaluations
from .models import load_tokenizer, preflight, resolve_model
from .runtime import world_size
from .task import build_prompt, format_target, prompt_ids
from .training import (
    TrainingJob,
    check_tracker,
    lora_config,
    matched_sft_epochs,
    process_accumulation,
    run_training,
    sft_steps,
    trl_config,
    trl_max_steps,
)

STAGES = ("prep", "full")


def train_sft(settings: Settings, stage: str, output_dir: str | Path, traces_file: str | None = None,
              resume: bool = False, overwrite: bool = False) -> dict:
    """Validate everything, then train (the model is ``settings.model.name``)."""
    job = prepare_sft(settings, stage, output_dir, traces_file)
    return run_training(settings, job, resume=resume, overwrite=overwrite)


def prepare_sft(settings: Settings, stage: str, output_dir: str | Path, traces_file: str | None = None):
    """Check the settings against the data and resolve model and data; nothing is written."""
    if stage not in STAGES:
        raise SettingError("stage", stage, "{name} must be one of " + ", ".join(STAGES) + ", got {value}")
    if stage == "prep" and traces_file:
        raise SettingError("traces_file", traces_file, "{name} goes with the full stage, not prep")
    check_eval_data_apart(settings, traces_file)
    check_tracker(settings)
    test_size = eval_split_size(settings)
    if traces_file:
        traces = load_traces(traces_file)
        check_traces_apart(settings, traces_file)
        count = "sft.train_samples"
        validate(settings, {"train": len(traces), "test": test_size}, counts=[count, "eval.samples"])
        problems = traces[: settings.sft.train_samples or len(traces)]
        data = {"source": "traces", "traces_file": str(Path(traces_file).resolve()), "n": len(problems)}
    else:
        train = load_split("train", settings.data.train_source, "data.train_source")
        count = "sft.prep_train_samples" if stage == "prep" else "sft.train_samples"
        validate(settings, {"train": len(train), "test": test_size}, counts=[count, "eval.samples"])
        regions = train_regions(train, settings)
        problems = regions.prep() if stage == "prep" else regions.budget(settings.sft.train_samples)
        data = {"source": settings.data.train_source, "split": "train",
                **regions.provenance("prep" if stage == "prep" else "budget", problems)}
    parent = resolve_model(settings.model.name)
    preflight(settings, parent, ("eval.generation",), train="sft")
    check_max_length(settings, load_tokenizer(parent), problems)
    extra_eval = extra_evaluations(settings)
    s = settings.sft
    processes = world_size()
    accumulation = process_accumulation("sft.gradient_accumulation_steps", s.gradient_accumulation_steps, processes)
    epochs = s.stage_epochs(stage)
    if s.match_grpo_steps and stage == "full":
        epochs = matched_sft_epochs(settings, len(problems), processes)
        data["matched_to_grpo_steps"] = sft_steps(len(problems), s.per_device_batch_size, accumulation, processes,
                                                  epochs, trl_max_steps(s))
    geometry = {"per_device_batch": s.per_device_batch_size, "gradient_accumulation_steps": accumulation,
                "processes": processes, "examples_per_step": s.per_device_batch_size * accumulation * processes,
                "epochs": epochs, **({"max_steps": trl_max_steps(s)} if trl_max_steps(s) else {})}
    return TrainingJob(stage=f"{stage}_sft", output_dir=Path(output_dir), parent=parent,
                       build_trainer=_trainer_builder(settings, problems, epochs), data=data,
                       train=replace(s, learning_rate=s.stage_learning_rate(stage),
                                     gradient_accumulation_steps=accumulation), geometry=geometry,
                       extra_eval=extra_eval, config=("SFTConfig", config_fields(settings, epochs)),
                       micro_batch_tokens=lambda tok: s.per_device_batch_size * min(
                           s.max_length, max(len(tokenize_example(tok, p)["input_ids"]) for p in problems)),
                       epoch_tokens=lambda tok: sum(min(s.max_length, len(tokenize_example(tok, p)["input_ids"]))
                                                    for p in problems))


def check_max_length(settings: Settings, tokenizer, problems: list[Problem]) -> None:
    """``sft.max_length`` holds every training prompt and the first token of its answer. TRL cuts an
    example at max_length and drops one left without answer tokens (no loss), so a shorter limit
    would silently train on fewer problems, or on none (its sampler then fails after loading)."""
    prompts = [build_prompt(tokenizer, p.question) for p in problems]
    longest = max(map(len, tokenizer(prompts, add_special_tokens=False)["input_ids"]))  # prompt_ids, batched
    if settings.sft.max_length <= longest:
        raise SettingError("sft.max_length", settings.sft.max_length, "{name}={value} cannot hold the longest "
                           f"training prompt ({longest} tokens) and the first token of its answer: TRL would drop "
                           f"every example whose prompt fills it; use at least {longest + 1}")


def tokenize_example(tokenizer, problem: Problem) -> dict:
    """``input_ids`` = the prompt's ids as generation sees them + the completion's ids + EOS;
    ``completion_mask`` marks the completion (the loss)."""
    prompt = prompt_ids(tokenizer, build_prompt(tokenizer, problem.question))
    completion = tokenizer(format_target(problem.answer), add_special_tokens=False)["input_ids"]
    completion = [*completion, tokenizer.eos_token_id]
    return {"input_ids": prompt + completion, "completion_mask": [0] * len(prompt) + [1] * len(completion)}


def config_fields(settings: Settings, epochs: float) -> dict:
    """The SFTConfig fields SFT sets from its settings (beside those GRPO shares, ``training._common_args``)."""
    s = settings.sft
    return dict(num_train_epochs=epochs, per_device_train_batch_size=s.per_device_batch_size,
                max_length=s.max_length, completion_only_loss=True)


def _trainer_builder(settings: Settings, problems: list[Problem], epochs: float):
    s = settings.sft

    def build_trainer(model, tokenizer, common: dict, callbacks: list):
        from datasets import Dataset
        from trl import SFTTrainer

        dataset = Dataset.from_list([tokenize_example(tokenizer, p) for p in problems])
        args = trl_config("SFTConfig", "sft", {**common, **config_fields(settings, epochs)}, s.trl)
        return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          peft_config=lora_config(settings), callbacks=callbacks)

    return build_trainer

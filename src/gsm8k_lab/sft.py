"""Supervised fine-tuning with TRL's ``SFTTrainer`` and a LoRA adapter.

Stages:
- ``prep``: ``sft.prep_train_samples`` problems, to teach the answer format;
- ``full``: ``sft.train_samples`` problems, usually on top of the prep run.

Each example is a prompt/completion pair: the prompt is the exact generation
prompt of evaluation (chat template + ``<start_working_out>``), the completion
the GSM8K solution in the answer format (calculator annotations dropped, see
:func:`gsm8k_lab.data.format_target`) followed by EOS. The loss is on the
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

import hashlib
import os
from dataclasses import replace
from pathlib import Path

from .config import SettingError, Settings, validate
from .data import (
    Problem,
    build_prompt,
    eval_split_size,
    format_target,
    load_split,
    load_traces,
    prompt_ids,
    train_regions,
)
from .evaluate import extra_evaluations
from .models import preflight, resolve_model
from .runtime import world_size

STAGES = ("prep", "full")


def train_sft(settings: Settings, stage: str, output_dir: str | Path, traces_file: str | None = None,
              resume: bool = False, overwrite: bool = False) -> dict:
    """Validate everything, then train (the model is ``settings.model.name``)."""
    job = prepare_sft(settings, stage, output_dir, traces_file)
    from .training import run_training

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
        validate(settings, {"train": len(traces), "test": test_size}, counts=[count, "eval.samples"],
                 processes=world_size())
        problems = traces[: settings.sft.train_samples or len(traces)]
        data = {"source": "traces", "traces_file": str(Path(traces_file).resolve()), "n": len(problems)}
    else:
        train = load_split("train", settings.data.train_source, "data.train_source")
        count = "sft.prep_train_samples" if stage == "prep" else "sft.train_samples"
        validate(settings, {"train": len(train), "test": test_size}, counts=[count, "eval.samples"],
                 processes=world_size())
        regions = train_regions(train, settings)
        problems = regions.prep() if stage == "prep" else regions.budget(settings.sft.train_samples)
        data = {"source": settings.data.train_source, "split": "train",
                **regions.provenance("prep" if stage == "prep" else "budget", problems)}
    parent = resolve_model(settings.model.name)
    preflight(settings, parent, ("eval.generation",), train="sft")
    extra_eval = extra_evaluations(settings)
    from .training import TrainingJob  # heavy imports after validation

    s = settings.sft
    geometry = {"per_device_batch": s.per_device_batch_size, "gradient_accumulation_steps":
                s.gradient_accumulation_steps, "processes": world_size(),
                "examples_per_step": s.per_device_batch_size * s.gradient_accumulation_steps * world_size(),
                "epochs": s.stage_epochs(stage)}
    return TrainingJob(stage=f"{stage}_sft", output_dir=Path(output_dir), parent=parent,
                       build_trainer=_trainer_builder(settings, stage, problems), data=data,
                       train=replace(s, learning_rate=s.stage_learning_rate(stage)), geometry=geometry,
                       extra_eval=extra_eval,
                       micro_batch_tokens=lambda tok: s.per_device_batch_size * min(
                           s.max_length, max(len(tokenize_example(tok, p)["input_ids"]) for p in problems)))


def tokenize_example(tokenizer, problem: Problem) -> dict:
    """``input_ids`` = the prompt's ids as generation sees them + the completion's ids + EOS;
    ``completion_mask`` marks the completion (the loss)."""
    prompt = prompt_ids(tokenizer, build_prompt(tokenizer, problem.question))
    completion = tokenizer(format_target(problem.answer), add_special_tokens=False)["input_ids"]
    completion = [*completion, tokenizer.eos_token_id]
    return {"input_ids": prompt + completion, "completion_mask": [0] * len(prompt) + [1] * len(completion)}


def check_tracker(settings: Settings) -> None:
    """The tracking backend TRL reports to is installed (else training would fail after setting up)."""
    import importlib.util

    needs = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",)}
    modules = needs.get(settings.report_to, ())
    if modules and not any(importlib.util.find_spec(m) for m in modules):
        raise SettingError("report_to", settings.report_to,
                           "{name} {value} needs the " + modules[0] + " package (pip install " + modules[0] + ")")


def check_eval_data_apart(settings: Settings, *training_files: str | None) -> None:
    """A run never evaluates on the file it trains on: the same file under another name (a hard
    link, a symbolic link) or a copy of it (the same bytes) counts as the same."""
    source = settings.data.source
    if not Path(source).is_file():
        return
    for _path, train in (("data.train_source", settings.data.train_source),
                         *(("traces_file", f) for f in training_files if f)):
        if Path(train).is_file() and _same_file(Path(train), Path(source)):
            raise SettingError("data.source", source, "{name} {value} is also the training data: a run must not "
                               "be evaluated on the problems it trains on")


def check_traces_apart(settings: Settings, traces_file: str) -> None:
    """Traces never come from the problems evaluation uses: a line that says ``"split": "test"``
    (as generate_traces records) or whose question is a problem of the evaluation data's test
    split (which also catches files written before lines recorded their split) is refused."""
    import json

    test_questions = {p.question.strip() for p in load_split("test", settings.data.source)}
    with open(traces_file, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            rec = json.loads(line)  # load_traces has checked every line
            if rec.get("split") == "test" or rec["question"].strip() in test_questions:
                raise SettingError("traces_file", traces_file, "{name} {value}: " + f"line {lineno} is a test problem "
                                   "(traces generated from the test split): a run must not train on the problems "
                                   "it is evaluated on")
def _same_file(a: Path, b: Path) -> bool:
    """One file (device and inode, through any link) or two files with the same content."""
    if os.path.samefile(a, b):
        return True
    if a.stat().st_size != b.stat().st_size:
        return False
    return _sha256(a) == _sha256(b)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _trainer_builder(settings: Settings, stage: str, problems: list[Problem]):
    s = settings.sft

    def build_trainer(model, tokenizer, common: dict, callbacks: list):
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        from .training import lora_config

        dataset = Dataset.from_list([tokenize_example(tokenizer, p) for p in problems])
        args = SFTConfig(
            **common,
            num_train_epochs=s.stage_epochs(stage),
            per_device_train_batch_size=s.per_device_batch_size,
            max_length=s.max_length,
            completion_only_loss=True,
        )
        return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          peft_config=lora_config(settings), callbacks=callbacks)

    return build_trainer

"""What SFT and GRPO runs share: run life cycle, LoRA, curves, saving and the automatic evaluation.

A run goes through :func:`run_training`: it checks the run directory (refusing
to clobber a finished or unfinished run without ``resume``/``overwrite``, and
refusing to write into the run it starts from), loads the base model with its
parent adapters merged, lets the stage build and train its TRL trainer
(checkpoints in ``checkpoints/``, resumable), saves the new adapter atomically
into ``model/``, evaluates it **in a fresh process** (so a GPU engine for
evaluation never meets the training process's memory), and records everything
in ``run.json``: the resolved settings, the runtime, the batch geometry, the
generation settings and the timings. Stages hand in a :class:`TrainingJob`
whose data and model were resolved before anything was written.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import runtime
from .config import SettingError, Settings, TrainSettings, UsageError, env_vars, load_settings, validate
from .config.settings import TRACKER_PACKAGES
from .data import eval_split_size
from .evaluate import evaluation_argv, extra_evaluations, metrics_path
from .generation import uses_vllm
from .generation.vllm import check_gpu_share, cpu_kv_cache_bytes, kv_bytes_per_token, shutdown_engine
from .memory import GiB, ModelShape, estimate_training, needs_checkpointing
from .models import (
    EMBEDDED,
    ModelRef,
    base_path,
    check_lora_targets,
    load_model,
    load_tokenizer,
    preflight,
    resolve_model,
    save_run_model,
)
from .runs import (
    BASE_STAGE,
    NewRun,
    RunDir,
    RunStatus,
    atomic_write_text,
    check_same_settings,
    environment_info,
    new_run_id,
    read_jsonl,
)


@dataclass
class TrainingJob:
    """What a stage hands to :func:`run_training`, everything resolved and validated."""

    stage: str  # prep_sft, full_sft, grpo: names the debug files
    output_dir: Path
    parent: ModelRef  # the model training starts from
    build_trainer: Callable | None  # (model, tokenizer, common_args, callbacks) -> trainer; None: evaluate only
    data: dict  # what the stage trains on, for run.json
    train: TrainSettings  # the stage's own section (optimizer, schedule, checkpoints, logging)
    config: tuple[str, dict] | None = None  # TRL's config class name and the fields this stage sets (not the common)
    geometry: dict = field(default_factory=dict)  # batch geometry, for run.json
    micro_batch_tokens: Callable | None = None  # (tokenizer) -> tokens of the largest micro-batch (memory estimate)
    epoch_tokens: Callable | None = None  # (tokenizer) -> tokens of one pass over the examples (SFT; compute)
    generation: dict | None = None  # rollout settings (GRPO), for run.json
    extra_eval: dict = field(default_factory=dict)  # further evaluation sets: source -> problems


def sft_steps(n: int, batch: int, accumulation: int, processes: int, epochs: float,
              max_steps: int | None = None) -> int:
    """Optimizer steps of transformers' Trainer: batches per process, grouped by accumulation (a positive
    ``max_steps``, from ``sft.trl``, replaces the count)."""
    if max_steps is not None and max_steps > 0:
        return max_steps
    batches = math.ceil(n / (batch * processes))
    per_epoch = max(math.ceil(batches / accumulation), 1)
    return math.ceil(round(epochs * per_epoch, 9))


def grpo_steps(n: int, prompts_per_step: int, epochs: float, max_steps: int | None = None) -> int:
    """Optimizer steps of TRL's GRPO: its sampler drops the last incomplete generation batch; a positive
    ``max_steps`` (``grpo.trl``) replaces the count, as in transformers' Trainer."""
    if max_steps is not None and max_steps > 0:
        return max_steps
    return math.ceil(round(epochs * (n // prompts_per_step), 9))


def grpo_prompts_per_step(settings: Settings, processes: int) -> int:
    """Prompts (each with its group of completions) in one GRPO optimizer step: the same at every
    process count (:func:`process_accumulation`)."""
    g = settings.grpo
    accumulation = process_accumulation("grpo.gradient_accumulation_steps", g.gradient_accumulation_steps, processes)
    return g.batch() * processes * accumulation // g.num_generations


def process_accumulation(path: str, accumulation: int, processes: int) -> int:
    """The gradient accumulation of each of ``processes`` processes for an optimizer step of the same
    examples as one process with ``accumulation`` micro-batches: the global batch, and so the steps a
    budget takes at a learning rate, do not depend on how many GPUs run an arm. Refused in one line
    when the processes cannot share the micro-batches evenly."""
    if accumulation % processes:
        raise SettingError(path, accumulation, "{name}={value} cannot be shared evenly by " + f"{processes} processes"
                           f": an optimizer step takes the per-device batch x {accumulation} micro-batches on any "
                           f"number of processes (each runs {accumulation}/{processes}); run a number of processes "
                           f"that divides {accumulation}, or set {{name}} to a multiple of {processes}")
    return accumulation // processes


def matched_sft_epochs(settings: Settings, n: int, processes: int) -> float:
    """The epochs at which SFT on ``n`` problems takes as many optimizer steps as GRPO on them
    (``sft.match_grpo_steps``): GRPO's steps over SFT's steps per epoch."""
    s = settings.sft
    target = grpo_steps(n, grpo_prompts_per_step(settings, processes), settings.grpo.epochs,
                        trl_max_steps(settings.grpo))
    accumulation = process_accumulation("sft.gradient_accumulation_steps", s.gradient_accumulation_steps, processes)
    per_epoch = sft_steps(n, s.per_device_batch_size, accumulation, processes, 1.0)
    return max(target, 1) / per_epoch


def trl_max_steps(train: TrainSettings) -> int | None:
    """``max_steps`` passed to TRL through the section's ``trl`` mapping, when it is a positive integer."""
    value = train.trl.get("max_steps")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def trl_config(kind: str, section: str, fields: dict, overrides: dict, check: bool = False):
    """TRL's config (``kind``: GRPOConfig or SFTConfig) from the fields this pipeline sets and the section's
    ``trl`` pass-through. A key TRL does not have, or one the pipeline sets from a setting of its own, is
    refused in one line, as is a value TRL's own checks refuse. ``check`` builds it without setting up a
    device (before anything loads: the device and process count come from the environment)."""
    import dataclasses as dc

    import trl

    cls = getattr(trl, kind)
    path = f"{section}.trl"
    known = {f.name for f in dc.fields(cls)} if overrides else set()
    for key in overrides:
        if key not in known:
            raise SettingError(path, overrides, "{name} key " + repr(key) + " is not a field of TRL's " + kind)
        if key in fields:
            raise SettingError(path, overrides, "{name} key " + repr(key) + " is set by this pipeline from its own "
                               f"settings (see --help for {section}.*); set it there")
    if check:
        cls = _checked_config(cls)
    try:
        return cls(**fields, **overrides)
    except (TypeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise SettingError(path, " ".join(f"{k}={v}" for k, v in overrides.items()),
                           "{name} {value}: TRL refuses it (" + reason[:300] + ")") from None


def check_trl_overrides(settings: Settings, job: TrainingJob, run: RunDir) -> None:
    """The stage's ``trl`` pass-through against TRL's config, with the fields the run will set."""
    if job.config is None or not job.train.trl:
        return
    kind, fields = job.config
    rt = runtime.current(settings)
    common = _common_args(settings, rt, run, job.train, checkpointing=False)
    trl_config(kind, "grpo" if job.stage == "grpo" else "sft", {**common, **fields}, job.train.trl, check=True)


def check_tracker(settings: Settings) -> None:
    """Each tracking backend TRL reports to is installed (else training would fail after setting up)."""
    for backend in trackers(settings):
        modules = TRACKER_PACKAGES.get(backend)  # an unknown name is validation's to refuse
        if modules and not any(importlib.util.find_spec(m) for m in modules):
            raise SettingError("report_to", settings.report_to,
                               "{name} " + repr(backend) + " needs the " + modules[0] + " package (pip install "
                               + modules[0] + ")")


def trackers(settings: Settings) -> list[str]:
    """The backends TRL reports to (``none`` is none)."""
    return [b for b in settings.report_to if b != "none"]


def run_training(settings: Settings, job: TrainingJob, resume: bool, overwrite: bool) -> dict:
    run = RunDir(job.output_dir)
    # Every process checks before any process writes, so all agree and a refusal writes nothing.
    previous = check_run(settings, job, resume=resume, overwrite=overwrite)
    fingerprint = run_fingerprint(settings, job)
    if resume and previous:
        if run.is_complete():
            print(f"[gsm8k-lab] {run.root} is already complete with these settings: nothing to do", flush=True)
            return previous
    # everything is checked: now the heavy imports and the work
    from .callbacks import JsonlLogger, OnFirstSave, TrainClock  # lazy: imports transformers

    rt = runtime.current(settings)
    state = start_processes(settings, job, rt)
    is_main = state.is_main_process
    # A new run (an overwrite moves the old one aside) is undone if anything fails before its first
    # checkpoint or its model is on disk: the old run is back as it was; only then is it deleted.
    new_run = NewRun(run) if is_main and not (resume and previous) else None
    try:
        run_id = previous.get("run_id") or new_run_id()
        untrained = RunStatus.TRAINING if job.build_trainer else RunStatus.TRAINED  # no trainer: the model as it is
        status = RunStatus(previous.get("status", untrained))
        info = {
            **previous,
            "stage": job.stage, "run_id": run_id, "status": status.value, "fingerprint": fingerprint,
            "settings": settings.to_dict(), "runtime": rt.as_dict(), "model_chain": job.parent.describe(),
            "data": job.data, "environment": environment_info(), "timings": previous.get("timings", {}),
        }
        if is_main:
            run.write(info)
        state.wait_for_everyone()

        if status is RunStatus.TRAINING:
            print(f"[gsm8k-lab] training on {rt.describe()} base weights (LoRA weights in fp32)", flush=True)
            tokenizer = load_tokenizer(job.parent)
            estimate = training_memory(settings, job, rt, tokenizer)
            info["memory_estimate"] = estimate.as_dict()
            model = load_model(job.parent, settings, device="cpu", merge_all=True, for_generation=False)
            parameters = sum(p.numel() for p in model.parameters())  # the base's, before any adapter
            check_lora_targets(model, settings)
            checkpoint = run.latest_checkpoint() if resume else None
            if checkpoint is not None:
                print(f"[gsm8k-lab] resuming from {checkpoint}", flush=True)
            # curves past the resume point (all of them without a checkpoint) are logged again
            _trim_log(run.log_file, _checkpoint_step(checkpoint) if checkpoint else 0)
            common = _common_args(settings, rt, run, job.train, estimate.checkpointing)
            logger = JsonlLogger(run.log_file, job.geometry.get("completions_per_step", 0))
            clock = TrainClock(run, info, _checkpoint_step(checkpoint) if checkpoint else 0, is_main)
            first_save = OnFirstSave(new_run.commit if new_run else None)
            trainer = job.build_trainer(model, tokenizer, common, [logger, clock, first_save])
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            trainer.accelerator.wait_for_everyone()
            if is_main:
                save_run_model(trainer.model, tokenizer, job.parent, run.model_dir)
                if new_run:
                    new_run.commit()
                info["timings"]["train_seconds"] = clock.seconds()
                info["train"] = {
                    "global_steps": trainer.state.global_step,
                    "examples_seen": _examples_seen(trainer),
                    "train_loss": mean_logged_loss(run.log_file),
                    "num_processes": trainer.accelerator.num_processes,
                    **job.geometry,
                    "tokens_generated": logger.tokens_generated(),
                    "tokens_trained": _tokens_trained(trainer, job, tokenizer),
                    "model_parameters": parameters,
                }
                if job.generation is not None:
                    info["generation"] = job.generation
                info["status"] = RunStatus.TRAINED.value
                run.write(info)
            trainer.accelerator.wait_for_everyone()
            # the evaluation's engine starts in a fresh process: give it what training held
            stop_rollout_engine(trainer)
            del trainer, model
            runtime.release_memory()
    except BaseException:
        if new_run:
            new_run.undo()
        raise
    if new_run:
        new_run.commit()

    if not is_main:
        return info
    t0 = time.perf_counter()
    csv_path = run.debug_dir / f"{job.stage}_{run_id}.csv"
    # a trained run is evaluated from its folder, an evaluation-only run's model as it was given
    model = None if job.build_trainer else (settings.model.name or EMBEDDED)
    metrics = evaluate_in_fresh_process(run, csv_path, model=model)
    info["timings"]["eval_seconds"] = round(time.perf_counter() - t0, 1)
    info["eval"] = {k: metrics[k] for k in EVAL_SUMMARY if k in metrics}
    t0 = time.perf_counter()
    for source, n in job.extra_eval.items():
        slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(source).stem).strip("-")
        extra = evaluate_in_fresh_process(run, run.debug_dir / f"{job.stage}_{run_id}_{slug}.csv",
                                          source=source, samples=n, model=model)
        info.setdefault("eval_extra", {})[source] = {k: extra[k] for k in EVAL_SUMMARY if k in extra}
    if job.extra_eval:
        info["timings"]["extra_eval_seconds"] = round(time.perf_counter() - t0, 1)
    info["status"] = RunStatus.COMPLETE.value
    run.write(info)
    return info


#: What run.json keeps of the evaluation's metrics (the rest is in debug/).
EVAL_SUMMARY = ("n", "samples_per_problem", "accuracy", "accuracy_ci95_low", "accuracy_ci95_high",
                "thinking_proportion", "answer_proportion", "answer_proportion_ci95", "thinking_proportion_ci95",
                "pass_at_k", "majority_accuracy", "majority_accuracy_ci95", "mean_completion_tokens",
                "truncated_proportion", "csv", "backend", "engine", "dtype", "decoding", "split", "provenance")

#: Settings that change nothing a run produces: left out of its fingerprint.
_NOT_CONTENT = {"save_steps", "logging_steps", "gradient_checkpointing", "use_vllm", "vllm_mode",
                "colocate_gpu_memory_utilization", "vllm_server_host", "vllm_server_port", "vllm_server_timeout",
                "continuous_batching", "batch_size", "backend",
                "epochs", "train_samples", "prep_train_samples", "per_device_batch_size",
                "gradient_accumulation_steps"}  # the last five: recorded resolved, in data and geometry


def start_processes(settings: Settings, job: TrainingJob, rt: runtime.Runtime):
    """Join the job's processes (one, or each of ``accelerate launch``'s; on a CPU they talk over gloo),
    then check that the evaluation after training can start. The check asks CUDA for free memory, so
    it comes after ``PartialState`` has set each rank's device (before, every rank would leave a context
    on GPU 0), and only on the main rank, whose child process evaluates."""
    from accelerate import PartialState

    state = PartialState(cpu=not rt.on_gpu)
    if state.is_main_process:
        check_evaluation_memory(settings, job)  # before training: an evaluation that cannot start is known now
    state.wait_for_everyone()
    return state


def check_run(settings: Settings, job: TrainingJob, resume: bool, overwrite: bool) -> dict:
    """Every check of the run directory that comes before any write (also what ``plan`` checks):
    not the run it starts from, nothing clobbered, a resume only with the run's own settings; and
    a training in one process on one GPU. Returns the recorded ``run.json`` to continue, or {}."""
    if job.build_trainer is not None:
        runtime.check_training_gpus()
    run = RunDir(job.output_dir)
    _refuse_to_write_into_the_parent(job, run)
    check_trl_overrides(settings, job, run)
    previous = run.check(resume=resume, overwrite=overwrite)
    if resume and previous:
        check_same_settings("output_dir", str(run.root), previous.get("fingerprint"), run_fingerprint(settings, job))
    return previous


def time_steps(settings: Settings, job: TrainingJob) -> list[float]:
    """Train ``job`` in its (scratch) output folder as a run would, and return the seconds of each
    optimizer step: the calibration of ``plan``. Nothing is saved or evaluated."""
    from .callbacks import StepTimer  # lazy: imports transformers

    rt = runtime.current(settings)
    run = RunDir(job.output_dir)
    tokenizer = load_tokenizer(job.parent)
    model = load_model(job.parent, settings, device="cpu", merge_all=True, for_generation=False)
    checkpointing = training_memory(settings, job, rt, tokenizer).checkpointing
    common = {**_common_args(settings, rt, run, job.train, checkpointing), "save_strategy": "no", "disable_tqdm": True}
    timer = StepTimer()
    trainer = job.build_trainer(model, tokenizer, common, [timer])
    trainer.train()
    return timer.seconds


#: What picks the problems of a validation evaluation (a fingerprint holds them only then, so runs
#: evaluated on test before the split existed still resume).
_VALIDATION = ("eval.split", "data.train_source", "data.validation_size", "data.budget_seed")


def run_fingerprint(settings: Settings, job: TrainingJob) -> dict:
    """What determines a training run's content: the model chain, the data, the batch geometry and
    the stage's settings (training, LoRA, seed, rollouts) and its evaluation's. ``--resume`` must match."""
    section = ("grpo" if job.stage == "grpo" else "sft") if job.build_trainer else None
    fp: dict = {"stage": job.stage, "model": job.parent.describe()}
    fp.update({f"train_data.{k}": v for k, v in job.data.items()})
    fp.update({f"train.{k}": v for k, v in job.geometry.items()})
    for path, value in _flat(settings.to_dict()):
        parts = path.split(".")
        head, name = parts[0], parts[-1]
        if name in _NOT_CONTENT:
            continue
        trained = section is not None and (head in (section, "lora") or path in ("seed", "data.budget_seed"))
        if trained or path in ("data.source", "eval.samples") or path.startswith("eval.generation.") \
                or (path in _VALIDATION and settings.eval.split != "test"):
            fp[path] = value
    return fp


def mean_logged_loss(log_file: Path) -> float | None:
    """The training loss over all logged steps, each record weighted by the steps it covers
    (stays right when a run resumes from its last checkpoint with no step left to run)."""
    records, _, _ = read_jsonl(log_file)
    total = weight = last = 0
    for rec in records:
        if isinstance(rec.get("loss"), (int, float)) and isinstance(rec.get("step"), int):
            w = max(1, rec["step"] - last)
            total, weight, last = total + rec["loss"] * w, weight + w, rec["step"]
    return total / weight if weight else None


def child_environment() -> dict[str, str]:
    """The evaluation child's environment: this process's, less the settings variables (the child reads
    the run's recorded settings), the launcher's variables (it is one process) and what a colocated vLLM
    engine set in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, unless the user had set it)."""
    env = {k: v for k, v in os.environ.items() if k not in _CHILD_DROP and k not in env_vars()}
    if _VLLM_MULTIPROCESSING is None:
        env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    return env


def evaluate_in_fresh_process(run: RunDir, csv_path: Path, source: str | None = None,
                              samples: int | None = None, model: str | None = None) -> dict:
    """The run's evaluation as ``evaluate_model.py`` would do it, in a process of its own.

    The child reads the run's recorded settings (its ``run.json`` as the settings
    file) and no settings from the environment, so it evaluates exactly what the
    run was configured with; it resumes a partial CSV from an interrupted
    evaluation. ``model`` evaluates that model instead of the run's own.
    """
    recorded = run_settings(run)
    if uses_vllm(recorded):  # what is free now, after training let go of its memory
        check_evaluation_memory(recorded, None, resume_hint=True)
    argv = evaluation_argv(run.run_file, run.root, csv_path.name, source, samples, model)
    cmd = [sys.executable, "-m", "gsm8k_lab", *argv]
    code = subprocess.run(cmd, env=child_environment()).returncode
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        raise UsageError(f"the evaluation of {run.root} failed (exit code {code}); the trained model is kept: "
                         "rerun the same command with resume to evaluate it")
    return json.loads(metrics_path(csv_path).with_suffix(".json").read_text())


#: the user's own choice, if any, as the process started (vLLM sets it to 0 for an engine inside training)
_VLLM_MULTIPROCESSING = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")

# launcher variables that would make the evaluation believe it is one of several processes
_CHILD_DROP = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
               "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE", "TORCHELASTIC_RUN_ID", "ACCELERATE_NUM_PROCESSES"}


def lora_config(settings: Settings):
    from peft import LoraConfig

    lora = settings.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), task_type="CAUSAL_LM")


def training_memory(settings: Settings, job: TrainingJob, rt: runtime.Runtime, tokenizer):
    """The memory estimate of one training step (printed), with gradient checkpointing resolved:
    the setting, or on where the step would not fit the GPU without it."""
    shape = ModelShape.from_folder(base_path(job.parent))
    tokens = job.micro_batch_tokens(tokenizer) if job.micro_batch_tokens else 0
    lora = settings.lora
    vllm_bytes, device_bytes = 0, None
    if rt.on_gpu:
        import torch

        device_bytes = torch.cuda.get_device_properties(0).total_memory
        g = settings.grpo
        if job.stage == "grpo" and g.use_vllm and g.vllm_mode == "colocate":
            vllm_bytes = int(g.colocate_gpu_memory_utilization * device_bytes)
    checkpointing = job.train.gradient_checkpointing
    if checkpointing is None:
        checkpointing = device_bytes is not None and needs_checkpointing(
            shape, rt.dtype_name, lora.r, lora.target_modules, tokens, device_bytes, vllm_bytes, lora.dropout)
    estimate = estimate_training(shape, rt.dtype_name, lora.r, lora.target_modules, tokens, checkpointing, vllm_bytes,
                                 lora.dropout)
    where = f" of the GPU's {device_bytes / GiB:.0f} GiB" if device_bytes else ""
    print(f"[gsm8k-lab] memory estimate of a training step: {estimate.describe()}{where}", flush=True)
    return estimate


def check_evaluation_memory(settings: Settings, job: TrainingJob | None, resume_hint: bool = False) -> None:
    """When the evaluation after training will start a vLLM engine: its memory must fit what is free.

    Before training (``job`` given) the training process will still hold about
    :data:`PARENT_KEEPS` of the GPU when its evaluation starts (its CUDA context; training's own
    memory is released first), so the share must fit the free memory less that; after training
    the check uses what is free then. On a CPU the engine's KV cache must hold one sequence.
    A refusal names the setting to lower; after training the trained model is kept.
    """
    if not uses_vllm(settings):
        return

    rt = runtime.current(settings)
    try:
        if rt.on_gpu:
            check_gpu_share(settings.vllm.gpu_memory_utilization, PARENT_KEEPS if job is not None else 0)
        elif job is not None:
            per_token = kv_bytes_per_token(base_path(job.parent), rt.dtype_name)
            cpu_kv_cache_bytes(per_token, settings.vllm.max_model_len, 1)
    except SettingError as exc:
        if not resume_hint:
            raise
        raise SettingError(exc.path, exc.value, exc.template + "; the trained model is kept: continue with "
                           "{resume} to evaluate it") from None


#: GPU memory the training process keeps while its evaluation runs (CUDA context and allocator pools).
PARENT_KEEPS = GiB


def stop_rollout_engine(trainer) -> None:
    """Shut down the vLLM engine that TRL colocated with GRPO training, if there is one."""
    vllm_generation = getattr(trainer, "vllm_generation", None)
    llm = getattr(vllm_generation, "llm", None)
    if llm is not None:
        vllm_generation.llm = None
        shutdown_engine(llm)


def run_settings(run: RunDir) -> Settings:
    """The settings a run recorded in its run.json."""
    return load_settings(env={}, config_file=run.run_file)[0]


def evaluate_base(settings: Settings, output_dir: str | Path, resume: bool = False) -> dict:
    """The starting model, untrained, evaluated as a run (stage ``base``): the same problems,
    decoding and further evaluation sets as the trained runs, so the report compares them."""
    return run_training(settings, prepare_base(settings, output_dir), resume=resume, overwrite=False)


def prepare_base(settings: Settings, output_dir: str | Path) -> TrainingJob:
    """The base-model run's job, checked against the data and the model; nothing is written."""
    validate(settings, {"test": eval_split_size(settings)}, counts=["eval.samples"])
    parent = resolve_model(settings.model.name)
    preflight(settings, parent, ("eval.generation",))
    return TrainingJob(stage=BASE_STAGE, output_dir=Path(output_dir), parent=parent,
                       build_trainer=None, data={}, train=settings.sft, extra_eval=extra_evaluations(settings))


def tracker_run_name(root: Path) -> str:
    """A run's name in TensorBoard, W&B or Trackio: its folder with the one above it, which in an
    experiment is the budget (``64/grpo-seed1``, ``compare-train-samples/prep_sft``)."""
    root = Path(root).resolve()
    return f"{root.parent.name}/{root.name}" if root.parent.name else root.name


def _flat(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _refuse_to_write_into_the_parent(job: TrainingJob, run: RunDir) -> None:
    """The run dir may not hold what training loads: its parent run, or a model folder inside it;
    nor be, or lie inside, the folder of the base model it reads."""
    owned = [run.model_dir, run.checkpoints_dir, run.debug_dir, run.model_dir.with_name("model.tmp")]
    base = Path(job.parent.base) if Path(job.parent.base).is_absolute() else None
    loads = [*job.parent.adapters, *([base] if base else [])]
    parent_run = job.parent.run_dir
    if (parent_run is not None and _same_path(parent_run, run.root)) or any(
            _inside(p, o) for p in loads for o in owned):
        raise SettingError("output_dir", str(run.root), "{name} {value} is the run training starts from; "
                           "write the new run somewhere else")
    if base is not None and (_inside(run.root, base) or _inside(base, run.root)):
        raise SettingError("output_dir", str(run.root), "{name} {value} " + ("is or lies inside" if _inside(
            run.root, base) else "holds") + f" the base model's folder {base}; write the new run somewhere else")


def _common_args(settings: Settings, rt: runtime.Runtime, run: RunDir, train: TrainSettings,
                 checkpointing: bool) -> dict:
    """TrainingArguments fields that SFT and GRPO share, from the stage's section."""
    return dict(
        learning_rate=train.learning_rate,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # a value below 1 is a share of the steps
        save_steps=train.save_steps,
        logging_steps=train.logging_steps,
        output_dir=str(run.checkpoints_dir),
        seed=settings.seed,
        bf16=rt.on_gpu and rt.dtype_name == "bf16",
        fp16=rt.on_gpu and rt.dtype_name == "fp16",
        use_cpu=not rt.on_gpu,
        save_strategy="steps",
        logging_first_step=True,
        save_total_limit=2,
        report_to=trackers(settings),
        # a tracker shows each run under its folder (an experiment's budget and arm: "64/grpo-seed1")
        run_name=tracker_run_name(run.root),
        project="gsm8k-lab",
        disable_tqdm=False,
        dataloader_num_workers=0,
        # TRL turns checkpointing on by default; here it follows the setting, or the memory estimate
        **{_checkpointing_field(): checkpointing},
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
    """Keep the complete curve records up to the checkpoint we resume from (a torn last record
    is dropped), so resumed steps are not logged twice."""
    if not log_file.is_file():
        return
    records, _, torn = read_jsonl(log_file)
    if torn:
        print(f"[gsm8k-lab] {log_file}: dropped a torn last record left by an interruption", flush=True)
    kept = [r for r in records if isinstance(r.get("step"), int) and r["step"] <= step]
    atomic_write_text(log_file, "".join(json.dumps(r) + "\n" for r in kept))


def _same_path(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except OSError:
        return False


__all__ = ["TrainingJob", "run_training", "evaluate_base", "lora_config", "resolve_model"]


def _tokens_trained(trainer, job: TrainingJob, tokenizer) -> int:
    """Tokens that went through the forward and backward pass in training: GRPO's prompts and
    completions as TRL counts them (kept across resumes in the trainer state); for SFT one pass over
    the examples (each cut at ``max_length``) times the passes the optimizer steps made."""
    if job.epoch_tokens is None:
        return int(trainer.state.num_input_tokens_seen)
    g = job.geometry
    per_epoch = sft_steps(job.data["n"], g["per_device_batch"], g["gradient_accumulation_steps"], g["processes"], 1.0)
    return round(job.epoch_tokens(tokenizer) * trainer.state.global_step / per_epoch)


def _checked_config(cls):
    """``cls`` whose device is the CPU and whose process count is WORLD_SIZE's, without setting up either:
    TrainingArguments would otherwise start the distributed state to check a value."""
    import torch

    class Checked(cls):
        @property
        def device(self):
            return torch.device("cpu")

        @property
        def n_gpu(self):
            return 0

        @property
        def world_size(self):
            return runtime.world_size()

    Checked.__name__ = cls.__name__
    return Checked

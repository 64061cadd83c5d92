"""GRPO with TRL's ``GRPOTrainer``, a LoRA adapter and the rewards of :mod:`gsm8k_lab.rewards`.

Prompts are the evaluation prompts (chat template + ``<start_working_out>``),
the ``grpo.train_samples`` problems of the shared budget shuffle, so GRPO and
SFT at the same budget see the same problems. Each step samples
``grpo.num_generations`` completions per prompt with the ``grpo.rollout``
generation settings; the per-device batch counts completions, so the global
batch must be a multiple of the group size (checked before anything starts).

**Rollouts follow the run seed.** The refill engine samples under
``seed + grpo.rollout.seed`` (the rollout setting is an offset, so ``--seeds``
repeats get different rollouts), moved on with each step and process; TRL's own
generation draws from torch's generator, which TRL seeds with the run seed.
vLLM rollouts are the exception: TRL 1.16 seeds its colocated vLLM engine with
the process index, whatever the run seed (``run.json`` says which applies).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from . import runtime
from .config import SettingError, Settings, validate
from .data import check_eval_data_apart, eval_split_size, load_split, train_regions
from .evaluate import extra_evaluations
from .generation import decoding
from .generation.refill import rollout_func
from .generation.weight_sync import sync_out_of_place
from .models import preflight, resolve_model
from .rewards import REWARD_FUNCTIONS
from .runtime import world_size
from .task import build_prompt, prompt_ids, trl_prompt
from .training import (
    TrainingJob,
    check_tracker,
    lora_config,
    process_accumulation,
    run_training,
    trl_config,
    trl_max_steps,
)


def train_grpo(settings: Settings, output_dir: str | Path, resume: bool = False, overwrite: bool = False) -> dict:
    """Validate everything, then train (the model is ``settings.model.name``)."""
    job = prepare_grpo(settings, output_dir)
    return run_training(settings, job, resume=resume, overwrite=overwrite)


def prepare_grpo(settings: Settings, output_dir: str | Path):
    """Check the settings against the data and resolve model and data; nothing is written."""
    check_eval_data_apart(settings)
    check_tracker(settings)
    train = load_split("train", settings.data.train_source, "data.train_source")
    test_size = eval_split_size(settings)
    validate(settings, {"train": len(train), "test": test_size}, counts=["grpo.train_samples", "eval.samples"])
    g = settings.grpo
    check_rollout_engine(settings)
    regions = train_regions(train, settings)
    problems = regions.budget(g.train_samples, "grpo.train_samples")
    parent = resolve_model(settings.model.name)
    preflight(settings, parent, ("grpo.rollout", "eval.generation"), train="grpo")
    extra_eval = extra_evaluations(settings)
    geometry = batch_geometry(settings, world_size())
    if len(problems) < geometry["prompts_per_step"]:  # TRL's sampler would yield no batch and training fail
        raise SettingError("grpo.train_samples", len(problems), "{name} ({value} problems) is fewer than one GRPO "
                           f"step takes ({geometry['prompts_per_step']} prompts of {g.num_generations} completions);"
                           " lower the batch size or the gradient accumulation steps")
    print("[gsm8k-lab] GRPO batch: " + ", ".join(f"{k} {v}" for k, v in geometry.items()), flush=True)
    return TrainingJob(stage="grpo", output_dir=Path(output_dir), parent=parent,
                       build_trainer=_trainer_builder(settings, problems),
                       data={"source": settings.data.train_source, "split": "train",
                             **regions.provenance("budget", problems)},
                       train=replace(g, gradient_accumulation_steps=geometry["gradient_accumulation_steps"]),
                       config=("GRPOConfig", config_fields(settings)),
                       geometry=geometry, extra_eval=extra_eval,
                       micro_batch_tokens=lambda tok: g.batch() * (g.rollout.max_new_tokens + max(
                           len(prompt_ids(tok, build_prompt(tok, p.question))) for p in problems)),
                       generation={"rollout": decoding(g.rollout, stop=()), "use_vllm": g.use_vllm,
                                   "continuous_batching": g.continuous_batching,
                                   "rollout_engine": rollout_engine(settings), **rollout_seed_record(settings)})


def check_rollout_engine(settings: Settings) -> None:
    """TRL's vLLM rollouts need a GPU: vLLM's CPU build repacks each linear layer's weights for its
    kernels when it loads them and drops the originals, so the weight updates TRL sends after every
    optimizer step (``load_weights``) have nowhere to go (measured: ``AttributeError: 'Parameter'
    object has no attribute 'weight_loader'`` at the first update)."""
    if settings.grpo.use_vllm and not runtime.current(settings).on_gpu:
        raise SettingError("grpo.use_vllm", True, "{name} rolls out with vLLM on a GPU only: vLLM's CPU build cannot "
                           "take the weight updates TRL sends after each optimizer step; leave it off on a CPU")


def batch_geometry(settings: Settings, processes: int) -> dict:
    """Completions and prompts per optimizer step, as GRPO will run them."""
    g = settings.grpo
    accumulation = process_accumulation("grpo.gradient_accumulation_steps", g.gradient_accumulation_steps, processes)
    completions = g.batch() * processes * accumulation  # the same at every process count
    return {"per_device_batch": g.batch(), "processes": processes,
            "gradient_accumulation_steps": accumulation, "num_generations": g.num_generations,
            "completions_per_step": completions, "prompts_per_step": completions // g.num_generations,
            "max_completion_length": g.rollout.max_new_tokens, "epochs": g.epochs,
            **({"max_steps": trl_max_steps(g)} if trl_max_steps(g) else {})}


def rollout_engine(settings: Settings) -> str:
    """What generates the rollouts: vLLM and continuous batching are TRL's; else ``grpo.rollout_engine``."""
    g = settings.grpo
    if g.use_vllm or g.continuous_batching:
        return "trl"
    if g.rollout_engine != "auto":
        return g.rollout_engine
    return "trl" if runtime.current(settings).on_gpu else "refill"


def rollout_seed(settings: Settings) -> int:
    """The refill engine's rollout seed: the run seed plus the ``grpo.rollout.seed`` offset."""
    return settings.seed + settings.grpo.rollout.seed


def rollout_seed_record(settings: Settings) -> dict:
    """What seeds the rollouts of this run, for ``run.json``."""
    engine = rollout_engine(settings)
    if engine.startswith("refill"):
        return {"rollout_seed": rollout_seed(settings),
                "rollout_seed_rule": "seed + grpo.rollout.seed, + 1000003 x step + process index"}
    if settings.grpo.use_vllm:
        g = settings.grpo
        return {"rollout_seed": None, "rollout_seed_rule": "TRL seeds its vLLM engine with the process index: "
                "rollouts do not follow the run seed; training (LoRA dropout) is seeded again with the run seed "
                "after a colocated engine starts",
                "vllm_importance_sampling": g.vllm_importance_sampling,
                "vllm_importance_sampling_clip": g.vllm_importance_sampling_clip,
                "old_logprobs": "recomputed by the training model in train mode (LoRA dropout on)",
                "weight_sync": "base + adapter computed out of place (the base is never merged in place)"}
    return {"rollout_seed": settings.seed, "rollout_seed_rule": "the run seed (TRL seeds torch's generator with it)"}


def reseed_after_rollout_engine(settings: Settings) -> None:
    """A colocated vLLM engine, built inside GRPOTrainer after TRL seeded everything with the run seed,
    seeds torch's global generator again with the process index: LoRA dropout would then follow 0 in
    every run, whatever ``seed`` says. Seeding again afterwards gives training the run's seed back."""
    if settings.grpo.use_vllm and settings.grpo.vllm_mode == "colocate":
        from transformers import set_seed

        set_seed(settings.seed)


def config_fields(settings: Settings) -> dict:
    """The GRPOConfig fields GRPO sets from its settings (beside those SFT shares, ``training._common_args``)."""
    g = settings.grpo
    r = g.rollout
    return dict(
        num_train_epochs=g.epochs,
        per_device_train_batch_size=g.batch(),
        num_generations=g.num_generations,
        max_completion_length=r.max_new_tokens,
        temperature=r.temperature,
        top_p=r.top_p,
        top_k=r.top_k,
        min_p=r.min_p or None,
        repetition_penalty=r.repetition_penalty,
        beta=g.beta,
        loss_type=g.loss_type,
        use_vllm=g.use_vllm,
        vllm_mode=g.vllm_mode,
        vllm_server_host=g.vllm_server_host,
        vllm_server_port=g.vllm_server_port,
        vllm_server_timeout=g.vllm_server_timeout,
        vllm_importance_sampling_correction=g.vllm_importance_sampling is not None,
        vllm_importance_sampling_mode=g.vllm_importance_sampling or "sequence_mask",
        vllm_importance_sampling_clip_max=g.vllm_importance_sampling_clip,
        vllm_gpu_memory_utilization=g.colocate_gpu_memory_utilization,
        use_transformers_continuous_batching=g.continuous_batching,
        cache_implementation=g.cache_implementation,
        log_completions=False,
    )


def _trainer_builder(settings: Settings, problems):
    g = settings.grpo

    def build_trainer(model, tokenizer, common: dict, callbacks: list):
        from datasets import Dataset
        from trl import GRPOTrainer

        dataset = Dataset.from_list([
            {"prompt": trl_prompt(tokenizer, build_prompt(tokenizer, p.question)), "gold": p.gold} for p in problems
        ])
        tokenizer.padding_side = "left"
        args = trl_config("GRPOConfig", "grpo", {**common, **config_fields(settings)}, g.trl)
        engine = rollout_engine(settings)
        extra = {"rollout_func": rollout_func(g.rollout, rollout_seed(settings), merged=engine == "refill-merged")} \
            if engine.startswith("refill") else {}
        trainer = GRPOTrainer(model=model, reward_funcs=list(REWARD_FUNCTIONS), args=args,
                              train_dataset=dataset, processing_class=tokenizer,
                              peft_config=lora_config(settings), callbacks=callbacks, **extra)
        if g.use_vllm:
            sync_out_of_place(trainer)  # the frozen base never drifts through TRL's in-place merge and unmerge
        reseed_after_rollout_engine(settings)
        return trainer

    return build_trainer

"""Every setting of the pipeline in one typed tree (the seed's ``tr_config.py``).

Each knob is a dataclass field with a default and a help string, in the manner
of TRL's ``GRPOConfig``; sections nest (``settings.grpo.rollout.temperature``).
Values come from, lowest to highest precedence:

1. the defaults below (and the named generation purposes in ``GENERATION``);
2. a settings file (``--config FILE.yaml``: the same tree as nested mappings,
   or a ``run.json``, whose ``settings`` are reused so a run can be repeated);
3. environment variables: the seed's ``TRAIN_SAMPLES``, ``PREP_TRAIN_SAMPLES``,
   ``EVAL_SAMPLES``, ``NUM_GENERATIONS``, ``OUTPUT_DIR``, ``MODEL_NAME``, and
   ``GSM8K_LAB_THREADS``;
4. command-line flags, which ``cli.py`` generates from these fields.

:func:`load_settings` records where each value came from (:class:`Source`), so
that :func:`validate` - which checks every range, every choice and every count
against the data before any work starts - raises :class:`SettingError`\\ s that
the command line can word with the flag, variable or file the user wrote.
Library modules raise errors naming a setting by its path (``eval.samples``);
only ``cli.py`` knows flag spellings.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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

DTYPES = ("auto", "bf16", "fp16", "fp32")
BACKENDS = ("auto", "transformers", "vllm")
REPORT_TO = ("none", "tensorboard", "wandb", "trackio")
LOSS_TYPES = ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo")
VLLM_MODES = ("colocate", "server")
SPLITS = ("train", "test")
EVAL_SPLITS = ("test", "validation")
SWEEP_METHODS = ("sft", "grpo")
SWEEP_METRICS = ("accuracy", "answer_proportion")

#: Seeds go to ``random``, numpy and torch: numpy (through transformers' ``set_seed``) takes 0..2**32-1.
SEED_MAX = 2**32 - 1
#: The largest integer any setting takes without a range of its own (a C int: torch sizes, vLLM lengths).
INT_MAX = 2**31 - 1
#: The smallest sampling temperature (vLLM's own floor): logits / temperature stay finite, so the
#: sampling probabilities stay a distribution; 0 means greedy.
TEMPERATURE_FLOOR = 0.01


class UsageError(ValueError):
    """A bad input from the user: reported as one line, exit code 2."""


class SettingError(UsageError):
    """A bad value of one setting (or command argument), named by its ``path``.

    ``template`` words the problem with ``{name}`` and ``{value}``; the library
    fills in the path, the command line the flag, variable or file that gave
    the value (see :meth:`render`).
    """

    def __init__(self, path: str, value: Any, template: str):
        self.path, self.value, self.template = path, value, template
        super().__init__(self.render(path, _show(value)))

    def render(self, name: str, value: str, resume: str = "resume=True", overwrite: str = "overwrite=True") -> str:
        words = {"name": name, "value": value, "resume": resume, "overwrite": overwrite}
        # one pass over the placeholders only: braces in paths or values stay as they are
        return re.sub(r"\{(name|value|resume|overwrite)\}", lambda m: words[m.group(1)], self.template)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def setting(default: Any, help: str, *, env: str | None = None, choices: Iterable | None = None,
            min: float | None = None, max: float | None = None, above: float | None = None,
            split: str | None = None, all_is_none: bool = False, why: str | None = None,
            floor: float | None = None, library: str | None = None) -> Any:
    """A settings field: default, help text and the rules :func:`validate` applies.

    ``min``/``max`` bound it inclusively, ``above`` exclusively (an integer without ``max`` is
    bounded by :data:`INT_MAX`); ``floor`` allows 0 or a value of at least ``floor``; ``split``
    marks a problem count checked against that split's size; ``all_is_none`` lets the word
    ``all`` stand for None (the whole split); ``why`` explains a range in its error;
    ``library`` names the entry of :data:`LIBRARY_CHOICES` whose library lists the valid values.
    """
    meta = {"help": help, "env": env, "choices": tuple(choices) if choices is not None else None,
            "min": min, "max": max, "above": above, "split": split, "all_is_none": all_is_none,
            "why": why, "floor": floor, "library": library}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(factory, help: str) -> Any:
    return field(default_factory=factory, metadata={"help": help, "section": True})


# --------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------
@dataclass
class ModelSettings:
    name: str | None = setting(
        None, "Hugging Face hub id, model folder or run directory; unset means the embedded "
        "SmolLM2-135M-Instruct.", env="MODEL_NAME")
    dtype: str = setting("auto", "Weights dtype: auto (bf16 where the device runs it natively, else fp32 "
                         "on CPU and fp16 on old GPUs), bf16, fp16 or fp32.", choices=DTYPES)
    attn_implementation: str | None = setting(
        None, "Attention kernel (sdpa, flash_attention_2, eager, or a name transformers registers); unset "
        "lets transformers choose.", library="attention")
    quantize: str | None = setting(None, "Generation on the CPU only (evaluation, traces): int8 runs the linear "
                                   "layers on int8 weights and per-call int8 activations (torch dynamic "
                                   "quantization); unset keeps the dtype.", choices=(None, "int8"))


@dataclass
class DataSettings:
    source: str = setting("bundled", "Evaluation problems: bundled (the shipped GSM8K copy), hub "
                          "(openai/gsm8k main) or a JSONL file of {question, answer}.")
    train_source: str = setting("bundled", "Training problems: bundled, hub or a JSONL file; never the "
                                "file that a run evaluates on.")
    budget_seed: int = setting(1234, "Seed of the one shuffle of the train split from which every budget "
                               "takes its first N problems (so budgets are nested and shared); the same shuffle's "
                               "end holds the validation and prep problems.", min=0, max=SEED_MAX)
    validation_size: int = setting(512, "Validation problems: the last N of the train split's budget shuffle, "
                                   "never trained on (budgets and prep stop before them); 0 holds none out.",
                                   min=0)


@dataclass
class LoraSettings:
    r: int = setting(16, "LoRA rank.", min=1)
    alpha: int = setting(32, "LoRA alpha (scale = alpha / r).", min=1)
    dropout: float = setting(0.05, "Dropout on the LoRA branch.", min=0.0, max=0.99)
    target_modules: list[str] = setting(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "Linear layers that get an adapter.")


@dataclass
class GenerationSettings:
    """How text is generated for one purpose (see ``GENERATION``)."""

    max_new_tokens: int = setting(512, "Generation budget per completion, in tokens.", min=1)
    temperature: float = setting(0.0, "Sampling temperature; 0 means greedy.", min=0.0, floor=TEMPERATURE_FLOOR)
    top_p: float = setting(1.0, "Nucleus sampling mass (1 disables; sampling only).", above=0.0, max=1.0)
    top_k: int = setting(0, "Top-k sampling (0 disables; sampling only).", min=0)
    min_p: float = setting(0.0, "Min-p sampling (0 disables; sampling only).", min=0.0, max=1.0)
    repetition_penalty: float = setting(1.0, "Repetition penalty (1 disables).", above=0.0)
    seed: int = setting(0, "Sampling seed.", min=0, max=SEED_MAX)
    batch_size: int = setting(64, "Completions decoded together (rows of the continuous batch).", min=1)
    backend: str = setting("auto", "auto (vLLM on a CUDA GPU when installed, else transformers), "
                           "transformers or vllm.", choices=BACKENDS)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


#: Generation settings per purpose, as data (like an lm-eval task's generation_kwargs).
#: Each purpose starts from the GenerationSettings defaults and changes these.
GENERATION: dict[str, dict[str, Any]] = {
    "eval": {"temperature": 0.0},                      # greedy: the seed's accuracy
    "traces": {"temperature": 0.8},                    # rejection sampling needs varied attempts
    "rollout": {"temperature": 1.0},                   # GRPO's group samples, as long as evaluation's
}


def generation(purpose: str):
    return lambda: GenerationSettings(**GENERATION[purpose])


@dataclass
class TrainSettings:
    """What SFT and GRPO training share."""

    epochs: float = setting(1.0, "Passes over the training problems.", above=0.0)
    learning_rate: float = setting(2e-4, "Peak learning rate (LoRA).", above=0.0, max=1.0)
    per_device_batch_size: int | None = setting(4, "Examples per device per step.", min=1)
    gradient_accumulation_steps: int = setting(1, "Micro-batches per optimizer step.", min=1)
    warmup_ratio: float = setting(0.05, "Share of steps used for linear warm-up.", min=0.0, max=1.0)
    lr_scheduler: str = setting("cosine", "Learning-rate schedule (a transformers scheduler name that needs no "
                                "arguments of its own).", library="scheduler")
    save_steps: int = setting(50, "Checkpoint every N optimizer steps (the resume points).", min=1)
    logging_steps: int = setting(5, "Log training curves every N steps.", min=1)
    gradient_checkpointing: bool | None = setting(
        None, "Trade compute for memory (unset: on where the memory estimate printed at start-up says a step "
        "would not fit the GPU without it; off on a CPU).")


@dataclass
class SFTSettings(TrainSettings):
    epochs: float | None = setting(None, "Passes over the training problems (unset: 2 for the prep stage, "
                                   "which has few problems, 1 for full).", above=0.0)
    prep_train_samples: int = setting(64, "Problems in the prep stage, taken from the budget shuffle just before "
                                      "the validation problems, so no budget contains them.",
                                      env="PREP_TRAIN_SAMPLES", min=1, split="train")
    prep_learning_rate: float | None = setting(None, "Peak learning rate of the prep stage (unset: "
                                               "sft.learning_rate).", above=0.0, max=1.0)
    train_samples: int | None = setting(1024, "Problems in the full stage ('all': the whole split).",
                                        env="TRAIN_SAMPLES", min=1, split="train", all_is_none=True)
    max_length: int = setting(768, "Longest tokenised example (prompt + target); longer ones are cut.", min=16)

    def stage_samples(self, stage: str) -> int | None:
        return self.prep_train_samples if stage == "prep" else self.train_samples

    def stage_learning_rate(self, stage: str) -> float:
        """The prep stage's own rate when set, so a sweep of the full stage's rate keeps its prep model."""
        return self.prep_learning_rate if stage == "prep" and self.prep_learning_rate is not None \
            else self.learning_rate

    def stage_epochs(self, stage: str) -> float:
        """Passes for a stage: the setting, or 2 for prep (few problems) and 1 for full."""
        return self.epochs if self.epochs is not None else (2.0 if stage == "prep" else 1.0)


@dataclass
class GRPOSettings(TrainSettings):
    train_samples: int | None = setting(1024, "Problems ('all': the whole split).", env="TRAIN_SAMPLES",
                                        min=1, split="train", all_is_none=True)
    num_generations: int = setting(8, "Completions per prompt, the GRPO group.", env="NUM_GENERATIONS", min=2,
                                   why="GRPO compares completions within a group")
    per_device_batch_size: int | None = setting(
        None, "Completions per device per step (unset: two prompts' groups); times processes and "
        "accumulation it must be a multiple of num_generations.", min=1)
    gradient_accumulation_steps: int = setting(4, "Micro-batches per optimizer step (with the default batch: "
                                               "8 prompts x num_generations completions per step).", min=1)
    learning_rate: float = setting(2e-5, "Peak learning rate (LoRA).", above=0.0, max=1.0)
    beta: float = setting(0.04, "KL coefficient against the reference model (the adapter switched off); "
                          "0 disables it.", min=0.0)
    loss_type: str = setting("dapo", "TRL loss normalisation.", choices=LOSS_TYPES)
    save_steps: int = setting(25, "Checkpoint every N optimizer steps (the resume points).", min=1)
    logging_steps: int = setting(1, "Log training curves every N steps.", min=1)
    use_vllm: bool = setting(False, "Roll out with vLLM (TRL use_vllm).")
    vllm_mode: str = setting("colocate", "colocate (vLLM beside training on the same GPU) or server "
                             "(trl vllm-serve).", choices=VLLM_MODES)
    colocate_gpu_memory_utilization: float = setting(0.3, "GPU memory share of the rollout vLLM colocated "
                                                     "with training (vllm_mode colocate).",
                                                 above=0.0, max=1.0)
    continuous_batching: bool = setting(False, "Roll out with transformers' continuous batching "
                                        "(TRL use_transformers_continuous_batching): a GPU without vLLM.")
    rollout_engine: str = setting("auto", "How rollouts are generated without vLLM: trl (TRL's model.generate), "
                                  "refill (this project's continuous-batching loop, through TRL's rollout_func; "
                                  "LoRA unmerged), refill-merged (the same on LoRA merged for the rollout), or auto "
                                  "(refill on a CPU, trl on a GPU).",
                                  choices=("auto", "trl", "refill", "refill-merged"))
    cache_implementation: str | None = setting(None, "KV cache of TRL's own rollouts (static or dynamic); unset: "
                                               "transformers' default.", choices=(None, "static", "dynamic"))
    rollout: GenerationSettings = section(generation("rollout"), "How GRPO samples its groups.")

    def batch(self) -> int:
        """Completions per device per step: the setting, or two prompts' groups."""
        return self.per_device_batch_size or 2 * self.num_generations


@dataclass
class EvalSettings:
    split: str = setting("test", "Problems evaluated: test (the GSM8K test split, for final reports) or "
                         "validation (data.validation_size held-out train problems, for tuning).",
                         choices=EVAL_SPLITS)
    samples: int | None = setting(512, "Problems evaluated, the first N of eval.split ('all': the whole split; "
                                  "test has 1,319).", env="EVAL_SAMPLES", min=1, split="test", all_is_none=True)
    samples_per_problem: int = setting(1, "Completions per problem: 1 is the seed's greedy evaluation; K > 1 "
                                       "samples K (with the generation temperature, > 0) and reports mean@K, "
                                       "pass@k and majority-vote accuracy.", min=1)
    extra_sources: list[str] = setting([], "Further evaluation sets after training (test split only), each on its "
                                       "first eval.samples problems; gsm-symbolic[:N] (variants of N test problems) "
                                       "also evaluates those test problems, for the report's paired drop.")
    generation: GenerationSettings = section(generation("eval"), "How answers are generated.")


@dataclass
class TraceSettings:
    split: str = setting("train", "Split the traces cover.", choices=SPLITS)
    num_samples: int | None = setting(None, "Problems covered ('all': the whole split); on the train "
                                      "split the budget shuffle's first N.", min=1, split="traces",
                                      all_is_none=True)
    max_attempts: int = setting(5, "Samples per problem before the original solution is kept.", min=1)
    generation: GenerationSettings = section(generation("traces"), "How attempts are sampled.")


@dataclass
class VLLMSettings:
    gpu_memory_utilization: float = setting(0.85, "GPU memory share of the vLLM engine used for evaluation "
                                            "and traces.", above=0.0, max=1.0)
    max_model_len: int = setting(2048, "Longest prompt + completion vLLM plans for.", min=64)
    tensor_parallel_size: int = setting(1, "GPUs one vLLM engine spans.", min=1)


@dataclass
class RuntimeSettings:
    threads: int | None = setting(None, "CPU threads per process (unset: the cores this process may use, "
                                  "shared among the processes on the machine).", env="GSM8K_LAB_THREADS",
                                  min=1)


@dataclass
class ExperimentSettings:
    budgets: list[int] = setting([256, 512, 1024, 2048], "Experiment 1: training problems per run.")
    seeds: int = setting(1, "Repeat each training run with K seeds (seed, seed+1, ...).", min=1)
    traces_budget: int = setting(1024, "Experiment 2: training problems of both SFT runs.", min=1,
                                 split="train")


@dataclass
class SweepSettings:
    methods: list[str] = setting(["sft", "grpo"], "Methods whose learning rate is swept (sft, grpo).")
    sft_learning_rates: list[float] = setting([2e-4, 5e-4, 1e-3, 2e-3], "SFT (full stage) learning rates tried.")
    grpo_learning_rates: list[float] = setting([2e-5, 5e-5, 1e-4, 3e-4], "GRPO learning rates tried.")
    budget: int | None = setting(None, "Training problems of each sweep run (unset: the largest of "
                                 "experiment.budgets).", min=1, split="train")
    metric: str = setting("accuracy", "What the pick maximises on validation: accuracy or answer_proportion; "
                          "ties go to the other measure, then to the smaller learning rate.", choices=SWEEP_METRICS)


@dataclass
class Settings:
    output_root: str = setting("outputs", "Root of default output paths.", env="OUTPUT_DIR")
    seed: int = setting(42, "Training seed.", min=0, max=SEED_MAX)
    report_to: str = setting("none", "Tracking backend for TRL.", choices=REPORT_TO)
    model: ModelSettings = section(ModelSettings, "The model.")
    data: DataSettings = section(DataSettings, "Where problems come from.")
    lora: LoraSettings = section(LoraSettings, "The adapter trained by SFT and GRPO.")
    sft: SFTSettings = section(SFTSettings, "Supervised fine-tuning (prep and full stages).")
    grpo: GRPOSettings = section(GRPOSettings, "GRPO.")
    eval: EvalSettings = section(EvalSettings, "Evaluation on GSM8K test problems.")
    traces: TraceSettings = section(TraceSettings, "Rejection-sampled traces.")
    vllm: VLLMSettings = section(VLLMSettings, "The vLLM engine (GPU).")
    runtime: RuntimeSettings = section(RuntimeSettings, "This process.")
    experiment: ExperimentSettings = section(ExperimentSettings, "Experiments 1 and 2.")
    sweep: SweepSettings = section(SweepSettings, "Learning-rate sweeps on the validation split.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def get(self, path: str) -> Any:
        obj: Any = self
        for part in path.split("."):
            obj = getattr(obj, part)
        return obj

    def set(self, path: str, value: Any) -> None:
        *head, last = path.split(".")
        obj: Any = self
        for part in head:
            obj = getattr(obj, part)
        setattr(obj, last, value)


#: Presets as data: paths of the tree and the values they set.
PRESETS: dict[str, dict[str, Any]] = {
    # Both experiments at a size that fits 2 CPU cores in well under an hour (35 min with bf16).
    # Sizes: greedy evaluation of 64 test problems (the answer-format proportion moves on a 135M
    # model even where accuracy cannot); prep SFT on 64 problems at a LoRA learning rate of 1e-3 (at
    # 2e-4 a 32-problem prep stage left no completion in the exact format, so GRPO's format_exact
    # reward never fired); GRPO with 4 completions of at most 128 tokens per prompt; traces with 8
    # attempts of at most 256 tokens (an accepted trace is closed; 512-token attempts were mostly
    # runaway repetition); the GSM-Symbolic column on 32 variants and their 32 originals.
    # Learning rates: chosen on the validation split, never on test (docs/preset/sweep/: `gsm8k-lab
    # sweep-lr --metric answer_proportion` from that prep model at budget 64; the highest validation
    # answer proportion, both picks inside the grid: SFT 2e-4..4e-3 -> 2e-3, GRPO 3e-5..1e-3 -> 3e-4).
    # A run is reused only when its recorded settings match the preset's (runs.check_same_settings),
    # the SFT section whole: prep and full stages both record sft.learning_rate 2e-3 with
    # sft.prep_learning_rate 1e-3, so a run made by hand is reused only when given all these values
    # (e.g. `--config` with a file of them).
    "small": {
        "sft.prep_learning_rate": 1e-3,
        "sft.learning_rate": 2e-3,
        "eval.samples": 64,
        "eval.extra_sources": ["gsm-symbolic:32"],
        "grpo.num_generations": 4,
        "grpo.gradient_accumulation_steps": 1,
        "grpo.rollout.max_new_tokens": 128,
        "grpo.learning_rate": 3e-4,
        "experiment.budgets": [32, 64],
        "experiment.traces_budget": 64,
        "traces.max_attempts": 8,
        "traces.generation.max_new_tokens": 256,
    },
}


# --------------------------------------------------------------------------
# Where values come from
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """Where one setting's value came from: a default, a file, a variable, a preset or a flag."""

    kind: str  # default | file | env | preset | flag
    name: str = ""  # the file, variable or flag
    raw: str | None = None  # the text as written

    def label(self, path: str) -> str:
        """How an error names the value: ``--eval-samples``, ``EVAL_SAMPLES``, ``eval.samples (in f.yaml)``."""
        if self.kind in ("env", "flag"):
            return self.name
        if self.kind == "file":
            return f"{path} (in {self.name})"
        if self.kind == "preset":
            return f"{path} (preset {self.name})"
        return path


class Sources(dict):
    """path -> :class:`Source`; a path not listed holds its default."""

    def of(self, path: str) -> Source:
        return self.get(path, Source("default"))

    def word(self, err: SettingError, **words: str) -> str:
        """The error worded with the source of its value (the text as the user wrote it)."""
        src = self.of(err.path)
        if src.raw is None:
            value = _show(err.value)
        else:
            value = repr(src.raw) if isinstance(err.value, str) else src.raw
        return err.render(src.label(err.path), value, **words)


def fields_of(cls) -> list[tuple[dataclasses.Field, Any]]:
    """A dataclass's fields with their resolved type hints."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def iter_settings(cls=Settings, prefix: str = "") -> Iterable[tuple[str, dataclasses.Field, Any]]:
    """Every leaf setting as ``(path, field, type)``, sections expanded."""
    for f, hint in fields_of(cls):
        path = f"{prefix}{f.name}"
        if f.metadata.get("section"):
            yield from iter_settings(hint, prefix=path + ".")
        else:
            yield path, f, hint


def leaf(path: str) -> tuple[dataclasses.Field, Any]:
    for p, f, hint in iter_settings():
        if p == path:
            return f, hint
    raise KeyError(path)


def parse_value(path: str, raw: Any, source: Source | None = None) -> Any:
    """Turn text (from a flag, a variable or a file) into the setting's type, or a SettingError."""
    f, hint = leaf(path)
    meta = f.metadata
    base, optional = _unwrap(hint)

    def bad(expected: str) -> UsageError:
        shown = repr(raw) if isinstance(raw, str) else _show(raw)
        return UsageError(f"{(source or Source('default')).label(path)} must be {expected}, got {shown}")

    if raw is None:
        if optional:
            return None
        raise bad(_expected(base, meta))
    if isinstance(raw, str) and optional and meta.get("all_is_none") and raw.strip().lower() == "all":
        return None
    if isinstance(raw, str) and optional and raw.strip().lower() in ("none", "null") and not meta.get("all_is_none"):
        return None
    if base is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise bad("true or false")
    if base is int:
        if isinstance(raw, bool):
            raise bad(_expected(base, meta))
        try:
            value = raw if isinstance(raw, int) else strict_int(raw)
        except ValueError:
            raise bad(_expected(base, meta)) from None
        if meta.get("split") and value <= 0:  # counts are named for what they are
            raise bad(_expected(base, meta))
        return value
    if base is float:
        try:
            value = strict_float(raw) if not isinstance(raw, (int, float)) or isinstance(raw, bool) else raw
        except ValueError:
            raise bad("a number") from None
        return float(value)
    if base is str:
        return str(raw)
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        items = raw if isinstance(raw, list) else [x for x in str(raw).replace(",", " ").split()]
        out = []
        for x in items:
            try:
                out.append(strict_int(x) if item is int else item(x))
            except (TypeError, ValueError):
                label = (source or Source("default")).label(path)
                kind = "integers" if item is int else f"{item.__name__} values"
                raise UsageError(f"{label} must be a list of {kind}, got {x!r}") from None
        return out
    raise TypeError(f"unsupported setting type for {path}: {hint}")  # pragma: no cover


def strict_int(raw: Any) -> int:
    """An integer written as plain decimal digits (Python's ``1_0`` or ``0x10`` are not numbers to a user)."""
    if isinstance(raw, bool):
        raise ValueError(raw)
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(raw)
    return int(text)


def strict_float(raw: Any) -> float:
    """A number as a user writes it: Python's ``1_0.5`` is refused."""
    text = str(raw).strip()
    if "_" in text:
        raise ValueError(raw)
    return float(text)


def _unwrap(hint) -> tuple[Any, bool]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def _expected(base, meta) -> str:
    if base is int:
        if meta.get("split"):
            return "a positive integer" + (" or 'all'" if meta.get("all_is_none") else "")
        return "an integer"
    if base is float:
        return "a number"
    return base.__name__


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------
def load_settings(env: Mapping[str, str] | None = None, config_file: str | Path | None = None,
                  overrides: Mapping[str, tuple[Any, Source]] | None = None,
                  preset: str | None = None) -> tuple[Settings, Sources]:
    """Defaults, then the preset, the settings file, the environment and the overrides (flags)."""
    env = os.environ if env is None else env
    settings, sources = Settings(), Sources()
    if preset is not None:
        if preset not in PRESETS:
            raise SettingError("preset", preset, "{name} must be one of " + ", ".join(PRESETS) + ", got {value}")
        for path, value in PRESETS[preset].items():
            settings.set(path, copy.deepcopy(value))
            sources[path] = Source("preset", preset)
    if config_file is not None:
        for path, raw in read_settings_file(config_file).items():
            src = Source("file", str(config_file))
            settings.set(path, parse_value(path, raw, src))
            sources[path] = src
    for path, f, _ in iter_settings():
        var = f.metadata.get("env")
        if var and env.get(var, "") != "":
            src = Source("env", var, env[var])
            settings.set(path, parse_value(path, env[var], src))
            sources[path] = src
    for path, (raw, src) in (overrides or {}).items():
        settings.set(path, parse_value(path, raw, src))
        sources[path] = src
    return settings, sources


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) file of the settings tree, flattened to ``path -> value``.

    A ``run.json`` works too: its ``settings`` are used, so ``--config RUN/run.json``
    repeats a run's settings.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SettingError("config", str(path), "{name} {value} is not a file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = str(exc).splitlines()[0]
        raise SettingError("config", str(path), "{name} {value} is not valid YAML (" + problem + ")") from None
    if isinstance(data, dict) and isinstance(data.get("settings"), dict) and "run_id" in data:
        data = data["settings"]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingError("config", str(path), "{name} {value} must hold a mapping of settings")
    flat: dict[str, Any] = {}
    known = {p for p, _, _ in iter_settings()}
    sections = {p.rsplit(".", 1)[0] for p in known if "." in p}

    def walk(obj: dict, prefix: str) -> None:
        for key, value in obj.items():
            path_ = f"{prefix}{key}"
            if isinstance(value, dict) and path_ in sections:
                walk(value, path_ + ".")
            elif path_ in known:
                flat[path_] = value
            else:
                raise SettingError("config", str(path),
                                   "{name} {value}: unknown setting " + repr(path_))
    walk(data, "")
    return flat


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------
def validate(settings: Settings, splits: Mapping[str, int] | None = None,
             counts: Iterable[str] | None = None, processes: int = 1) -> None:
    """Check every setting before any work starts; raise the first :class:`SettingError`.

    Ranges and choices of every field (a value other than the default also against the library
    that takes it: transformers' schedulers and attention functions); the problem counts in
    ``counts`` (paths; default all) against ``splits`` (split name -> problems available; a count
    whose split is not given is not compared); GRPO's group against its global batch of
    ``processes`` processes; the seeds an experiment repeats; the experiments' budgets.
    """
    splits = splits or {}
    wanted = set(counts) if counts is not None else None
    if settings.eval.samples_per_problem > 1 and not settings.eval.generation.temperature > 0:
        raise SettingError("eval.generation.temperature", settings.eval.generation.temperature,
                           "{name} must be > 0 when several completions are sampled per problem "
                           f"(eval.samples_per_problem = {settings.eval.samples_per_problem}), got " + "{value}")
    traces_temp = settings.traces.generation.temperature
    if not traces_temp > 0:  # before the generic range check, which allows 0 (greedy)
        raise SettingError("traces.generation.temperature", traces_temp, "{name} must be > 0 for rejection "
                           "sampling (attempts must differ), got {value}")
    for path, f, _hint in iter_settings():
        value = settings.get(path)
        meta = f.metadata
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingError(path, value, "{name} must be a finite number, got {value}")
        if meta["choices"] is not None and value not in meta["choices"]:
            names = ", ".join(str(c) for c in meta["choices"] if c is not None)
            raise SettingError(path, value, "{name} must be one of " + names + ", got {value}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_range(path, value, meta)
        if meta.get("library") and value != _DEFAULTS.get(path):  # defaults are tested against the library
            _check_library_choice(path, value, meta["library"])
        split = meta.get("split")
        if split and split in splits and (wanted is None or path in wanted) and value > splits[split]:
            available = splits[split]
            word = {"traces": f"the {settings.traces.split} split",
                    "test": f"the {settings.eval.split} split" if settings.eval.split != "test" else "the split",
                    }.get(split, "the split")
            raise SettingError(path, value, "{name}={value} is larger than " + word + f" ({available} problems); "
                               f"use at most {available}" + (" or 'all'" if meta.get("all_is_none") else ""))
    for purpose in ("eval", "traces"):
        if settings.model.quantize and settings.get(f"{purpose}.generation.backend") == "vllm":
            raise SettingError("model.quantize", settings.model.quantize, "{name} {value} applies to the "
                               f"transformers backend on the CPU, not to vLLM ({purpose}.generation.backend)")
    g = settings.grpo
    global_batch = g.batch() * processes * g.gradient_accumulation_steps
    if global_batch % g.num_generations:
        raise SettingError(
            "grpo.num_generations", g.num_generations,
            "{name}={value} does not divide the GRPO batch of " + f"{global_batch} completions "
            f"({g.batch()} per device x {processes} processes x {g.gradient_accumulation_steps} accumulation); "
            f"use a per-device batch that is a multiple of {g.num_generations}")
    if settings.eval.split != "test" and settings.eval.extra_sources:
        raise SettingError("eval.extra_sources", settings.eval.extra_sources, "{name} {value}: further evaluation "
                           "sets go with eval.split test (they are test problems), not " + settings.eval.split)
    if not settings.lora.target_modules:
        raise SettingError("lora.target_modules", [], "{name} needs at least one layer name")
    repeats = settings.experiment.seeds
    if settings.seed + repeats - 1 > SEED_MAX:
        raise SettingError("experiment.seeds", repeats, "{name}={value} repeats seed " + f"{settings.seed} up to "
                           f"{settings.seed + repeats - 1}, beyond the largest seed {SEED_MAX}")
    budgets = settings.experiment.budgets
    if not budgets:
        raise SettingError("experiment.budgets", budgets, "{name} needs at least one positive integer")
    for b in budgets:
        if b <= 0:
            raise SettingError("experiment.budgets", budgets, "{name} must be positive integers, got {value}")
        if b > INT_MAX:
            raise SettingError("experiment.budgets", budgets, "{name} " + f"{b} is larger than {INT_MAX}")
        if "train" in splits and (wanted is None or "experiment.budgets" in wanted) and b > splits["train"]:
            raise SettingError("experiment.budgets", budgets,
                               "{name} " + f"{b} is larger than the train split ({splits['train']} problems)")


#: Which values a library accepts, for settings whose ``library`` names it: value -> None (usable) or
#: why it cannot be used here. Loaded only for a value other than the default (they import transformers).
LIBRARY_CHOICES: dict[str, Any] = {}


def library_choices(name: str) -> dict[str, str | None]:
    if name not in LIBRARY_CHOICES:
        LIBRARY_CHOICES[name] = {"scheduler": _scheduler_choices, "attention": _attention_choices}[name]()
    return LIBRARY_CHOICES[name]


def _scheduler_choices() -> dict[str, str | None]:
    """transformers' schedulers (``SchedulerType``), each built as the trainer builds it: a scheduler that
    needs arguments of its own (``min_lr``, ``num_decay_steps``) fails there, and is refused here with
    transformers' own reason."""
    import torch
    from transformers import get_scheduler
    from transformers.trainer_utils import SchedulerType

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    out: dict[str, str | None] = {}
    for kind in SchedulerType:
        try:
            get_scheduler(kind.value, optimizer=optimizer, num_warmup_steps=1, num_training_steps=2)
            out[kind.value] = None
        except (TypeError, ValueError) as exc:
            out[kind.value] = str(exc).splitlines()[0]
    return out


def _attention_choices() -> dict[str, str | None]:
    """transformers' registered attention functions, and eager (the model's own code)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return {name: None for name in ("eager", *ALL_ATTENTION_FUNCTIONS.valid_keys())}


def _check_library_choice(path: str, value: Any, library: str) -> None:
    if library == "attention" and "/" in str(value):
        return  # a hub kernel ("kernels-community/..."): transformers fetches and checks it at load
    choices = library_choices(library)
    usable = ", ".join(k for k, why in choices.items() if why is None)
    if value not in choices:
        raise SettingError(path, value, "{name} must be one of " + usable + ", got {value}")
    if choices[value] is not None:
        raise SettingError(path, value, "{name} {value} needs arguments of its own that this pipeline does not "
                           f"pass ({choices[value]}); use one of " + usable)


def _check_range(path: str, value: float, meta: Mapping) -> None:
    lo, hi, above, floor = meta.get("min"), meta.get("max"), meta.get("above"), meta.get("floor")
    if floor is not None and 0 < value < floor:
        raise SettingError(path, value, "{name} must be at least " + f"{floor:g}" + " (smaller temperatures "
                           "overflow the logits; 0 means greedy), got {value}")
    if (lo is not None and value < lo) or (hi is not None and value > hi) or (above is not None and value <= above):
        why = f" ({meta['why']})" if meta.get("why") else ""
        raise SettingError(path, value, "{name} must be " + _range_words(lo, hi, above, isinstance(value, int))
                           + why + ", got {value}")
    if isinstance(value, int) and hi is None and value > INT_MAX:  # a count or size nothing could allocate
        raise SettingError(path, value, "{name} must be at most " + f"{INT_MAX}" + ", got {value}")


def _range_words(lo, hi, above, integer: bool) -> str:
    if integer and lo == 1 and hi is None:
        return "a positive integer"
    if integer and lo == 0 and hi is None:
        return "a non-negative integer"
    parts = []
    if lo is not None:
        parts.append(f">= {_num(lo)}")
    if above is not None:
        parts.append(f"> {_num(above)}")
    if hi is not None:
        parts.append(f"<= {_num(hi)}")
    return " and ".join(parts)


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _defaults() -> dict[str, Any]:
    tree = Settings()
    return {path: tree.get(path) for path, _, _ in iter_settings()}


def describe_settings(settings: Settings) -> str:
    """The tree as indented JSON (for printing)."""
    return json.dumps(settings.to_dict(), indent=2)


def env_vars() -> set[str]:
    """The environment variables that settings read."""
    return {f.metadata["env"] for _, f, _ in iter_settings() if f.metadata.get("env")}


_DEFAULTS = _defaults()

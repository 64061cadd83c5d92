"""Every value checked before any work starts: ranges, choices (some from the library that takes
them), problem counts against the data, GRPO's group against its batch, experiment seeds and budgets."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import SettingError
from .parsing import iter_settings
from .settings import INT_MAX, SEED_MAX, Settings


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------
def validate(settings: Settings, splits: Mapping[str, int] | None = None,
             counts: Iterable[str] | None = None) -> None:
    """Check every setting before any work starts; raise the first :class:`SettingError`.

    Ranges and choices of every field (a value other than the default also against the library
    that takes it: transformers' schedulers and attention functions); the problem counts in
    ``counts`` (paths; default all) against ``splits`` (split name -> problems available; a count
    whose split is not given is not compared); the validation and prep problems against the train
    split (when ``counts`` includes ``data.validation_size``: the train split's regions must fit
    even for a command that uses none of them, so its settings stay valid for the runs that do);
    GRPO's group against its global batch (the same on any number of processes); the seeds an experiment
    repeats; the experiments' budgets.
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
        if meta["choices"] is not None and isinstance(value, list):  # several of the choices
            names = ", ".join(str(c) for c in meta["choices"] if c is not None)
            for item in value:
                if item not in meta["choices"]:
                    raise SettingError(path, value, "{name} must be one or more of " + names + f", got {item!r}")
            if not value or len(set(value)) != len(value):
                raise SettingError(path, value, "{name} must name each of " + names + " at most once, and at least "
                                   "one, got {value}")
            if "none" in value and len(value) > 1:
                raise SettingError(path, value, "{name} none means no tracker: give it alone, got {value}")
        elif meta["choices"] is not None and value not in meta["choices"]:
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
    if settings.grpo.rollout.temperature == 0:  # after the range check (nan, negatives); 0 is greedy elsewhere
        raise SettingError("grpo.rollout.temperature", 0.0, "{name} must be > 0 for GRPO, got {value}: a group must "
                           "be sampled (greedy rollouts give every completion of a group the same text and reward, "
                           "so no advantage to learn from; TRL samples always and divides by the temperature)")
    train = splits.get("train")
    if train is not None and (wanted is None or "data.validation_size" in wanted):
        held_out, prep = settings.data.validation_size, settings.sft.prep_train_samples
        if held_out + prep > train:  # the regions every later run cuts from the train split would not fit
            raise SettingError("data.validation_size", held_out, "{name}={value} and the " + f"{prep} prep problems "
                               f"(sft.prep_train_samples) are more than the train split's {train} problems; use at "
                               f"most {max(train - prep, 0)}")
    for purpose in ("eval", "traces"):
        if settings.model.quantize and settings.get(f"{purpose}.generation.backend") == "vllm":
            raise SettingError("model.quantize", settings.model.quantize, "{name} {value} applies to the "
                               f"transformers backend on the CPU, not to vLLM ({purpose}.generation.backend)")
    g = settings.grpo
    global_batch = g.batch() * g.gradient_accumulation_steps  # on any number of processes (shared accumulation)
    if global_batch % g.num_generations:
        raise SettingError(
            "grpo.num_generations", g.num_generations,
            "{name}={value} does not divide the GRPO batch of " + f"{global_batch} completions "
            f"({g.batch()} per device x {g.gradient_accumulation_steps} accumulation); "
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


def defaults() -> dict[str, Any]:
    """Every setting's default, by path."""
    return dict(_DEFAULTS)


def _scheduler_choices() -> dict[str, str | None]:
    """transformers' schedulers (``SchedulerType``), each built as the trainer builds it and checked as
    the trainer checks its arguments. A scheduler that needs arguments of its own (``min_lr``,
    ``num_decay_steps``) fails in ``get_scheduler``; one that steps on an evaluation metric
    (``reduce_lr_on_plateau``, ``greedy``) is refused by ``TrainingArguments`` without an evaluation
    strategy, and training here evaluates nothing (a run is evaluated once it has ended). Either is
    refused here, before any model loads, with transformers' own reason."""
    import tempfile

    import torch
    from transformers import TrainingArguments, get_scheduler
    from transformers.trainer_utils import SchedulerType

    class ArgumentsOnly(TrainingArguments):
        @property
        def device(self):  # the arguments are checked before the device is set up: stop there (no device state)
            raise _ArgumentsChecked

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    out: dict[str, str | None] = {}
    for kind in SchedulerType:
        try:
            get_scheduler(kind.value, optimizer=optimizer, num_warmup_steps=1, num_training_steps=2)
        except (TypeError, ValueError) as exc:
            out[kind.value] = ("needs arguments of its own that this pipeline does not pass ("
                               + str(exc).splitlines()[0] + ")")
            continue
        try:  # the pipeline's trainer arguments (no evaluation strategy) with this scheduler
            ArgumentsOnly(output_dir=tempfile.gettempdir(), lr_scheduler_type=kind.value, report_to="none")
            out[kind.value] = None
        except _ArgumentsChecked:
            out[kind.value] = None
        except ValueError as exc:
            out[kind.value] = ("cannot be used here: training evaluates nothing before it ends, and transformers' "
                               "Trainer refuses it without an evaluation strategy (" + str(exc).splitlines()[0] + ")")
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
        raise SettingError(path, value, "{name} {value} " + choices[value] + "; use one of " + usable)


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


_DEFAULTS = _defaults()


class _ArgumentsChecked(Exception):
    """``TrainingArguments`` passed its checks and reached the device set-up, which a check skips."""

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

The package, in the order a reader needs it:

- :mod:`.settings`: the tree and the presets (start here);
- :mod:`.fields`: how a field declares its default, help and rules;
- :mod:`.errors`: :class:`UsageError`, :class:`SettingError`, :class:`Source` and how errors are worded;
- :mod:`.parsing`: text into typed values, the tree walked leaf by leaf;
- :mod:`.loading`: :func:`load_settings` and settings files;
- :mod:`.validation`: :func:`validate`.
"""

from __future__ import annotations

from .errors import SettingError, Source, Sources, UsageError, show_value
from .fields import section, setting
from .loading import describe_settings, env_vars, load_settings, read_settings_file
from .parsing import expected, fields_of, iter_settings, leaf, parse_value, strict_float, strict_int, unwrap
from .settings import (
    BACKENDS,
    DTYPES,
    EVAL_SPLITS,
    GENERATION,
    INT_MAX,
    LOSS_TYPES,
    PRESETS,
    REPORT_TO,
    SEED_MAX,
    SPLITS,
    SWEEP_METHODS,
    SWEEP_METRICS,
    TEMPERATURE_FLOOR,
    VLLM_MODES,
    DataSettings,
    EvalSettings,
    ExperimentSettings,
    GenerationSettings,
    GRPOSettings,
    LoraSettings,
    ModelSettings,
    RuntimeSettings,
    Settings,
    SFTSettings,
    SweepSettings,
    TraceSettings,
    TrainSettings,
    VLLMSettings,
    generation,
)
from .validation import LIBRARY_CHOICES, defaults, library_choices, validate

__all__ = [
    "BACKENDS",
    "DTYPES",
    "DataSettings",
    "EVAL_SPLITS",
    "EvalSettings",
    "ExperimentSettings",
    "GENERATION",
    "GRPOSettings",
    "GenerationSettings",
    "INT_MAX",
    "LIBRARY_CHOICES",
    "LOSS_TYPES",
    "LoraSettings",
    "ModelSettings",
    "PRESETS",
    "REPORT_TO",
    "RuntimeSettings",
    "SEED_MAX",
    "SFTSettings",
    "SPLITS",
    "SWEEP_METHODS",
    "SWEEP_METRICS",
    "SettingError",
    "Settings",
    "Source",
    "Sources",
    "SweepSettings",
    "TEMPERATURE_FLOOR",
    "TraceSettings",
    "TrainSettings",
    "UsageError",
    "VLLMSettings",
    "VLLM_MODES",
    "defaults",
    "describe_settings",
    "env_vars",
    "expected",
    "fields_of",
    "generation",
    "iter_settings",
    "leaf",
    "library_choices",
    "load_settings",
    "parse_value",
    "read_settings_file",
    "section",
    "setting",
    "show_value",
    "strict_float",
    "strict_int",
    "unwrap",
    "validate",
]

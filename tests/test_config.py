"""The settings tree: defaults, precedence (file < env < flags), parsing, validation, presets, sources."""

import json
import re

import pytest

from gsm8k_lab.config import (
    GENERATION,
    PRESETS,
    SettingError,
    Settings,
    Source,
    UsageError,
    env_vars,
    iter_settings,
    load_settings,
    read_settings_file,
    validate,
)

SPLITS = {"train": 7473, "test": 1319}


def test_defaults():
    s, sources = load_settings(env={})
    assert s.eval.samples == 512  # the seed's default
    assert s.eval.generation.temperature == 0.0 and s.traces.generation.temperature == 0.8
    assert s.grpo.rollout.temperature == 1.0
    assert s.sft.stage_epochs("prep") == 2.0 and s.sft.stage_epochs("full") == 1.0
    assert not sources
    assert json.dumps(s.to_dict())  # serialisable for run.json
    validate(s, SPLITS)  # the defaults are valid


def test_every_setting_has_help_and_the_seed_env_names_exist():
    for path, f, _ in iter_settings():
        assert f.metadata["help"].strip(), path
    assert {"TRAIN_SAMPLES", "PREP_TRAIN_SAMPLES", "EVAL_SAMPLES", "NUM_GENERATIONS", "OUTPUT_DIR",
            "MODEL_NAME"} <= env_vars()


def test_generation_purposes_are_data():
    s = Settings()
    for purpose, path in (("eval", "eval.generation"), ("traces", "traces.generation"), ("rollout", "grpo.rollout")):
        gen = s.get(path)
        for key, value in GENERATION[purpose].items():
            assert getattr(gen, key) == value
    # each purpose owns its object: changing one leaves the others alone
    s.eval.generation.temperature = 0.5
    assert Settings().eval.generation.temperature == 0.0 and s.traces.generation.temperature == 0.8


def test_env_overrides_defaults():
    s, sources = load_settings(env={"TRAIN_SAMPLES": "256", "PREP_TRAIN_SAMPLES": "32", "EVAL_SAMPLES": "all",
                                    "NUM_GENERATIONS": "8", "OUTPUT_DIR": "/x", "MODEL_NAME": "org/m"})
    assert s.sft.train_samples == 256 and s.grpo.train_samples == 256
    assert s.sft.prep_train_samples == 32
    assert s.eval.samples is None
    assert s.grpo.num_generations == 8
    assert s.output_root == "/x" and s.model.name == "org/m"
    assert sources.of("eval.samples") == Source("env", "EVAL_SAMPLES", "all")


def test_precedence_file_then_env_then_flags(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("eval:\n  samples: 10\n  generation:\n    max_new_tokens: 99\ngrpo:\n  beta: 0.0\n")
    s, src = load_settings(env={}, config_file=f)
    assert (s.eval.samples, s.eval.generation.max_new_tokens, s.grpo.beta) == (10, 99, 0.0)
    assert src.of("grpo.beta").kind == "file"
    s, src = load_settings(env={"EVAL_SAMPLES": "20"}, config_file=f)
    assert s.eval.samples == 20 and src.of("eval.samples").name == "EVAL_SAMPLES"
    s, src = load_settings(env={"EVAL_SAMPLES": "20"}, config_file=f,
                           overrides={"eval.samples": ("30", Source("flag", "--eval-samples", "30"))})
    assert s.eval.samples == 30 and src.of("eval.samples").name == "--eval-samples"
    assert s.eval.generation.max_new_tokens == 99  # untouched by env and flags


def test_run_json_repeats_a_run(tmp_path):
    s = Settings()
    s.grpo.beta, s.lora.r, s.eval.samples = 0.01, 4, 7
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"run_id": "x", "status": "complete", "settings": s.to_dict()}))
    again, _ = load_settings(env={}, config_file=run)
    assert again.to_dict() == s.to_dict()


def test_run_json_keeps_json_types(tmp_path):
    """Nulls (unset, and eval.samples 'all'), booleans, exponent floats, integers and lists round-trip."""
    s = Settings()
    s.eval.samples, s.sft.train_samples, s.grpo.learning_rate, s.sft.gradient_checkpointing = None, None, 2e-5, True
    s.grpo.use_vllm, s.model.name, s.experiment.budgets, s.sweep.sft_learning_rates = False, None, [4, 8], [1e-3, 2]
    s.model.attn_implementation, s.runtime.threads, s.grpo.per_device_batch_size = None, 3, None
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"run_id": "x", "settings": s.to_dict()}, indent=2))
    again, sources = load_settings(env={}, config_file=run)
    assert again.to_dict() == s.to_dict()
    assert sources.of("eval.samples") == Source("file", str(run))
    compact = tmp_path / "compact.json"  # json.dumps without indent: one line
    compact.write_text(json.dumps({"run_id": "x", "settings": s.to_dict()}))
    assert load_settings(env={}, config_file=compact)[0].to_dict() == s.to_dict()


@pytest.mark.parametrize("content,needle", [
    ("eval:\n  samples: 1:00\n", "eval.samples (in {f}) must be a positive integer or 'all', got '1:00'"),
    ("seed: 1_0\n", "seed (in {f}) must be an integer, got '1_0'"),
    ("seed: 0x10\n", "seed (in {f}) must be an integer, got '0x10'"),
    ("seed: 1e3\n", "seed (in {f}) must be an integer, got '1e3'"),
    ("seed: 0o17\n", "seed (in {f}) must be an integer, got '0o17'"),
    ("grpo:\n  beta: 1_0.5\n", "grpo.beta (in {f}) must be a number, got '1_0.5'"),
    ("grpo:\n  beta: 1:30.0\n", "grpo.beta (in {f}) must be a number, got '1:30.0'"),
    ("eval:\n  generation:\n    temperature: \uff14\n", "must be a number, got '\uff14'"),
    ("eval:\n  samples: null\n", "eval.samples (in {f}) must be a positive integer or 'all', got 'null'"),
    ("eval:\n  samples:\n", "eval.samples (in {f}) must be a positive integer or 'all', got ''"),
    ("lora:\n  r: !!int 8\n", None),  # a tag changes nothing: the text 8 is read as a flag's would be
    ("model:\n  dtype: {a: 1}\n", "model.dtype (in {f}) must be text, got {'a': '1'}"),
    ("lora:\n  r: [8]\n", "lora.r (in {f}) must be an integer, got 8"),
    ("lora:\n  target_modules: [[q_proj]]\n", "lora.target_modules (in {f}) must be a list of str values"),
    ("experiment:\n  budgets: [64, 1_0]\n", "experiment.budgets (in {f}) must be a list of integers, got '1_0'"),
    ("sweep:\n  sft_learning_rates: [1e-3, 1_0]\n", "must be a list of numbers, got '1_0'"),
])
def test_a_settings_file_is_read_as_flags_are(tmp_path, content, needle):
    """YAML 1.1 reads 1:00 as 60 and 1_0 as 10; a settings file's values are text, parsed as a flag's are."""
    f = tmp_path / "s.yaml"
    f.write_text(content)
    if needle is None:
        assert load_settings(env={}, config_file=f)[0].lora.r == 8
        return
    with pytest.raises(UsageError) as err:
        load_settings(env={}, config_file=f)
    assert needle.replace("{f}", str(f)) in str(err.value)


def test_a_settings_file_means_what_the_flags_mean(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text('seed: "10"\neval:\n  samples: all\n  generation: {temperature: 0.5, top_k: 3}\n'
                 "grpo:\n  use_vllm: yes\n  learning_rate: 2e-5\nexperiment:\n  budgets: [64, 128]\n"
                 "model:\n  attn_implementation: null\n")
    s, _ = load_settings(env={}, config_file=f)
    assert (s.seed, s.eval.samples, s.eval.generation.temperature, s.eval.generation.top_k) == (10, None, 0.5, 3)
    assert (s.grpo.use_vllm, s.grpo.learning_rate, s.experiment.budgets) == (True, 2e-5, [64, 128])
    assert s.model.attn_implementation is None


@pytest.mark.parametrize("name,content,needle", [
    ("s.yaml", "seed: 1\nlora:\n  r: 4\nseed: 2\n", "line 4: key 'seed' is given twice in one mapping (first on line 1)"),
    ("s.yaml", "eval:\n  samples: 3\n  samples: 4\n", "line 3: key 'samples' is given twice"),
    ("s.yaml", "lora: {r: 4, r: 8}\n", "line 1: key 'r' is given twice"),
    ("run.json", '{"run_id": "x", "settings": {"seed": 1,\n "seed": 2}}', "line 2: key 'seed' is given twice"),
])
def test_a_key_given_twice_is_refused(tmp_path, name, content, needle):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(SettingError, match=re.escape(needle)) as err:
        read_settings_file(f)
    assert err.value.path == "config" and str(f) in str(err.value)


@pytest.mark.parametrize("name,content", [("deep.yaml", "[" * 200_000), ("deep.yaml", "{" * 200_000),
                                          ("deep.json", "[" * 200_000), ("deep.yaml", "a: " + "{a: " * 200_000),
                                          ("deep.yaml", "- " * 200_000)])
def test_a_deeply_nested_file_is_refused(tmp_path, name, content):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(SettingError, match="nests mappings or lists too deeply to be a settings file"):
        read_settings_file(f)


@pytest.mark.parametrize("content,needle", [
    ("eval:\n  sampels: 3\n", "unknown setting 'eval.sampels'"),
    ("[1, 2]\n", "must hold a mapping of settings"),
    ("eval: {samples: [unclosed\n", "is not valid YAML"),
    ("eval:\n  samples: lots\n", "eval.samples (in "),
])
def test_bad_settings_files(tmp_path, content, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        load_settings(env={}, config_file=f)


def test_missing_settings_file(tmp_path):
    with pytest.raises(SettingError, match="is not a file"):
        read_settings_file(tmp_path / "none.yaml")


@pytest.mark.parametrize("raw", ["", "  ", "null", "none", "None", "NULL"])
def test_an_empty_model_name_is_refused_rather_than_read_as_unset(tmp_path, raw):
    """Only leaving model.name unset means the embedded model; an empty name or the words none/null say so."""
    needle = (f"must not be empty, 'none' or 'null', got {raw!r}; leave it unset for the embedded "
              "SmolLM2-135M-Instruct")
    with pytest.raises(UsageError, match=re.escape("--model-path " + needle)):
        load_settings(env={}, overrides={"model.name": (raw, Source("flag", "--model-path", raw))})
    if raw.strip():  # a variable set to nothing is a variable not set (below)
        with pytest.raises(UsageError, match=re.escape("MODEL_NAME " + needle)):
            load_settings(env={"MODEL_NAME": raw})
    f = tmp_path / "s.yaml"
    f.write_text(f"model:\n  name: '{raw}'\n")
    with pytest.raises(UsageError, match=re.escape(f"model.name (in {f}) " + needle)):
        load_settings(env={}, config_file=f)


def test_an_empty_model_variable_is_unset():
    s, sources = load_settings(env={"MODEL_NAME": ""})
    assert s.model.name is None and sources.of("model.name").kind == "default"
    run = {"model": {"name": None}}  # run.json's null: the embedded model, recorded
    assert load_settings(env={}, overrides={"model.name": (run["model"]["name"], Source("file", "run.json"))}
                         )[0].model.name is None


@pytest.mark.parametrize("env,needle", [
    ({"EVAL_SAMPLES": "abc"}, "EVAL_SAMPLES must be a positive integer or 'all', got 'abc'"),
    ({"EVAL_SAMPLES": "0"}, "EVAL_SAMPLES must be a positive integer or 'all', got '0'"),
    ({"TRAIN_SAMPLES": "-5"}, "TRAIN_SAMPLES must be a positive integer"),
    ({"PREP_TRAIN_SAMPLES": "all"}, "PREP_TRAIN_SAMPLES must be a positive integer, got 'all'"),
    ({"NUM_GENERATIONS": "two"}, "NUM_GENERATIONS must be an integer, got 'two'"),
])
def test_bad_env(env, needle):
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env=env)


RANGES = [
    ("grpo.num_generations", 1, "grpo.num_generations must be >= 2 (GRPO compares completions within a group), got 1"),
    ("sft.epochs", 0.0, "sft.epochs must be > 0, got 0.0"),
    ("sft.epochs", -1.0, "sft.epochs must be > 0"),
    ("grpo.epochs", 0.0, "grpo.epochs must be > 0"),
    ("sft.learning_rate", 5.0, "sft.learning_rate must be > 0 and <= 1, got 5.0"),
    ("grpo.rollout.max_new_tokens", 0, "grpo.rollout.max_new_tokens must be a positive integer, got 0"),
    ("eval.generation.batch_size", -1, "eval.generation.batch_size must be a positive integer, got -1"),
    ("eval.generation.temperature", float("nan"), "must be a finite number, got nan"),
    ("eval.generation.top_p", 0.0, "eval.generation.top_p must be > 0 and <= 1"),
    ("eval.generation.backend", "onnx", "eval.generation.backend must be one of auto, transformers, vllm, got 'onnx'"),
    ("report_to", ["tensorbord"], "report_to must be one or more of none, tensorboard, wandb, trackio, got "
     "'tensorbord'"),
    ("report_to", ["none", "wandb"], "report_to none means no tracker: give it alone, got none wandb"),
    ("report_to", ["wandb", "wandb"], "report_to must name each of none, tensorboard, wandb, trackio at most once"),
    ("grpo.loss_type", "ppo", "grpo.loss_type must be one of grpo, dapo"),
    ("model.dtype", "int4", "model.dtype must be one of auto, bf16, fp16, fp32"),
    ("traces.generation.temperature", 0.0, "traces.generation.temperature must be > 0 for rejection sampling"),
    ("traces.max_attempts", 0, "traces.max_attempts must be a positive integer, got 0"),
    ("grpo.rollout.temperature", 0.0, "grpo.rollout.temperature must be > 0 for GRPO, got 0.0: a group must be "
     "sampled (greedy rollouts give every completion of a group the same text and reward"),
    ("grpo.rollout.temperature", float("nan"), "grpo.rollout.temperature must be a finite number"),
    ("grpo.rollout.temperature", -1.0, "grpo.rollout.temperature must be >= 0"),
    ("eval.generation.repetition_penalty", 1e-300, "eval.generation.repetition_penalty must be >= 0.01 and <= 100 "
     "(it divides or multiplies a logit, so a larger factor can overflow it), got 1e-300"),
    ("grpo.rollout.repetition_penalty", 0.0, "grpo.rollout.repetition_penalty must be >= 0.01 and <= 100"),
    ("traces.generation.repetition_penalty", 100.5, "traces.generation.repetition_penalty must be >= 0.01 and <= 100"),
    ("vllm.gpu_memory_utilization", 1.5, "vllm.gpu_memory_utilization must be > 0 and <= 1"),
    ("lora.r", 0, "lora.r must be a positive integer"),
    ("sft.save_steps", 0, "sft.save_steps must be a positive integer"),
    ("grpo.beta", -0.1, "grpo.beta must be >= 0"),
    ("experiment.budgets", [], "experiment.budgets needs at least one positive integer"),
    ("experiment.budgets", [64, -3], "experiment.budgets must be positive integers"),
]


def test_int8_is_refused_with_vllm():
    s = Settings()
    s.model.quantize, s.traces.generation.backend = "int8", "vllm"
    with pytest.raises(SettingError) as err:
        validate(s, SPLITS)
    assert err.value.path == "model.quantize"
    assert "applies to the transformers backend on the CPU, not to vLLM (traces.generation.backend)" in str(err.value)


@pytest.mark.parametrize("path,value,needle", RANGES)
def test_every_range_is_checked(path, value, needle):
    s = Settings()
    s.set(path, value)
    with pytest.raises(SettingError) as err:
        validate(s, SPLITS)
    assert err.value.path == path
    assert needle in str(err.value)


def test_counts_against_the_split():
    s = Settings()
    s.eval.samples = 5000
    with pytest.raises(SettingError, match=r"eval.samples=5000 is larger than the split \(1319 problems\)"):
        validate(s, SPLITS)
    validate(s, SPLITS, counts=["sft.train_samples"])  # not this command's count
    validate(s, {"train": 7473})  # no test split given: not compared
    s = Settings()
    s.experiment.budgets = [256, 10000]
    with pytest.raises(SettingError, match="experiment.budgets 10000 is larger than the train split"):
        validate(s, SPLITS)


def test_validation_and_prep_fit_the_train_split():
    """Checked whenever the train split's size is given, though the command evaluates on test only."""
    s = Settings()
    s.data.validation_size = 7474
    with pytest.raises(SettingError, match=re.escape("data.validation_size=7474 and the 64 prep problems "
                                                     "(sft.prep_train_samples) are more than the train split's 7473 "
                                                     "problems; use at most 7409")) as err:
        validate(s, SPLITS, counts=["eval.samples", "data.validation_size"])
    assert err.value.path == "data.validation_size"
    s.data.validation_size = 7410
    with pytest.raises(SettingError, match="data.validation_size=7410 and the 64 prep problems"):
        validate(s, SPLITS)
    validate(s, SPLITS, counts=["eval.samples"])  # not this command's question
    validate(s, {"test": 1319})  # the train split's size unknown: not compared
    s.data.validation_size = 7409
    validate(s, SPLITS)  # exactly fills the split (no budget is left, which a training command refuses)


def test_grpo_group_divides_the_global_batch():
    s = Settings()
    s.grpo.num_generations, s.grpo.per_device_batch_size, s.grpo.gradient_accumulation_steps = 3, 8, 1
    with pytest.raises(SettingError, match="does not divide the GRPO batch of 8 completions"):
        validate(s, SPLITS)
    s.grpo.per_device_batch_size = 3
    validate(s, SPLITS)
    s.grpo.num_generations, s.grpo.per_device_batch_size, s.grpo.gradient_accumulation_steps = 4, 2, 2
    validate(s, SPLITS)  # 2 per device x 2 accumulation = one group, on one process or shared by two
    s.grpo.gradient_accumulation_steps = 1
    with pytest.raises(SettingError, match=r"\(2 per device x 1 accumulation\)"):
        validate(s, SPLITS)


def test_an_optimizer_step_takes_the_same_examples_on_any_number_of_processes():
    """The processes share the accumulation: one GPU or eight, a budget takes the same optimizer steps
    at the same global batch, so SFT and GRPO are compared the same way on any hardware."""
    from gsm8k_lab.training import grpo_prompts_per_step, matched_sft_epochs, process_accumulation, sft_steps

    s = Settings()
    s.grpo.num_generations, s.grpo.per_device_batch_size, s.grpo.gradient_accumulation_steps = 4, 16, 8
    s.sft.per_device_batch_size, s.sft.gradient_accumulation_steps = 4, 8
    for processes in (1, 2, 4, 8):
        assert grpo_prompts_per_step(s, processes) == 32  # 16 x 8 completions / 4 a group
        accumulation = process_accumulation("sft.gradient_accumulation_steps", 8, processes)
        assert accumulation * processes == 8
        assert sft_steps(1024, 4, accumulation, processes, 1.0) == 32  # 1,024 problems / 32 a step
        assert matched_sft_epochs(s, 1024, processes) == 1.0  # GRPO's 32 steps
    with pytest.raises(SettingError, match=r"^grpo.gradient_accumulation_steps=8 cannot be shared evenly by 6 "
                                           r"processes: .* set grpo.gradient_accumulation_steps to a multiple of 6$"):
        grpo_prompts_per_step(s, 6)


def test_source_wording():
    err = SettingError("eval.samples", 5000, "{name}={value} is larger than the split")
    assert str(err) == "eval.samples=5000 is larger than the split"
    cases = {Source("env", "EVAL_SAMPLES", "5000"): "EVAL_SAMPLES=5000 is larger than the split",
             Source("flag", "--eval-samples", "5000"): "--eval-samples=5000 is larger than the split",
             Source("file", "s.yaml"): "eval.samples (in s.yaml)=5000 is larger than the split",
             Source("default"): "eval.samples=5000 is larger than the split"}
    from gsm8k_lab.config import Sources

    for src, text in cases.items():
        assert Sources({"eval.samples": src}).word(err) == text


def test_presets_are_valid_settings():
    for name, values in PRESETS.items():
        s, sources = load_settings(env={}, preset=name)
        for path, value in values.items():
            assert s.get(path) == value and sources.of(path).kind == "preset"
        validate(s, SPLITS)
    s, _ = load_settings(env={"EVAL_SAMPLES": "8"}, preset="small")
    assert s.eval.samples == 8  # the environment still wins over the preset


def test_set_and_get_paths():
    s = Settings()
    s.set("grpo.rollout.top_p", 0.9)
    assert s.get("grpo.rollout.top_p") == 0.9 and s.grpo.rollout.top_p == 0.9


def test_further_evaluation_sets_go_with_the_test_split_only():
    s = Settings()
    s.eval.split, s.eval.extra_sources = "validation", ["gsm-symbolic:32"]
    with pytest.raises(SettingError, match="eval.extra_sources gsm-symbolic:32: further evaluation sets go with "
                       "eval.split test"):
        validate(s)
    s.eval.extra_sources = []
    validate(s)
    s.eval.samples = 600
    with pytest.raises(SettingError, match=r"eval.samples=600 is larger than the validation split \(512 problems\)"):
        validate(s, {"test": 512}, counts=["eval.samples"])


def test_the_prep_stage_can_keep_its_own_learning_rate():
    s = Settings()
    s.sft.learning_rate = 1e-3
    assert s.sft.stage_learning_rate("prep") == s.sft.stage_learning_rate("full") == 1e-3
    s.sft.prep_learning_rate = 2e-4
    assert (s.sft.stage_learning_rate("prep"), s.sft.stage_learning_rate("full")) == (2e-4, 1e-3)


def test_defaults_are_what_the_libraries_accept():
    """Library choices are loaded only for a value other than the default, so every default is checked here."""
    from gsm8k_lab.config import library_choices

    for path, f, _ in iter_settings():
        default = Settings().get(path)
        if f.metadata.get("library") and default is not None:
            assert library_choices(f.metadata["library"]).get(default, "missing") is None, path


def test_the_repetition_penalty_range_keeps_logits_finite():
    """The bounds, applied as the transformers backend applies the penalty (then the smallest temperature),
    leave every logit finite and the sampling probabilities a distribution, in every dtype a model runs in."""
    import torch

    from gsm8k_lab.config import TEMPERATURE_FLOOR, leaf

    meta = leaf("eval.generation.repetition_penalty")[0].metadata
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        logits = torch.tensor([-600.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 600.0], dtype=dtype)
        for penalty in (meta["min"], meta["max"]):
            out = torch.where(logits < 0, logits * penalty, logits / penalty)
            assert torch.isfinite(out).all(), (dtype, penalty)
            probs = torch.softmax(out.float() / TEMPERATURE_FLOOR, dim=-1)  # sampling works in fp32
            assert torch.isfinite(probs).all() and abs(float(probs.sum()) - 1) < 1e-5
    s = Settings()
    for ok in (meta["min"], 1.0, meta["max"]):
        s.eval.generation.repetition_penalty = ok
        validate(s, SPLITS)


def test_checking_schedulers_sets_up_no_device(monkeypatch):
    """The trainer's own argument checks are asked without its device set-up (no accelerate state is made)."""
    from accelerate.state import PartialState

    from gsm8k_lab.config import LIBRARY_CHOICES, library_choices

    monkeypatch.delitem(LIBRARY_CHOICES, "scheduler", raising=False)
    before = dict(PartialState._shared_state)
    choices = library_choices("scheduler")
    assert PartialState._shared_state == before
    assert choices["cosine"] is None and choices["constant"] is None
    assert "requires an eval strategy" in choices["reduce_lr_on_plateau"]


@pytest.mark.parametrize("raw,ok", [("10", 10), (" +3 ", 3), ("-2", -2), ("1_0", None), ("0x10", None), ("1e3", None),
                                    ("2.0", None), ("", None), ("\uff14", None), ("1\u0664", None),
                                    ("\u00a04", None)])
def test_integers_parse_strictly(raw, ok):
    from gsm8k_lab.config import strict_int

    if ok is None:
        with pytest.raises(ValueError):
            strict_int(raw)
    else:
        assert strict_int(raw) == ok


@pytest.mark.parametrize("raw,ok", [("0.5", 0.5), (" -2 ", -2.0), ("1e-3", 1e-3), (".5", 0.5), ("5.", 5.0),
                                    ("+1E2", 100.0), ("nan", "nan"), ("inf", float("inf")), ("1_0.5", None),
                                    ("\uff14", None), ("\u0664.5", None), ("1.\uff15", None), ("\u00a01", None),
                                    ("0x1p3", None), ("", None)])
def test_floats_parse_strictly(raw, ok):
    """Digits as a user types them: Python's float() also reads every Unicode digit (a fullwidth 4 is 4.0)."""
    import math

    from gsm8k_lab.config import strict_float

    if ok is None:
        with pytest.raises(ValueError):
            strict_float(raw)
    elif ok == "nan":
        assert math.isnan(strict_float(raw))  # read, then refused as not finite by validate
    else:
        assert strict_float(raw) == ok


@pytest.mark.parametrize("path,raw,needle", [
    ("eval.generation.temperature", "\uff14", "must be a number, got '\uff14'"),
    ("eval.generation.batch_size", "\uff14", "must be an integer, got '\uff14'"),
    ("sweep.sft_learning_rates", ["1e-3", "\uff14e-3"], "must be a list of numbers, got '\uff14e-3'"),
    ("sweep.grpo_learning_rates", ["1_0"], "must be a list of numbers, got '1_0'"),
    ("experiment.budgets", ["\uff16\uff14"], "must be a list of integers, got '\uff16\uff14'"),
])
def test_flags_and_variables_take_ascii_numbers_only(path, raw, needle):
    from gsm8k_lab.config import parse_value

    with pytest.raises(UsageError, match=re.escape(needle)):
        parse_value(path, raw, Source("flag", "--x"))


@pytest.mark.parametrize("path,value,needle", [
    ("seed", 2**32, "seed must be >= 0 and <= 4294967295, got 4294967296"),
    ("eval.generation.seed", -1, "eval.generation.seed must be >= 0 and <= 4294967295"),
    ("eval.generation.batch_size", 2**31, "eval.generation.batch_size must be at most 2147483647"),
    ("eval.generation.temperature", 1e-45, "must be at least 0.01 (smaller temperatures overflow the logits"),
    ("sft.lr_scheduler", "bogus", "sft.lr_scheduler must be one of linear, cosine, "),
    ("grpo.lr_scheduler", "cosine_with_min_lr", "needs arguments of its own that this pipeline does not pass (One of "
                                                "min_lr or min_lr_rate"),
    ("sft.lr_scheduler", "reduce_lr_on_plateau", "sft.lr_scheduler 'reduce_lr_on_plateau' cannot be used here: "
     "training evaluates nothing before it ends, and transformers' Trainer refuses it without an evaluation strategy "
     "(lr_scheduler_type reduce_lr_on_plateau requires an eval strategy); use one of linear, cosine"),
    ("grpo.lr_scheduler", "greedy", "grpo.lr_scheduler 'greedy' cannot be used here"),
    ("model.attn_implementation", "bogus", "model.attn_implementation must be one of eager, "),
    ("lora.target_modules", [], "lora.target_modules needs at least one layer name"),
])
def test_library_ranges(path, value, needle):
    s = Settings()
    s.set(path, value)
    with pytest.raises(SettingError, match=re.escape(needle)):
        validate(s)
    usable = {"sft.lr_scheduler": "constant", "grpo.lr_scheduler": "linear", "model.attn_implementation": "sdpa",
              "eval.generation.temperature": 0.01}.get(path)
    if usable is not None:  # the library's own names (and the floor itself) pass
        s.set(path, usable)
        validate(s)

"""The command line generated from the settings: the seed's flags, precedence, and errors that name their source."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from gsm8k_lab import cli
from gsm8k_lab.config import Settings, iter_settings

REPO = Path(__file__).resolve().parents[1]

# Every flag the seed's README uses, per command (the contract).
SEED_FLAGS = {
    "evaluate": ["--model-path", "--output-dir", "--output-file"],
    "train-sft": ["--output-dir", "--stage", "--base-model", "--traces-file"],
    "train-grpo": ["--output-dir", "--base-model"],
    "generate-traces": ["--grpo-model", "--output-dir", "--output-file", "--dataset-split", "--num-samples",
                        "--batch-size", "--max-attempts", "--temperature"],
}
# Flags the project documented before the settings tree, kept with their meaning.
KEPT = {
    "evaluate": {"--batch-size": "eval.generation.batch_size", "--max-new-tokens": "eval.generation.max_new_tokens",
                 "--temperature": "eval.generation.temperature", "--seed": "eval.generation.seed",
                 "--backend": "eval.generation.backend", "--dtype": "model.dtype", "--data": "data.source",
                 "--eval-samples": "eval.samples", "--samples-per-problem": "eval.samples_per_problem"},
    "train-sft": {"--epochs": "sft.epochs", "--learning-rate": "sft.learning_rate", "--save-steps": "sft.save_steps",
                  "--seed": "seed", "--report-to": "report_to", "--gradient-checkpointing": "sft.gradient_checkpointing",
                  "--eval-batch-size": "eval.generation.batch_size",
                  "--eval-max-new-tokens": "eval.generation.max_new_tokens"},
    "train-grpo": {"--batch-size": "grpo.per_device_batch_size",
                   "--max-completion-length": "grpo.rollout.max_new_tokens", "--use-vllm": "grpo.use_vllm",
                   "--vllm-mode": "grpo.vllm_mode", "--beta": "grpo.beta", "--loss-type": "grpo.loss_type",
                   "--temperature": "grpo.rollout.temperature", "--top-p": "grpo.rollout.top_p",
                   "--lora-r": "lora.r", "--lora-alpha": "lora.alpha", "--lora-target-modules": "lora.target_modules",
                   "--min-p": "grpo.rollout.min_p",
                   "--colocate-gpu-memory-utilization": "grpo.colocate_gpu_memory_utilization"},
    "generate-traces": {"--batch-size": "traces.generation.batch_size", "--temperature": "traces.generation.temperature",
                        "--max-new-tokens": "traces.generation.max_new_tokens", "--seed": "traces.generation.seed",
                        "--dataset-split": "traces.split", "--num-samples": "traces.num_samples",
                        "--max-attempts": "traces.max_attempts", "--grpo-model": "model.name"},
    "experiment1": {"--budgets": "experiment.budgets", "--seeds": "experiment.seeds", "--grpo-beta": "grpo.beta"},
    "experiment2": {"--budget": "experiment.traces_budget", "--max-attempts": "traces.max_attempts",
                    "--temperature": "traces.generation.temperature", "--num-samples": "traces.num_samples"},
}


def _options(command):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {opt: a.dest for a in sub._actions for opt in a.option_strings}


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_builds_without_clashing_flags(command):
    opts = _options(command)  # argparse raises on two settings sharing a flag
    assert "--help" in opts


@pytest.mark.parametrize("command,flags", list(SEED_FLAGS.items()))
def test_the_seed_flags_exist(command, flags):
    opts = _options(command)
    for flag in flags:
        assert flag in opts, (command, flag)


@pytest.mark.parametrize("command,mapping", list(KEPT.items()))
def test_flags_set_the_documented_settings(command, mapping):
    opts = _options(command)
    for flag, path in mapping.items():
        assert opts.get(flag) == path, (command, flag, opts.get(flag))


def test_help_text_comes_from_the_fields():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["train-grpo"]
    beta = next(a for a in sub._actions if "--beta" in a.option_strings)
    from gsm8k_lab.config import leaf

    assert beta.help.startswith(leaf("grpo.beta")[0].metadata["help"])
    assert "[grpo.beta; default 0.04]" in beta.help


def test_an_unset_choice_is_not_offered_as_a_value():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["evaluate"]
    quantize = next(a for a in sub._actions if "--quantize" in a.option_strings)
    assert quantize.metavar == "{int8}"  # unset is the flag's absence, not a value to type


def test_every_tunable_setting_reaches_some_command():
    reachable = set()
    for cmd in cli.COMMANDS.values():
        reachable |= set(cli.setting_flags(cmd))
    missing = {p for p, _, _ in iter_settings()} - reachable - {"output_root"}  # OUTPUT_DIR / --config only
    assert not missing, missing


def _run(monkeypatch, capsys, argv, env=None):
    for k in ("EVAL_SAMPLES", "TRAIN_SAMPLES", "PREP_TRAIN_SAMPLES", "NUM_GENERATIONS", "MODEL_NAME"):
        monkeypatch.delenv(k, raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    code = cli.main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_flag_overrides_env_and_errors_name_the_flag(monkeypatch, capsys, tmp_path):
    out = str(tmp_path / "ev")
    code, err = _run(monkeypatch, capsys, ["evaluate", "--output-dir", out, "--eval-samples", "5000"],
                     env={"EVAL_SAMPLES": "3"})
    assert code == 2 and err == ["error: --eval-samples=5000 is larger than the split (1319 problems); "
                                 "use at most 1319 or 'all'"]
    code, err = _run(monkeypatch, capsys, ["evaluate", "--output-dir", out], env={"EVAL_SAMPLES": "5000"})
    assert code == 2 and err[0].startswith("error: EVAL_SAMPLES=5000 is larger than the split")
    assert not (tmp_path / "ev").exists()


def test_errors_name_the_settings_file(monkeypatch, capsys, tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("eval:\n  generation:\n    batch_size: 0\n")
    code, err = _run(monkeypatch, capsys, ["evaluate", "--output-dir", str(tmp_path / "ev"), "--config", str(f)])
    assert code == 2 and err == [f"error: eval.generation.batch_size (in {f}) must be a positive integer, got 0"]


def test_a_default_is_named_by_the_commands_flag(monkeypatch, capsys, tmp_path):
    code, err = _run(monkeypatch, capsys, ["generate-traces", "--output-dir", str(tmp_path / "t")])
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --grpo-model ")


@pytest.mark.parametrize("argv,needle", [
    (["evaluate", "--temperature", "nan"], "--temperature must be a finite number, got nan"),
    (["evaluate", "--batch-size", "-1"], "--batch-size must be a positive integer, got -1"),
    (["evaluate", "--max-new-tokens", "0"], "--max-new-tokens must be a positive integer, got 0"),
    (["evaluate", "--batch-size", "many"], "--batch-size must be an integer, got 'many'"),
    (["evaluate", "--backend", "onnx"], "--backend must be one of auto, transformers, vllm, got 'onnx'"),
    (["evaluate", "--output-file", "sub/x.csv"], "--output-file must be a file name without a directory part"),
    (["evaluate", "--output-file", "x.txt"], "--output-file must end in .csv, got 'x.txt'"),
    (["train-grpo", "--beta", "-1"], "--beta must be >= 0, got -1"),
    (["train-grpo", "--max-completion-length", "0"], "--max-completion-length must be a positive integer, got 0"),
    (["train-sft", "--epochs", "0"], "--epochs must be > 0, got 0"),
    (["train-sft", "--learning-rate", "5"], "--learning-rate must be > 0 and <= 1, got 5"),
    (["train-sft", "--report-to", "nonsense"], "--report-to must be one or more of none, tensorboard, wandb, trackio"),
    (["train-sft", "--eval-batch-size", "0"], "--eval-batch-size must be a positive integer, got 0"),
    (["train-sft", "--stage", "other"], "--stage must be one of prep, full, got 'other'"),
    (["experiment1", "--budgets", "64", "10000"], "--budgets 10000 is larger than the train split"),
    (["experiment1", "--budgets", "abc"], "--budgets must be a list of integers, got 'abc'"),
    (["experiment2", "--budget", "64", "--num-samples", "32"], "--num-samples (32) must cover the budget (64"),
    (["generate-traces", "--temperature", "0"], "--temperature must be > 0 for rejection sampling"),
    (["train-grpo", "--temperature", "0"], "--temperature must be > 0 for GRPO, got 0: a group must be sampled"),
    (["evaluate", "--validation-size", "7474"], "--validation-size=7474 and the 64 prep problems "
     "(sft.prep_train_samples) are more than the train split's 7473 problems; use at most 7409"),
    (["evaluate", "--model-path", ""], "--model-path must not be empty, 'none' or 'null', got ''; leave it unset"),
    (["train-sft", "--base-model", "none"], "--base-model must not be empty, 'none' or 'null', got 'none'"),
    (["generate-traces", "--grpo-model", "null"], "--grpo-model must not be empty, 'none' or 'null', got 'null'"),
])
def test_bad_values_are_refused_before_any_work(monkeypatch, capsys, tmp_path, argv, needle):
    out = tmp_path / "out"
    if argv[0] in ("evaluate", "train-sft", "train-grpo", "generate-traces"):
        argv = [*argv, "--output-dir", str(out)]
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "root"))
    code, err = _run(monkeypatch, capsys, argv)
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists() and not (tmp_path / "root").exists()


@pytest.mark.parametrize("value", ["null", "none", " "])
def test_a_model_variable_of_no_name_is_refused(monkeypatch, capsys, tmp_path, value):
    code, err = _run(monkeypatch, capsys, ["evaluate", "--output-dir", str(tmp_path / "ev")], env={"MODEL_NAME": value})
    assert code == 2 and err == [f"error: MODEL_NAME must not be empty, 'none' or 'null', got {value!r}; leave it unset "
                                 "for the embedded SmolLM2-135M-Instruct"]
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("argv,line", [
    (["evaluate", "--bogus"], "error: gsm8k-lab evaluate: unrecognized arguments: --bogus (see --help)"),
    (["evaluate", "--temperature"], "error: gsm8k-lab evaluate: argument --temperature: expected one argument "
                                    "(see --help)"),
    (["preset", "--name", "big"], "error: gsm8k-lab preset: argument --name: invalid choice: 'big' (choose from "
                                  "'small', 'small-seeds') (see --help)"),
    (["train-sft", "--output-dir", "x", "--resume", "--overwrite"],
     "error: gsm8k-lab train-sft: argument --overwrite: not allowed with argument --resume (see --help)"),
    (["report"], "error: gsm8k-lab report: the following arguments are required: folders (see --help)"),
    (["experiment1", "--budgets"], "error: gsm8k-lab experiment1: argument --budgets: expected at least one "
                                   "argument (see --help)"),
    (["plan", "evaluate", "--bogus", "x"], "error: gsm8k-lab plan evaluate: unrecognized arguments: --bogus x "
                                           "(see --help)"),
    (["evalute"], "error: gsm8k-lab: argument command: invalid choice: 'evalute' (choose from 'evaluate', "),
    ([], "error: gsm8k-lab: the following arguments are required: command (see --help)"),
])
def test_argparse_errors_are_one_line(monkeypatch, capsys, tmp_path, argv, line):
    """argparse's own errors as one line like every other bad input (no usage block before it), exit code 2."""
    monkeypatch.chdir(tmp_path)
    code, err = _run(monkeypatch, capsys, argv)
    assert code == 2 and len(err) == 1 and err[0].startswith(line), err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["--help"], ["evaluate", "--help"], ["train-grpo", "-h"], ["plan", "preset", "--help"]])
def test_help_is_argparse_s_own(capsys, argv):
    parser = cli.build_parser()
    target = parser
    for name in argv[:-1]:
        target = next(a for a in target._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == target.format_help()


def test_the_seed_scripts_print_argparse_errors_as_one_line(tmp_path):
    for script, args, line in (("train_sft.py", ["--output-dir", "o", "--bogus"], "error: gsm8k-lab train-sft: "
                                "unrecognized arguments: --bogus (see --help)"),
                               ("evaluate_model.py", ["--temperature"], "error: gsm8k-lab evaluate: argument "
                                "--temperature: expected one argument (see --help)")):
        r = subprocess.run([sys.executable, str(REPO / "src" / script), *args], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
        assert r.returncode == 2 and r.stderr.splitlines() == [line] and not r.stdout, r.stderr[-2000:]
    assert not list(tmp_path.iterdir())


def test_settings_defaults_in_help_match_the_tree():
    flags = cli.setting_flags(cli.COMMANDS["evaluate"])
    assert flags["eval.samples"] == "--eval-samples"
    assert Settings().get("eval.samples") == 512


def test_sft_and_grpo_take_the_batch_size_under_one_name_and_grpo_keeps_its_older_one(capsys):
    """--per-device-batch-size on both training commands; --batch-size, GRPO's earlier flag, still sets it and
    an error names the flag that was typed."""
    for command, path in (("train-sft", "sft.per_device_batch_size"), ("train-grpo", "grpo.per_device_batch_size")):
        assert cli.setting_flags(cli.COMMANDS[command])[path] == "--per-device-batch-size"
    for flag in ("--per-device-batch-size", "--batch-size"):
        ctx = cli.Context(cli.build_parser().parse_args(["train-grpo", "--output-dir", "x", flag, "6"]))
        ctx.load()
        assert ctx.settings.grpo.per_device_batch_size == 6
    assert cli.main(["train-grpo", "--output-dir", "x", "--batch-size", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --batch-size must be a positive integer, got 0"


def test_out_of_memory_says_what_to_lower(monkeypatch, capsys):
    class OutOfMemoryError(RuntimeError):  # stands in for torch.cuda.OutOfMemoryError
        pass

    def boom(ctx):
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cli, "cmd_evaluate", boom)
    assert cli.main(["evaluate", "--output-dir", "x"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ran out of memory" in err[0] and "--batch-size" in err[0]



def test_the_interrupt_message_starts_on_its_own_line(monkeypatch, capsys):
    """Ctrl-C while a progress bar is still open (a trainer's bar lives on in its callback, closed only at
    the end of training): the bar's line ends before the message, which is then the last line."""
    import sys

    from tqdm import tqdm

    held = []

    def interrupted(ctx):
        held.append(tqdm(total=200, file=sys.stderr))
        held[-1].update(4)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_report", interrupted)
    assert cli.main(["report", "somewhere"]) == 130
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert lines[-1] == "interrupted: finished work is kept; rerun with --resume to continue"
    assert any("4/200" in line for line in lines[:-1])

"""Every bad input through the real command line: exit code 2, one line naming the input, nothing changed.

Each case runs one of the seed's scripts (or ``gsm8k-lab``) in a fresh process inside its own
folder, which holds a finished run, an unfinished one, a model folder and some input files;
every file in that folder (and the shared tiny model) is compared before and after.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EVAL, TINY_ENV

REPO = Path(__file__).resolve().parents[1]
SCRIPT = {"evaluate": "evaluate_model.py", "train-sft": "train_sft.py", "train-grpo": "train_grpo.py",
          "generate-traces": "generate_traces.py"}
GOOD_TRACE = '{"question": "q", "answer": "#### 1"}\n'

# command, arguments ({names} are files of the case's folder), environment, fragment of the one-line error
CASES = [
    # --- evaluate: counts, sizes and decoding ---------------------------------------------
    ("evaluate", [], {"EVAL_SAMPLES": "abc"}, "EVAL_SAMPLES must be a positive integer or 'all', got 'abc'"),
    ("evaluate", [], {"EVAL_SAMPLES": "0"}, "EVAL_SAMPLES must be a positive integer or 'all', got '0'"),
    ("evaluate", [], {"EVAL_SAMPLES": "5000"}, "EVAL_SAMPLES=5000 is larger than the split (1319 problems)"),
    ("evaluate", ["--eval-samples", "5000"], {"EVAL_SAMPLES": "3"}, "--eval-samples=5000 is larger than the split"),
    ("evaluate", ["--eval-samples", "-1"], {}, "--eval-samples must be a positive integer or 'all', got '-1'"),
    ("evaluate", ["--batch-size", "0"], {}, "--batch-size must be a positive integer, got 0"),
    ("evaluate", ["--batch-size", "-1"], {}, "--batch-size must be a positive integer, got -1"),
    ("evaluate", ["--batch-size", "2.5"], {}, "--batch-size must be an integer, got '2.5'"),
    ("evaluate", ["--max-new-tokens", "0"], {}, "--max-new-tokens must be a positive integer, got 0"),
    ("evaluate", ["--temperature", "nan"], {}, "--temperature must be a finite number, got nan"),
    ("evaluate", ["--temperature", "-1"], {}, "--temperature must be >= 0, got -1"),
    ("evaluate", ["--temperature", "hot"], {}, "--temperature must be a number, got 'hot'"),
    ("evaluate", ["--top-p", "0"], {}, "--top-p must be > 0 and <= 1, got 0"),
    ("evaluate", ["--top-p", "1.5"], {}, "--top-p must be > 0 and <= 1, got 1.5"),
    ("evaluate", ["--top-k", "-1"], {}, "--top-k must be a non-negative integer, got -1"),
    ("evaluate", ["--min-p", "2"], {}, "--min-p must be >= 0 and <= 1, got 2"),
    ("evaluate", ["--repetition-penalty", "0"], {}, "--repetition-penalty must be > 0, got 0"),
    ("evaluate", ["--backend", "onnx"], {}, "--backend must be one of auto, transformers, vllm, got 'onnx'"),
    ("evaluate", ["--dtype", "int4"], {}, "--dtype must be one of auto, bf16, fp16, fp32, got 'int4'"),
    ("evaluate", ["--threads", "0"], {}, "--threads must be a positive integer, got 0"),
    ("evaluate", ["--vllm-gpu-memory-utilization", "2"], {}, "--vllm-gpu-memory-utilization must be > 0 and <= 1"),
    # --- evaluate: models, data, files ------------------------------------------------------
    ("evaluate", ["--model-path", "{dir}/missing"], {}, "missing' does not exist"),
    ("evaluate", ["--model-path", "no-such-org/no-such-model"], {}, "is not a local path"),
    ("evaluate", ["--model-path", "{empty}"], {}, "holds no model"),
    ("evaluate", ["--model-path", "{file}"], {}, "is a file, expected a model folder or run directory"),
    ("evaluate", ["--model-path", "{config_only}"], {}, "holds config.json but no weights"),
    ("evaluate", ["--model-path", "{unfinished}"], {}, "is an unfinished run directory"),
    ("evaluate", [], {"MODEL_NAME": "{dir}/gone"}, "MODEL_NAME '{dir}/gone' does not exist"),
    ("evaluate", ["--data", "{dir}/none.jsonl"], {}, "--data '{dir}/none.jsonl' is neither 'bundled', 'hub', 'gsm-symbolic' nor a JSONL file"),
    ("evaluate", ["--data", "{binary}"], {}, "is not UTF-8 text"),
    ("evaluate", ["--data", "{badjson}"], {}, "line 2 is not valid JSON"),
    ("evaluate", ["--output-file", "sub/x.csv"], {}, "--output-file must be a file name without a directory part"),
    ("evaluate", ["--output-file", "x.txt"], {}, "--output-file must end in .csv, got 'x.txt'"),
    ("evaluate", ["--output-dir", "{file}/ev"], {}, "is not a directory"),
    ("evaluate", ["--output-dir", "{debug_file}"], {}, "cannot hold results: debug is a file"),
    ("evaluate", ["--output-dir", "{evaluated}", "--output-file", "e.csv"], {}, "already exists; pass --resume"),
    ("evaluate", ["--output-dir", "{evaluated}", "--output-file", "e.csv", "--resume", "--max-new-tokens", "4"], {},
     "was made with other settings: eval.generation.max_new_tokens 8 (then) vs 4 (now)"),
    ("evaluate", ["--output-dir", "{evaluated}", "--output-file", "e.csv", "--resume", "--model-path", "{finished}"],
     {}, "was made with other settings: model"),
    ("evaluate", ["--config", "{dir}/none.yaml"], {}, "--config '{dir}/none.yaml' is not a file"),
    ("evaluate", ["--config", "{badyaml}"], {}, "is not valid YAML"),
    ("evaluate", ["--config", "{unknown_key}"], {}, "unknown setting 'eval.sampels'"),
    ("evaluate", ["--config", "{bad_value}"], {}, "eval.generation.batch_size (in "),
    # --- train-sft ----------------------------------------------------------------------------
    ("train-sft", ["--stage", "full"], {"TRAIN_SAMPLES": "abc"}, "TRAIN_SAMPLES must be a positive integer or 'all', got 'abc'"),
    ("train-sft", ["--stage", "full"], {"TRAIN_SAMPLES": "0"}, "TRAIN_SAMPLES must be a positive integer or 'all', got '0'"),
    ("train-sft", ["--stage", "prep"], {"PREP_TRAIN_SAMPLES": "99999"}, "PREP_TRAIN_SAMPLES=99999 is larger than the split"),
    ("train-sft", ["--stage", "prep"], {"EVAL_SAMPLES": "99999999"}, "EVAL_SAMPLES=99999999 is larger than the split"),
    ("train-sft", ["--stage", "other"], {}, "--stage must be one of prep, full, got 'other'"),
    ("train-sft", ["--stage", "full", "--base-model", "{dir}/missing"], {}, "missing' does not exist"),
    ("train-sft", ["--stage", "full", "--base-model", "{unfinished}"], {}, "is an unfinished run directory"),
    ("train-sft", ["--stage", "full", "--traces-file", "{dir}/none.jsonl"], {}, "none.jsonl' does not exist"),
    ("train-sft", ["--stage", "full", "--traces-file", "{empty_file}"], {}, "is empty"),
    ("train-sft", ["--stage", "full", "--traces-file", "{badjson}"], {}, "line 2 is not valid JSON"),
    ("train-sft", ["--stage", "full", "--traces-file", "{nofield}"], {}, "line 1 needs string fields 'question' and 'answer'"),
    ("train-sft", ["--stage", "full", "--traces-file", "{nomarker}"], {}, "line 1 answer lacks the '#### N' marker"),
    ("train-sft", ["--stage", "full", "--traces-file", "{binary}"], {}, "is not UTF-8 text"),
    ("train-sft", ["--stage", "prep", "--traces-file", "{good_traces}"], {}, "goes with the full stage, not prep"),
    ("train-sft", ["--stage", "prep", "--epochs", "0"], {}, "--epochs must be > 0, got 0"),
    ("train-sft", ["--stage", "prep", "--epochs", "-1"], {}, "--epochs must be > 0, got -1"),
    ("train-sft", ["--stage", "prep", "--learning-rate", "5"], {}, "--learning-rate must be > 0 and <= 1, got 5"),
    ("train-sft", ["--stage", "prep", "--learning-rate", "nan"], {}, "--learning-rate must be a finite number"),
    ("train-sft", ["--stage", "prep", "--eval-batch-size", "-1"], {}, "--eval-batch-size must be a positive integer, got -1"),
    ("train-sft", ["--stage", "prep", "--eval-batch-size", "0"], {}, "--eval-batch-size must be a positive integer, got 0"),
    ("train-sft", ["--stage", "prep", "--eval-max-new-tokens", "0"], {}, "--eval-max-new-tokens must be a positive integer, got 0"),
    ("train-sft", ["--stage", "prep", "--save-steps", "0"], {}, "--save-steps must be a positive integer, got 0"),
    ("train-sft", ["--stage", "prep", "--lora-r", "0"], {}, "--lora-r must be a positive integer, got 0"),
    ("train-sft", ["--stage", "prep", "--lora-dropout", "1"], {}, "--lora-dropout must be >= 0 and <= 0.99"),
    ("train-sft", ["--stage", "prep", "--report-to", "nonsense"], {}, "--report-to must be one of none, tensorboard, wandb, trackio"),
    ("train-sft", ["--stage", "prep", "--train-data", "{good_data}", "--data", "{good_data}"], {}, "is also the training data"),
    # --- the validation split and the held-out problems -----------------------------------------
    ("evaluate", ["--eval-split", "validation", "--eval-samples", "600"], {},
     "--eval-samples=600 is larger than the validation split (512 problems)"),
    ("evaluate", ["--eval-split", "train"], {}, "--eval-split must be one of test, validation, got 'train'"),
    ("evaluate", ["--eval-split", "validation", "--validation-size", "0"], {},
     "'validation' needs held-out problems, but data.validation_size is 0"),
    ("evaluate", ["--eval-split", "validation", "--data", "gsm-symbolic"], {}, "--data 'gsm-symbolic' is a test set"),
    ("evaluate", ["--data", "gsm-symbolic:86"], {}, "expected gsm-symbolic or gsm-symbolic:N with N from 1 to 85"),
    ("train-sft", ["--stage", "full"], {"TRAIN_SAMPLES": "7000"}, "TRAIN_SAMPLES=7000 reaches into the held-out problems"),
    ("train-sft", ["--stage", "prep", "--validation-size", "7470"], {},
     "PREP_TRAIN_SAMPLES=4 and the 7470 validation problems"),
    ("train-grpo", ["--eval-split", "validation", "--eval-extra-sources", "gsm-symbolic"], {},
     "further evaluation sets go with eval.split test"),
    # --- the finished run is never destroyed, nor resumed with other settings ---------------------
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}"], {}, "already holds a finished run; pass --overwrite"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}", "--overwrite", "--report-to", "tensorbord"], {},
     "--report-to must be one of"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}", "--overwrite", "--report-to", "wandb"], {},
     "--report-to 'wandb' needs the wandb package"),
    ("train-sft", ["--stage", "full", "--output-dir", "{finished}", "--base-model", "{finished}", "--overwrite"], {},
     "is the run training starts from"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}", "--resume", "--epochs", "9", "--learning-rate", "0.5"],
     {"PREP_TRAIN_SAMPLES": "8"}, "was made with other settings: train_data.n 4 (then) vs 8 (now)"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}", "--resume", "--learning-rate", "0.5"], {},
     "sft.learning_rate 0.0002 (then) vs 0.5 (now)"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}", "--overwrite", "--stage", "prep", "--base-model",
                   "{dir}/missing"], {}, "missing' does not exist"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{unfinished}"], {}, "holds an unfinished run; pass --resume"),
    # --- train-grpo ---------------------------------------------------------------------------
    ("train-grpo", [], {"TRAIN_SAMPLES": "-5"}, "TRAIN_SAMPLES must be a positive integer or 'all', got '-5'"),
    ("train-grpo", [], {"NUM_GENERATIONS": "1"}, "NUM_GENERATIONS must be >= 2 (GRPO compares completions within a group), got 1"),
    ("train-grpo", ["--batch-size", "8"], {"NUM_GENERATIONS": "3"}, "NUM_GENERATIONS=3 does not divide the GRPO batch"),
    ("train-grpo", ["--max-completion-length", "0"], {}, "--max-completion-length must be a positive integer, got 0"),
    ("train-grpo", ["--beta", "-1"], {}, "--beta must be >= 0, got -1"),
    ("train-grpo", ["--loss-type", "ppo"], {}, "--loss-type must be one of grpo, dapo, dr_grpo, bnpo, cispo, sapo, got 'ppo'"),
    ("train-grpo", ["--temperature", "nan"], {}, "--temperature must be a finite number, got nan"),
    ("train-grpo", ["--vllm-mode", "remote"], {}, "--vllm-mode must be one of colocate, server, got 'remote'"),
    ("train-grpo", ["--base-model", "{unfinished}"], {}, "is an unfinished run directory"),
    # --- generate-traces ----------------------------------------------------------------------
    ("generate-traces", ["--max-attempts", "0"], {}, "--max-attempts must be a positive integer, got 0"),
    ("generate-traces", ["--temperature", "0"], {}, "--temperature must be > 0 for rejection sampling"),
    ("generate-traces", ["--temperature", "nan"], {}, "--temperature must be > 0 for rejection sampling"),
    ("generate-traces", ["--num-samples", "99999"], {}, "--num-samples=99999 is larger than the train split"),
    ("generate-traces", ["--dataset-split", "dev"], {}, "--dataset-split must be one of train, test, got 'dev'"),
    ("generate-traces", ["--grpo-model", "{model}"], {}, "is not a run directory"),
    ("generate-traces", ["--output-file", "t.csv"], {}, "--output-file must end in .jsonl, got 't.csv'"),
    ("generate-traces", ["--output-dir", "{traced}"], {}, "already exists; pass --overwrite"),
    ("generate-traces", ["--output-dir", "{tracing}"], {}, "belongs to an unfinished run; pass --resume"),
    ("generate-traces", ["--output-dir", "{tracing}", "--resume", "--dataset-split", "test"], {},
     "was made with other settings: traces.split train (then) vs test (now)"),
    # --- experiments and the report -----------------------------------------------------------
    ("experiment1", ["--budgets", "abc"], {}, "--budgets must be a list of integers, got 'abc'"),
    ("experiment1", ["--budgets", "64", "10000"], {}, "--budgets 10000 is larger than the train split"),
    ("experiment1", ["--seeds", "0"], {}, "--seeds must be a positive integer, got 0"),
    ("experiment2", ["--budget", "64", "--num-samples", "32"], {}, "--num-samples (32) must cover the budget (64"),
    ("report", ["{empty}"], {}, "no finished runs under"),
    ("report", ["{dir}/nowhere"], {}, "report folder '{dir}/nowhere' does not exist"),
]


@pytest.fixture(scope="session")
def evaluated_template(tmp_path_factory, tiny_model_dir):
    """A finished evaluation (e.csv, its settings and metrics) of the tiny model."""
    out = tmp_path_factory.mktemp("evaluated")
    r = subprocess.run([sys.executable, str(REPO / "src" / "evaluate_model.py"), "--model-path", str(tiny_model_dir),
                        "--output-dir", str(out), "--output-file", "e.csv", "--max-new-tokens", "8", "--dtype", "fp32"],
                       env={**os.environ, **TINY_ENV}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _world(root: Path, chain: Path, evaluated: Path) -> dict:
    """The case's folder: runs, a model folder and input files."""
    names = {"dir": str(root)}

    def f(name, content, binary=False):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content) if binary else p.write_text(content)
        return str(p)

    shutil.copytree(chain / "prep", root / "finished")
    names["finished"] = str(root / "finished")
    shutil.copytree(evaluated, root / "evaluated")
    names["evaluated"] = str(root / "evaluated")
    f("unfinished/run.json", json.dumps({"status": "training", "run_id": "x"}))
    (root / "unfinished" / "model").mkdir()
    names["unfinished"] = str(root / "unfinished")
    (root / "empty").mkdir()
    names["empty"] = str(root / "empty")
    names["file"] = f("plain.txt", "x")
    f("config_only/config.json", "{}")
    names["config_only"] = str(root / "config_only")
    f("debug_file/debug", "not a folder")
    names["debug_file"] = str(root / "debug_file")
    names["binary"] = f("binary.jsonl", bytes(range(256)), binary=True)
    names["badjson"] = f("bad.jsonl", GOOD_TRACE + "{oops\n")
    names["nofield"] = f("nofield.jsonl", '{"question": "q"}\n')
    names["nomarker"] = f("nomarker.jsonl", '{"question": "q", "answer": "42"}\n')
    names["empty_file"] = f("empty.jsonl", "")
    names["good_traces"] = f("traces.jsonl", GOOD_TRACE * 5)
    names["good_data"] = f("data.jsonl", GOOD_TRACE * 5)
    names["badyaml"] = f("bad.yaml", "eval: {samples: [unclosed\n")
    names["unknown_key"] = f("unknown.yaml", "eval:\n  sampels: 3\n")
    names["bad_value"] = f("value.yaml", "eval:\n  generation:\n    batch_size: 0\n")
    f("traced/grpo_traces_train.jsonl", GOOD_TRACE)
    f("traced/grpo_traces_train.jsonl.stats.json", "{}")
    names["traced"] = str(root / "traced")
    f("tracing/grpo_traces_train.jsonl.progress.jsonl", json.dumps({"settings": {"traces.split": "train"}}) + "\n")
    names["tracing"] = str(root / "tracing")
    return names


def _snapshot(*folders: Path) -> dict:
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            st = p.lstat()
            out[str(p)] = (st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None)
    return out


DEFAULTS = {"evaluate": ["--max-new-tokens", "8", "--dtype", "fp32"],
            "generate-traces": ["--max-new-tokens", "8", "--dtype", "fp32"]}


@pytest.mark.parametrize("command,args,env,needle", CASES)
def test_bad_input(tmp_path, chain, tiny_model_dir, evaluated_template, command, args, env, needle):
    names = {**_world(tmp_path, chain, evaluated_template), "model": str(tiny_model_dir)}

    def fill(text):
        for k, v in names.items():
            text = text.replace("{" + k + "}", v)
        return text

    args = [fill(a) for a in args]
    env = {**os.environ, **TINY_ENV, "HF_HUB_OFFLINE": "1", "OUTPUT_DIR": str(tmp_path / "outputs"),
           **{k: fill(v) for k, v in env.items()}}
    if command in SCRIPT:
        flag = {"evaluate": "--model-path", "generate-traces": "--grpo-model"}.get(command, "--base-model")
        if flag not in args and "MODEL_NAME" not in env:
            args += [flag, names["finished"] if command == "generate-traces" else names["model"]]
        if "--output-dir" not in args:
            args += ["--output-dir", str(tmp_path / "out")]
        extra = DEFAULTS.get(command, EVAL)
        for i in range(0, len(extra), 2):
            if extra[i] not in args:
                args += extra[i:i + 2]
        cmd = [sys.executable, str(REPO / "src" / SCRIPT[command]), *args]
    else:
        cmd = [sys.executable, "-m", "gsm8k_lab", command, *args]
    before = _snapshot(tmp_path, tiny_model_dir)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fill(needle) in lines[0], lines
    assert _snapshot(tmp_path, tiny_model_dir) == before, "a refused command changed files"


def test_the_matrix_is_large():
    assert len(CASES) >= 60

"""Every bad input through the real command line: exit code 2, one line naming the input, nothing changed.

The cases run ``cli.main`` in this process, as the seed's scripts do in theirs (``SCRIPT_CASES``
also go through the scripts in a fresh process each). They share one folder (``world``),
built once, which holds a finished run, a finished evaluation, an unfinished run, model folders
broken in every way and input files; every file in it and in the shared tiny model is compared
(sha256) before and after each case, with the case's own output folder.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EVAL, EVALUATED_ARGS, TINY_ENV

from gsm8k_lab import cli
from gsm8k_lab.config import env_vars

REPO = Path(__file__).resolve().parents[1]
SCRIPT = {"evaluate": "evaluate_model.py", "train-sft": "train_sft.py", "train-grpo": "train_grpo.py",
          "generate-traces": "generate_traces.py"}
GOOD_TRACE = '{"question": "q", "answer": "#### 1"}\n'
READ_ONLY = Path("/sys/kernel")  # a folder no user can create files in, root included

# command, arguments ({names} are paths of the world), environment, fragment of the one-line error
CASES = [
    # --- settings read strictly: numbers in ASCII, files parsed as flags are, no silent fallbacks -----------
    # digits as a user types them (Python's float() reads any Unicode digit: a fullwidth 4 was 4.0)
    ("evaluate", ["--temperature", "\uff14"], {}, "--temperature must be a number, got '\uff14'"),
    ("evaluate", ["--top-p", "\uff10.5"], {}, "--top-p must be a number, got '\uff10.5'"),
    ("evaluate", ["--batch-size", "\uff14"], {}, "--batch-size must be an integer, got '\uff14'"),
    ("evaluate", [], {"EVAL_SAMPLES": "\uff16\uff14"}, "EVAL_SAMPLES must be a positive integer or 'all', got '\uff16\uff14'"),
    ("train-grpo", ["--temperature", "\u0661"], {}, "--temperature must be a number, got '\u0661'"),
    ("experiment1", ["--budgets", "\uff16\uff14"], {}, "--budgets must be a list of integers, got '\uff16\uff14'"),
    # a settings file's values are read as flags are (YAML 1.1 read 1:00 as 60 and 1_0 as 10), a key given twice
    # is refused rather than the last one winning, and a file nested past any settings tree is one line
    ("evaluate", ["--config", "{sexagesimal}"], {},
     "eval.samples (in {dir}/sexagesimal.yaml) must be a positive integer or 'all', got '1:00'"),
    ("train-sft", ["--stage", "prep", "--config", "{underscore}"], {},
     "seed (in {dir}/underscore.yaml) must be an integer, got '1_0'"),
    ("train-grpo", ["--config", "{fullwidth}"], {}, "grpo.rollout.temperature (in {dir}/fullwidth.yaml) must be a number"),
    ("evaluate", ["--config", "{twice}"], {},
     "--config '{dir}/twice.yaml' line 4: key 'samples' is given twice in one mapping (first on line 2)"),
    ("train-sft", ["--stage", "prep", "--config", "{twice_json}"], {}, "run.json' line 3: key 'seed' is given twice"),
    ("evaluate", ["--config", "{deep_yaml}"], {}, "--config '{dir}/deep.yaml' nests mappings or lists too deeply"),
    ("evaluate", ["--config", "{deep_json}"], {}, "--config '{dir}/deep.json' nests mappings or lists too deeply"),
    # an empty model name, or the words none/null, is refused: only leaving it unset means the embedded model
    ("evaluate", ["--model-path", ""], {},
     "--model-path must not be empty, 'none' or 'null', got ''; leave it unset for the embedded SmolLM2-135M-Instruct"),
    ("evaluate", [], {"MODEL_NAME": "null"}, "MODEL_NAME must not be empty, 'none' or 'null', got 'null'; leave it unset"),
    ("evaluate", [], {"MODEL_NAME": "none"}, "MODEL_NAME must not be empty, 'none' or 'null', got 'none'; leave it unset"),
    ("train-sft", ["--stage", "prep", "--base-model", "None"], {}, "--base-model must not be empty, 'none' or 'null'"),
    ("train-grpo", ["--base-model", " "], {}, "--base-model must not be empty, 'none' or 'null', got ' '"),
    ("generate-traces", ["--grpo-model", ""], {}, "--grpo-model must not be empty, 'none' or 'null', got ''"),
    # the validation and prep problems must fit the train split, even for an evaluation on test
    ("evaluate", ["--validation-size", "7474"], {}, "--validation-size=7474 and the 4 prep problems "
     "(sft.prep_train_samples) are more than the train split's 7473 problems; use at most 7469"),
    ("evaluate", ["--validation-size", "7420"], {"PREP_TRAIN_SAMPLES": "64"}, "--validation-size=7420 and the 64 prep"),
    # schedulers that step on an evaluation metric: training here evaluates nothing before it ends
    ("train-sft", ["--stage", "prep", "--lr-scheduler", "reduce_lr_on_plateau"], {},
     "--lr-scheduler 'reduce_lr_on_plateau' cannot be used here: training evaluates nothing before it ends, and "
     "transformers' Trainer refuses it without an evaluation strategy (lr_scheduler_type reduce_lr_on_plateau "
     "requires an eval strategy); use one of linear, cosine"),
    ("train-grpo", ["--lr-scheduler", "reduce_lr_on_plateau"], {}, "requires an eval strategy"),
    ("train-grpo", ["--lr-scheduler", "greedy"], {}, "--lr-scheduler 'greedy' cannot be used here"),
    ("experiment1", ["--sft-lr-scheduler", "reduce_lr_on_plateau"], {}, "--sft-lr-scheduler 'reduce_lr_on_plateau'"),
    # GRPO samples its groups: greedy rollouts give a group one completion, one reward and no advantage
    ("train-grpo", ["--temperature", "0"], {}, "--temperature must be > 0 for GRPO, got 0: a group must be sampled "
     "(greedy rollouts give every completion of a group the same text and reward"),
    ("experiment1", ["--rollout-temperature", "0.0"], {}, "--rollout-temperature must be > 0 for GRPO, got 0.0"),
    # the repetition penalty divides or multiplies a logit: bounded so that logits stay finite
    ("evaluate", ["--temperature", "1", "--repetition-penalty", "1e-300"], {},
     "--repetition-penalty must be >= 0.01 and <= 100 (it divides or multiplies a logit, so a larger factor can "
     "overflow it), got 1e-300"),
    ("evaluate", ["--repetition-penalty", "1e300"], {}, "--repetition-penalty must be >= 0.01 and <= 100"),
    ("train-grpo", ["--repetition-penalty", "0.001"], {}, "--repetition-penalty must be >= 0.01 and <= 100"),
    ("generate-traces", ["--repetition-penalty", "101"], {}, "--repetition-penalty must be >= 0.01 and <= 100"),
    # argparse's own errors: one line like the rest (no usage block), naming the command (as
    # 'gsm8k-lab evaluate: ...', or 'gsm8k-lab plan evaluate: ...' under plan)
    ("evaluate", ["--bogus"], {}, "evaluate: unrecognized arguments: --bogus (see --help)"),
    ("evaluate", ["--temperature"], {}, "evaluate: argument --temperature: expected one argument"),
    ("train-sft", ["--stage", "prep", "--resume", "--overwrite"], {}, "argument --overwrite: not allowed with"),
    ("train-grpo", ["--use-vllm", "x"], {}, "train-grpo: unrecognized arguments: x"),
    ("generate-traces", ["--dataset-split"], {}, "argument --dataset-split: expected one argument"),
    ("experiment1", ["--budgets"], {}, "experiment1: argument --budgets: expected at least one argument"),
    ("preset", ["--name", "big"], {}, "preset: argument --name: invalid choice: 'big' (choose from 'small', 'small-seeds')"),
    ("report", [], {}, "gsm8k-lab report: the following arguments are required: folders (see --help)"),
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
    ("evaluate", ["--repetition-penalty", "0"], {}, "--repetition-penalty must be >= 0.01 and <= 100"),
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
    # --- a folder of another kind is never written into; paths the file system cannot take ------------
    ("train-sft", ["--stage", "prep", "--output-dir", "{evaluated}"], {}, "holds an evaluation, not a training run"),
    ("train-grpo", ["--output-dir", "{evaluated}"], {}, "holds an evaluation, not a training run"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{evaluated}", "--overwrite"], {},
     "holds an evaluation, not a training run"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{traced}"], {}, "holds traces, not a training run"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{config_only}"], {}, "holds a model folder, not a training run"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{dir}"], {}, "holds other files, not a training run"),
    ("evaluate", ["--output-dir", "{finished}"], {}, "holds a training run, not an evaluation"),
    ("evaluate", ["--output-dir", "{traced}", "--overwrite"], {}, "holds traces, not an evaluation"),
    ("generate-traces", ["--output-dir", "{finished}"], {}, "holds a training run, not traces"),
    ("generate-traces", ["--output-dir", "{evaluated}"], {}, "holds an evaluation, not traces"),
    ("train-sft", ["--stage", "full", "--base-model", "{finished}", "--output-dir", "{finished}/model/inner"], {},
     "is inside {finished}/model/, which belongs to that run"),
    ("train-grpo", ["--base-model", "{finished}", "--output-dir", "{finished}/checkpoints/x"], {}, "is inside"),
    ("evaluate", ["--output-dir", "{evaluated}/debug/inner"], {}, "is inside {evaluated}/debug/"),
    ("report", ["{finished}", "--out", "{evaluated}"], {}, "--out '{evaluated}' holds an evaluation, not a report"),
    ("report", ["{finished}", "--out", "{file}"], {}, "is a file, not a folder"),
    ("report", ["{finished}", "--out", "/dev/null"], {}, "under /dev, a kernel or device file system"),
    ("experiment1", ["--root", "{finished}", "--base-model", "{model}"], {}, "holds a training run, not the runs of"),
    ("evaluate", ["--output-dir", "/"], {}, "--output-dir '/' is the root of the file system"),
    ("evaluate", ["--output-dir", "/proc/gsm8k"], {}, "is under /proc, a kernel or device file system"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{dir}/" + "n" * 300], {}, "is 300 bytes long, more than the 255"),
    ("evaluate", ["--output-file", "e" * 300 + ".csv"], {}, "a name in it is 304 bytes long"),
    ("train-sft", ["--stage", "prep", "--base-model", "{dir}/" + "m" * 300], {}, "more than the 255"),
    ("evaluate", ["--data", "{dir}/" + "d" * 300 + ".jsonl"], {}, "--data '"),
    ("report", ["{dir}/" + "r" * 300], {}, "more than the 255"),
    ("evaluate", ["--output-dir", "{loop}"], {}, "goes through a loop of symbolic links"),
    ("evaluate", ["--model-path", "{loop}"], {}, "--model-path '{loop}' goes through a loop of symbolic links"),
    ("train-sft", ["--stage", "prep", "--data", "{loop}"], {}, "--data '{loop}' goes through a loop"),
    ("evaluate", ["--output-dir", "{dangling}"], {}, "is a symbolic link to {dir}/nowhere, which does not exist"),
    ("evaluate", ["--output-dir", "{dir}/bad\ud800name"], {}, "a lone surrogate"),
    ("evaluate", [], {"GSM8K_LAB_CACHE": "{file}"}, "GSM8K_LAB_CACHE='{file}': {file} is a file, expected a folder"),
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
    ("train-sft", ["--stage", "prep", "--report-to", "nonsense"], {}, "--report-to must be one or more of none, tensorboard, wandb, trackio"),
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
     "--report-to must be one or more of"),
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
    # --- strict integers, absurd values, library ranges (the value is refused before any work) ------
    ("evaluate", [], {"EVAL_SAMPLES": "1_0"}, "EVAL_SAMPLES must be a positive integer or 'all', got '1_0'"),
    ("evaluate", ["--batch-size", "1_0"], {}, "--batch-size must be an integer, got '1_0'"),
    ("evaluate", ["--batch-size", "0x10"], {}, "--batch-size must be an integer, got '0x10'"),
    ("evaluate", ["--temperature", "1_0.5"], {}, "--temperature must be a number, got '1_0.5'"),
    ("evaluate", ["--batch-size", "99999999999999999999"], {}, "--batch-size must be at most 2147483647"),
    ("evaluate", ["--max-new-tokens", "1000000000000000"], {}, "--max-new-tokens must be at most 2147483647"),
    ("evaluate", ["--top-k", "99999999999999999999"], {}, "--top-k must be at most 2147483647"),
    ("evaluate", ["--vllm-max-model-len", "99999999999999"], {}, "--vllm-max-model-len must be at most 2147483647"),
    ("evaluate", ["--threads", "99999999999999999999"], {}, "--threads must be at most 2147483647"),
    ("evaluate", ["--eval-samples", "99999999999999999999"], {}, "--eval-samples must be at most 2147483647"),
    ("evaluate", ["--seed", "99999999999999999999"], {}, "--seed must be >= 0 and <= 4294967295"),
    ("evaluate", ["--seed", "-1"], {}, "--seed must be >= 0 and <= 4294967295, got -1"),
    ("evaluate", ["--budget-seed", "4294967296"], {}, "--budget-seed must be >= 0 and <= 4294967295"),
    ("evaluate", ["--temperature", "1e-45"], {}, "--temperature must be at least 0.01"),
    ("evaluate", ["--samples-per-problem", "2", "--temperature", "0.001"], {}, "--temperature must be at least 0.01"),
    ("evaluate", ["--attn-implementation", "bogus"], {}, "--attn-implementation must be one of eager, "),
    ("evaluate", ["--max-new-tokens", "100000"], {},
     "--max-new-tokens=100000 is longer than the model's context (2048 tokens, max_position_embeddings in config.json)"),
    ("evaluate", ["--dtype", "fp16"], {}, "--dtype 'fp16' needs a GPU"),
    # --- evaluate: data files and model folders that would fail inside a library -------------------
    ("evaluate", ["--data", "{empty_file}", "--eval-samples", "all"], {}, "empty.jsonl' holds no problems"),
    ("evaluate", ["--data", "{blank_lines}"], {}, "blank.jsonl' holds no problems"),
    ("evaluate", ["--data", "{numq}"], {}, "numq.jsonl' test line 1: expected question/answer as text, got question int"),
    ("evaluate", ["--data", "{notdict}"], {}, "notdict.jsonl' test line 1: expected question/answer as text, got list"),
    ("evaluate", ["--model-path", "{garbage_weights}"], {}, "model.safetensors is not a readable safetensors file"),
    ("evaluate", ["--model-path", "{no_tokenizer}"], {}, "has no tokenizer"),
    ("evaluate", ["--model-path", "{bad_config}"], {}, "config.json is not readable JSON"),
    ("evaluate", ["--model-path", "{config_list}"], {}, "config.json must hold a JSON object"),
    ("evaluate", ["--model-path", "{run_json_dir}"], {}, "run.json is a directory"),
    ("evaluate", ["--model-path", "{bad_run_json}"], {}, "run.json is not readable JSON"),
    ("evaluate", ["--model-path", "{no_base}"], {}, "lineage.json lacks 'base'"),
    ("evaluate", ["--model-path", "{bad_lineage}"], {}, "lineage.json is not readable JSON"),
    ("evaluate", ["--model-path", "{bad_composed}"], {}, "lineage.json has composed='yes', expected true or false"),
    ("evaluate", ["--model-path", "{bad_adapter}"], {}, "adapter_config.json is not readable JSON"),
    ("evaluate", ["--model-path", "{bad_adapter_weights}"], {}, "adapter_model.safetensors is not a readable"),
    ("evaluate", ["--model-path", "{gone_base}"], {}, "starts from /nonexistent/base-model, which holds no model"),
    ("evaluate", ["--output-dir", "{locked_debug}"], {}, "debug cannot be written"),
    # --- evaluate: a finished evaluation overwritten with values that used to fail late --------------
    ("evaluate", ["--output-dir", "{evaluated}", "--output-file", "e.csv", "--overwrite", "--max-new-tokens",
                  "1000000000000000"], {}, "--max-new-tokens must be at most 2147483647"),
    ("evaluate", ["--output-dir", "{evaluated}", "--output-file", "e.csv", "--overwrite", "--temperature", "1e-45"],
     {}, "--temperature must be at least 0.01"),
    ("evaluate", ["--output-dir", "{evaluated}", "--output-file", "e.csv", "--overwrite", "--data", "{numq}"], {},
     "expected question/answer as text"),
    ("evaluate", ["--output-dir", "{evaluated}", "--output-file", "e.csv", "--overwrite", "--attn-implementation",
                  "nope"], {}, "--attn-implementation must be one of"),
    ("evaluate", ["--output-dir", "{evaluated}", "--output-file", "e.csv", "--overwrite", "--attn-implementation",
                  "flash_attention_2"], {}, "--attn-implementation 'flash_attention_2' cannot load this model here"),
    # --- train-sft: library ranges, model limits, identities -------------------------------------------
    ("train-sft", ["--stage", "prep", "--lr-scheduler", "bogus"], {}, "--lr-scheduler must be one of linear, cosine"),
    ("train-sft", ["--stage", "prep", "--lr-scheduler", "cosine_with_min_lr"], {},
     "--lr-scheduler 'cosine_with_min_lr' needs arguments of its own that this pipeline does not pass (One of min_lr"),
    ("train-sft", ["--stage", "prep", "--lr-scheduler", "warmup_stable_decay"], {}, "needs arguments of its own"),
    ("train-sft", ["--stage", "prep", "--seed", "-1"], {}, "--seed must be >= 0 and <= 4294967295, got -1"),
    ("train-sft", ["--stage", "prep", "--seed", "99999999999999999999"], {}, "--seed must be >= 0 and <= 4294967295"),
    ("train-sft", ["--stage", "prep", "--lora-r", "1000000000000"], {}, "--lora-r must be at most 2147483647"),
    ("train-sft", ["--stage", "prep", "--lora-r", "100"], {},
     "--lora-r=100 is larger than the model's hidden size (64, hidden_size in config.json)"),
    ("train-sft", ["--stage", "prep", "--lora-alpha", "99999999999999999999"], {}, "--lora-alpha must be at most"),
    ("train-sft", ["--stage", "prep", "--max-length", "100000"], {}, "--max-length=100000 is longer than the model's context"),
    ("train-sft", ["--stage", "prep", "--eval-max-new-tokens", "100000"], {}, "--eval-max-new-tokens=100000 is longer than"),
    ("train-sft", ["--stage", "prep", "--eval-temperature", "1e-45"], {}, "--eval-temperature must be at least 0.01"),
    ("train-sft", ["--stage", "prep", "--gradient-accumulation-steps", "99999999999999999999"], {}, "must be at most"),
    ("train-sft", ["--stage", "prep", "--epochs", "1_0"], {}, "--epochs must be a number, got '1_0'"),
    ("train-sft", ["--stage", "prep"], {"PREP_TRAIN_SAMPLES": "1_0"}, "PREP_TRAIN_SAMPLES must be a positive integer, got '1_0'"),
    ("train-sft", ["--stage", "prep", "--dtype", "fp16"], {}, "--dtype 'fp16' needs a GPU"),
    ("train-sft", ["--stage", "prep", "--attn-implementation", "bogus"], {}, "--attn-implementation must be one of"),
    ("train-sft", ["--stage", "prep", "--lora-target-modules", "nonexistent_proj"], {},
     "--lora-target-modules 'nonexistent_proj' matches no layer of the model; its layers are down_proj"),
    ("train-sft", ["--stage", "prep", "--config", "{targets_5}"], {}, "lora.target_modules (in "),
    ("train-sft", ["--stage", "prep", "--config", "{no_targets}"], {}, "lora.target_modules (in "),
    ("train-sft", ["--stage", "prep", "--base-model", "{model}", "--output-dir", "{model}"], {},
     "is or lies inside the base model's folder"),
    ("train-sft", ["--stage", "prep", "--base-model", "{model}", "--output-dir", "{model}/run"], {},
     "is or lies inside the base model's folder"),
    ("train-sft", ["--stage", "prep", "--base-model", "{model}", "--output-dir", "{model_parent}"], {},
     "holds the base model's folder"),
    ("train-sft", ["--stage", "prep", "--train-data", "{good_data}", "--data", "{hardlink}"], {}, "is also the training data"),
    ("train-sft", ["--stage", "prep", "--train-data", "{good_data}", "--data", "{symlink}"], {}, "is also the training data"),
    ("train-sft", ["--stage", "prep", "--train-data", "{good_data}", "--data", "{same_bytes}"], {}, "is also the training data"),
    ("train-sft", ["--stage", "full", "--traces-file", "{good_traces}", "--data", "{traces_link}"], {},
     "is also the training data"),
    ("train-sft", ["--stage", "prep", "--train-data", "{numq}"], {}, "numq.jsonl' train line 1: expected question/answer as text"),
    ("train-sft", ["--stage", "prep", "--train-data", "{empty_file}"], {}, "--train-data '{dir}/empty.jsonl' holds no problems"),
    ("train-sft", ["--stage", "full", "--traces-file", "{numq}"], {}, "line 1 needs string fields 'question' and 'answer'"),
    ("train-sft", ["--stage", "full", "--traces-file", "{blank_lines}"], {}, "is empty"),
    ("train-sft", ["--stage", "prep", "--base-model", "{garbage_weights}"], {}, "is not a readable safetensors file"),
    ("train-sft", ["--stage", "full", "--base-model", "{no_base}"], {}, "lineage.json lacks 'base'"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{run_json_dir}"], {}, "is not a run directory: run.json is a directory"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{locked_debug}"], {}, "holds an evaluation, not a training run"),
    # --- train-sft over a finished run with values that fail late: the old run is kept ---------------
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}", "--overwrite", "--lora-target-modules", "nope_proj"],
     {}, "--lora-target-modules 'nope_proj' matches no layer"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}", "--overwrite", "--lr-scheduler", "bogus"], {},
     "--lr-scheduler must be one of"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}", "--overwrite", "--seed", "-1"], {},
     "--seed must be >= 0"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}", "--overwrite", "--lora-r", "1000000000000"], {},
     "--lora-r must be at most"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}", "--overwrite", "--config", "{targets_5}"], {},
     "lora.target_modules (in "),
    # --- train-grpo ---------------------------------------------------------------------------------------
    ("train-grpo", ["--lr-scheduler", "cosine_with_min_lr"], {}, "needs arguments of its own"),
    ("train-grpo", ["--lr-scheduler", "cosine_warmup_with_min_lr"], {}, "needs arguments of its own"),
    ("train-grpo", ["--seed", "99999999999999999999"], {}, "--seed must be >= 0 and <= 4294967295"),
    ("train-grpo", ["--temperature", "1e-45"], {}, "--temperature must be at least 0.01"),
    ("train-grpo", ["--max-completion-length", "100000"], {}, "--max-completion-length=100000 is longer than the model's"),
    ("train-grpo", ["--max-completion-length", "1000000000000000"], {}, "--max-completion-length must be at most"),
    ("train-grpo", ["--batch-size", "99999999999999999999"], {}, "--batch-size must be at most 2147483647"),
    ("train-grpo", [], {"NUM_GENERATIONS": "1_0"}, "NUM_GENERATIONS must be an integer, got '1_0'"),
    ("train-grpo", ["--lora-r", "100"], {}, "--lora-r=100 is larger than the model's hidden size"),
    ("train-grpo", ["--dtype", "fp16"], {}, "--dtype 'fp16' needs a GPU"),
    ("train-grpo", ["--attn-implementation", "bogus"], {}, "--attn-implementation must be one of"),
    ("train-grpo", ["--rollout-engine", "fast"], {}, "--rollout-engine must be one of auto, trl, refill, refill-merged"),
    ("train-grpo", ["--top-p", "0"], {}, "--top-p must be > 0 and <= 1, got 0"),
    ("train-grpo", ["--train-data", "{good_data}", "--data", "{hardlink}"], {}, "is also the training data"),
    ("train-grpo", ["--base-model", "{model}", "--output-dir", "{model}"], {}, "is or lies inside the base model's folder"),
    ("train-grpo", ["--output-dir", "{finished}", "--overwrite", "--lora-target-modules", "nope_proj"], {},
     "matches no layer of the model"),
    # --- generate-traces --------------------------------------------------------------------------------
    ("generate-traces", ["--seed", "99999999999999999999"], {}, "--seed must be >= 0 and <= 4294967295"),
    ("generate-traces", ["--seed", "-5"], {}, "--seed must be >= 0 and <= 4294967295, got -5"),
    ("generate-traces", ["--temperature", "1e-45"], {}, "--temperature must be at least 0.01"),
    ("generate-traces", ["--max-new-tokens", "100000"], {}, "--max-new-tokens=100000 is longer than the model's context"),
    ("generate-traces", ["--num-samples", "1_0"], {}, "--num-samples must be a positive integer or 'all', got '1_0'"),
    ("generate-traces", ["--batch-size", "99999999999999999999"], {}, "--batch-size must be at most"),
    ("generate-traces", ["--max-attempts", "99999999999999999999"], {}, "--max-attempts must be at most"),
    ("generate-traces", ["--train-data", "{empty_file}"], {}, "holds no problems"),
    ("generate-traces", ["--train-data", "{numq}"], {}, "train line 1: expected question/answer as text"),
    ("generate-traces", ["--dataset-split", "test", "--data", "{notdict}"], {}, "test line 1: expected question/answer"),
    ("generate-traces", ["--grpo-model", "{no_base}"], {}, "lineage.json lacks 'base'"),
    ("generate-traces", ["--grpo-model", "{bad_adapter_weights}"], {}, "is not a readable safetensors file"),
    ("generate-traces", ["--dtype", "fp16"], {}, "--dtype 'fp16' needs a GPU"),
    ("generate-traces", ["--attn-implementation", "bogus"], {}, "--attn-implementation must be one of"),
    ("generate-traces", ["--output-dir", "{locked_link}"], {}, "is under /sys, a kernel or device file system"),
    ("generate-traces", ["--output-dir", "{traced}", "--overwrite", "--max-new-tokens", "1000000000000000"], {},
     "--max-new-tokens must be at most"),
    ("generate-traces", ["--output-dir", "{traced}", "--overwrite", "--temperature", "1e-45"], {},
     "--temperature must be at least 0.01"),
    ("generate-traces", ["--output-dir", "{tracing}", "--overwrite", "--seed", "-1"], {}, "--seed must be >= 0"),
    # --- experiments ------------------------------------------------------------------------------------
    ("experiment1", ["--budgets", "1_0"], {}, "--budgets must be a list of integers, got '1_0'"),
    ("experiment1", ["--budgets", "99999999999999999999"], {}, "--budgets 99999999999999999999 is larger than 2147483647"),
    ("experiment1", ["--seed", "4294967295", "--seeds", "2"], {}, "--seeds=2 repeats seed 4294967295 up to 4294967296"),
    ("experiment1", ["--sft-lr-scheduler", "bogus"], {}, "--sft-lr-scheduler must be one of"),
    ("experiment1", ["--grpo-lr-scheduler", "cosine_with_min_lr"], {}, "needs arguments of its own"),
    ("experiment1", ["--rollout-temperature", "1e-45"], {}, "--rollout-temperature must be at least 0.01"),
    ("experiment2", ["--temperature", "1e-45"], {}, "--temperature must be at least 0.01"),
    ("experiment2", ["--budget", "1_0"], {}, "--budget must be a positive integer, got '1_0'"),
    ("preset", ["--seed", "-1"], {}, "--seed must be >= 0 and <= 4294967295, got -1"),
    ("preset", ["--eval-max-new-tokens", "99999999999999999999"], {}, "--eval-max-new-tokens must be at most"),
    # --- data files, reports, evaluation outputs: each refused in one line before any work ------------
    ("train-sft", ["--stage", "full", "--traces-file", "{formfeed}"], {},
     "formfeed.jsonl': line 1 is not valid JSON (Extra data"),
    ("evaluate", ["--data", "{formfeed}"], {}, "formfeed.jsonl': line 1 is not valid JSON (Extra data"),
    ("evaluate", ["--data", "{deep}"], {}, "deep.jsonl': line 1 is nested too deeply to read as JSON"),
    ("train-sft", ["--stage", "full", "--traces-file", "{deep}"], {}, "deep.jsonl': line 1 is nested too deeply"),
    ("generate-traces", ["--train-data", "{deep}"], {}, "deep.jsonl': line 1 is nested too deeply"),
    ("evaluate", ["--data", "{surrogate}"], {}, "surrogate.jsonl': line 2 holds a lone surrogate (\\ud800)"),
    ("train-sft", ["--stage", "full", "--traces-file", "{surrogate}"], {},
     "surrogate.jsonl': line 2 holds a lone surrogate (\\ud800)"),
    ("train-grpo", ["--train-data", "{surrogate}"], {}, "surrogate.jsonl': line 2 holds a lone surrogate"),
    ("evaluate", ["--output-dir", "{csv_is_dir}", "--output-file", "e.csv"], {},
     "debug/e.csv is a directory, where the evaluation writes a file"),
    ("evaluate", ["--output-dir", "{csv_is_dir}", "--output-file", "e.csv", "--overwrite"], {},
     "debug/e.csv is a directory"),
    ("evaluate", ["--output-dir", "{metrics_is_dir}", "--output-file", "e.csv", "--overwrite"], {},
     "debug/e_metrics.txt is a directory"),
    ("evaluate", ["--output-dir", "{metrics_json_is_dir}", "--output-file", "e.csv", "--resume"], {},
     "debug/e_metrics.json is a directory"),
    ("evaluate", ["--output-dir", "{settings_is_dir}", "--output-file", "e.csv", "--resume"], {},
     "debug/e_settings.json is a directory"),
    ("evaluate", ["--output-dir", "{new_metrics_is_dir}", "--output-file", "e.csv"], {},
     "debug/e_metrics.txt is a directory"),
    ("evaluate", ["--output-dir", "{no_settings}", "--output-file", "e.csv", "--resume", "--max-new-tokens", "4"], {},
     "e.csv' cannot be resumed: its settings record e_settings.json is missing: cannot tell which settings made it; "
     "pass --overwrite to start again"),
    ("evaluate", ["--output-dir", "{torn_settings}", "--output-file", "e.csv", "--resume", "--max-new-tokens", "4"],
     {}, "its settings record e_settings.json is not readable JSON: cannot tell which settings made it"),
    ("evaluate", ["--output-dir", "{list_settings}", "--output-file", "e.csv", "--resume"], {},
     "its settings record e_settings.json holds no settings: cannot tell which settings made it"),
    ("evaluate", ["--output-dir", "{interrupted_no_settings}", "--output-file", "e.csv", "--resume",
                  "--max-new-tokens", "4"], {}, "e_settings.json is missing: cannot tell which settings made it"),
    ("report", ["{finished}", "--out", "{file}/report"], {}, "--out '{file}/report' is not a directory"),
    ("train-sft", ["--stage", "prep", "--max-length", "16"], {},
     "--max-length=16 cannot hold the longest training prompt ("),
    ("train-sft", ["--stage", "full", "--traces-file", "{good_traces}", "--max-length", "20"], {},
     "--max-length=20 cannot hold the longest training prompt ("),
    ("train-sft", ["--stage", "prep", "--train-data", "{good_data}", "--eval-extra-sources", "{hardlink}"], {},
     "--eval-extra-sources '{hardlink}' is also the training data"),
    ("train-sft", ["--stage", "prep", "--train-data", "{good_data}", "--eval-extra-sources", "{symlink}"], {},
     "--eval-extra-sources '{symlink}' is also the training data"),
    ("train-sft", ["--stage", "prep", "--train-data", "{good_data}", "--eval-extra-sources", "{same_bytes}"], {},
     "--eval-extra-sources '{same_bytes}' is also the training data"),
    ("train-sft", ["--stage", "full", "--traces-file", "{good_traces}", "--eval-extra-sources", "{traces_link}"], {},
     "--eval-extra-sources '{traces_link}' is also the training data"),
    ("train-grpo", ["--train-data", "{good_data}", "--eval-extra-sources", "gsm-symbolic:3", "{same_bytes}"], {},
     "is also the training data"),
    ("evaluate", ["--model-path", "{checkpoint_gone_parent}"], {}, "no longer there: its model cannot be rebuilt exactly"),
    ("train-sft", ["--stage", "full", "--base-model", "{checkpoint_gone_parent}"], {},
     "--base-model '{checkpoint_gone_parent}' is a checkpoint of {dir}/gone_parent, which trains on top of"),
]

# The same checks through the seed's scripts, each in a fresh process (what a user runs).
SCRIPT_CASES = [
    ("evaluate", [], {"EVAL_SAMPLES": "1_0"}, "EVAL_SAMPLES must be a positive integer or 'all', got '1_0'"),
    ("evaluate", ["--model-path", "no-such-org/no-such-model"], {}, "is not a local path"),
    ("evaluate", ["--output-dir", "{evaluated}", "--output-file", "e.csv", "--overwrite", "--temperature", "1e-45"],
     {}, "--temperature must be at least 0.01"),
    ("train-sft", ["--stage", "prep", "--output-dir", "{finished}", "--overwrite", "--lora-target-modules", "nope_proj"],
     {}, "--lora-target-modules 'nope_proj' matches no layer"),
    ("train-sft", ["--stage", "prep", "--seed", "99999999999999999999"], {}, "--seed must be >= 0 and <= 4294967295"),
    ("train-grpo", ["--lr-scheduler", "cosine_with_min_lr"], {}, "needs arguments of its own"),
    ("generate-traces", ["--seed", "99999999999999999999"], {}, "--seed must be >= 0 and <= 4294967295"),
    ("train-sft", ["--stage", "prep", "--bogus"], {}, "error: gsm8k-lab train-sft: unrecognized arguments: --bogus"),
    ("evaluate", ["--temperature"], {}, "gsm8k-lab evaluate: argument --temperature: expected one argument"),
    ("train-grpo", ["--loss-type"], {}, "gsm8k-lab train-grpo: argument --loss-type: expected one argument"),
    ("generate-traces", ["--resume", "--overwrite"], {}, "argument --overwrite: not allowed with argument --resume"),
    ("evaluate", ["--model-path", ""], {}, "--model-path must not be empty, 'none' or 'null'"),
    ("train-grpo", ["--temperature", "0"], {}, "--temperature must be > 0 for GRPO"),
    ("evaluate", ["--temperature", "\uff14"], {}, "--temperature must be a number, got '\uff14'"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory, chain, evaluated, tiny_model_dir) -> dict:
    """The folder every case reads: runs, model folders and input files (built once, never changed)."""
    root = tmp_path_factory.mktemp("world")
    names = {"dir": str(root), "model": str(tiny_model_dir), "model_parent": str(tiny_model_dir.parent)}

    def f(name, content, binary=False):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content) if binary else p.write_text(content)
        return str(p)

    def folder(name, files=(), links=()):
        """A folder holding copies of ``files`` and links to ``links`` of the tiny model."""
        p = root / name
        p.mkdir(parents=True)
        for n in files:
            shutil.copy(tiny_model_dir / n, p / n)
        for n in links:
            (p / n).symlink_to(tiny_model_dir / n)
        names[name.replace("/", "_")] = str(p)
        return p

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
    names["blank_lines"] = f("blank.jsonl", "\n\n")
    names["numq"] = f("numq.jsonl", '{"question": 5, "answer": "#### 1"}\n')
    names["notdict"] = f("notdict.jsonl", "[1, 2]\n")
    names["good_traces"] = f("traces.jsonl", GOOD_TRACE * 5)
    names["good_data"] = f("data.jsonl", GOOD_TRACE * 5)
    os.link(root / "data.jsonl", root / "data_hardlink.jsonl")
    names["hardlink"] = str(root / "data_hardlink.jsonl")
    (root / "data_symlink.jsonl").symlink_to(root / "data.jsonl")
    names["symlink"] = str(root / "data_symlink.jsonl")
    names["same_bytes"] = f("data_copy.jsonl", GOOD_TRACE * 5)
    os.link(root / "traces.jsonl", root / "traces_link.jsonl")
    names["traces_link"] = str(root / "traces_link.jsonl")
    names["badyaml"] = f("bad.yaml", "eval: {samples: [unclosed\n")
    names["unknown_key"] = f("unknown.yaml", "eval:\n  sampels: 3\n")
    names["bad_value"] = f("value.yaml", "eval:\n  generation:\n    batch_size: 0\n")
    names["targets_5"] = f("targets5.yaml", "lora:\n  target_modules: [5]\n")
    names["no_targets"] = f("notargets.yaml", "lora:\n  target_modules: []\n")
    names["sexagesimal"] = f("sexagesimal.yaml", "eval:\n  samples: 1:00\n")
    names["underscore"] = f("underscore.yaml", "seed: 1_0\n")
    names["fullwidth"] = f("fullwidth.yaml", "grpo:\n  rollout:\n    temperature: \uff10.5\n")
    names["twice"] = f("twice.yaml", "eval:\n  samples: 3\n  split: test\n  samples: 4\n")
    names["twice_json"] = f("twice/run.json", '{"run_id": "x",\n "settings": {"seed": 1,\n  "seed": 2}}\n')
    names["deep_yaml"] = f("deep.yaml", "[" * 200_000)
    names["deep_json"] = f("deep.json", "{" * 200_000)
    f("traced/grpo_traces_train.jsonl", GOOD_TRACE)
    f("traced/grpo_traces_train.jsonl.stats.json", "{}")
    names["traced"] = str(root / "traced")
    f("tracing/grpo_traces_train.jsonl.progress.jsonl", json.dumps({"settings": {"traces.split": "train"}}) + "\n")
    names["tracing"] = str(root / "tracing")
    # model folders, each broken in one way
    tokenizer = [p.name for p in tiny_model_dir.iterdir() if p.name.startswith(("tokenizer", "special", "chat"))]
    folder("garbage_weights", ["config.json"], tokenizer)
    f("garbage_weights/model.safetensors", b"\x00" * 64, binary=True)
    folder("no_tokenizer", ["config.json"], ["model.safetensors"])
    folder("bad_config", [], ["model.safetensors", *tokenizer])
    f("bad_config/config.json", '{"model_type": "llama",')
    folder("config_list", [], ["model.safetensors", *tokenizer])
    f("config_list/config.json", "[]")
    # run directories, each broken in one way
    adapter = root / "finished" / "model"
    for name, broken, content in (("no_base", "lineage.json", '{"parents": []}'),
                                  ("bad_lineage", "lineage.json", "{oops"),
                                  ("bad_composed", "lineage.json", '{"base": "x", "parents": [], "composed": "yes"}'),
                                  ("bad_adapter", "adapter_config.json", "{oops"),
                                  ("bad_adapter_weights", "adapter_model.safetensors", "garbage"),
                                  ("gone_base", "lineage.json", '{"base": "/nonexistent/base-model", "parents": []}'),
                                  ("bad_run_json", "../run.json", "{oops")):
        shutil.copytree(adapter, root / name / "model")
        f(f"{name}/model/{broken}", content)
        names[name] = str(root / name)
    (root / "run_json_dir" / "run.json").mkdir(parents=True)
    (root / "run_json_dir" / "model").mkdir()
    names["run_json_dir"] = str(root / "run_json_dir")
    # folders that cannot be written
    (root / "locked_debug").mkdir()
    (root / "locked_debug" / "debug").symlink_to(READ_ONLY)
    names["locked_debug"] = str(root / "locked_debug")
    (root / "locked_link").symlink_to(READ_ONLY)
    names["locked_link"] = str(root / "locked_link")
    (root / "loop_a").symlink_to(root / "loop_b")
    (root / "loop_b").symlink_to(root / "loop_a")
    names["loop"] = str(root / "loop_a")
    (root / "dangling").symlink_to(root / "nowhere")
    names["dangling"] = str(root / "dangling")
    # data files that a reader splitting lines like str.splitlines, or json without limits, got wrong
    names["formfeed"] = f("formfeed.jsonl", GOOD_TRACE.strip() + "\x0c" + GOOD_TRACE)
    names["deep"] = f("deep.jsonl", "[" * 200_000 + "]" * 200_000 + "\n")
    names["surrogate"] = f("surrogate.jsonl", GOOD_TRACE + '{"question": "q \\ud800", "answer": "#### 1"}\n')
    # finished evaluations with an output of the wrong type where a file will be written
    for name, output in (("csv_is_dir", "e.csv"), ("metrics_is_dir", "e_metrics.txt"),
                         ("metrics_json_is_dir", "e_metrics.json"), ("settings_is_dir", "e_settings.json"),
                         ("new_metrics_is_dir", None)):
        shutil.copytree(evaluated, root / name)
        names[name] = str(root / name)
        if output is None:  # no evaluation there yet: only a folder where its metrics go
            shutil.rmtree(root / name / "debug")
            output = "e_metrics.txt"
        (root / name / "debug" / output).unlink(missing_ok=True)
        (root / name / "debug" / output).mkdir(parents=True)
    # evaluations whose settings record cannot be read: finished, and interrupted after one row
    for name, record in (("no_settings", None), ("torn_settings", '{"model": '), ("list_settings", "[]"),
                         ("interrupted_no_settings", None)):
        shutil.copytree(evaluated, root / name)
        names[name] = str(root / name)
        debug = root / name / "debug"
        (debug / "e_settings.json").unlink()
        if record is not None:
            (debug / "e_settings.json").write_text(record)
    debug = root / "interrupted_no_settings" / "debug"
    (debug / "e.csv").write_bytes(b"".join((debug / "e.csv").read_bytes().splitlines(keepends=True)[:2]))
    for metrics in ("e_metrics.txt", "e_metrics.json"):
        (debug / metrics).unlink()
    # an unfinished chained run whose parent run is gone: its checkpoints cannot be loaded as they trained
    shutil.copytree(chain / "full", root / "gone_parent", ignore=shutil.ignore_patterns("model"))
    info = json.loads((root / "gone_parent" / "run.json").read_text())
    info["model_chain"]["adapters"] = [str(root / "gone" / "model")]
    (root / "gone_parent" / "run.json").write_text(json.dumps(info))
    names["checkpoint_gone_parent"] = str(next((root / "gone_parent" / "checkpoints").glob("checkpoint-*")))
    return names


def _snapshot(*folders: Path) -> dict:
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            st = p.lstat()
            whole = p.is_file() and not p.is_symlink()
            out[str(p)] = (st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest() if whole else None)
    return out


DEFAULTS = {"evaluate": EVALUATED_ARGS, "generate-traces": ["--max-new-tokens", "8", "--dtype", "fp32"],
            # one accumulation step: a GRPO step then takes 2 of TINY_ENV's 4 problems (the default 4 would
            # need 8, refused before the error a case is about)
            "train-grpo": [*EVAL, "--gradient-accumulation-steps", "1"]}


def _command(command, args, env, names, out):
    """The full argument list (a model, an output folder and small sizes unless the case sets them)
    and environment of a case."""
    def fill(text):
        for k, v in sorted(names.items(), key=lambda kv: -len(kv[0])):
            text = text.replace("{" + k + "}", v)
        return text

    args = [fill(a) for a in args]
    env = {**TINY_ENV, "HF_HUB_OFFLINE": "1", "OUTPUT_DIR": str(out / "outputs"), **{k: fill(v) for k, v in env.items()}}
    if command in SCRIPT:
        flag = {"evaluate": "--model-path", "generate-traces": "--grpo-model"}.get(command, "--base-model")
        if flag not in args and "MODEL_NAME" not in env:
            args += [flag, names["finished"] if command == "generate-traces" else names["model"]]
        if "--output-dir" not in args:
            args += ["--output-dir", str(out / "out")]
        extra = DEFAULTS.get(command, EVAL)
        for i in range(0, len(extra), 2):
            if extra[i] not in args:
                args += extra[i:i + 2]
    return args, env, fill


def _skip_if_not_bad_here(args):
    if "fp16" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("fp16 is fine on a GPU")
    if "flash_attention_2" in args and importlib.util.find_spec("flash_attn"):
        pytest.skip("flash attention is installed here")
    if any("locked" in a for a in args) and not os.access(READ_ONLY, os.F_OK):
        pytest.skip(f"{READ_ONLY} is missing here")


def _error_line(stderr: str) -> list[str]:
    """The lines of stderr, less transformers' progress bars (a model loaded before the refusal)."""
    return [line for line in stderr.strip().splitlines() if "it/s]" not in line and "s/it]" not in line]


def _enter_case(command, args, env, world, tmp_path, tiny_model_dir, monkeypatch):
    """Set up one case: its arguments filled in, only its own settings variables set, the working
    directory its folder; returns the arguments, the needle filler and the files' snapshot before."""
    args, env, fill = _command(command, args, env, world, tmp_path)
    for var in env_vars() - {"GSM8K_LAB_THREADS"}:
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    return args, fill, _snapshot(Path(world["dir"]), tiny_model_dir, tmp_path)


@pytest.mark.parametrize("command,args,env,needle", CASES)
def test_bad_input(tmp_path, world, tiny_model_dir, monkeypatch, capsys, command, args, env, needle):
    _skip_if_not_bad_here(args)
    args, fill, before = _enter_case(command, args, env, world, tmp_path, tiny_model_dir, monkeypatch)
    code = cli.main([command, *args])
    err = capsys.readouterr().err
    lines = _error_line(err)
    assert code == 2, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fill(needle) in lines[0], lines
    assert _snapshot(Path(world["dir"]), tiny_model_dir, tmp_path) == before, "a refused command changed files"


@pytest.mark.parametrize("command,args,env,needle", SCRIPT_CASES)
def test_bad_input_through_the_scripts(tmp_path, world, tiny_model_dir, command, args, env, needle):
    args, env, fill = _command(command, args, env, world, tmp_path)
    before = _snapshot(Path(world["dir"]), tiny_model_dir, tmp_path)
    r = subprocess.run([sys.executable, str(REPO / "src" / SCRIPT[command]), *args],
                       env={**{k: v for k, v in os.environ.items() if k not in env_vars() - {"GSM8K_LAB_THREADS"}},
                            **env},
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = _error_line(r.stderr)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and fill(needle) in lines[0], lines
    assert _snapshot(Path(world["dir"]), tiny_model_dir, tmp_path) == before, "a refused command changed files"


def test_a_finished_runs_run_json_repeats_its_settings(world, monkeypatch):
    """``--config RUN/run.json`` reads back what training recorded: JSON's nulls, booleans, numbers and lists."""
    run_json = Path(world["finished"]) / "run.json"
    recorded = json.loads(run_json.read_text())["settings"]
    leaves = []

    def walk(tree):
        for v in tree.values():
            walk(v) if isinstance(v, dict) else leaves.append(v)
    walk(recorded)
    assert {type(v) for v in leaves} >= {type(None), bool, int, float, str, list}  # every JSON type is exercised
    for var in env_vars():
        monkeypatch.delenv(var, raising=False)
    ctx = cli.Context(cli.build_parser().parse_args(["evaluate", "--config", str(run_json)]))
    ctx.load()
    assert ctx.settings.to_dict() == recorded


def test_the_matrix_is_large():
    assert len(CASES) >= 120
    assert {c[0] for c in CASES} == {*SCRIPT, "experiment1", "experiment2", "preset", "report"}

"""The learning-rate sweep: the pick rule, bad input, and one small sweep end to end on the tiny model."""

import csv
import json
import os
import subprocess
import sys

import pytest

from gsm8k_lab.cli import main
from gsm8k_lab.config import Settings, load_settings
from gsm8k_lab.data import load_split, train_regions
from gsm8k_lab.sweep import pick

TINY = {"PREP_TRAIN_SAMPLES": "4", "EVAL_SAMPLES": "3", "NUM_GENERATIONS": "4", "PYTHONUNBUFFERED": "1"}


def _row(lr, acc, ans):
    return {"learning_rate": lr, "accuracy": acc, "answer_proportion": ans}


def test_pick_takes_the_metric_then_the_other_measure_then_the_smaller_rate():
    rows = [_row(1e-3, 0.10, 0.5), _row(2e-4, 0.10, 0.7), _row(5e-4, 0.05, 0.9)]
    assert pick(rows, "accuracy")["learning_rate"] == 2e-4  # tie on accuracy: the better answer format
    assert pick(rows, "answer_proportion")["learning_rate"] == 5e-4
    tied = [_row(1e-3, 0.0, 0.0), _row(1e-4, 0.0, 0.0), _row(3e-4, 0.0, 0.0)]
    assert pick(tied, "accuracy")["learning_rate"] == 1e-4  # a full tie: the smaller change


@pytest.mark.parametrize("args, needle", [
    (["--methods", "ppo"], "--methods must list methods among sft, grpo once each, got ppo"),
    (["--sft-learning-rates", "0"], "--sft-learning-rates needs learning rates > 0 and <= 1, got 0\n"),
    (["--eval-split", "test"], "--eval-split 'test': a sweep tunes on the validation split"),
    (["--budget", "7000"], "--budget=7000 reaches into the held-out problems"),
    (["--eval-samples", "600"], "--eval-samples=600 is larger than the validation split (512 problems)"),
    (["--prep-model", "nowhere"], "--prep-model 'nowhere' is not a finished prep run"),
])
def test_bad_sweep_input_is_one_line_before_any_work(tmp_path, capsys, args, needle):
    assert main(["sweep-lr", "--root", str(tmp_path / "s"), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_a_small_sweep_end_to_end(tmp_path, tiny_model_dir):
    root = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "gsm8k_lab", "sweep-lr", "--root", str(root), "--base-model", str(tiny_model_dir),
           "--methods", "sft", "grpo", "--sft-learning-rates", "1e-3", "1e-4", "--grpo-learning-rates", "1e-4",
           "--budget", "4", "--grpo-gradient-accumulation-steps", "1", "--rollout-max-new-tokens", "8",
           "--eval-max-new-tokens", "8", "--dtype", "fp32"]
    env = {**os.environ, **TINY}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((root / "sweep.json").read_text())
    sft, grpo = record["methods"]["sft"], record["methods"]["grpo"]
    assert [row["learning_rate"] for row in sft["rows"]] == [1e-3, 1e-4] and len(grpo["rows"]) == 1
    for entry in (sft, grpo):
        assert entry["pick"] == pick(entry["rows"], "accuracy")["learning_rate"] and entry["metric"] == "accuracy"
    # every sweep run was evaluated on the first 3 validation problems, never on test
    validation = [p.index for p in train_regions(load_split("train"), Settings()).validation(3)]
    for row in sft["rows"] + grpo["rows"]:
        info = json.loads((root / row["run"].split(str(root) + "/")[1] / "run.json").read_text())
        assert info["eval"]["split"] == "validation" and info["data"]["region"] == "budget"
        assert info["settings"][row["run"].split("/")[-2]]["learning_rate"] == row["learning_rate"]
        with open(root / row["run"].split(str(root) + "/")[1] / "debug" / info["eval"]["csv"]) as fh:
            assert [int(x["index"]) for x in csv.DictReader(fh)] == sorted(validation)  # rows in index order
        assert row["validation"]["indices_sha256"] and row["validation"]["region"] == "validation"
    prep = json.loads((root / "prep_sft" / "run.json").read_text())
    assert prep["data"]["region"] == "prep" and prep["eval"]["split"] == "validation"
    # the pick is a settings file a later command takes
    picked, _ = load_settings(env={}, config_file=root / "picked.yaml")
    assert (picked.sft.learning_rate, picked.grpo.learning_rate) == (sft["pick"], grpo["pick"])
    assert picked.sft.prep_learning_rate == Settings().sft.learning_rate  # the prep model's rate, pinned
    md = (root / "sweep.md").read_text()
    assert "**picked**" in md and "Pick: learning rate" in md and "validation" in md
    # a rerun finds every step done and only rewrites the report
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("[gsm8k-lab] skip") == 4 and "[gsm8k-lab] run " not in again.stdout

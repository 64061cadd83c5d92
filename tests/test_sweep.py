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
from gsm8k_lab.sweep import pick, sweep_settings, sweep_steps

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
    (["--seeds", "2"], "--seeds=2: a sweep trains one run per rate with one seed"),
])
def test_bad_sweep_input_is_one_line_before_any_work(tmp_path, capsys, args, needle):
    assert main(["sweep-lr", "--root", str(tmp_path / "s"), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("stage", ["grpo", "full_sft", "base"])
def test_the_prep_model_must_be_a_finished_prep_sft_run(tmp_path, capsys, stage):
    """A GRPO or full SFT run, or an evaluation-only run (no adapter), is refused as --prep-model by its
    own flag, before any sweep run starts."""
    run = tmp_path / stage
    run.mkdir()
    if stage != "base":
        (run / "model").mkdir()
        (run / "model" / "adapter_config.json").write_text("{}")
    (run / "run.json").write_text(json.dumps({"status": "complete", "stage": stage}))
    assert main(["sweep-lr", "--root", str(tmp_path / "s"), "--prep-model", str(run)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"error: --prep-model '{run}' is not a prep SFT run: its run.json says stage {stage} (expected prep_sft" in err
    assert not (tmp_path / "s").exists()


def test_sweep_layout_and_per_step_rates():
    s = Settings()
    s.experiment.budgets, s.sweep.sft_learning_rates, s.sweep.grpo_learning_rates = [32, 64], [1e-3, 2e-4], [1e-4]
    steps = sweep_steps(sweep_settings(s), "root")
    assert [(x.name, str(x.run_dir)) for x in steps] == [
        ("prep SFT", "root/prep_sft"), ("SFT lr 0.001", "root/sft/lr0.001"), ("SFT lr 0.0002", "root/sft/lr0.0002"),
        ("GRPO lr 0.0001", "root/grpo/lr0.0001")]
    assert [x.name for x in sweep_steps(sweep_settings(s), "root", prep_model="p")][0] == "SFT lr 0.001"
    c = sweep_settings(s)
    assert (c.eval.split, c.eval.extra_sources, s.eval.split) == ("validation", [], "test")


def test_a_small_sweep_end_to_end(tmp_path, chain):
    """Two SFT rates from the shared chain's prep run, evaluated on validation, then picked and resumed."""
    root = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "gsm8k_lab", "sweep-lr", "--root", str(root), "--prep-model", str(chain / "prep"),
           "--methods", "sft", "--sft-learning-rates", "1e-3", "1e-4", "--budget", "4",
           "--eval-max-new-tokens", "8", "--dtype", "fp32"]
    env = {**os.environ, **TINY}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((root / "sweep.json").read_text())
    sft = record["methods"]["sft"]
    assert [row["learning_rate"] for row in sft["rows"]] == [1e-3, 1e-4] and list(record["methods"]) == ["sft"]
    assert sft["pick"] == pick(sft["rows"], "accuracy")["learning_rate"] and sft["metric"] == "accuracy"
    # every sweep run was evaluated on the first 3 validation problems, never on test
    validation = [p.index for p in train_regions(load_split("train"), Settings()).validation(3)]
    for row, lr in zip(sft["rows"], ("lr0.001", "lr0.0001")):
        info = json.loads((root / "sft" / lr / "run.json").read_text())
        assert info["eval"]["split"] == "validation" and info["data"]["region"] == "budget"
        assert info["settings"]["sft"]["learning_rate"] == row["learning_rate"]
        with open(root / "sft" / lr / "debug" / info["eval"]["csv"]) as fh:
            assert [int(x["index"]) for x in csv.DictReader(fh)] == sorted(validation)  # rows in index order
        assert row["validation"]["region"] == "validation" and row["n"] == 3
    # the pick is a settings file a later command takes, with the prep model's own rate pinned
    picked, _ = load_settings(env={}, config_file=root / "picked.yaml")
    assert picked.sft.learning_rate == sft["pick"]
    assert picked.sft.prep_learning_rate == Settings().sft.learning_rate
    md = (root / "sweep.md").read_text()
    assert "**picked**" in md and "Pick: learning rate" in md
    # a rerun finds every step done and only rewrites the report
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("[gsm8k-lab] skip") == 2 and "[gsm8k-lab] run " not in again.stdout

"""Experiments as step lists: layout, per-step settings, skip/resume rules, whole-experiment checks."""

import json
from pathlib import Path

import pytest

from gsm8k_lab.config import SettingError, Settings
from gsm8k_lab.experiments import Step, check_experiment, experiment1_steps, experiment2_steps, run_steps, step_settings


def _complete(root: Path) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "model" / "adapter_config.json").write_text("{}")
    (root / "run.json").write_text(json.dumps({"status": "complete"}))
    return root


def test_runner_skips_finished_and_resumes_unfinished(tmp_path):
    done = _complete(tmp_path / "done")
    partial = tmp_path / "partial"
    (partial / "checkpoints").mkdir(parents=True)
    (partial / "run.json").write_text(json.dumps({"status": "training"}))
    calls = []
    steps = [Step("done", done, lambda r: calls.append(("done", r))),
             Step("partial", partial, lambda r: calls.append(("partial", r))),
             Step("fresh", tmp_path / "fresh", lambda r: calls.append(("fresh", r)))]
    assert run_steps(steps) == ["partial", "fresh"]
    assert calls == [("partial", True), ("fresh", False)]


def test_experiment1_layout():
    s = Settings()
    s.experiment.budgets = [64, 32]
    steps = experiment1_steps(s, "root")
    assert [str(x.run_dir) for x in steps] == ["root/base_model", "root/prep_sft", "root/32/full_sft",
                                              "root/32/grpo", "root/64/full_sft", "root/64/grpo"]
    s.experiment.budgets, s.experiment.seeds = [32], 2
    two = experiment1_steps(s, "root")
    assert [x.run_dir.name for x in two[2:]] == ["full_sft-seed0", "grpo-seed0", "full_sft-seed1", "grpo-seed1"]


def test_experiment2_layout_and_trace_settings(tmp_path):
    s = Settings()
    s.experiment.traces_budget = 64
    steps = experiment2_steps(s, tmp_path / "grpo", tmp_path / "root", tmp_path / "traces")
    assert [x.name for x in steps] == ["traces", "SFT 64 (original)", "SFT 64 (GRPO traces)"]
    assert steps[2].run_dir == tmp_path / "traces" / "64"
    assert not steps[0].is_done()


def test_step_settings_leave_the_original_alone():
    s = Settings()
    c = step_settings(s, 256, seed=43, model=Path("root/prep_sft"))
    assert (c.sft.train_samples, c.grpo.train_samples, c.seed, c.model.name) == (256, 256, 43, "root/prep_sft")
    assert (s.sft.train_samples, s.seed, s.model.name) == (1024, 42, None)


def test_a_whole_experiment_is_checked_before_its_first_step():
    s = Settings()
    s.experiment.budgets = [256, 100000]
    with pytest.raises(SettingError, match="experiment.budgets 100000 is larger than the train split"):
        check_experiment(s, 1)
    check_experiment(s, 2)  # experiment 2 trains at traces_budget only
    s.experiment.traces_budget = 9999
    with pytest.raises(SettingError, match="experiment.traces_budget=9999 is larger than the split"):
        check_experiment(s, 2)


def test_no_budget_of_an_experiment_reaches_the_held_out_problems():
    s = Settings()
    s.experiment.budgets = [256, 7000]
    with pytest.raises(SettingError, match="experiment.budgets=7000 reaches into the held-out problems"):
        check_experiment(s, 1)
    s.experiment.budgets, s.data.validation_size = [256], 7420
    with pytest.raises(SettingError, match="sft.prep_train_samples=64 and the 7420 validation problems"):
        check_experiment(s, 1)


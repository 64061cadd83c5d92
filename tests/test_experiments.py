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
                                              "root/32/full_sft_matched", "root/32/grpo", "root/64/full_sft",
                                              "root/64/full_sft_matched", "root/64/grpo"]
    assert [x.settings.sft.match_grpo_steps for x in steps[2:5]] == [False, True, False]
    s.experiment.budgets, s.experiment.seeds = [32], 2
    two = experiment1_steps(s, "root")
    assert [x.run_dir.name for x in two[2:]] == ["full_sft-seed0", "full_sft_matched-seed0", "grpo-seed0",
                                                 "full_sft-seed1", "full_sft_matched-seed1", "grpo-seed1"]
    assert [x.settings.seed for x in two[2:]] == [42, 42, 42, 43, 43, 43]
    s.experiment.step_matched_sft = False
    assert [x.run_dir.name for x in experiment1_steps(s, "root")[2:4]] == ["full_sft-seed0", "grpo-seed0"]


@pytest.mark.parametrize("n,grpo,sft,steps", [
    # (budget, GRPO geometry (num_generations, per-device batch, accumulation), SFT batch, GRPO's steps)
    (32, (4, 8, 1), 4, 16), (64, (4, 8, 1), 4, 32), (1024, (8, 16, 4), 4, 128), (100, (4, 8, 1), 8, 50),
    (30, (4, 12, 1), 4, 10)])
def test_the_step_matched_sft_arm_takes_grpo_s_optimizer_steps(n, grpo, sft, steps):
    """The arm that differs from GRPO only in the method: as many optimizer steps on the same problems."""
    from gsm8k_lab.training import grpo_prompts_per_step, grpo_steps, matched_sft_epochs, sft_steps

    s = Settings()
    s.grpo.num_generations, s.grpo.per_device_batch_size, s.grpo.gradient_accumulation_steps = grpo
    s.sft.per_device_batch_size = sft
    assert grpo_steps(n, grpo_prompts_per_step(s, 1), s.grpo.epochs) == steps
    epochs = matched_sft_epochs(s, n, 1)
    assert sft_steps(n, sft, 1, 1, epochs) == steps


def test_experiment_2_takes_its_traces_from_the_first_seed_s_grpo_run():
    from gsm8k_lab.experiments import grpo_run_dir

    assert grpo_run_dir("r", 64) == Path("r/64/grpo")
    assert grpo_run_dir("r", 64, 0, 3) == Path("r/64/grpo-seed0")


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



def test_a_finished_run_is_reused_only_with_its_own_settings(chain):
    """A sweep over a finished root with other settings used to report the old runs as if they had
    the new settings; now every finished step is compared with what its run.json recorded, before
    any step runs (and plan refuses the same way)."""
    import copy

    from gsm8k_lab.runs import RunDir
    from gsm8k_lab.training import run_settings

    def never(_resume):
        pytest.fail("a finished run was trained again")

    prep = run_settings(RunDir(chain / "prep"))
    grpo = run_settings(RunDir(chain / "grpo"))
    steps = [Step("prep SFT", chain / "prep", never, kind="sft", settings=prep, stage="prep"),
             Step("GRPO", chain / "grpo", never, kind="grpo", settings=grpo)]
    assert run_steps(steps) == []
    later = []
    for step, change, needle in ((0, ("sft", "learning_rate", 0.5), "learning_rate"), (1, ("grpo", "beta", 0.0), "beta")):
        s = copy.deepcopy(steps[step].settings)
        setattr(getattr(s, change[0]), change[1], change[2])
        fresh = Step("fresh", chain / "never-made", lambda r: later.append(r))
        changed = [Step(steps[step].name, steps[step].run_dir, never, kind=steps[step].kind, settings=s,
                        stage=steps[step].stage), fresh]
        with pytest.raises(SettingError, match=f"the finished run .* was made with other settings: .*{needle}"):
            run_steps(changed)
    assert later == []  # refused before any step ran


def test_a_two_seed_experiment_through_the_command_line_answers_at_the_seed_level(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    """experiment1 with --seeds 2 on the tiny model, through the real command line: every arm has both
    seeds, the step-matched SFT arm takes GRPO's optimizer steps, runs record their compute, evaluations
    run in fp32 on a CPU, and the report answers at the seed level with the rows the preset's report has."""
    from conftest import TINY_ENV

    from gsm8k_lab import cli

    for k, v in TINY_ENV.items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "x"
    assert cli.main(["experiment1", "--root", str(root), "--base-model", str(tiny_model_dir), "--budgets", "4",
                     "--seeds", "2", "--eval-max-new-tokens", "8", "--dtype", "bf16", "--rollout-max-new-tokens", "8",
                     "--grpo-gradient-accumulation-steps", "1"]) == 0
    runs = {p.parent.relative_to(root).as_posix(): json.loads(p.read_text()) for p in root.rglob("run.json")}
    assert sorted(runs) == ["4/full_sft-seed0", "4/full_sft-seed1", "4/full_sft_matched-seed0",
                            "4/full_sft_matched-seed1", "4/grpo-seed0", "4/grpo-seed1", "base_model", "prep_sft"]
    for k in range(2):
        grpo, matched = runs[f"4/grpo-seed{k}"], runs[f"4/full_sft_matched-seed{k}"]
        assert matched["train"]["global_steps"] == grpo["train"]["global_steps"] == 2
        assert runs[f"4/full_sft-seed{k}"]["train"]["global_steps"] == 1
        assert grpo["settings"]["seed"] == matched["settings"]["seed"] == 42 + k
    for name, info in runs.items():
        assert info["eval"]["dtype"] == "fp32" and info["eval"]["engine"] == "transformers", name  # trained in bf16
        if name != "base_model":
            assert info["train"]["tokens_trained"] > 0 and info["train"]["model_parameters"] > 0, name
    md = (root / "report" / "report.md").read_text()
    for arm in ("SFT 4 | test | 2 |", "SFT (GRPO's steps) 4 | test | 2 |", "GRPO 4 | test | 2 |"):
        assert any(line.startswith(f"| {arm}") for line in md.splitlines()), arm
    for question in ("SFT vs GRPO, 4 problems", "SFT (GRPO's steps) vs GRPO, 4 problems"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {question} | accuracy |"))
        assert "| 3 | 2 vs 2 |" in row and "hierarchical bootstrap" in row
    assert "SFT vs GRPO, 4 problems | answer format (on the " in md  # the format among uncut problems
    assert "| SFT vs GRPO, 4 problems, seed 42 | accuracy |" in md  # the per-seed detail
    assert "Every run was evaluated with the same engine and dtype (transformers/fp32)" in md


def test_each_colocated_vllm_grpo_run_of_a_sweep_trains_in_a_process_of_its_own(monkeypatch, tmp_path):
    """A colocated engine's shutdown destroys the default process group TRL built for it: a sweep runs each such
    GRPO training in a fresh process (train-grpo with the run's own settings as its --config), the others in
    this one."""
    import subprocess

    from gsm8k_lab import experiments
    from gsm8k_lab.config import load_settings

    seen = {}

    def child(argv, env):
        seen["argv"] = argv
        i = argv.index("--config")
        seen["settings"] = load_settings(env={}, config_file=argv[i + 1])[0]
        seen["env"] = env
        return subprocess.CompletedProcess(argv, 0)

    in_process = []
    monkeypatch.setattr(experiments.subprocess, "run", child)
    monkeypatch.setattr(experiments, "train_grpo", lambda s, d, resume: in_process.append((d, resume)))
    monkeypatch.setenv("NUM_GENERATIONS", "2")
    steps = experiments.experiment1_steps(_settings_with_vllm(budgets=[32], seeds=2), tmp_path)
    grpo = [s for s in steps if s.kind == "grpo"]
    assert len(grpo) == 2
    grpo[1].action(True)
    argv = seen["argv"]
    assert argv[1:4] == ["-m", "gsm8k_lab", "train-grpo"] and argv[-1] == "--resume"
    assert argv[argv.index("--output-dir") + 1] == str(grpo[1].run_dir)
    assert seen["settings"].to_dict() == grpo[1].settings.to_dict()  # exactly the run's settings, seed 43
    assert seen["settings"].seed == 43 and "NUM_GENERATIONS" not in seen["env"]  # none from the environment
    assert not in_process
    monkeypatch.setattr(experiments.subprocess, "run", lambda argv, env: subprocess.CompletedProcess(argv, 3))
    with pytest.raises(SystemExit) as failed:
        grpo[0].action(False)
    assert failed.value.code == 3
    plain = experiments.experiment1_steps(_settings_with_vllm(budgets=[32], seeds=1, use_vllm=False), tmp_path)
    [g] = [s for s in plain if s.kind == "grpo"]
    g.action(False)
    assert in_process == [(g.run_dir, False)]


def _settings_with_vllm(budgets, seeds, use_vllm=True):
    from gsm8k_lab.config import Settings

    s = Settings()
    s.experiment.budgets, s.experiment.seeds = budgets, seeds
    s.grpo.use_vllm, s.grpo.vllm_mode = use_vllm, "colocate"
    return s

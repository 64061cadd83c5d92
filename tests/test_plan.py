"""``gsm8k-lab plan``: the plan against the runs it plans, its checks against the command's, its cache.

The tiny chain of conftest (prep SFT -> GRPO, finished) is planned again with the
same flags into a new folder, and the plan's counts must equal what the runs
recorded exactly; its times must be within :data:`FACTOR` of the recorded ones
(the calibration runs on the same tiny model, on a machine the suite shares).
An evaluation is planned and then run. The plan's errors are the command's:
the bad-input matrix of ``test_bad_input.py`` runs through ``plan`` in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EVAL, TINY_ENV
from test_bad_input import CASES, _enter_case, _error_line, _skip_if_not_bad_here, _snapshot, world  # noqa: F401

from gsm8k_lab import cli
from gsm8k_lab.plan import Plan, Run, grpo_steps, sft_steps

REPO = Path(__file__).resolve().parents[1]
FACTOR = 3.0  # estimated time vs the recorded one, either way


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("calibration-cache")


def plan_json(cache: Path, *argv: str) -> dict:
    env = {**os.environ, **TINY_ENV, "GSM8K_LAB_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "gsm8k_lab", "plan", *argv, "--json"], env=env, capture_output=True,
                       text=True, cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def planned_chain(chain, tiny_model_dir, cache, tmp_path_factory):
    """The chain's prep SFT and GRPO runs planned again, with their flags, into a new folder."""
    out = tmp_path_factory.mktemp("planned")
    prep = plan_json(cache, "train-sft", "--stage", "prep", "--output-dir", str(out / "prep"), "--base-model",
                     str(tiny_model_dir), "--eval-extra-sources", "gsm-symbolic:3", *EVAL)
    grpo = plan_json(cache, "train-grpo", "--output-dir", str(out / "grpo"), "--base-model", str(chain / "prep"),
                     "--max-completion-length", "8", "--gradient-accumulation-steps", "1", *EVAL)
    assert not any(out.iterdir()), "plan wrote into the output folder"
    return {"prep": prep, "grpo": grpo}


@pytest.mark.parametrize("name", ["prep", "grpo"])
def test_the_plan_counts_exactly_what_the_run_did(planned_chain, chain, name):
    (run,) = planned_chain[name]["runs"]
    info = json.loads((chain / name / "run.json").read_text())
    assert run["done"] is False
    assert run["problems"] == info["data"]["n"]
    assert run["steps"] == info["train"]["global_steps"]
    assert run["steps"] * run["examples_per_step"] == info["train"]["examples_seen"]
    assert run["epochs"] == info["train"]["epochs"]
    evals = {e["source"]: e for e in run["evaluations"]}
    assert evals["bundled"]["problems"] == info["eval"]["n"]
    assert evals["bundled"]["samples"] == info["eval"]["samples_per_problem"]
    assert evals["bundled"]["max_new_tokens"] == info["eval"]["decoding"]["max_new_tokens"]
    assert {s: e["n"] for s, e in info.get("eval_extra", {}).items()} == \
        {s: e["problems"] for s, e in evals.items() if s != "bundled"}
    if name == "grpo":
        assert run["completions"] == info["train"]["examples_seen"] == info["train"]["global_steps"] * 8
        assert run["rollout_tokens"] == 8


@pytest.mark.parametrize("name", ["prep", "grpo"])
def test_the_plan_times_the_run_within_a_factor(planned_chain, chain, name):
    plan = planned_chain[name]
    (run,) = plan["runs"]
    t = json.loads((chain / name / "run.json").read_text())["timings"]
    actual = t["train_seconds"] + t["eval_seconds"] + t.get("extra_eval_seconds", 0)
    estimate = run["seconds"] - run["time_parts"]["process start"]  # run.json's clocks start after it
    assert plan["calibrated"] and plan["seconds"] == run["seconds"]
    assert actual / FACTOR <= estimate <= actual * FACTOR, (run["time_parts"], t)
    assert run["peak_bytes"] > 0 and run["fits"] is True


def test_a_planned_evaluation_then_run(cache, tiny_model_dir, tmp_path):
    args = ["--model-path", str(tiny_model_dir), "--output-dir", str(tmp_path / "e"), "--output-file", "e.csv",
            "--max-new-tokens", "8", "--dtype", "fp32"]
    plan = plan_json(cache, "evaluate", *args)
    assert not (tmp_path / "e").exists()
    (run,) = plan["runs"]
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(REPO / "src" / "evaluate_model.py"), *args],
                       env={**os.environ, **TINY_ENV}, capture_output=True, text=True, cwd=REPO, timeout=600)
    actual = time.perf_counter() - t0  # the whole command, as a user waits for it
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "e" / "debug" / "e_metrics.json").read_text())
    (ev,) = run["evaluations"]
    assert (ev["problems"], ev["samples"], ev["max_new_tokens"]) == (metrics["n"], 1, 8)
    assert actual / FACTOR <= run["seconds"] <= actual * FACTOR, (run["time_parts"], actual)


def test_a_second_plan_measures_nothing(planned_chain, cache, chain):
    """The first plans cached every rate they needed: planning the same again is instant and equal."""
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*.json")}
    again = plan_json(cache, "train-grpo", "--output-dir", str(chain.parent / "elsewhere"), "--base-model",
                      str(chain / "prep"), "--max-completion-length", "8", "--gradient-accumulation-steps", "1", *EVAL)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.json")} == before
    assert again["rates"] == planned_chain["grpo"]["rates"]
    assert again["runs"][0]["seconds"] == planned_chain["grpo"]["runs"][0]["seconds"]


@pytest.mark.parametrize("n,batch,accumulation,processes,epochs,steps", [
    (4, 4, 1, 1, 2.0, 2),     # the tiny prep stage
    (64, 4, 1, 1, 2.0, 32),   # the preset's prep stage (docs/preset: 32 steps)
    (8, 4, 1, 2, 1.0, 1),     # two processes share the batches
    (10, 4, 2, 1, 1.0, 2),    # 3 batches, accumulated in twos: the last step has one
    (3, 4, 1, 1, 0.5, 1),     # part of an epoch still takes a step
])
def test_sft_steps(n, batch, accumulation, processes, epochs, steps):
    assert sft_steps(n, batch, accumulation, processes, epochs) == steps


@pytest.mark.parametrize("n,prompts,epochs,steps", [
    (32, 2, 1.0, 16), (64, 2, 1.0, 32),  # the preset's GRPO runs (docs/preset: 16 and 32 steps)
    (5, 2, 1.0, 2),  # the sampler drops the incomplete last generation batch
    (1024, 8, 1.0, 128), (4, 2, 2.0, 4),
])
def test_grpo_steps(n, prompts, epochs, steps):
    assert grpo_steps(n, prompts, epochs) == steps


def test_a_grpo_budget_smaller_than_one_step_is_refused(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """TRL would build no batch and fail after the run directory was written: refused before."""
    monkeypatch.setenv("TRAIN_SAMPLES", "4")
    code = cli.main(["train-grpo", "--output-dir", str(tmp_path / "g"), "--base-model", str(tiny_model_dir),
                     "--num-generations", "2"])
    assert code == 2 and not (tmp_path / "g").exists()
    assert "TRAIN_SAMPLES (4 problems) is fewer than one GRPO step takes (8 prompts" in capsys.readouterr().err


def test_the_summary_line():
    runs = [Run("a", "sft", "x", done=True), Run("b", "grpo", "y", seconds=90.0), Run("c", "sft", "z", seconds=200.0)]
    assert Plan("e", runs).summary() == ("plan: 3 runs (1 finished, 2 to run), time not calibrated on this machine "
                                         "(gsm8k-lab plan <command> measures it)")
    assert Plan("e", runs, calibrated=True).summary() == \
        "plan: 3 runs (1 finished, 2 to run), estimated 4.8 min on this machine"
    assert Plan("e", runs[:1], calibrated=True).summary() == "plan: 1 runs (1 finished, 0 to run), nothing to run"


def test_an_experiment_prints_its_plan_before_it_starts(planned_chain, cache, tiny_model_dir, tmp_path, monkeypatch,
                                                        capsys):
    """From the cache only: calibrated where the plans above measured, 'not calibrated' in an empty cache."""
    started = []
    monkeypatch.setattr(cli, "run_steps", lambda steps: started.append([s.name for s in steps]))
    monkeypatch.setattr(cli, "_report", lambda folders, out: 0)
    for k, v in TINY_ENV.items():
        monkeypatch.setenv(k, v)
    argv = ["experiment1", "--budgets", "4", "--base-model", str(tiny_model_dir), "--root", str(tmp_path / "x"),
            "--eval-max-new-tokens", "8", "--dtype", "fp32", "--rollout-max-new-tokens", "8",
            "--grpo-gradient-accumulation-steps", "1"]
    monkeypatch.setenv("GSM8K_LAB_CACHE", str(tmp_path / "empty-cache"))
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "[gsm8k-lab] plan: 5 runs, time not calibrated on this machine" in out
    assert out.index("plan: 5 runs") < out.index("experiment1 finished")
    assert started == [["base model", "prep SFT", "SFT 4", "SFT 4 GRPO's steps", "GRPO 4"]]
    assert not (tmp_path / "empty-cache" / "calibration").exists()
    monkeypatch.setenv("GSM8K_LAB_CACHE", str(cache))
    assert cli.main(argv) == 0
    assert "[gsm8k-lab] plan: 5 runs, estimated " in capsys.readouterr().out


#: refused by the command once the model's weights are loaded (a kernel the machine lacks, LoRA targets the
#: model lacks): a plan loads no weights, so it cannot see these
AFTER_LOADING = ("cannot load this model here", "matches no layer")
BAD = [c for c in CASES if c[0] in cli.PLANNABLE and not any(s in c[3] for s in AFTER_LOADING)
       and "{targets_5}" not in c[1]]  # a layer named 5: also found missing only once the model is loaded


@pytest.mark.parametrize("command,args,env,needle", BAD)
def test_plan_refuses_what_the_command_refuses(tmp_path, world, tiny_model_dir, monkeypatch, capsys,  # noqa: F811
                                               command, args, env, needle):
    """The same one-line error as the command (test_bad_input.py, the same folder of runs and inputs),
    in-process, nothing measured or written."""
    _skip_if_not_bad_here(args)
    args, fill, before = _enter_case(command, args, env, world, tmp_path, tiny_model_dir, monkeypatch)
    monkeypatch.setattr(cli, "estimate", lambda *a, **k: pytest.fail("plan accepted what the command refuses"))
    try:
        code = cli.main(["plan", command, *args])
    except SystemExit as exc:  # argparse
        code = exc.code
    lines = _error_line(capsys.readouterr().err)
    assert code == 2
    assert lines and fill(needle) in lines[-1], lines
    assert _snapshot(Path(world["dir"]), tiny_model_dir, tmp_path) == before

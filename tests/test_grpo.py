"""GRPO: recorded geometry and rollout settings, two processes, GRPO's own bad inputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_grpo_records_its_batch_geometry_and_rollout_settings(chain):
    info = json.loads((chain / "grpo" / "run.json").read_text())
    train = info["train"]
    # 4 problems x 4 generations = 16 completions; default per-device batch = two prompts' groups = 8
    assert (train["per_device_batch"], train["num_generations"], train["completions_per_step"],
            train["prompts_per_step"], train["max_completion_length"]) == (8, 4, 8, 2, 8)
    assert train["global_steps"] == 2
    log = [json.loads(x) for x in (chain / "grpo" / "train_log.jsonl").read_text().splitlines()]
    lengths = [r["completions/mean_length"] for r in log if "completions/mean_length" in r]
    assert train["tokens_generated"] == int(sum(length * 8 for length in lengths))
    rollout = info["generation"]["rollout"]
    assert (rollout["temperature"], rollout["max_new_tokens"], rollout["greedy"]) == (1.0, 8, False)


def test_grpo_two_processes(tmp_path, tiny_model_dir):
    out = tmp_path / "grpo2"
    env = {**os.environ, "TRAIN_SAMPLES": "4", "EVAL_SAMPLES": "2", "NUM_GENERATIONS": "2", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                        str(REPO / "src" / "train_grpo.py"), "--output-dir", str(out), "--base-model",
                        str(tiny_model_dir), "--batch-size", "2", "--gradient-accumulation-steps", "2",
                        "--max-completion-length", "6",
                        "--eval-max-new-tokens", "6", "--dtype", "fp32"],
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["train"]["num_processes"] == 2
    # 4 prompts x 2 generations = 8 completions; 2 per device x 2 micro-batches = 4 per step (as on one process,
    # the 2 processes sharing the micro-batches) -> 2 steps
    assert info["train"]["global_steps"] == 2
    assert info["train"]["completions_per_step"] == 4 and info["train"]["processes"] == 2
    assert info["train"]["gradient_accumulation_steps"] == 1


@pytest.mark.parametrize("engine", ["trl", "refill-merged"])
def test_grpo_rollout_engines(run_cli, tmp_path, tiny_model_dir, engine):
    """TRL's own generate and the refill engine on merged LoRA both train (the chain uses refill, unmerged)."""
    out = tmp_path / engine
    r = run_cli("train_grpo.py", "--output-dir", str(out), "--base-model", str(tiny_model_dir), "--rollout-engine",
                engine, "--batch-size", "4", "--gradient-accumulation-steps", "1", "--max-completion-length", "6",
                "--eval-max-new-tokens", "6", "--dtype", "fp32",
                env={"TRAIN_SAMPLES": "4", "NUM_GENERATIONS": "2", "EVAL_SAMPLES": "2"})
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["generation"]["rollout_engine"] == engine and info["train"]["global_steps"] == 2
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    lengths = [rec["completions/mean_length"] for rec in log if "completions/mean_length" in rec]
    assert lengths and all(0 < x <= 6 for x in lengths)


def test_the_chain_rolls_out_with_the_refill_engine_on_cpu(chain):
    info = json.loads((chain / "grpo" / "run.json").read_text())
    assert info["generation"]["rollout_engine"] == "refill"


def test_grpo_with_transformers_continuous_batching(run_cli, tmp_path, tiny_model_dir):
    out = tmp_path / "cb"
    r = run_cli("train_grpo.py", "--output-dir", str(out), "--base-model", str(tiny_model_dir), "--continuous-batching",
                "--batch-size", "4", "--gradient-accumulation-steps", "1", "--max-completion-length", "6",
                "--eval-max-new-tokens", "6", "--dtype", "fp32",
                env={"TRAIN_SAMPLES": "2", "NUM_GENERATIONS": "2", "EVAL_SAMPLES": "2"})
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["generation"]["continuous_batching"] is True and info["train"]["global_steps"] == 1
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("completions/mean_length" in rec for rec in log)


@pytest.mark.parametrize("env,args,needle", [
    ({"TRAIN_SAMPLES": "-5"}, [], "TRAIN_SAMPLES must be a positive integer"),
    ({"NUM_GENERATIONS": "1"}, [], "NUM_GENERATIONS must be >= 2 (GRPO compares completions within a group), got 1"),
    ({"NUM_GENERATIONS": "3"}, ["--batch-size", "8"], "NUM_GENERATIONS=3 does not divide the GRPO batch"),
    ({}, ["--base-model", "{half}"], "is an unfinished run directory"),
    ({}, ["--loss-type", "ppo"], "--loss-type must be one of grpo, dapo, dr_grpo, bnpo, cispo, sapo, got 'ppo'"),
    ({}, ["--trl", "epsilon_typo=0.3"], "--trl key 'epsilon_typo' is not a field of TRL's GRPOConfig"),
    ({}, ["--trl", "learning_rate=0.1"], "--trl key 'learning_rate' is set by this pipeline from its own settings"),
    ({}, ["--trl", "epsilon"], "--trl must be KEY=VALUE pairs"),
    ({}, ["--batch-size", "8", "--trl", "generation_batch_size=6"], "--trl 'generation_batch_size=6': TRL refuses it (generation_batch_size (6) must be divisible"),
])
def test_bad_grpo_input(run_cli, tmp_path, tiny_model_dir, env, args, needle):
    half = tmp_path / "half"
    (half / "model").mkdir(parents=True)
    args = [a.replace("{half}", str(half)) for a in args]
    if "--base-model" not in args:
        args += ["--base-model", str(tiny_model_dir)]
    out = tmp_path / "out"
    r = run_cli("train_grpo.py", "--output-dir", str(out), *args, env=env)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr[-2000:]
    assert not out.exists()


def test_rollouts_follow_the_run_seed(monkeypatch):
    """The refill engine samples under seed + grpo.rollout.seed (moved per step and process), so two
    seeds of one configuration never repeat each other's rollouts."""
    from types import SimpleNamespace

    from gsm8k_lab.config import Settings
    from gsm8k_lab.generation import refill
    from gsm8k_lab.grpo import rollout_seed

    used = []

    def fake_decode(model, ids, jobs, gen, batch_size, eos, stop):
        used.append(gen.seed)
        return iter([(i, 0, [7], True) for i, _ in jobs])

    monkeypatch.setattr(refill, "decode", fake_decode)
    model = SimpleNamespace(training=True, eval=lambda: None, train=lambda mode: None)
    trainer = SimpleNamespace(
        accelerator=SimpleNamespace(unwrap_model=lambda m: m, process_index=1), model=model,
        processing_class=lambda text: {"input_ids": [[1, 2] for _ in text]}, state=SimpleNamespace(global_step=3),
        max_completion_length=4, eos_token_ids=[0])
    for seed in (42, 43):
        settings = Settings()
        settings.seed = seed
        settings.grpo.rollout.seed = 5  # an offset on the run seed
        out = refill.rollout_func(settings.grpo.rollout, rollout_seed(settings))(["p", "p"], trainer)
        assert out["completion_ids"] == [[7], [7]]
        assert rollout_seed(settings) == seed + 5
    assert used == [42 + 5 + 3 * 1_000_003 + 1, 43 + 5 + 3 * 1_000_003 + 1]


def test_run_json_records_the_rollout_seed(chain):
    info = json.loads((chain / "grpo" / "run.json").read_text())
    generation = info["generation"]
    assert generation["rollout_seed"] == info["settings"]["seed"] + info["settings"]["grpo"]["rollout"]["seed"]
    assert generation["rollout_seed_rule"].startswith("seed + grpo.rollout.seed")


def test_vllm_rollouts_are_refused_on_a_cpu_before_anything_is_written(tmp_path, tiny_model_dir, run_cli):
    """vLLM's CPU build repacks weights on load and cannot take TRL's weight updates (the first one fails
    with "'Parameter' object has no attribute 'weight_loader'"): refused up front, in one line."""
    out = tmp_path / "grpo"
    r = run_cli("train_grpo.py", "--base-model", str(tiny_model_dir), "--output-dir", str(out), "--use-vllm",
                "--vllm-mode", "colocate", "--dtype", "fp32", env={"TRAIN_SAMPLES": "2", "NUM_GENERATIONS": "2"})
    assert r.returncode == 2 and "--use-vllm rolls out with vLLM on a GPU only" in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def test_a_colocated_vllm_engine_does_not_take_the_run_seed_from_training():
    """vLLM seeds torch's global generator with the process index when TRL builds the colocated engine;
    training (LoRA dropout) is seeded again with the run seed afterwards, and run.json says how."""
    import torch

    from gsm8k_lab.config import Settings
    from gsm8k_lab.grpo import reseed_after_rollout_engine, rollout_seed_record

    s = Settings()
    s.seed = 1234
    s.grpo.use_vllm = True
    torch.manual_seed(0)  # what the engine's start-up does in process 0
    reseed_after_rollout_engine(s)
    assert torch.initial_seed() == 1234
    s.grpo.vllm_mode = "server"  # no engine in this process: nothing reseeded
    torch.manual_seed(0)
    reseed_after_rollout_engine(s)
    assert torch.initial_seed() == 0
    record = rollout_seed_record(s)
    assert record["vllm_importance_sampling"] == "sequence_mask" and record["vllm_importance_sampling_clip"] == 3.0
    assert "train mode" in record["old_logprobs"] and "seeded again with the run seed" in record["rollout_seed_rule"]


def test_the_evaluation_child_gets_no_variable_the_rollout_engine_set(monkeypatch):
    """A colocated engine sets the launcher's variables and VLLM_ENABLE_V1_MULTIPROCESSING=0 in the training
    process; the evaluation's own engine must start as a plain single process would."""
    from gsm8k_lab import training

    for var, value in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_PORT": "29500",
                       "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "EVAL_SAMPLES": "3"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("HOME_OF_SOMETHING_ELSE", "kept")
    env = training.child_environment()
    assert env["HOME_OF_SOMETHING_ELSE"] == "kept"
    assert not {"RANK", "WORLD_SIZE", "MASTER_PORT", "VLLM_ENABLE_V1_MULTIPROCESSING", "EVAL_SAMPLES"} & set(env)
    monkeypatch.setattr(training, "_VLLM_MULTIPROCESSING", "0")  # the user's own choice, as the process started
    assert training.child_environment()["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


def test_the_vllm_settings_reach_trls_config(monkeypatch, tiny_model_dir):
    """Server address and timeout and the importance-sampling correction go to GRPOConfig as set."""
    import trl
    from transformers import AutoTokenizer

    from gsm8k_lab import grpo
    from gsm8k_lab.config import Settings
    from gsm8k_lab.data import Problem

    seen = {}
    monkeypatch.setattr(trl, "GRPOConfig", lambda **kw: seen.update(kw) or kw)
    monkeypatch.setattr(trl, "GRPOTrainer", lambda **kw: kw)
    s = Settings()
    s.grpo.use_vllm, s.grpo.vllm_mode = True, "server"
    s.grpo.vllm_server_host, s.grpo.vllm_server_port, s.grpo.vllm_server_timeout = "10.0.0.2", 8123, 900.0
    s.grpo.vllm_importance_sampling, s.grpo.vllm_importance_sampling_clip = "token_truncate", 2.0
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    grpo._trainer_builder(s, [Problem(0, "1+1?", "#### 2", 2.0)])(None, tokenizer, {}, [])
    assert (seen["vllm_server_host"], seen["vllm_server_port"], seen["vllm_server_timeout"]) == ("10.0.0.2", 8123, 900.0)
    assert (seen["vllm_importance_sampling_correction"], seen["vllm_importance_sampling_mode"],
            seen["vllm_importance_sampling_clip_max"]) == (True, "token_truncate", 2.0)
    s.grpo.vllm_importance_sampling = None
    grpo._trainer_builder(s, [Problem(0, "1+1?", "#### 2", 2.0)])(None, tokenizer, {}, [])
    assert seen["vllm_importance_sampling_correction"] is False


def test_trl_fields_pass_through_to_grpos_config_checked_before_anything_loads(tmp_path):
    """grpo.trl reaches GRPOConfig as given, on top of the fields the pipeline sets; the check builds the
    config without setting up a device."""
    from gsm8k_lab import grpo, training
    from gsm8k_lab.config import Source, load_settings

    words = ["scale_rewards=none", "epsilon=0.3", "mask_truncated_completions=true", "steps_per_generation=8",
             "max_steps=3", "push_to_hub=false", "hub_model_id=me/gsm8k-grpo"]
    s, _ = load_settings(env={}, overrides={"grpo.trl": (words, Source("flag", "--trl"))})
    assert s.grpo.trl["epsilon"] == 0.3 and s.grpo.trl["mask_truncated_completions"] is True
    fields = {"output_dir": str(tmp_path), "use_cpu": True, "report_to": [], **grpo.config_fields(s)}
    args = training.trl_config("GRPOConfig", "grpo", fields, s.grpo.trl, check=True)
    assert (args.scale_rewards, args.epsilon, args.mask_truncated_completions, args.steps_per_generation,
            args.max_steps, args.push_to_hub, args.hub_model_id) == ("none", 0.3, True, 8, 3, False, "me/gsm8k-grpo")
    assert args.beta == s.grpo.beta and args.num_generations == s.grpo.num_generations  # the pipeline's own fields
    # max_steps is the step count the plan, compute and the step-matched SFT arm use
    assert grpo.batch_geometry(s, 1)["max_steps"] == 3
    assert training.matched_sft_epochs(s, 1024, 1) == 3 / 256


def test_grpo_trains_with_trl_fields_and_records_them(run_cli, tmp_path, tiny_model_dir):
    out = tmp_path / "trl"
    r = run_cli("train_grpo.py", "--output-dir", str(out), "--base-model", str(tiny_model_dir), "--batch-size", "4",
                "--gradient-accumulation-steps", "1", "--max-completion-length", "6", "--eval-max-new-tokens", "6",
                "--dtype", "fp32", "--trl", "max_steps=1", "epsilon=0.3",
                env={"TRAIN_SAMPLES": "4", "NUM_GENERATIONS": "2", "EVAL_SAMPLES": "2"})
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["settings"]["grpo"]["trl"] == {"max_steps": 1, "epsilon": 0.3}
    assert info["train"]["global_steps"] == 1 and info["train"]["max_steps"] == 1  # 2 without max_steps

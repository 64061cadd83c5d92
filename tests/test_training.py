"""The run life cycle shared by SFT and GRPO, through the seed's commands on the tiny model:
chaining, auto-evaluation in a fresh process, reload, resume after a kill, two processes, configs."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EVAL, TINY_ENV

REPO = Path(__file__).resolve().parents[1]


def _completions(csv_path):
    with open(csv_path, newline="") as fh:
        return [r["completion"] for r in csv.DictReader(fh)]


def _run_json(d):
    return json.loads((Path(d) / "run.json").read_text())


@pytest.mark.parametrize("stage,name,parents", [("prep", "prep_sft", 0), ("full", "full_sft", 1),
                                                 ("grpo", "grpo", 1)])
def test_each_stage_saves_adapter_and_evaluates(chain, tiny_model_dir, stage, name, parents):
    d = chain / stage
    info = _run_json(d)
    assert info["status"] == "complete" and info["stage"] == name
    assert (d / "model" / "adapter_config.json").is_file()
    assert (d / "model" / "tokenizer.json").is_file()
    lineage = json.loads((d / "model" / "lineage.json").read_text())
    assert lineage["base"] == str(tiny_model_dir) and len(lineage["parents"]) == parents
    csv_path = d / "debug" / f"{name}_{info['run_id']}.csv"
    metrics_txt = d / "debug" / f"{name}_{info['run_id']}_metrics.txt"
    assert csv_path.is_file() and metrics_txt.is_file()
    assert len(_completions(csv_path)) == 3
    assert info["eval"]["n"] == 3
    assert info["train"]["global_steps"] >= 1 and info["train"]["examples_seen"] >= 4
    assert info["environment"]["versions"]["trl"]
    assert info["settings"]["eval"]["generation"]["max_new_tokens"] == 8  # the resolved tree
    assert info["runtime"]["dtype"] == "fp32" and info["runtime"]["threads"] >= 1
    assert info["eval"]["decoding"]["greedy"] and info["eval"]["backend"].startswith("transformers")
    log = [json.loads(x) for x in (d / "train_log.jsonl").read_text().splitlines()]
    assert log, "training curves are saved"
    if stage == "grpo":
        keys = set().union(*log)
        for k in ("rewards/format_exact/mean", "rewards/answer_correct/mean", "reward_std", "kl",
                  "completions/mean_length", "completions/clipped_ratio"):
            assert k in keys
    else:
        assert any("loss" in r for r in log)


def test_chain_is_recorded(chain):
    full = _run_json(chain / "full")
    assert full["model_chain"]["run_dir"] == str((chain / "prep").resolve())
    assert full["data"]["n"] == 4


def test_reloaded_adapter_gives_the_same_greedy_outputs(chain, run_cli):
    """A standalone evaluation of the saved run reproduces the automatic one, in another process."""
    info = _run_json(chain / "full")
    assert info["timings"]["eval_seconds"] > 0
    r = run_cli("evaluate_model.py", "--model-path", str(chain / "full"), "--output-dir",
                str(chain / "full_eval"), "--output-file", "again.csv", "--max-new-tokens", "8",
                "--dtype", "fp32", env={"EVAL_SAMPLES": "3"})
    assert r.returncode == 0, r.stderr
    auto = _completions(chain / "full" / "debug" / f"full_sft_{info['run_id']}.csv")
    assert _completions(chain / "full_eval" / "debug" / "again.csv") == auto


def test_saved_adapter_equals_trained_weights_and_merge_is_exact(chain):
    """model/ holds the final trainer state, composed with the prep adapter it was trained on top of (its
    part of the stacked matrices is the last checkpoint's, scaled); the project's loader and plain PEFT on the
    base both equal merging the prep adapter and then the trained one."""
    import json

    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    from gsm8k_lab.models import base_path, load_model, resolve_model

    d = chain / "full"
    ckpt = max((d / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    saved, trained = (load_file(p / "adapter_model.safetensors") for p in (d / "model", ckpt))
    assert saved.keys() == trained.keys()
    config = json.loads((ckpt / "adapter_config.json").read_text())
    r, scaling = config["r"], config["lora_alpha"] / config["r"]
    for k in saved:
        own = saved[k][-r:] if "lora_A" in k else saved[k][:, -r:]
        assert torch.allclose(own, trained[k] * (scaling if "lora_A" in k else 1), atol=0, rtol=1e-6)

    from gsm8k_lab.config import Settings

    ref = resolve_model(str(d))
    settings = Settings()
    settings.model.dtype = "fp32"
    merged = load_model(ref, settings)
    from transformers import AutoModelForCausalLM

    stacked = AutoModelForCausalLM.from_pretrained(base_path(ref), dtype=torch.float32)
    for adapter in (d / "model" / "parents" / "00", ckpt):
        stacked = PeftModel.from_pretrained(stacked, str(adapter)).merge_and_unload()
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path(ref), dtype=torch.float32),
                                      str(d / "model"))
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, stacked(ids).logits, atol=1e-5)
        assert torch.allclose(plain(ids).logits, stacked(ids).logits, atol=1e-5)


def test_finished_run_is_not_overwritten(chain, run_cli, tiny_model_dir):
    before = (chain / "prep" / "run.json").read_text()
    r = run_cli("train_sft.py", "--stage", "prep", "--output-dir", str(chain / "prep"),
                "--base-model", str(tiny_model_dir), env=TINY_ENV)
    assert r.returncode == 2 and "already holds a finished run; pass --overwrite" in r.stderr
    assert (chain / "prep" / "run.json").read_text() == before


def test_a_run_cannot_overwrite_the_run_it_starts_from(chain, run_cli):
    before = (chain / "prep" / "run.json").read_text()
    r = run_cli("train_sft.py", "--stage", "full", "--output-dir", str(chain / "prep"),
                "--base-model", str(chain / "prep"), "--overwrite", env=TINY_ENV)
    assert r.returncode == 2 and "is the run training starts from" in r.stderr, r.stderr[-2000:]
    assert (chain / "prep" / "run.json").read_text() == before
    assert (chain / "prep" / "model" / "adapter_config.json").is_file()


def test_the_training_process_never_builds_a_generation_engine(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """The evaluation after training runs in a fresh process: a GPU engine (vLLM) for it can never
    meet the memory that training still holds. Here the training process refuses to build one, and
    the trained model is released (collected, nothing refers to it) before the evaluation starts."""
    import weakref

    from gsm8k_lab import cli, evaluate, generation, traces, training

    def refuse(*a, **k):
        raise AssertionError("a generation backend was built in the training process")

    for module in (generation, evaluate, traces):  # every module that builds one
        monkeypatch.setattr(module, "make_backend", refuse)
    models, released = [], []
    real_load, real_eval = training.load_model, training.evaluate_in_fresh_process

    def load_model(*a, **k):
        model = real_load(*a, **k)
        models.append(weakref.ref(model))
        return model

    def evaluate(*a, **k):
        released.append(all(ref() is None for ref in models))
        return real_eval(*a, **k)

    monkeypatch.setattr(training, "load_model", load_model)
    monkeypatch.setattr(training, "evaluate_in_fresh_process", evaluate)
    for k, v in TINY_ENV.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "run"
    code = cli.main(["train-sft", "--stage", "prep", "--output-dir", str(out), "--base-model", str(tiny_model_dir),
                     "--eval-samples", "2", *EVAL])
    assert code == 0, capsys.readouterr().err[-2000:]
    info = _run_json(out)
    assert info["status"] == "complete" and info["eval"]["n"] == 2
    assert models and released == [True]
    assert info["memory_estimate"]["checkpointing"] is False and info["memory_estimate"]["total"] > 0


def test_a_colocated_rollout_engine_is_shut_down_before_the_evaluation():
    from types import SimpleNamespace

    from gsm8k_lab import training

    stopped = []
    core = SimpleNamespace(shutdown=lambda timeout=None: stopped.append(("engine core", timeout)))
    trainer = SimpleNamespace(vllm_generation=SimpleNamespace(llm=SimpleNamespace(llm_engine=SimpleNamespace(
        engine_core=core))))
    training.stop_rollout_engine(trainer)
    assert stopped == [("engine core", 30)] and trainer.vllm_generation.llm is None
    training.stop_rollout_engine(SimpleNamespace())  # no engine: nothing to do


def test_a_vllm_evaluation_that_cannot_fit_is_refused_before_training(monkeypatch, tiny_model_dir):
    """On a GPU the training process keeps its CUDA context while its evaluation runs: the evaluation's
    share must fit what is free less that, checked before any training."""
    from gsm8k_lab import runtime, training
    from gsm8k_lab.config import SettingError, Settings
    from gsm8k_lab.models import resolve_model

    gib = 1 << 30
    monkeypatch.setattr(runtime, "_current", runtime.Runtime("cuda", "bf16", 2, 1))
    monkeypatch.setattr(runtime, "vllm_available", lambda: True)
    monkeypatch.setattr("torch.cuda.mem_get_info", lambda *a: (70 * gib, 80 * gib))
    job = training.TrainingJob(stage="prep_sft", output_dir=tiny_model_dir, parent=resolve_model(str(tiny_model_dir)),
                               build_trainer=None, data={}, train=Settings().sft)
    s = Settings()
    s.vllm.gpu_memory_utilization = 0.85  # 68 GiB: free after the parent's 1 GiB is 69
    training.check_evaluation_memory(s, job)
    s.vllm.gpu_memory_utilization = 0.87  # 69.6 GiB
    with pytest.raises(SettingError, match="vllm.gpu_memory_utilization=0.87 asks vLLM for 69.6 GiB"):
        training.check_evaluation_memory(s, job)
    s.eval.generation.backend = "transformers"
    training.check_evaluation_memory(s, job)  # no engine, nothing to check


def test_a_single_training_process_on_several_gpus_is_refused_before_anything_loads(monkeypatch, tmp_path,
                                                                                       tiny_model_dir):
    """Transformers would wrap the model in nn.DataParallel, which TRL's trainers refuse once the model has
    loaded: refused in one line in the first check, unless a launcher started the processes."""
    from gsm8k_lab import runtime, training
    from gsm8k_lab.config import Settings, UsageError
    from gsm8k_lab.models import resolve_model

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 8)
    job = training.TrainingJob(stage="prep_sft", output_dir=tmp_path / "run", parent=resolve_model(str(tiny_model_dir)),
                               build_trainer=lambda *a: None, data={}, train=Settings().sft)
    with pytest.raises(UsageError, match="^8 GPUs are visible to a single training process.*CUDA_VISIBLE_DEVICES=0.*"
                                         "accelerate launch") as refused:
        training.check_run(Settings(), job, resume=False, overwrite=False)
    assert "\n" not in str(refused.value) and not (tmp_path / "run").exists()
    training.check_run(Settings(), training.TrainingJob(**{**job.__dict__, "build_trainer": None}), False, False)
    monkeypatch.setenv("WORLD_SIZE", "8")  # accelerate launch: one GPU a process
    training.check_run(Settings(), job, resume=False, overwrite=False)
    monkeypatch.delenv("WORLD_SIZE")
    runtime.check_training_gpus(device_count=1)


def test_the_evaluation_memory_check_runs_after_the_ranks_device_is_set_and_on_the_main_rank_only(monkeypatch):
    """``mem_get_info`` before ``PartialState`` would leave a CUDA context of every rank on GPU 0."""
    import accelerate

    from gsm8k_lab import runtime, training
    from gsm8k_lab.config import Settings

    for main in (True, False):
        events: list[str] = []

        class State:
            is_main_process = main

            def __init__(self, cpu, log=events):
                log.append("device set")
                self.log = log

            def wait_for_everyone(self):
                self.log.append("barrier")

        monkeypatch.setattr(accelerate, "PartialState", State)
        monkeypatch.setattr(training, "check_evaluation_memory", lambda settings, job, log=events: log.append("memory"))
        training.start_processes(Settings(), None, runtime.Runtime("cuda", "bf16", 2, 8))
        assert events == (["device set", "memory", "barrier"] if main else ["device set", "barrier"])


def test_resume_of_a_trained_run_only_evaluates(tmp_path, tiny_model_dir, run_cli):
    out = tmp_path / "run"
    args = ["--stage", "prep", "--output-dir", str(out), "--base-model", str(tiny_model_dir), *EVAL]
    r = run_cli("train_sft.py", *args, env=TINY_ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    info = _run_json(out)
    # as if killed during the evaluation: trained, no metrics, a partial CSV
    csv_path = out / "debug" / info["eval"]["csv"]
    rows = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(rows[:2]) + "\n")
    for f in (out / "debug").glob("*_metrics*"):
        f.unlink()
    info["status"] = "trained"
    del info["eval"]
    (out / "run.json").write_text(json.dumps(info))
    adapter = (out / "model" / "adapter_model.safetensors").read_bytes()
    log = (out / "train_log.jsonl").read_text()
    r = run_cli("train_sft.py", *args, "--resume", env=TINY_ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "training on" not in r.stdout and "evaluating" in r.stdout
    assert (out / "model" / "adapter_model.safetensors").read_bytes() == adapter
    assert (out / "train_log.jsonl").read_text() == log
    again = _run_json(out)
    assert again["status"] == "complete" and again["eval"]["n"] == 3
    assert len(_completions(csv_path)) == 3


def test_resume_after_kill_finishes_with_the_same_steps(tmp_path, tiny_model_dir):
    """Kill SFT after its second checkpoint, resume, and end with the uninterrupted step count."""
    out = tmp_path / "killed"
    env = {**os.environ, "PREP_TRAIN_SAMPLES": "16", "EVAL_SAMPLES": "2", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(REPO / "src" / "train_sft.py"), "--stage", "prep", "--output-dir", str(out),
           "--base-model", str(tiny_model_dir), "--epochs", "2", "--save-steps", "1", *EVAL]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if (out / "checkpoints" / "checkpoint-3" / "trainer_state.json").exists():
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "model" / "adapter_config.json").exists(), "killed before finishing"
    # without --resume the unfinished run is protected
    r = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "--resume" in r.stderr
    r = subprocess.run([*cmd, "--resume"], env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stdout
    info = _run_json(out)
    assert info["status"] == "complete"
    assert info["train"]["global_steps"] == 8  # 16 problems / batch 4 x 2 epochs, as uninterrupted
    steps = [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()]
    loss_steps = [s for s in steps if s < 8]
    assert len(loss_steps) == len(set(loss_steps)), "no step logged twice"


def test_processes_that_cannot_share_the_accumulation_are_refused_before_any_work(monkeypatch, tmp_path,
                                                                                     tiny_model_dir):
    """Two processes and one micro-batch a step: the global batch would double with the hardware."""
    from gsm8k_lab.config import SettingError, Settings
    from gsm8k_lab.grpo import prepare_grpo
    from gsm8k_lab.sft import prepare_sft

    monkeypatch.setenv("WORLD_SIZE", "2")
    s = Settings()
    s.model.name = str(tiny_model_dir)
    s.sft.gradient_accumulation_steps = 1
    with pytest.raises(SettingError, match=r"^sft.gradient_accumulation_steps=1 cannot be shared evenly by 2 "):
        prepare_sft(s, "prep", tmp_path / "sft")
    s.grpo.gradient_accumulation_steps = 3
    with pytest.raises(SettingError, match=r"^grpo.gradient_accumulation_steps=3 cannot be shared evenly by 2 "):
        prepare_grpo(s, tmp_path / "grpo")
    assert not any(tmp_path.iterdir())


def test_two_processes_with_accelerate(tmp_path, tiny_model_dir):
    out = tmp_path / "ddp"
    env = {**os.environ, "PREP_TRAIN_SAMPLES": "8", "EVAL_SAMPLES": "2", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                        str(REPO / "src" / "train_sft.py"), "--stage", "prep", "--output-dir", str(out),
                        "--base-model", str(tiny_model_dir), "--epochs", "1", "--gradient-accumulation-steps", "2",
                        *EVAL],
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    info = _run_json(out)
    assert info["status"] == "complete"
    assert info["train"]["num_processes"] == 2
    assert info["train"]["global_steps"] == 1  # 8 problems / (batch 4 x 2 micro-batches), shared by 2 processes
    assert info["train"]["gradient_accumulation_steps"] == 1 and info["train"]["examples_per_step"] == 8
    assert info["train"]["examples_seen"] == 8
    assert info["runtime"]["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)  # cores shared, not doubled
    # the adapter the two processes saved is the trained one, whole, and reloads in one process
    from safetensors.torch import load_file

    ckpt = max((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    saved, trained = (load_file(p / "adapter_model.safetensors") for p in (out / "model", ckpt))
    assert saved.keys() == trained.keys() and all(saved[k].numel() > 0 for k in saved)
    assert all((saved[k] == trained[k]).all() for k in saved)
    r = subprocess.run([sys.executable, str(REPO / "src" / "evaluate_model.py"), "--model-path", str(out),
                        "--output-dir", str(out / "again"), "--output-file", "again.csv", "--max-new-tokens", "8",
                        "--dtype", "fp32"], env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    auto = _completions(out / "debug" / info["eval"]["csv"])
    assert _completions(out / "again" / "debug" / "again.csv") == auto


@pytest.mark.parametrize("name,kind", [("ddp.yaml", "MULTI_GPU"), ("zero2.yaml", "DEEPSPEED")])
def test_shipped_accelerate_configs_parse(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(REPO / "configs" / name))
    assert cfg.distributed_type.value == kind
    assert cfg.mixed_precision == "bf16"
    if kind == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == int(name[4])


def test_a_log_torn_at_any_byte_keeps_exactly_its_whole_records(chain, tmp_path, capsys):
    from gsm8k_lab.training import _trim_log, mean_logged_loss

    full = (chain / "prep" / "train_log.jsonl").read_bytes()
    assert len(full.splitlines()) >= 2
    log = tmp_path / "train_log.jsonl"
    for cut in range(len(full) + 1):
        log.write_bytes(full[:cut])
        whole = [json.loads(x) for x in full[:cut].splitlines(keepends=True) if x.endswith(b"\n")]
        _trim_log(log, step=10**6)
        assert [json.loads(x) for x in log.read_text().splitlines()] == whole, cut
        mean_logged_loss(log)  # readers never fail on a torn file


def test_resume_at_the_last_checkpoint_keeps_loss_and_time(tmp_path, tiny_model_dir, run_cli):
    """Killed after the last checkpoint but before model/ was written: the resume trains no step,
    and still reports the run's loss (not 0.0) and the seconds spent before the kill."""
    out = tmp_path / "run"
    args = ["--stage", "prep", "--output-dir", str(out), "--base-model", str(tiny_model_dir), "--save-steps", "1", *EVAL]
    r = run_cli("train_sft.py", *args, env=TINY_ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    info = _run_json(out)
    assert info["train"]["train_loss"] > 0
    last = max(int(k) for k in info["timings"]["train_seconds_at_checkpoint"])
    spent = info["timings"]["train_seconds_at_checkpoint"][str(last)]
    import shutil

    shutil.rmtree(out / "model")
    shutil.rmtree(out / "debug")
    info["status"] = "training"
    for key in ("train", "eval"):
        info.pop(key)
    (out / "run.json").write_text(json.dumps(info))
    r = run_cli("train_sft.py", *args, "--resume", env=TINY_ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    again = _run_json(out)
    assert again["status"] == "complete" and again["train"]["global_steps"] == last
    assert again["train"]["train_loss"] == pytest.approx(mean_loss(out))
    assert again["train"]["train_loss"] > 0
    assert again["timings"]["train_seconds"] >= spent


def mean_loss(run):
    from gsm8k_lab.training import mean_logged_loss

    return mean_logged_loss(run / "train_log.jsonl")


def test_the_base_model_is_evaluated_as_a_run_the_report_reads(tmp_path, tiny_model_dir, capsys):
    from gsm8k_lab.config import Settings
    from gsm8k_lab.results import collect_runs
    from gsm8k_lab.training import evaluate_base

    s = Settings()
    s.model.name, s.model.dtype, s.eval.samples, s.eval.generation.max_new_tokens = str(tiny_model_dir), "fp32", 3, 8
    out = tmp_path / "sweep" / "base_model"
    info = evaluate_base(s, out)
    assert info["stage"] == "base" and info["status"] == "complete" and info["eval"]["n"] == 3
    assert not (out / "model").exists() and not (out / "train_log.jsonl").exists()  # nothing was trained
    assert len(_completions(out / "debug" / info["eval"]["csv"])) == 3
    assert info["model_chain"]["base"] == str(tiny_model_dir.resolve()) and not info["model_chain"]["adapters"]
    fp = info["fingerprint"]
    assert fp["stage"] == "base" and fp["eval.samples"] == 3 and not any(k.startswith(("sft.", "lora.")) for k in fp)
    capsys.readouterr()
    assert evaluate_base(s, out, resume=True)["run_id"] == info["run_id"]  # complete: nothing to do
    assert "already complete" in capsys.readouterr().out
    from gsm8k_lab.experiments import experiment1_steps

    assert experiment1_steps(s, tmp_path / "sweep")[0].is_done()  # a rerun of the sweep skips it
    (run,) = collect_runs([tmp_path / "sweep"])
    assert (run.method, run.budget, run.n_eval) == ("base model", 0, 3)


def test_a_validation_evaluation_is_part_of_a_runs_fingerprint():
    from types import SimpleNamespace

    from gsm8k_lab.config import Settings
    from gsm8k_lab.training import run_fingerprint

    job = SimpleNamespace(stage="full_sft", parent=SimpleNamespace(describe=lambda: "m"), data={"n": 4}, geometry={},
                          build_trainer=object())
    s = Settings()
    on_test = run_fingerprint(s, job)
    assert "eval.split" not in on_test  # as runs recorded before the split existed, so they still resume
    s.eval.split = "validation"
    on_validation = run_fingerprint(s, job)
    assert on_validation["eval.split"] == "validation" and on_validation["data.validation_size"] == 512
    assert "sft.prep_learning_rate" in on_test  # the prep stage's own rate is a training setting


def test_a_budget_that_reaches_validation_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    from gsm8k_lab.cli import main

    monkeypatch.setenv("TRAIN_SAMPLES", "7000")
    assert main(["train-sft", "--stage", "full", "--output-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "TRAIN_SAMPLES=7000 reaches into the held-out problems" in err and "at most 6897" in err
    assert not (tmp_path / "r").exists()


def _state(folder):
    """Every file under ``folder`` with its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_an_overwrite_that_fails_before_its_first_result_leaves_the_finished_run(tmp_path, chain, tiny_model_dir,
                                                                                 monkeypatch, capsys):
    """Finished runs, then ``--overwrite`` failing after the old run was set aside and the model
    loaded: SFT with LoRA targets the model lacks, GRPO with a trainer that fails. Every file of
    the old run is byte-identical (and untouched) afterwards; an overwrite that gets through
    replaces the run."""
    import shutil

    import trl

    from gsm8k_lab import cli

    for k, v in TINY_ENV.items():
        monkeypatch.setenv(k, v)
    sft, grpo = tmp_path / "sft", tmp_path / "grpo"
    shutil.copytree(chain / "prep", sft)
    shutil.copytree(chain / "grpo", grpo)
    sft_args = ["train-sft", "--stage", "prep", "--output-dir", str(sft), "--base-model", str(tiny_model_dir),
                "--overwrite", *EVAL]
    before = _state(sft)
    assert cli.main([*sft_args, "--lora-target-modules", "q_proj", "nope_proj"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "it/s]" not in line]  # no progress bars
    assert len(err) == 1 and "--lora-target-modules 'nope_proj' matches no layer of the model" in err[0], err
    assert "its layers are down_proj, embed_tokens, gate_proj, k_proj" in err[0]
    assert _state(sft) == before

    def trainer_fails(self, *args, **kwargs):
        raise RuntimeError("the trainer failed")

    before_grpo = _state(grpo)
    with monkeypatch.context() as m:
        m.setattr(trl.GRPOTrainer, "train", trainer_fails)
        with pytest.raises(RuntimeError, match="the trainer failed"):
            cli.main(["train-grpo", "--output-dir", str(grpo), "--base-model", str(chain / "prep"), "--overwrite",
                      "--max-completion-length", "8", "--gradient-accumulation-steps", "1", *EVAL])
    assert _state(grpo) == before_grpo

    old_id = _run_json(sft)["run_id"]
    time.sleep(1.1)  # run ids are times to the second
    assert cli.main([*sft_args, "--save-steps", "1", "--eval-samples", "2"]) == 0
    info = _run_json(sft)
    assert info["status"] == "complete" and info["run_id"] != old_id and info["eval"]["n"] == 2
    assert not (sft / ".replaced").exists()
    assert not any(name.startswith(f"prep_sft_{old_id}") for name in os.listdir(sft / "debug"))


def test_a_tracker_names_each_run_by_its_folder(tmp_path):
    """Runs of a sweep are told apart in TensorBoard, W&B or Trackio: the run name is the budget and the arm."""
    from gsm8k_lab import runtime, training
    from gsm8k_lab.config import Settings
    from gsm8k_lab.runs import RunDir

    run = RunDir(tmp_path / "compare-train-samples" / "64" / "grpo-seed1")
    s = Settings()
    args = training._common_args(s, runtime.Runtime("cpu", "fp32", 2, 1), run, s.grpo, False)
    assert args["run_name"] == "64/grpo-seed1" and args["project"] == "gsm8k-lab"
    assert args["report_to"] == []  # none


def test_several_trackers_reach_the_trainer_and_each_is_checked(monkeypatch, tmp_path):
    from gsm8k_lab import runtime, training
    from gsm8k_lab.config import SettingError, Source, load_settings
    from gsm8k_lab.runs import RunDir

    s, _ = load_settings(env={}, overrides={"report_to": (["tensorboard", "wandb"], Source("flag", "--report-to"))})
    args = training._common_args(s, runtime.Runtime("cpu", "fp32", 2, 1), RunDir(tmp_path / "r"), s.sft, False)
    assert args["report_to"] == ["tensorboard", "wandb"]
    installed = {"tensorboard"}
    monkeypatch.setattr(training.importlib.util, "find_spec", lambda name: object() if name in installed else None)
    with pytest.raises(SettingError, match="report_to 'wandb' needs the wandb package"):
        training.check_tracker(s)
    installed.add("wandb")
    training.check_tracker(s)

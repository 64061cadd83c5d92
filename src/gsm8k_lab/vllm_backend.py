"""vLLM generation backend (GPU), behind the same interface as the transformers one.

Run directories are served as a **merged copy**: the chain of adapters is merged
into the base weights once and saved under ``<run>/model/merged-vllm/`` (reused
afterwards), then loaded by vLLM as a plain model. A chained run (prep + full)
has several adapters, which a single vLLM LoRA request cannot express, and a
merged model also generates faster than base + LoRA.

vLLM is an optional extra (``uv sync --extra vllm``); it is never needed on a CPU.
"""

from __future__ import annotations

from pathlib import Path

from .generation import Completion, SamplingParams

MERGED_DIR = "merged-vllm"


class VLLMBackend:
    name = "vllm"

    def __init__(self, model_ref, dtype_setting: str = "auto", gpu_memory_utilization: float = 0.85,
                 max_model_len: int = 2048, chunk: int = 512):
        from vllm import LLM

        self.model_path = model_path_for_vllm(model_ref)
        dtype = {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[dtype_setting]
        self.llm = LLM(model=str(self.model_path), dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                       max_model_len=max_model_len)
        self.tokenizer = self.llm.get_tokenizer()
        self.chunk = chunk

    @property
    def describe(self) -> str:
        return f"vllm ({self.model_path})"

    def generate_iter(self, prompts, params: SamplingParams, desc: str = "generating"):
        """vLLM schedules each chunk continuously; chunks let callers stream rows to disk."""
        sampling = to_vllm_sampling(params)
        for start in range(0, len(prompts), self.chunk):
            outputs = self.llm.generate(prompts[start:start + self.chunk], sampling, use_tqdm=True)
            idx = list(range(start, start + len(outputs)))
            yield idx, [[from_vllm_output(o) for o in out.outputs] for out in outputs]


def to_vllm_sampling(params: SamplingParams):
    """Map the engine's sampling options onto ``vllm.SamplingParams``."""
    from vllm import SamplingParams as VSP

    greedy = params.greedy
    return VSP(
        n=params.n,
        temperature=0.0 if greedy else params.temperature,
        top_p=1.0 if greedy else params.top_p,
        top_k=0 if greedy or not params.top_k else params.top_k,  # 0: all tokens
        min_p=0.0 if greedy else params.min_p,
        seed=None if greedy else params.seed,
        max_tokens=params.max_new_tokens,
        stop=list(params.stop),
        include_stop_str_in_output=True,
    )


def from_vllm_output(o) -> Completion:
    return Completion(text=o.text, n_tokens=len(o.token_ids), truncated=o.finish_reason == "length")


def model_path_for_vllm(model_ref) -> Path | str:
    """The base model itself, or a merged copy of a run directory's adapter chain."""
    from .models import base_path, load_model, load_tokenizer

    if not model_ref.adapters:
        return base_path(model_ref)
    target = Path(model_ref.adapters[-1]) / MERGED_DIR
    if (target / "config.json").is_file():
        return target
    import shutil

    import torch

    model = load_model(model_ref, torch.bfloat16, device="cpu")
    tmp = target.with_name(MERGED_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    load_tokenizer(model_ref).save_pretrained(tmp)
    tmp.rename(target)
    return target

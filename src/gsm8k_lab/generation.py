"""Text generation behind one interface, used by evaluation and trace sampling.

``backend.generate_iter(prompts, params)`` yields finished batches as
``(prompt_indices, completions)``, so callers can stream results to disk;
``backend.generate(...)`` collects them. Each prompt gets ``params.n``
completions with their token count and a truncation flag.

Backends:
- :class:`TransformersBackend`: any device; prompts sorted by length and batched
  with left padding, KV cache, greedy or sampled, stops at ``</SOLUTION>`` or EOS.
- a vLLM backend (GPU) is chosen by :func:`make_backend` where available.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from .config import SOLUTION_END, UsageError


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int = 0
    n: int = 1
    stop: tuple[str, ...] = (SOLUTION_END,)

    def __post_init__(self):
        if self.temperature < 0:
            raise UsageError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_new_tokens <= 0:
            raise UsageError(f"max new tokens must be a positive integer, got {self.max_new_tokens}")
        if self.n <= 0:
            raise UsageError(f"completions per prompt must be positive, got {self.n}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Completion:
    text: str
    n_tokens: int
    truncated: bool  # hit max_new_tokens without EOS or a stop string


class GenerationBackend(Protocol):
    name: str

    def generate_iter(
        self, prompts: list[str], params: SamplingParams, desc: str = "generating"
    ) -> Iterator[tuple[list[int], list[list[Completion]]]]: ...


def generate(backend: GenerationBackend, prompts: list[str], params: SamplingParams,
             desc: str = "generating") -> list[list[Completion]]:
    """All completions, in prompt order (``params.n`` per prompt)."""
    out: list[list[Completion] | None] = [None] * len(prompts)
    for indices, completions in backend.generate_iter(prompts, params, desc=desc):
        for i, c in zip(indices, completions):
            out[i] = c
    return out  # type: ignore[return-value]


def make_backend(name: str, model_ref, dtype_setting: str = "auto", batch_size: int = 16,
                 device: str | None = None) -> GenerationBackend:
    """Build the chosen backend for a model reference; ``auto`` picks vLLM on a CUDA GPU when installed."""
    from .models import load_model, load_tokenizer, pick_device, pick_dtype

    if name not in ("auto", "transformers", "vllm"):
        raise UsageError(f"--backend must be auto, transformers or vllm, got {name!r}")
    device = pick_device(device)
    if name == "vllm" or (name == "auto" and _vllm_usable(device)):
        from .vllm_backend import VLLMBackend

        return VLLMBackend(model_ref, dtype_setting=dtype_setting)
    dtype = pick_dtype(dtype_setting, device)
    tokenizer = load_tokenizer(model_ref)
    model = load_model(model_ref, dtype, device)
    return TransformersBackend(model, tokenizer, batch_size=batch_size)


class TransformersBackend:
    """Batched ``model.generate`` with left padding and length-sorted batches."""

    name = "transformers"

    def __init__(self, model, tokenizer, batch_size: int = 16):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._stop_criteria: dict[tuple[str, ...], object] = {}

    @property
    def describe(self) -> str:
        p = next(self.model.parameters())
        return f"transformers on {p.device} ({str(p.dtype).replace('torch.', '')})"

    def generate_iter(self, prompts, params, desc="generating"):
        import torch
        from tqdm.auto import tqdm

        tok = self.tokenizer
        encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        # Sorting by length keeps padding (wasted compute) low within each batch.
        jobs = sorted(((i, k) for i in range(len(prompts)) for k in range(params.n)),
                      key=lambda job: (len(encoded[job[0]]), job[0], job[1]))
        results: dict[int, list[Completion | None]] = {}
        device = next(self.model.parameters()).device
        if not params.greedy:
            torch.manual_seed(params.seed)
        gen_kwargs = self._generate_kwargs(params)
        t0, n_tokens, n_done = time.perf_counter(), 0, 0
        bar = tqdm(total=len(prompts), desc=desc, unit="problem", dynamic_ncols=True)
        try:
            for start in range(0, len(jobs), self.batch_size):
                batch = jobs[start:start + self.batch_size]
                ids = [encoded[i] for i, _ in batch]
                width = max(len(x) for x in ids)
                input_ids = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
                attention = torch.zeros((len(ids), width), dtype=torch.long)
                for row, x in enumerate(ids):
                    input_ids[row, width - len(x):] = torch.tensor(x)
                    attention[row, width - len(x):] = 1
                with torch.inference_mode():
                    out = self.model.generate(
                        input_ids=input_ids.to(device), attention_mask=attention.to(device), **gen_kwargs
                    )
                new_tokens = out[:, width:].tolist()
                finished = []
                for (i, k), toks in zip(batch, new_tokens):
                    comp = self._decode(toks, params)
                    n_tokens += comp.n_tokens
                    slot = results.setdefault(i, [None] * params.n)
                    slot[k] = comp
                    if all(c is not None for c in slot):
                        finished.append(i)
                if finished:
                    n_done += len(finished)
                    bar.update(len(finished))
                    elapsed = time.perf_counter() - t0
                    bar.set_postfix(problems_s=f"{n_done / elapsed:.2f}", tok_s=f"{n_tokens / elapsed:.0f}")
                    yield finished, [results.pop(i) for i in finished]
        finally:
            bar.close()

    # ------------------------------------------------------------------
    def _generate_kwargs(self, params: SamplingParams) -> dict:
        tok = self.tokenizer
        kw = dict(
            max_new_tokens=params.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            use_cache=True,
        )
        if params.stop:
            from transformers import StoppingCriteriaList

            if params.stop not in self._stop_criteria:
                self._stop_criteria[params.stop] = StopOnText(tok, params.stop)
            kw["stopping_criteria"] = StoppingCriteriaList([self._stop_criteria[params.stop]])
        if params.greedy:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                      top_k=params.top_k or None, min_p=params.min_p or None)
        return kw

    def _decode(self, toks: list[int], params: SamplingParams) -> Completion:
        tok = self.tokenizer
        stop_ids = {tok.eos_token_id, tok.pad_token_id}
        end = next((j for j, t in enumerate(toks) if t in stop_ids), None)
        hit_eos = end is not None
        kept = toks[: end + 1] if hit_eos else toks  # count the EOS token the model produced
        text = tok.decode(toks[: end] if hit_eos else toks, skip_special_tokens=True)
        hit_stop = False
        for s in params.stop:
            cut = text.find(s)
            if cut != -1:
                text, hit_stop = text[: cut + len(s)], True
        return Completion(text, len(kept), truncated=not (hit_eos or hit_stop))


class StopOnText:
    """Stop a sequence once its text contains a stop string, cheaply.

    transformers' ``stop_strings`` matches every sequence against the whole
    vocabulary at every step; on a GPU that tripled the time per token of a
    135M model (see docs/benchmarks.md). Here a step costs one ``isin`` over
    the last tokens: only rows whose last token holds the stop strings' final
    character are decoded (their last few tokens) and searched.
    """

    def __init__(self, tokenizer, stops: tuple[str, ...]):
        import torch

        self.tokenizer, self.stops = tokenizer, stops
        finals = {s[-1] for s in stops}
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.final_ids = torch.tensor([i for i, p in enumerate(pieces) if p and any(c in p for c in finals)])
        lengths = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in stops]
        self.window = max(lengths) + 2

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        last = input_ids[:, -1]
        candidates = torch.isin(last, self.final_ids.to(last.device))
        done = torch.zeros_like(candidates)
        if candidates.any():
            for row in candidates.nonzero().flatten().tolist():
                tail = self.tokenizer.decode(input_ids[row, -self.window:], skip_special_tokens=True)
                done[row] = any(s in tail for s in self.stops)
        return done


def _vllm_usable(device: str) -> bool:
    if not device.startswith("cuda"):
        return False
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True

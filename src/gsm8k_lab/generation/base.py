"""What every generation backend provides, and the helpers built on it.

``backend.generate_iter(prompts, gen, n)`` yields finished batches as
``(prompt_indices, completions)`` so callers can stream results to disk; each
prompt gets ``n`` completions (:class:`Completion`: text, token count and a
truncation flag). ``gen`` is a :class:`~gsm8k_lab.config.GenerationSettings`:
every decoding choice is explicit, so backends never fall back on a model's own
``generation_config.json`` (Qwen2.5-Instruct ships a repetition penalty and
sampling defaults there). Generation stops at EOS or after :data:`STOP`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..config import GenerationSettings
from ..task import STOP


@dataclass(frozen=True)
class Completion:
    text: str
    n_tokens: int
    truncated: bool  # hit max_new_tokens without EOS or a stop string


@runtime_checkable
class GenerationBackend(Protocol):
    name: str  # "transformers" or "vllm"
    tokenizer: object  # builds the prompts (chat template)

    def describe(self) -> str:
        """One line for logs and metrics: backend, device, dtype."""
        ...

    def generate_iter(self, prompts: list[str], gen: GenerationSettings, n: int = 1,
                      desc: str = "generating") -> Iterator[tuple[list[int], list[list[Completion]]]]:
        ...

    def close(self) -> None:
        """Release the model (and GPU memory)."""
        ...


def generate(backend: GenerationBackend, prompts: list[str], gen: GenerationSettings, n: int = 1,
             desc: str = "generating") -> list[list[Completion]]:
    """All completions, in prompt order (``n`` per prompt)."""
    out: list[list[Completion] | None] = [None] * len(prompts)
    for indices, completions in backend.generate_iter(prompts, gen, n=n, desc=desc):
        for i, c in zip(indices, completions):
            out[i] = c
    return out  # type: ignore[return-value]


def decoding(gen: GenerationSettings, stop: tuple[str, ...] = STOP) -> dict:
    """The decoding part of generation settings, as recorded in metrics and run.json."""
    keys = ("max_new_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed")
    out = {k: getattr(gen, k) for k in keys}
    out["greedy"] = gen.greedy
    out["stop"] = list(stop)
    return out

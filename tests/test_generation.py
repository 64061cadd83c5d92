"""The transformers generation engine on the tiny model."""

import pytest

from gsm8k_lab.generation import SamplingParams, TransformersBackend, generate


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
    params = SamplingParams(max_new_tokens=4, temperature=1.0, n=3, seed=7)
    seen = []
    for indices, comps in backend.generate_iter(PROMPTS, params):
        seen.extend(indices)
        assert all(len(c) == 3 for c in comps)
    assert sorted(seen) == list(range(len(PROMPTS)))  # each prompt exactly once
    again = generate(backend, PROMPTS, params)
    first = generate(backend, PROMPTS, params)
    assert [[c.text for c in cs] for cs in again] == [[c.text for c in cs] for cs in first]  # seeded


def test_decode_cuts_at_stop_string_and_eos(backend):
    tok = backend.tokenizer
    params = SamplingParams(max_new_tokens=50)
    ids = tok("work<end_working_out><SOLUTION>42</SOLUTION> trailing text", add_special_tokens=False)["input_ids"]
    c = backend._decode(ids, params)
    assert c.text == "work<end_working_out><SOLUTION>42</SOLUTION>"
    assert not c.truncated
    eos = backend._decode(ids[:3] + [tok.eos_token_id, tok.pad_token_id], params)
    assert eos.n_tokens == 4 and not eos.truncated
    cut = backend._decode(ids[:5], params)
    assert cut.truncated  # no EOS, no stop string


def test_bad_sampling_params():
    from gsm8k_lab.config import UsageError

    with pytest.raises(UsageError, match="temperature must be >= 0"):
        SamplingParams(temperature=-1)
    with pytest.raises(UsageError, match="max new tokens"):
        SamplingParams(max_new_tokens=0)


def test_stop_on_text_criteria(backend):
    import torch

    from gsm8k_lab.generation import StopOnText

    tok = backend.tokenizer
    crit = StopOnText(tok, ("</SOLUTION>",))
    rows = ["x = 2<end_working_out><SOLUTION>2</SOLUTION>", "x = 2<end_working_out><SOLUTION>2</SOL",
            "a > b so 4 > 3", "<SOLUTION> 12 </SOLUTION>"]
    ids = [tok(r, add_special_tokens=False)["input_ids"] for r in rows]
    width = max(map(len, ids))
    batch = torch.tensor([[tok.pad_token_id] * (width - len(x)) + x for x in ids])
    assert crit(batch, None).tolist() == [True, False, False, True]

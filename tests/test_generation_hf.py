"""The transformers generation engine on the tiny model."""

import json
from dataclasses import replace

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
    """model.generate keeps only the repetition penalty (applied before the logits processors) and decodes
    greedily what RowSampling drew with exactly the settings' temperature, top-p, top-k and min-p."""
    from gsm8k_lab.generation.hf import RowSampling

    gen = SamplingParams(temperature=0.7, top_p=0.9, top_k=0, min_p=0.05, repetition_penalty=1.1)
    cfg = backend._generate_kwargs(gen)["generation_config"]
    assert (cfg.do_sample, cfg.repetition_penalty) == (False, 1.1)
    g = RowSampling(gen, [1, 2]).sampler.gen
    assert (g.temperature, g.top_p, g.top_k, g.min_p) == (0.7, 0.9, 0, 0.05)  # top_k 0 stays 0 (disabled)
    greedy = backend._generate_kwargs(SamplingParams())["generation_config"]
    assert greedy.do_sample is False and greedy.repetition_penalty == 1.0


def _texts(b, prompts, params, keys, n=1):
    return {k: [c.text for c in cs] for k, cs in zip(keys, generate(b, prompts, params, n=n, keys=keys))}


@pytest.mark.parametrize("engine", ["refill", "static"])
def test_a_prompts_samples_do_not_depend_on_the_batch(backend, engine):
    """Each completion draws from its own stream, seeded from the settings' seed, the prompt's key and the
    sample number: the same prompt samples the same tokens alone, in another order, with other prompts
    and with another batch size (fp32, where the logits themselves do not depend on the batch)."""
    params = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.95, repetition_penalty=1.1, seed=4)
    keys = [f"q{i}" for i in range(len(PROMPTS))]
    make = lambda size: TransformersBackend(backend.model, backend.tokenizer, batch_size=size, engine=engine)  # noqa: E731
    whole = _texts(make(3), PROMPTS, params, keys, n=2)
    assert len({t for ts in whole.values() for t in ts}) == 2 * len(PROMPTS)  # every sample its own
    part = [4, 1, 2]
    assert _texts(make(2), [PROMPTS[i] for i in part], params, [keys[i] for i in part], n=2) == {
        keys[i]: whole[keys[i]] for i in part}
    alone = _texts(make(1), [PROMPTS[3]], params, [keys[3]], n=2)
    assert alone == {keys[3]: whole[keys[3]]}
    other_seed = _texts(make(3), PROMPTS, replace(params, seed=5), keys, n=2)
    assert other_seed != whole


def test_static_batches_sample_what_the_refill_loop_samples(backend):
    """The static engine's logits processor makes the loop's draw: same settings, same keys, same text."""
    params = SamplingParams(max_new_tokens=12, temperature=0.9, top_k=40, min_p=0.02, seed=9)
    keys = list(range(len(PROMPTS)))
    static = _texts(TransformersBackend(backend.model, backend.tokenizer, batch_size=2, engine="static"),
                    PROMPTS, params, keys)
    refill = _texts(TransformersBackend(backend.model, backend.tokenizer, batch_size=3, engine="refill"),
                    PROMPTS, params, keys)
    assert static == refill


def test_draw_follows_the_distribution_and_never_picks_a_ruled_out_token():
    import random

    import torch

    from gsm8k_lab.generation.refill import draw

    inf = float("-inf")
    logits = torch.tensor([[inf, 0.0, inf, 1.0, 2.0, inf]])
    p = logits.softmax(-1)[0]
    rng = random.Random(0)
    picks = torch.cat([draw(logits.expand(1000, -1).clone(), [rng.random() for _ in range(1000)])
                       for _ in range(20)])
    counts = torch.bincount(picks, minlength=6).double() / len(picks)
    assert counts[[0, 2, 5]].sum() == 0
    assert torch.allclose(counts, p.double(), atol=0.01)
    # the ends of the unit interval: the first and the last token that can be drawn
    assert draw(logits, [0.0]).tolist() == [1] and draw(logits, [1 - 2 ** -53]).tolist() == [4]
    # each row by its own number: a row's token does not depend on the others
    rows = torch.tensor([[0.0, 0.0], [5.0, -5.0], [-5.0, 5.0]])
    assert draw(rows, [0.75, 0.75, 0.75]).tolist() == [1, 0, 1] and draw(rows[:1], [0.25]).tolist() == [0]


def test_prompt_seeds_are_stable_and_keyed():
    from gsm8k_lab.generation.base import prompt_seed, prompt_seeds

    assert prompt_seed(0, ["What is 2 + 2?", 1]) == prompt_seed(0, ["What is 2 + 2?", 1])
    assert len({prompt_seed(s, [q, a]) for s in (0, 1) for q in ("x", "y") for a in (1, 2)}) == 8
    assert 0 <= prompt_seed(123, "é") < 2 ** 62
    gen = SamplingParams(temperature=1.0, seed=3)
    assert prompt_seeds(gen, 2) == [prompt_seed(3, 0), prompt_seed(3, 1)]
    assert prompt_seeds(gen, 2, ["a", "b"]) == [prompt_seed(3, "a"), prompt_seed(3, "b")]
    with pytest.raises(ValueError, match="1 keys for 2 prompts"):
        prompt_seeds(gen, 2, ["a"])


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


SHARED = "You are a careful assistant. Think step by step, then give the final number. Question: "
PREFIXED = [SHARED + q for q in ("two plus two?", "What is seven times six, and why?", "ten", "Half of 9?",
                                 "If a train leaves at noon and travels for three hours, when does it arrive?")]


def test_the_shared_prefix_is_attended_once_with_the_same_text_as_model_generate(backend):
    """Rows attend to the prompts' shared prefix through one matmul (not a copy per row): greedy text equals
    transformers' own generate on every prompt, with rows ending and being refilled."""
    from gsm8k_lab.generation import refill

    params = SamplingParams(max_new_tokens=12)
    tok = backend.tokenizer
    encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in PREFIXED]
    assert refill._shared_prefix(encoded, list(range(len(encoded)))) >= refill.MIN_SHARED_PREFIX
    static = TransformersBackend(backend.model, tok, batch_size=1, engine="static")
    assert [c[0].text for c in generate(backend, PREFIXED, params)] == \
        [c[0].text for c in generate(static, PREFIXED, params)]


def test_rows_ending_and_starting_never_reallocate_the_kv_buffers(backend, monkeypatch):
    """The buffers are allocated once for the batch: rows that end leave their slot to the rows that stay or to
    new rows, and only the columns a moved row uses are copied."""
    from gsm8k_lab.generation import refill

    buffers: dict[int, set[int]] = {}

    class Watched(refill.RowCache):
        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            buffers.setdefault(layer_idx, set()).add(self.keys[layer_idx].data_ptr())
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)

    monkeypatch.setattr(refill, "RowCache", Watched)
    tok = backend.tokenizer
    encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in PREFIXED * 2]
    jobs = [(i, 0) for i in range(len(encoded))]
    lengths = set()
    for _, _, tokens, _ in refill.decode(backend.model, encoded, jobs, SamplingParams(max_new_tokens=10), 3,
                                         {tok.eos_token_id}, lambda t: len(t) >= 2 + len(lengths) % 5):
        lengths.add(len(tokens))
    assert len(lengths) > 1  # rows ended at different steps
    assert buffers and all(len(ptrs) == 1 for ptrs in buffers.values())


def test_prefill_groups_pad_little_and_cover_every_row_once():
    """New rows are prefilled in groups of similar length: every row in exactly one group, and the padding is a
    tenth of the rows' own tokens, where one group padded to the longest would add 70%."""
    from gsm8k_lab.generation import refill

    lengths = [20 + (37 * i) % 121 for i in range(64)]  # 20..140 tokens, in no order
    groups = refill._prefill_groups(lengths)
    assert sorted(r for g in groups for r in g) == list(range(64))
    padded = sum(max(lengths[r] for r in g) * len(g) for g in groups)
    assert padded <= 1.12 * sum(lengths) and 1.7 * sum(lengths) < max(lengths) * len(lengths)
    assert all(sum(lengths[r] for r in g) >= refill.PREFILL_GROUP_TOKENS for g in groups[:-1])
    assert refill._prefill_groups([5]) == [[0]] and refill._prefill_groups([]) == []


def test_rows_prefilled_in_groups_write_the_same_text(backend, monkeypatch):
    """Prefilled in many small groups (a row per group at the extreme), rows write what model.generate writes."""
    from gsm8k_lab.generation import refill
    from gsm8k_lab.task import build_prompt

    calls = []
    original = refill._prefill_groups

    def watched(lengths):
        groups = original(lengths)
        calls.append(len(groups))
        return groups

    monkeypatch.setattr(refill, "PREFILL_GROUP_TOKENS", 1)
    monkeypatch.setattr(refill, "_prefill_groups", watched)
    tok = backend.tokenizer
    prompts = [build_prompt(tok, q) for q in _long_prompts()[:7]]
    params = SamplingParams(max_new_tokens=8)
    static = generate(TransformersBackend(backend.model, tok, batch_size=7, engine="static"), prompts, params)
    got = generate(TransformersBackend(backend.model, tok, batch_size=7, engine="refill"), prompts, params)
    assert max(calls) > 1
    assert [c[0].text for c in got] == [c[0].text for c in static]


def test_keys_are_stored_transposed_for_the_scores_matmul(backend, monkeypatch):
    """Each layer's key buffer is a ``[rows, heads, length, dim]`` view of ``[.., dim, length]`` storage, the
    layout ``query @ key^T`` reads without a transposition; values stay ``[.., length, dim]``."""
    from gsm8k_lab.generation import refill

    seen = []

    class Watched(refill.RowCache):
        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            seen.append((self.keys[layer_idx].stride(), self.values[layer_idx].stride()))
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)

    monkeypatch.setattr(refill, "RowCache", Watched)
    tok = backend.tokenizer
    encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in PREFIXED]
    list(refill.decode(backend.model, encoded, [(i, 0) for i in range(len(encoded))], SamplingParams(max_new_tokens=3),
                       2, {tok.eos_token_id}, lambda t: False))
    assert seen and all(k[-2] == 1 and k[-1] > 1 and v[-1] == 1 for k, v in seen)


@pytest.mark.parametrize(("src", "dst", "n"), [(5, 0, 20), (0, 5, 20), (3, 1, 9), (1, 4, 2), (7, 0, 1), (2, 2, 5)])
def test_columns_move_in_place_as_a_copy_would_move_them(src, dst, n):
    """Compaction and room for a longer prompt move columns within the buffer, chunk by chunk (no temporary the
    size of the buffer): the result equals the move through a copy, in either direction and any overlap."""
    import torch

    from gsm8k_lab.generation import refill

    buf = torch.arange(2 * 3 * 30 * 4, dtype=torch.float32).reshape(2, 3, 30, 4).transpose(-1, -2).transpose(-1, -2)
    expected = buf.clone()
    expected[:, :, dst:dst + n] = buf[:, :, src:src + n].clone()
    refill._move_columns(buf, src, dst, n)
    assert torch.equal(buf, expected)


def test_the_buffers_are_sized_to_what_the_rows_can_hold(backend, monkeypatch):
    """Without refills a row's buffer holds its question (the shared prefix is kept once) and its completion, for
    as many rows as there are jobs; with refills it keeps room to compact."""
    from gsm8k_lab.generation import refill

    sizes = []

    class Watched(refill.RowCache):
        def __init__(self, length, capacity=0):
            sizes.append((length, capacity))
            super().__init__(length, capacity)

    monkeypatch.setattr(refill, "RowCache", Watched)
    tok = backend.tokenizer
    encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in PREFIXED]
    prefix = refill._shared_prefix(encoded, list(range(len(encoded))))
    suffix = max(len(e) for e in encoded) - prefix
    params = SamplingParams(max_new_tokens=7)
    jobs = [(i, 0) for i in range(len(encoded))]
    for batch in (8, 2):
        list(refill.decode(backend.model, encoded, jobs, params, batch, {tok.eos_token_id}, lambda t: False))
    assert sizes == [(suffix + 7 + 1, len(encoded)), (suffix + 7 + 64, 2)]

"""Data loading, budgets and formatting."""

import json

import pytest

from gsm8k_lab.config import SettingError, UsageError
from gsm8k_lab.data import (
    build_prompt,
    format_target,
    load_split,
    load_traces,
    reasoning_to_trace,
    take_budget,
)


def test_bundled_splits_load_with_gold_numbers():
    train, test = load_split("train"), load_split("test")
    assert (len(train), len(test)) == (7473, 1319)
    assert train[0].gold == 72 and "Natalia" in train[0].question
    assert all(p.index == i for i, p in enumerate(test))


def test_budgets_are_nested_and_shared():
    train = load_split("train")
    small, big = take_budget(train, 32, seed=1234), take_budget(train, 64, seed=1234)
    assert big[:32] == small  # a larger budget contains the smaller one
    assert take_budget(train, 32, seed=1234) == small  # the same for every run
    assert [p.index for p in small] != list(range(32))  # shuffled, not the file's head


def test_corrupted_bundled_file(monkeypatch, tmp_path):
    from gsm8k_lab import data

    bad = tmp_path / "test.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n')
    monkeypatch.setattr(data, "_bundled_path", lambda split: bad)
    with pytest.raises(UsageError, match="corrupted"):
        load_split("test")


def test_jsonl_source(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"question": "1+1?", "answer": "1+1=<<1+1=2>>2\\n#### 2"}\n')
    (p,) = load_split("test", str(f))
    assert p.gold == 2


def test_unknown_split_and_source():
    with pytest.raises(SettingError, match="split must be one of train, test, got 'dev'"):
        load_split("dev")
    with pytest.raises(SettingError, match="data.source 'nope.jsonl' is neither 'bundled', 'hub', 'gsm-symbolic' nor a JSONL file"):
        load_split("test", "nope.jsonl")
    with pytest.raises(SettingError, match="data.train_source 'nope.jsonl'"):
        load_split("train", "nope.jsonl", "data.train_source")


@pytest.mark.parametrize("content,needle", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not UTF-8 text (line 1); expected JSONL"),
    (b'{"question": "q", "answer": "#### 1"}\n\x00\x00', "is a binary file; expected JSONL"),
    (b'{"question": "q"}\n', "test line 1: expected question/answer"),
])
def test_binary_or_broken_data_file(tmp_path, content, needle):
    f = tmp_path / "d.jsonl"
    f.write_bytes(content)
    with pytest.raises(SettingError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_split("test", str(f))


def test_format_target_strips_calculator_and_adds_tags():
    t = format_target("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 1,072")
    assert t == "Natalia sold 48/2 = 24 clips.<end_working_out><SOLUTION>1072</SOLUTION>"


def test_trace_roundtrip():
    ans = reasoning_to_trace("step 1\nstep 2", "42")
    assert ans == "step 1\nstep 2\n\n#### 42"
    assert format_target(ans).endswith("<SOLUTION>42</SOLUTION>")


def test_prompt_opens_reasoning(real_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(real_tokenizer_dir)
    prompt = build_prompt(tok, "What is 2+2?")
    assert prompt.endswith("<|im_start|>assistant\n<start_working_out>")
    assert "<SOLUTION>" in prompt and "What is 2+2?" in prompt


@pytest.mark.parametrize("content,needle", [
    ("", "is empty"),
    ('{"question": "q", "answer": "#### 1"}\nnot json\n', "line 2 is not valid JSON"),
    ('{"question": "q"}\n', "line 1 needs string fields 'question' and 'answer'"),
    ('{"question": "q", "answer": "no marker"}\n', "line 1 answer lacks the '#### N' marker"),
])
def test_bad_traces_files(tmp_path, content, needle):
    f = tmp_path / "t.jsonl"
    f.write_text(content)
    with pytest.raises(SettingError, match=needle) as err:
        load_traces(f)
    assert err.value.path == "traces_file" and str(err.value).startswith("traces_file ")


def test_missing_or_binary_traces_file(tmp_path):
    with pytest.raises(SettingError, match="does not exist"):
        load_traces(tmp_path / "none.jsonl")
    f = tmp_path / "bin.jsonl"
    f.write_bytes(bytes(range(256)))
    with pytest.raises(SettingError, match="is not UTF-8 text"):
        load_traces(f)


def test_grpo_prompts_tokenize_like_evaluation(llama3_like_tokenizer, qwen2_like_tokenizer, real_tokenizer_dir):
    """TRL's GRPO tokenizes prompts with special tokens added; the ids still equal evaluation's."""
    from transformers import AutoTokenizer

    from gsm8k_lab.data import prompt_ids, trl_prompt

    for tok in (llama3_like_tokenizer, qwen2_like_tokenizer, AutoTokenizer.from_pretrained(real_tokenizer_dir)):
        prompt = build_prompt(tok, "What is 2+2?")
        assert tok(trl_prompt(tok, prompt))["input_ids"] == prompt_ids(tok, prompt)
    llama_prompt = build_prompt(llama3_like_tokenizer, "What is 2+2?")
    bos = llama3_like_tokenizer.bos_token_id
    assert llama3_like_tokenizer(llama_prompt)["input_ids"][:2] == [bos, bos]  # the doubled BOS it avoids


def test_gsm_symbolic_is_built_once_with_provenance_and_never_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("GSM8K_LAB_CACHE", str(tmp_path))
    problems = load_split("test", "gsm-symbolic:12")
    assert len(problems) == 12 and all("####" in p.answer for p in problems)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["gsm-symbolic-12-seed1234.jsonl", "gsm-symbolic-12-seed1234.provenance.json"]
    prov = json.loads((tmp_path / files[1]).read_text())
    import hashlib

    assert prov["package"] == "reasoning-gym" and prov["seed"] == 1234 and prov["size"] == 12
    assert prov["sha256"] == hashlib.sha256((tmp_path / files[0]).read_bytes()).hexdigest()
    assert prov["templates"] and all(isinstance(t, int) for t in prov["templates"])
    assert [p.question for p in load_split("test", "gsm-symbolic:12")] == [p.question for p in problems]  # cached
    with pytest.raises(SettingError, match="is an evaluation set .* never training data"):
        load_split("train", "gsm-symbolic", "data.train_source")
    (tmp_path / files[0]).write_text((tmp_path / files[0]).read_text().replace("a", "b", 1))
    with pytest.raises(UsageError, match="does not match its provenance sha256"):
        load_split("test", "gsm-symbolic:12")
    with pytest.raises(SettingError, match="expected gsm-symbolic or gsm-symbolic:N"):
        load_split("test", "gsm-symbolic:lots")

"""Config precedence and validation; data loading, budgets and formatting."""

import json

import pytest

from gsm8k_lab.config import UsageError, check_sample_count, load_config, parse_count
from gsm8k_lab.data import (
    build_prompt,
    format_target,
    load_split,
    load_traces,
    reasoning_to_trace,
    take_budget,
)


def test_env_overrides_defaults():
    cfg = load_config({"TRAIN_SAMPLES": "256", "PREP_TRAIN_SAMPLES": "32", "EVAL_SAMPLES": "all",
                       "NUM_GENERATIONS": "8", "OUTPUT_DIR": "/x", "MODEL_NAME": "org/m"})
    assert cfg.sft.train_samples == 256 and cfg.grpo.train_samples == 256
    assert cfg.sft.prep_train_samples == 32
    assert cfg.eval.samples is None
    assert cfg.grpo.num_generations == 8
    assert cfg.output_root == "/x" and cfg.model.name == "org/m"


def test_defaults_without_env():
    cfg = load_config({})
    assert cfg.eval.samples == 512  # the seed's default
    assert json.dumps(cfg.to_dict())  # serialisable for run.json


@pytest.mark.parametrize("env,needle", [
    ({"EVAL_SAMPLES": "abc"}, "EVAL_SAMPLES must be a positive integer or 'all', got 'abc'"),
    ({"EVAL_SAMPLES": "0"}, "EVAL_SAMPLES must be a positive integer"),
    ({"TRAIN_SAMPLES": "-5"}, "TRAIN_SAMPLES must be a positive integer"),
    ({"PREP_TRAIN_SAMPLES": "all"}, "PREP_TRAIN_SAMPLES must be a positive integer, got 'all'"),
    ({"NUM_GENERATIONS": "1"}, "NUM_GENERATIONS must be at least 2"),
])
def test_bad_env(env, needle):
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_config(env)


def test_sample_count_against_split():
    assert check_sample_count("EVAL_SAMPLES", None, 1319) == 1319
    assert check_sample_count("EVAL_SAMPLES", 10, 1319) == 10
    with pytest.raises(UsageError, match="larger than the split"):
        check_sample_count("EVAL_SAMPLES", 2000, 1319)
    assert parse_count("X", " 7 ") == 7


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
    with pytest.raises(UsageError, match="split must be one of train, test, got 'dev'"):
        load_split("dev")
    with pytest.raises(UsageError, match="neither 'bundled', 'hub' nor a JSONL file"):
        load_split("test", "nope.jsonl")


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
    with pytest.raises(UsageError, match=needle):
        load_traces(f)


def test_missing_traces_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_traces(tmp_path / "none.jsonl")

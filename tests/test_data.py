"""Data loading, budgets and formatting."""

import hashlib
import json

import pytest

from gsm8k_lab.config import SettingError, Settings, UsageError
from gsm8k_lab.data import eval_problems, eval_split_size, load_split, load_traces, train_regions
from gsm8k_lab.task import build_prompt, format_target, reasoning_to_trace


def test_bundled_splits_load_with_gold_numbers():
    train, test = load_split("train"), load_split("test")
    assert (len(train), len(test)) == (7473, 1319)
    assert train[0].gold == 72 and "Natalia" in train[0].question
    assert all(p.index == i for i, p in enumerate(test))


def test_budgets_are_nested_and_shared():
    train = load_split("train")
    regions = train_regions(train, Settings())
    small, big = regions.budget(32), regions.budget(64)
    assert big[:32] == small  # a larger budget contains the smaller one
    assert train_regions(train, Settings()).budget(32) == small  # the same for every run
    assert [p.index for p in small] != list(range(32))  # shuffled, not the file's head


def test_prep_validation_and_budgets_are_disjoint():
    s = Settings()
    train = load_split("train")
    regions = train_regions(train, s)
    validation, prep = regions.validation(), regions.prep()
    largest = regions.budget(max(s.experiment.budgets))  # 2048, the largest default budget
    ids = lambda ps: {p.index for p in ps}  # noqa: E731
    assert (len(validation), len(prep), len(largest)) == (512, 64, 2048)
    assert not ids(validation) & ids(prep) and not ids(validation) & ids(largest) and not ids(prep) & ids(largest)
    everything = regions.budget(None)  # 'all': every problem before the held-out ones
    assert len(everything) == 7473 - 512 - 64 and not ids(everything) & (ids(validation) | ids(prep))
    assert ids(everything) | ids(validation) | ids(prep) == ids(train)
    # a smaller prep or validation is nested in the larger one; the validation set never depends on prep
    s.sft.prep_train_samples, s.data.validation_size = 32, 256
    smaller = train_regions(train, s)
    assert ids(smaller.validation()) < ids(validation) and smaller.validation() == validation[:256]
    s.data.validation_size = 512
    assert ids(train_regions(train, s).prep()) < ids(prep) and train_regions(train, s).validation() == validation


def test_a_budget_that_reaches_held_out_problems_is_refused():
    regions = train_regions(load_split("train"), Settings())
    assert len(regions.budget(6897)) == 6897
    with pytest.raises(SettingError, match=r"sft.train_samples=6898 reaches into the held-out problems: of the "
                       r"train split's 7473 problems the last 512 .* validation .* the 64 before them prep "
                       r".* at most 6897"):
        regions.budget(6898)
    s = Settings()
    s.data.validation_size = 7450
    with pytest.raises(SettingError, match="sft.prep_train_samples=64 and the 7450 validation problems"):
        train_regions(load_split("train"), s).prep()
    s.data.validation_size = 0
    with pytest.raises(SettingError, match="eval.split 'validation' needs held-out problems"):
        train_regions(load_split("train"), s).validation()


def test_evaluation_problems_by_split_with_provenance():
    s = Settings()
    s.eval.samples = 16
    test, prov = eval_problems(s)
    assert [p.index for p in test] == list(range(16)) and prov["split"] == "test" and prov["n"] == 16
    s.eval.split = "validation"
    val, vprov = eval_problems(s)
    assert val == train_regions(load_split("train"), s).validation()[:16]
    assert vprov["split"] == "validation" and vprov["source"] == "bundled" and vprov["budget_seed"] == 1234
    assert vprov["validation_size"] == 512 and vprov["region"] == "validation"
    digest = hashlib.sha256(",".join(str(p.index) for p in val).encode()).hexdigest()
    assert vprov["indices_sha256"] == digest and len(vprov["problems_sha256"]) == 64
    assert eval_split_size(s) == 512
    s.data.source = "gsm-symbolic"
    with pytest.raises(SettingError, match="data.source 'gsm-symbolic' is a test set"):
        eval_split_size(s)


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


GOOD = '{"question": "q", "answer": "#### 1"}'


def test_lines_end_at_newlines_only(tmp_path):
    """A JSON string may hold U+2028, U+2029, a form feed or NEL raw (str.splitlines breaks at each);
    a byte-order mark at the start and CRLF endings are ordinary JSONL."""
    question = "one\u2028two\u2029three\x0cfour\x1cfive\x85six"
    f = tmp_path / "d.jsonl"
    record = json.dumps({"question": question, "answer": "#### 7"}, ensure_ascii=False)
    f.write_bytes(("\ufeff" + record + "\r\n\r\n" + GOOD + "\r\n").encode("utf-8"))
    problems = load_split("test", str(f))
    assert [p.question for p in problems] == [question, "q"] and [p.gold for p in problems] == [7, 1]
    assert [p.question for p in load_traces(f)] == [question, "q"]


@pytest.mark.parametrize("content,needle", [
    (GOOD + "\x0c" + GOOD + "\n", "line 1 is not valid JSON (Extra data at column 38)"),
    ("\n" + "[" * 200_000 + "]" * 200_000 + "\n", "line 2 is nested too deeply to read as JSON"),
    (GOOD + '\n{"question": "x \\ud800 y", "answer": "#### 1"}\n', "line 2 holds a lone surrogate (\\ud800)"),
    ('{"question": "q", "answer": "#### 1", "notes": [{"k": "\\uDFFF"}]}\n', "line 1 holds a lone surrogate (\\udfff)"),
])
def test_lines_that_are_no_record_name_file_and_line(tmp_path, content, needle):
    f = tmp_path / "d.jsonl"
    f.write_text(content, encoding="utf-8")
    for load, path in ((lambda file: load_split("test", str(file)), "data.source"), (load_traces, "traces_file")):
        with pytest.raises(SettingError) as err:
            load(f)
        assert err.value.path == path and f"'{f}': {needle}" in str(err.value)


def test_a_surrogate_pair_is_a_character_and_an_escaped_backslash_no_surrogate(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"question": "\\ud83d\\ude00 \\\\ud800", "answer": "#### 1"}\n', encoding="utf-8")
    assert load_split("test", str(f))[0].question == "\U0001f600 \\ud800"


def test_a_bad_record_is_named_by_its_line_in_the_file(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(GOOD + "\n\n" + '{"question": 5, "answer": "#### 1"}\n')
    with pytest.raises(SettingError, match="test line 3: expected question/answer as text, got question int"):
        load_split("test", str(f))


def test_no_evaluation_set_is_the_training_file(tmp_path, monkeypatch):
    """Neither data.source nor any further evaluation set is the training data: the file, a link to it
    or a copy, whether the training data is a JSONL file, a traces file or the bundled train split."""
    import shutil

    from gsm8k_lab import data
    from gsm8k_lab.data import check_eval_data_apart

    train = tmp_path / "train.jsonl"
    train.write_text(GOOD + "\n" + GOOD + "\n")
    (tmp_path / "hard.jsonl").hardlink_to(train)
    (tmp_path / "soft.jsonl").symlink_to(train)
    shutil.copy(train, tmp_path / "copy.jsonl")
    other = tmp_path / "other.jsonl"
    other.write_text(GOOD + "\n")
    s = Settings()
    s.data.train_source = str(train)
    for same in ("train.jsonl", "hard.jsonl", "soft.jsonl", "copy.jsonl"):
        s.eval.extra_sources = ["gsm-symbolic:3", str(other), str(tmp_path / same)]
        with pytest.raises(SettingError, match="is also the training data") as err:
            check_eval_data_apart(s)
        assert err.value.path == "eval.extra_sources" and err.value.value == str(tmp_path / same)
    s.eval.extra_sources = ["gsm-symbolic:3", str(other)]
    check_eval_data_apart(s)
    s.data.train_source = "bundled"  # a traces file is training data too
    s.eval.extra_sources = [str(tmp_path / "copy.jsonl")]
    with pytest.raises(SettingError, match="eval.extra_sources .* is also the training data"):
        check_eval_data_apart(s, str(train))
    bundled = tmp_path / "bundled_train.jsonl"  # the bundled train split, when it is the training data
    shutil.copy(data._bundled_path("train"), bundled)
    for setting in ("data.source", "eval.extra_sources"):
        s.data.source, s.eval.extra_sources = (str(bundled), []) if setting == "data.source" else ("bundled", [str(bundled)])
        with pytest.raises(SettingError, match="is also the training data") as err:
            check_eval_data_apart(s)
        assert err.value.path == setting


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

    from gsm8k_lab.task import prompt_ids, trl_prompt

    for tok in (llama3_like_tokenizer, qwen2_like_tokenizer, AutoTokenizer.from_pretrained(real_tokenizer_dir)):
        prompt = build_prompt(tok, "What is 2+2?")
        assert tok(trl_prompt(tok, prompt))["input_ids"] == prompt_ids(tok, prompt)
    llama_prompt = build_prompt(llama3_like_tokenizer, "What is 2+2?")
    bos = llama3_like_tokenizer.bos_token_id
    assert llama3_like_tokenizer(llama_prompt)["input_ids"][:2] == [bos, bos]  # the doubled BOS it avoids

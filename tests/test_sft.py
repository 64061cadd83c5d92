"""SFT: training on a traces file, prep/full stages and SFT's own bad inputs (through the real command line)."""

import json
from pathlib import Path

import pytest
from conftest import EVAL, TINY_ENV

from gsm8k_lab.data import load_split


def _run_json(d):
    return json.loads((Path(d) / "run.json").read_text())


def test_sft_from_traces_file(tmp_path, run_cli, chain):
    traces = tmp_path / "traces.jsonl"
    lines = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n\n#### {2 * i}",
              "source": "grpo", "attempts": 1} for i in range(1, 6)]
    traces.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "from_traces"
    r = run_cli("train_sft.py", "--stage", "full", "--output-dir", str(out), "--base-model", str(chain / "prep"),
                "--traces-file", str(traces), *EVAL, env=TINY_ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    info = _run_json(out)
    assert info["data"]["source"] == "traces" and info["data"]["n"] == 4  # TRAIN_SAMPLES=4 of 5 lines
    assert info["status"] == "complete"
    assert info["train"]["epochs"] == 1.0  # the full stage's default
    prep = _run_json(chain / "prep")
    assert prep["train"]["epochs"] == 2.0 and prep["data"]["n"] == 4


def _prefix_share(tokenizer, problems, joint: bool) -> float:
    """Share of examples whose prompt ids (as generation sees them) start the training ids."""
    from gsm8k_lab.sft import tokenize_example
    from gsm8k_lab.task import build_prompt, format_target, prompt_ids

    ok = 0
    for p in problems:
        prompt = build_prompt(tokenizer, p.question)
        alone = prompt_ids(tokenizer, prompt)
        if joint:  # what tokenizing prompt + completion as one string gives (TRL's default)
            ids = tokenizer(prompt + format_target(p.answer), add_special_tokens=False)["input_ids"]
        else:
            ex = tokenize_example(tokenizer, p)
            ids = ex["input_ids"]
            assert ex["completion_mask"] == [0] * len(alone) + [1] * (len(ids) - len(alone))
            assert ids[-1] == tokenizer.eos_token_id
        ok += ids[: len(alone)] == alone
    return ok / len(problems)


@pytest.mark.parametrize("name", ["qwen2_like_tokenizer", "llama3_like_tokenizer", "real_smollm2"])
def test_prompt_ids_start_every_training_example(request, name, real_tokenizer_dir):
    """One token boundary for training and inference, over the whole train split."""
    from transformers import AutoTokenizer

    from gsm8k_lab.data import load_split

    tok = (AutoTokenizer.from_pretrained(real_tokenizer_dir) if name == "real_smollm2"
           else request.getfixturevalue(name))
    train = load_split("train")
    assert _prefix_share(tok, train, joint=False) == 1.0
    if name != "real_smollm2":
        # the trap is real for these pre-tokenizers: joint tokenization breaks the boundary
        assert _prefix_share(tok, train[:300], joint=True) < 0.5


def test_trl_keeps_the_pretokenized_examples(tiny_model_dir):
    """SFTTrainer trains on exactly our ids, with the loss on the completion only."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from gsm8k_lab.data import load_split
    from gsm8k_lab.sft import tokenize_example

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = [tokenize_example(tok, p) for p in load_split("train")[:2]]
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                         args=SFTConfig(output_dir="/tmp/unused-sft", completion_only_loss=True, max_length=768,
                                        use_cpu=True, report_to=[]),
                         train_dataset=Dataset.from_list(examples), processing_class=tok)
    row = trainer.train_dataset[0]
    assert row["input_ids"] == examples[0]["input_ids"]
    n_prompt = examples[0]["completion_mask"].index(1)
    assert all(x == -100 for x in row["labels"][:n_prompt]) and row["labels"][n_prompt:] == row["input_ids"][n_prompt:]


def test_max_length_holds_every_prompt_and_the_first_token_of_its_answer(tiny_model_dir):
    """The bound is TRL's: at the longest prompt + 1 it keeps every example, at the longest prompt it drops
    that one (no answer token left, no loss); below the bound prepare refuses, naming the prompt's length."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from gsm8k_lab.config import SettingError, Settings
    from gsm8k_lab.sft import check_max_length, tokenize_example
    from gsm8k_lab.task import build_prompt, prompt_ids

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    problems = load_split("train")[:3]
    longest = max(len(prompt_ids(tok, build_prompt(tok, p.question))) for p in problems)
    s = Settings()
    s.sft.max_length = longest
    with pytest.raises(SettingError, match=rf"sft.max_length={longest} cannot hold the longest training prompt "
                                           rf"\({longest} tokens\) .* use at least {longest + 1}$"):
        check_max_length(s, tok, problems)
    s.sft.max_length = longest + 1
    check_max_length(s, tok, problems)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    kept = {}
    for max_length in (longest, longest + 1):
        trainer = SFTTrainer(model=model, args=SFTConfig(output_dir="/tmp/unused-sft", completion_only_loss=True,
                                                         max_length=max_length, use_cpu=True, report_to=[]),
                             train_dataset=Dataset.from_list([tokenize_example(tok, p) for p in problems]),
                             processing_class=tok)
        kept[max_length] = len(trainer.train_dataset)
    assert kept == {longest: 2, longest + 1: 3}


def test_a_run_is_also_evaluated_on_the_generalisation_set(chain):
    info = _run_json(chain / "prep")
    extra = info["eval_extra"]["gsm-symbolic:3"]
    assert extra["n"] == 3 and 0 <= extra["accuracy"] <= 1
    assert (chain / "prep" / "debug" / extra["csv"]).is_file() and extra["csv"].endswith("_gsm-symbolic-3.csv")
    assert info["eval"]["n"] == 3 and info["status"] == "complete"
    # with the test problems the variants come from, under the same prompt, for the report's paired drop
    from gsm8k_lab.symbolic import EXPECTED_SHA256

    originals = info["eval_extra"]["gsm-symbolic-originals:3"]
    assert originals["n"] == 3 and originals["provenance"]["set"] == "originals"
    assert extra["provenance"]["variants_sha256"] == EXPECTED_SHA256 and info["eval"]["split"] == "test"
    from gsm8k_lab.evaluate import per_problem_scores

    pair = [per_problem_scores(chain / "prep" / "debug" / e["csv"]) for e in (extra, originals)]
    assert set(pair[0]) == set(pair[1]) == {11, 20, 43}  # keyed by the GSM8K test index


def test_evaluation_data_is_never_the_training_file(tmp_path, run_cli, tiny_model_dir):
    f = tmp_path / "mine.jsonl"
    f.write_text("".join(json.dumps({"question": f"{i}+{i}?", "answer": f"#### {2 * i}"}) + "\n" for i in range(8)))
    out = tmp_path / "run"
    r = run_cli("train_sft.py", "--stage", "prep", "--output-dir", str(out), "--base-model", str(tiny_model_dir),
                "--train-data", str(f), "--data", str(f), *EVAL, env=TINY_ENV)
    assert r.returncode == 2 and "is also the training data" in r.stderr
    assert not out.exists()


# --------------------------------------------------------------------------
# bad input: one line, exit 2, nothing written
# --------------------------------------------------------------------------
def _traces(tmp_path, name, content):
    f = tmp_path / name
    f.write_text(content)
    return str(f)


BAD = [
    ("train_sft.py", {"TRAIN_SAMPLES": "abc"}, ["--stage", "full"], "TRAIN_SAMPLES must be a positive integer or 'all', got 'abc'"),
    ("train_sft.py", {"TRAIN_SAMPLES": "0"}, ["--stage", "full"], "TRAIN_SAMPLES must be a positive integer"),
    ("train_sft.py", {"PREP_TRAIN_SAMPLES": "99999"}, ["--stage", "prep"], "PREP_TRAIN_SAMPLES=99999 is larger than the split"),
    ("train_sft.py", {}, ["--stage", "other"], "--stage must be one of prep, full, got 'other'"),
    ("train_sft.py", {}, ["--stage", "full", "--base-model", "{tmp}/missing"], "missing' does not exist"),
    ("train_sft.py", {}, ["--stage", "full", "--base-model", "{half}"], "is an unfinished run directory"),
    ("train_sft.py", {}, ["--stage", "full", "--traces-file", "{tmp}/none.jsonl"], "none.jsonl' does not exist"),
    ("train_sft.py", {}, ["--stage", "full", "--traces-file", "{empty}"], "is empty"),
    ("train_sft.py", {}, ["--stage", "full", "--traces-file", "{badjson}"], "line 2 is not valid JSON"),
    ("train_sft.py", {}, ["--stage", "full", "--traces-file", "{nofield}"], "line 1 needs string fields 'question' and 'answer'"),
    ("train_sft.py", {}, ["--stage", "full", "--traces-file", "{nomarker}"], "line 1 answer lacks the '#### N' marker"),
    # traces of test problems: recorded as such, or (older files) recognised by their question
    ("train_sft.py", {}, ["--stage", "full", "--traces-file", "{fromtest}"], "line 2 is a test problem"),
    ("train_sft.py", {}, ["--stage", "full", "--traces-file", "{testquestion}"], "line 1 is a test problem"),
]


@pytest.mark.parametrize("script,env,args,needle", BAD)
def test_bad_training_input(run_cli, tmp_path, tiny_model_dir, script, env, args, needle):
    half = tmp_path / "half"
    (half / "model").mkdir(parents=True)
    subs = {
        "{tmp}": str(tmp_path), "{half}": str(half),
        "{empty}": _traces(tmp_path, "empty.jsonl", ""),
        "{badjson}": _traces(tmp_path, "bad.jsonl", '{"question": "q", "answer": "#### 1"}\n{oops\n'),
        "{nofield}": _traces(tmp_path, "nofield.jsonl", '{"question": "q"}\n'),
        "{nomarker}": _traces(tmp_path, "nomarker.jsonl", '{"question": "q", "answer": "42"}\n'),
        "{fromtest}": _traces(tmp_path, "fromtest.jsonl", '{"question": "q", "answer": "#### 1", "split": "train"}\n'
                              '{"question": "r", "answer": "#### 2", "split": "test"}\n'),
        "{testquestion}": _traces(tmp_path, "testq.jsonl", json.dumps(
            {"question": load_split("test")[3].question, "answer": "#### 1", "source": "grpo"}) + "\n"),
    }
    resolved = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        resolved.append(a)
    if "--base-model" not in resolved:
        resolved += ["--base-model", str(tiny_model_dir)]
    out = tmp_path / "out"
    r = run_cli(script, "--output-dir", str(out), *resolved, env=env)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr[-2000:]
    assert not out.exists() or not any(out.iterdir())

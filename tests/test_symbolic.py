"""GSM-Symbolic: templates traced to their test problems, variants paired with originals, the pinned set."""

import hashlib
import json
import re
from random import Random

import pytest

from gsm8k_lab import symbolic
from gsm8k_lab.config import SettingError, Settings, UsageError
from gsm8k_lab.data import load_split


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GSM8K_LAB_CACHE", str(tmp_path))
    return tmp_path


def test_each_template_comes_from_its_test_problem():
    """A template's fixed words (those in every variant) match its test problem's question best, by a margin."""
    import reasoning_gym
    from reasoning_gym.arithmetic.gsm_symbolic.gsm_symbolic import tasks_ok

    generators = reasoning_gym.create_dataset("gsm_symbolic", size=1, seed=0).generators
    words = lambda text: set(re.findall(r"[a-z]+", text.lower()))  # noqa: E731
    test = [words(p.question) for p in load_split("test")]
    assert sorted(symbolic.TEMPLATE_SOURCES) == sorted(tasks_ok)  # every template reasoning-gym calls correct
    assert len(set(symbolic.TEMPLATE_SOURCES.values())) == symbolic.SIZE == 85  # one template per test problem
    for template, index in symbolic.TEMPLATE_SOURCES.items():
        fixed = set.intersection(*(words(generators[template](Random(s), 1.0)["question"]) for s in range(4)))
        scores = sorted(((len(fixed & w) / len(fixed | w), i) for i, w in enumerate(test)), reverse=True)
        assert scores[0][1] == index, template
        assert scores[0][0] - scores[1][0] > 0.04, template


def test_variants_pair_with_originals_under_the_same_instructions(cache):
    variants, originals = load_split("test", "gsm-symbolic:12"), load_split("test", "gsm-symbolic-originals:12")
    assert [p.index for p in variants] == [p.index for p in originals] == sorted(symbolic.TEMPLATE_SOURCES.values())[:12]
    test = load_split("test")
    assert all(o.question == test[o.index].question and o.gold == test[o.index].gold for o in originals)
    assert all("Do not include units" not in v.question for v in variants)  # no instruction the originals lack
    assert all(v.question != o.question and v.answer.count("####") == 1 for v, o in zip(variants, originals))
    assert len(load_split("test", "gsm-symbolic")) == len(load_split("test", "gsm-symbolic-originals")) == 85
    assert symbolic.with_originals("gsm-symbolic:12") == ["gsm-symbolic:12", "gsm-symbolic-originals:12"]
    assert symbolic.with_originals("other.jsonl") == ["other.jsonl"]


def test_the_built_set_matches_the_pinned_sha256_and_is_refused_when_it_differs(cache):
    load_split("test", "gsm-symbolic:3")
    file = cache / "gsm-symbolic-paired-seed1234.jsonl"
    assert hashlib.sha256(file.read_bytes()).hexdigest() == symbolic.EXPECTED_SHA256
    prov = json.loads(file.with_suffix(".provenance.json").read_text())
    assert prov["package"] == "reasoning-gym" and prov["seed"] == 1234 and prov["size"] == 85
    assert prov["sha256"] == symbolic.EXPECTED_SHA256
    file.write_text(file.read_text().replace("a", "b", 1))
    with pytest.raises(UsageError, match="not the pinned 9ac4655a990d"):
        load_split("test", "gsm-symbolic:3")


def test_never_training_data_and_sizes_are_checked(cache):
    with pytest.raises(SettingError, match="is an evaluation set .* never training data"):
        load_split("train", "gsm-symbolic-originals", "data.train_source")
    with pytest.raises(SettingError, match="expected gsm-symbolic or gsm-symbolic:N with N from 1 to 85"):
        load_split("test", "gsm-symbolic:lots")
    with pytest.raises(SettingError, match="N from 1 to 85"):
        load_split("test", "gsm-symbolic-originals:86")


def test_evaluation_provenance_records_the_pinned_set():
    from gsm8k_lab.data import eval_problems

    s = Settings()
    s.data.source, s.eval.samples = "gsm-symbolic-originals:5", 5
    problems, prov = eval_problems(s)
    assert [p.index for p in problems] == [11, 20, 43, 74, 99]
    assert prov["set"] == "originals" and prov["variants_sha256"] == symbolic.EXPECTED_SHA256 and prov["n"] == 5

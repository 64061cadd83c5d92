"""evaluate_model.py end to end: files, metric consistency, resume, and every bad input."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gsm8k_lab.evaluate import COLUMNS, compute_metrics, evaluate, read_rows, wilson_interval

REPO_SRC = Path(__file__).resolve().parents[1] / "src"
FAST = ["--max-new-tokens", "8", "--batch-size", "4", "--dtype", "fp32"]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_writes_rows_and_consistent_metrics(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "ev"
    r = run_cli("evaluate_model.py", "--model-path", str(tiny_model_dir), "--output-dir", str(out),
                "--output-file", "tiny.csv", *FAST, env={"EVAL_SAMPLES": "6"})
    assert r.returncode == 0, r.stderr
    rows = _rows(out / "debug" / "tiny.csv")
    assert list(rows[0].keys()) == COLUMNS
    assert [int(x["index"]) for x in rows] == list(range(6))
    metrics = json.loads((out / "debug" / "tiny_metrics.json").read_text())
    txt = (out / "debug" / "tiny_metrics.txt").read_text()
    n_correct = sum(x["correct"] == "True" for x in rows)
    assert metrics["n"] == 6
    assert metrics["accuracy"] == pytest.approx(n_correct / 6)
    assert metrics["thinking_proportion"] == pytest.approx(sum(x["has_thinking"] == "True" for x in rows) / 6)
    assert metrics["answer_proportion"] == pytest.approx(sum(x["has_answer"] == "True" for x in rows) / 6)
    assert metrics["mean_completion_tokens"] == pytest.approx(sum(int(x["completion_tokens"]) for x in rows) / 6)
    assert metrics["truncated_proportion"] == pytest.approx(sum(x["truncated"] == "True" for x in rows) / 6)
    assert (metrics["accuracy_ci95_low"], metrics["accuracy_ci95_high"]) == pytest.approx(wilson_interval(n_correct, 6))
    assert "accuracy:" in txt and "thinking_proportion:" in txt and "answer_proportion:" in txt
    assert "accuracy" in r.stdout  # the printed table
    assert "sample" not in rows[0]  # one completion per problem: the seed's columns


class _Interrupting:
    """Wraps a backend and stops (like Ctrl-C) after some batches."""

    name = "interrupting"

    def __init__(self, inner, after):
        self.inner, self.after = inner, after

    def describe(self):
        return self.name

    def generate_iter(self, prompts, params, n=1, desc=""):
        for k, item in enumerate(self.inner.generate_iter(prompts, params, desc=desc)):
            if k == self.after:
                raise KeyboardInterrupt
            yield item


def test_resume_after_kill_keeps_rows_once(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gsm8k_lab.config import GenerationSettings
    from gsm8k_lab.data import load_split
    from gsm8k_lab.generation.hf import TransformersBackend
    from gsm8k_lab.task import build_prompt

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    backend = TransformersBackend(model, tok, batch_size=2)
    problems = load_split("test")[:7]
    prompts = [build_prompt(tok, p.question) for p in problems]
    params = GenerationSettings(max_new_tokens=6)
    path = tmp_path / "debug" / "e.csv"

    with pytest.raises(KeyboardInterrupt):
        evaluate(_Interrupting(backend, after=2), problems, prompts, params, path)
    partial = read_rows(path, problems)
    assert 0 < len(partial) < 7
    # a kill can tear the last line: add half a row
    with open(path, "a") as fh:
        fh.write('99,"half a row')

    calls = []

    class Counting:
        name = "counting"

        def describe(self):
            return self.name

        def generate_iter(self, p, params, n=1, desc=""):
            calls.append(len(p))
            yield from backend.generate_iter(p, params, desc=desc)

    metrics = evaluate(Counting(), problems, prompts, params, path, resume=True)
    assert calls == [7 - len(partial)]  # only the unfinished problems are generated
    rows = _rows(path)
    assert [int(r["index"]) for r in rows] == list(range(7))  # each once, in order
    fresh = tmp_path / "fresh.csv"
    evaluate(backend, problems, prompts, params, fresh)
    assert [r["completion"] for r in rows] == [r["completion"] for r in _rows(fresh)]
    assert metrics["n"] == 7


def test_compute_metrics_and_wilson():
    rows = [{"index": i, "correct": c, "has_thinking": True, "has_answer": c, "strict_match": False,
             "flexible_match": c, "completion_tokens": 10, "truncated": False}
            for i, c in enumerate((True, False, False, True))]
    m = compute_metrics(rows)
    assert m["accuracy"] == 0.5 and m["answer_proportion"] == 0.5 and m["thinking_proportion"] == 1.0
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0


# --------------------------------------------------------------------------
# bad input: one line on stderr naming the input, exit 2, nothing written
# --------------------------------------------------------------------------
@pytest.mark.parametrize("env,args,needle", [
    ({"EVAL_SAMPLES": "abc"}, [], "EVAL_SAMPLES must be a positive integer or 'all', got 'abc'"),
    ({"EVAL_SAMPLES": "0"}, [], "EVAL_SAMPLES must be a positive integer or 'all', got '0'"),
    ({"EVAL_SAMPLES": "5000"}, [], "EVAL_SAMPLES=5000 is larger than the split (1319 problems)"),
    ({}, ["--model-path", "{tmp}/does-not-exist"], "does-not-exist' does not exist"),
    ({}, ["--model-path", "no-such-org/no-such-model"], "is not a local path"),
    ({}, ["--model-path", "{empty}"], "holds no model"),
    ({}, ["--output-file", "sub/x.csv"], "--output-file must be a file name without a directory part"),
])
def test_bad_input(run_cli, tmp_path, tiny_model_dir, env, args, needle):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.replace("{empty}", str(empty)).replace("{tmp}", str(tmp_path)) for a in args]
    if "--model-path" not in args:
        args += ["--model-path", str(tiny_model_dir)]
    out = tmp_path / "out"
    r = run_cli("evaluate_model.py", "--output-dir", str(out), "--output-file", "e.csv", *args, env=env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (out / "debug").exists()


def test_unwritable_output_dir(run_cli, tmp_path, tiny_model_dir):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that can write anywhere")
        r = run_cli("evaluate_model.py", "--model-path", str(tiny_model_dir), "--output-dir",
                    str(locked / "ev"), "--output-file", "e.csv")
        assert r.returncode == 2 and "is not writable" in r.stderr
    finally:
        os.chmod(locked, 0o700)


def test_output_dir_is_a_file(run_cli, tmp_path, tiny_model_dir):
    f = tmp_path / "file"
    f.write_text("x")
    r = run_cli("evaluate_model.py", "--model-path", str(tiny_model_dir), "--output-dir", str(f / "ev"),
                "--output-file", "e.csv")
    assert r.returncode == 2 and "is not a directory" in r.stderr
    assert f.read_text() == "x"


def test_existing_output_needs_resume_or_overwrite(run_cli, tmp_path, tiny_model_dir):
    debug = tmp_path / "ev" / "debug"
    debug.mkdir(parents=True)
    (debug / "e.csv").write_text("keep me")
    r = run_cli("evaluate_model.py", "--model-path", str(tiny_model_dir), "--output-dir", str(tmp_path / "ev"),
                "--output-file", "e.csv")
    assert r.returncode == 2 and "already exists; pass --resume" in r.stderr
    assert (debug / "e.csv").read_text() == "keep me"


def test_corrupted_bundled_data_via_cli(run_cli, tmp_path, tiny_model_dir, monkeypatch):
    # a copy of the package with one flipped byte in test.jsonl
    import shutil

    import gsm8k_lab

    pkg = Path(gsm8k_lab.__file__).parent
    copy = tmp_path / "site" / "gsm8k_lab"
    shutil.copytree(pkg, copy, ignore=shutil.ignore_patterns("__pycache__"))
    data = copy / "data" / "gsm8k" / "test.jsonl"
    raw = bytearray(data.read_bytes())
    raw[100] = ord("X") if raw[100] != ord("X") else ord("Y")
    data.write_bytes(bytes(raw))
    script = tmp_path / "site" / "evaluate_model.py"  # beside the copy, so the copy is imported
    shutil.copy(REPO_SRC / "evaluate_model.py", script)
    r = subprocess.run([sys.executable, str(script), "--model-path", str(tiny_model_dir), "--output-dir",
                        str(tmp_path / "ev"), "--output-file", "e.csv"], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "is corrupted: sha256" in r.stderr
    assert not (tmp_path / "ev" / "debug").exists()


def test_real_embedded_default_answers_a_question():
    """The shipped SmolLM2-135M-Instruct loads offline and writes an answer."""
    from gsm8k_lab.config import GenerationSettings, Settings
    from gsm8k_lab.generation import generate, make_backend
    from gsm8k_lab.models import resolve_model
    from gsm8k_lab.task import build_prompt

    ref = resolve_model(None)
    backend = make_backend(Settings(), ref)
    prompt = build_prompt(backend.tokenizer, "What is 3 + 4?")
    (comps,) = generate(backend, [prompt], GenerationSettings(max_new_tokens=48, batch_size=1))
    assert comps[0].n_tokens > 0 and comps[0].text.strip()
    assert len(backend.tokenizer) == 49152


# --------------------------------------------------------------------------
# torn files, a full disk, stale metrics
# --------------------------------------------------------------------------
class _Echo:
    """A deterministic backend: each completion depends on its prompt only (multi-byte text included)."""

    name = "echo"

    def describe(self):
        return self.name

    def generate_iter(self, prompts, params, n=1, desc=""):
        from gsm8k_lab.generation import Completion

        for i, p in reversed(list(enumerate(prompts))):  # finished out of order, as length-sorted batches are
            text = f"héllo — {p[::-1]} ✓<end_working_out><SOLUTION>{len(p)}</SOLUTION>"
            yield [i], [[Completion(text, len(p) % 7 + 1, False)]]


def _tiny_problems():
    from gsm8k_lab.data import Problem

    qs = ["Ünïcode «q» one?", "plain two", 'quote "three", comma']
    return [Problem(i, q, f"#### {len(q)}", float(len(q))) for i, q in enumerate(qs)]


def test_a_csv_torn_at_any_byte_resumes_to_the_uninterrupted_result(tmp_path):
    from gsm8k_lab.config import GenerationSettings

    problems = _tiny_problems()
    prompts = [p.question for p in problems]
    gen = GenerationSettings()
    full = tmp_path / "full" / "e.csv"
    want = evaluate(_Echo(), problems, prompts, gen, full)
    want_bytes = full.read_bytes()
    # the file as a run leaves it midway: header, then rows in the order they finished
    rows = _rows(full)
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(reversed(rows))
    midway = buf.getvalue().encode("utf-8")
    assert any(b >= 0x80 for b in midway)  # multi-byte characters to tear
    path = tmp_path / "torn" / "e.csv"
    path.parent.mkdir()
    for cut in range(len(midway) + 1):
        path.write_bytes(midway[:cut])
        got = evaluate(_Echo(), problems, prompts, gen, path, resume=True)
        assert path.read_bytes() == want_bytes, cut
        assert {k: got[k] for k in ("n", "accuracy", "answer_proportion")} == {
            k: want[k] for k in ("n", "accuracy", "answer_proportion")}


def test_a_full_disk_gives_one_line_and_resume_completes(tmp_path, tiny_model_dir, monkeypatch, capsys):
    import errno as errno_

    from gsm8k_lab import cli
    from gsm8k_lab import evaluate as evaluate_module

    real_fsync, calls = os.fsync, []

    def full_disk(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno_.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setenv("EVAL_SAMPLES", "6")
    out = tmp_path / "ev"
    args = ["evaluate", "--model-path", str(tiny_model_dir), "--output-dir", str(out), "--output-file", "e.csv",
            "--batch-size", "2", *FAST[:2], "--dtype", "fp32"]
    monkeypatch.setattr(evaluate_module.os, "fsync", full_disk)
    assert cli.main(args) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and f"no space left on the device writing {out / 'debug' / 'e.csv'}" in err[0]
    assert "--resume" in err[0]
    monkeypatch.setattr(evaluate_module.os, "fsync", real_fsync)
    assert cli.main([*args, "--resume"]) == 0
    assert [int(r["index"]) for r in _rows(out / "debug" / "e.csv")] == list(range(6))
    clean = tmp_path / "clean"
    assert cli.main([a if a != str(out) else str(clean) for a in args]) == 0
    assert _rows(out / "debug" / "e.csv") == _rows(clean / "debug" / "e.csv")


def test_an_interrupted_rerun_leaves_no_stale_metrics(tmp_path):
    from gsm8k_lab.config import GenerationSettings

    problems = _tiny_problems()
    path = tmp_path / "debug" / "e.csv"
    evaluate(_Echo(), problems, [p.question for p in problems], GenerationSettings(), path)
    assert (tmp_path / "debug" / "e_metrics.json").is_file()
    with pytest.raises(KeyboardInterrupt):
        evaluate(_Interrupting(_Echo(), after=1), problems, [p.question for p in problems], GenerationSettings(), path)
    assert not (tmp_path / "debug" / "e_metrics.json").exists() and not (tmp_path / "debug" / "e_metrics.txt").exists()


def test_a_kill_while_an_overwrite_swaps_in_leaves_no_settings_beside_other_rows(tmp_path, tiny_model_dir,
                                                                                 monkeypatch):
    """The old settings record goes before the new rows take the CSV's place: a kill in between leaves
    rows without a record, and a resume of rows whose settings cannot be read is refused."""
    from gsm8k_lab import evaluate as evaluate_module
    from gsm8k_lab.config import GenerationSettings, SettingError, Settings

    problems = _tiny_problems()
    prompts = [p.question for p in problems]
    path = tmp_path / "debug" / "e.csv"
    evaluate(_Echo(), problems, prompts, GenerationSettings(), path, fingerprint={"made by": "the old settings"})
    replace = os.replace

    def killed_at_the_csv(src, dst):
        if Path(dst) == path:
            raise KeyboardInterrupt
        return replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(evaluate_module.os, "replace", killed_at_the_csv)
        with pytest.raises(KeyboardInterrupt):
            evaluate(_Echo(), problems, prompts, GenerationSettings(), path, fingerprint={"made by": "new settings"})
    assert path.is_file() and not evaluate_module.settings_path(path).exists()
    s = Settings()
    s.model.name, s.eval.samples = str(tiny_model_dir), 3
    with pytest.raises(SettingError, match="e_settings.json is missing: cannot tell which settings made it; pass "
                                           "overwrite=True to start again"):
        evaluate_module.prepare_evaluation(s, tmp_path, "e.csv", resume=True)


def test_results_are_readable_by_the_team(tmp_path, run_cli, tiny_model_dir):
    import stat

    out = tmp_path / "ev"
    r = run_cli("evaluate_model.py", "--model-path", str(tiny_model_dir), "--output-dir", str(out),
                "--output-file", "e.csv", *FAST, env={"EVAL_SAMPLES": "2"})
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("e.csv", "e_metrics.txt", "e_metrics.json", "e_settings.json"):
        mode = stat.S_IMODE((out / "debug" / name).stat().st_mode)
        assert mode & 0o044 == 0o044, (name, oct(mode))  # umask 022: readable by group and others


# --------------------------------------------------------------------------
# sampled evaluation: K completions per problem
# --------------------------------------------------------------------------
def _sample_rows(table):
    """table: per problem, (gold, [(extracted, correct, has_answer), ...])."""
    rows = []
    for i, (gold, samples) in enumerate(table):
        for k, (extracted, correct, answer) in enumerate(samples):
            rows.append({"index": i, "sample": k, "gold_answer": str(gold), "extracted_answer": extracted,
                         "correct": correct, "has_thinking": True, "has_answer": answer, "strict_match": False,
                         "flexible_match": False, "completion_tokens": 10, "truncated": False})
    return rows


def test_sampled_metrics_by_hand():
    table = [
        (7, [("7", True, True), ("3", False, True), ("7", True, True), ("", False, False)]),  # 2 of 4; vote 7
        (5, [("4", False, True), ("4", False, True), ("5", True, True), ("", False, False)]),  # 1 of 4; vote 4
        (9, [("1", False, True), ("2", False, True), ("", False, False), ("", False, False)]),  # 0 of 4
    ]
    m = compute_metrics(_sample_rows(table), samples=4)
    assert m["n"] == 3 and m["samples_per_problem"] == 4
    assert m["accuracy"] == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)  # mean@4
    # pass@1 = mean@K; pass@2 per problem: 1 - C(2,2)/C(4,2) = 5/6, 1 - C(3,2)/C(4,2) = 1/2, 0
    assert m["pass_at_k"]["1"]["value"] == pytest.approx(m["accuracy"])
    assert m["pass_at_k"]["2"]["value"] == pytest.approx((5 / 6 + 1 / 2 + 0) / 3)
    assert m["pass_at_k"]["4"]["value"] == pytest.approx(2 / 3)
    assert m["majority_accuracy"] == pytest.approx(1 / 3)  # only the first problem's vote is right
    assert m["answer_proportion"] == pytest.approx((3 / 4 + 3 / 4 + 2 / 4) / 3)
    lo, hi = m["accuracy_ci95_low"], m["accuracy_ci95_high"]
    assert lo <= m["accuracy"] <= hi
    assert m == compute_metrics(_sample_rows(table), samples=4)  # seeded: the same intervals every time


def test_sampled_evaluation_through_the_cli(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "ev"
    r = run_cli("evaluate_model.py", "--model-path", str(tiny_model_dir), "--output-dir", str(out), "--output-file",
                "s.csv", "--samples-per-problem", "4", "--temperature", "1.0", "--seed", "3", *FAST,
                env={"EVAL_SAMPLES": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    rows = _rows(out / "debug" / "s.csv")
    assert list(rows[0]) == ["index", "sample", *COLUMNS[1:]]
    assert [(int(x["index"]), int(x["sample"])) for x in rows] == [(i, k) for i in range(3) for k in range(4)]
    m = json.loads((out / "debug" / "s_metrics.json").read_text())
    assert m["samples_per_problem"] == 4 and set(m["pass_at_k"]) == {"1", "2", "4"}
    assert m["accuracy"] == pytest.approx(sum(x["correct"] == "True" for x in rows) / 12)
    assert "pass@4" in r.stdout
    r = run_cli("evaluate_model.py", "--model-path", str(tiny_model_dir), "--output-dir", str(tmp_path / "g"),
                "--output-file", "g.csv", "--samples-per-problem", "4", *FAST, env={"EVAL_SAMPLES": "3"})
    assert r.returncode == 2 and "--temperature must be > 0 when several completions are sampled" in r.stderr


class _EchoN(_Echo):
    def generate_iter(self, prompts, params, n=1, desc=""):
        from gsm8k_lab.generation import Completion

        for i, p in reversed(list(enumerate(prompts))):
            yield [i], [[Completion(f"é{k}<end_working_out><SOLUTION>{len(p) + k}</SOLUTION>", k + 1, False)
                         for k in range(n)]]


def test_sampled_csv_torn_at_any_byte_resumes_whole_problems(tmp_path):
    from gsm8k_lab.config import GenerationSettings

    problems = _tiny_problems()
    prompts = [p.question for p in problems]
    gen = GenerationSettings(temperature=1.0)
    full = tmp_path / "full" / "e.csv"
    evaluate(_EchoN(), problems, prompts, gen, full, samples=3)
    want = full.read_bytes()
    midway = want  # rows in problem order; a tear anywhere may split a problem's samples
    path = tmp_path / "torn" / "e.csv"
    path.parent.mkdir()
    for cut in range(0, len(midway) + 1, 3):
        path.write_bytes(midway[:cut])
        evaluate(_EchoN(), problems, prompts, gen, path, resume=True, samples=3)
        assert path.read_bytes() == want, cut


def test_an_int8_evaluation_says_so_in_its_metrics(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "q"
    r = run_cli("evaluate_model.py", "--model-path", str(tiny_model_dir), "--output-dir", str(out),
                "--output-file", "q.csv", "--quantize", "int8", *FAST, env={"EVAL_SAMPLES": "3"})
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "debug" / "q_metrics.json").read_text())
    assert metrics["n"] == 3
    assert "float32, int8 dynamic linear layers" in metrics["backend"]


def test_majority_vote_reads_exact_values_back_from_the_rows():
    """2880000.4 twice is wrong (pass@K 0), and so is its majority vote: the rows keep exact values,
    not 6 significant digits that would read back as 2880000."""
    from gsm8k_lab.data import Problem
    from gsm8k_lab.evaluate import score
    from gsm8k_lab.generation import Completion

    problem = Problem(0, "q", "x\n#### 2,880,000", 2880000.0)
    half = Problem(1, "q2", "x\n#### 1234567.5", 1234567.5)
    rows = [score(problem, Completion(f"x<end_working_out><SOLUTION>{v}</SOLUTION>", 5, False), k)
            for k, v in enumerate(["2880000.4", "2880000.4"])]
    rows += [score(half, Completion(f"x<end_working_out><SOLUTION>{v}</SOLUTION>", 5, False), k)
             for k, v in enumerate(["1,234,567.5", "1234567.5"])]
    assert [r["extracted_answer"] for r in rows] == ["2880000.4", "2880000.4", "1234567.5", "1234567.5"]
    assert rows[2]["gold_answer"] == "1234567.5"
    m = compute_metrics(rows, samples=2)  # the vote reads the rows' extracted_answer strings
    assert m["pass_at_k"]["2"]["value"] == pytest.approx(0.5)  # problem 0 never right, problem 1 always
    assert m["majority_accuracy"] == pytest.approx(0.5)


def test_validation_split_is_recorded_and_a_resume_must_keep_it(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from gsm8k_lab.cli import main
    from gsm8k_lab.config import Settings
    from gsm8k_lab.data import load_split, train_regions

    monkeypatch.setenv("EVAL_SAMPLES", "2")
    args = ["evaluate", "--model-path", str(tiny_model_dir), "--output-dir", str(tmp_path), "--output-file", "v.csv",
            "--max-new-tokens", "4", "--dtype", "fp32"]
    assert main([*args, "--eval-split", "validation"]) == 0
    metrics = json.loads((tmp_path / "debug" / "v_metrics.json").read_text())
    validation = train_regions(load_split("train"), Settings()).validation(2)
    assert metrics["split"] == "validation" and metrics["provenance"]["region"] == "validation"
    assert sorted(int(r["index"]) for r in _rows(tmp_path / "debug" / "v.csv")) == sorted(p.index for p in validation)
    assert [r["question"] for r in _rows(tmp_path / "debug" / "v.csv")] == \
        [p.question for p in sorted(validation, key=lambda p: p.index)]
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2  # the same file continued on test problems: refused
    assert "eval.split validation (then) vs (unset) (now)" in capsys.readouterr().err


def _state(folder):
    """Every file under ``folder`` with its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_an_overwrite_replaces_a_finished_evaluation_only_once_it_has_rows(tmp_path, evaluated, tiny_model_dir,
                                                                          monkeypatch):
    """A finished evaluation; ``--overwrite`` whose engine fails before its first rows leaves every
    file as it was; a resume with its own settings changes nothing (metrics not even rewritten);
    an overwrite that gets through replaces it."""
    import shutil

    from conftest import EVALUATED_ARGS, TINY_ENV

    from gsm8k_lab import cli
    from gsm8k_lab.generation.hf import TransformersBackend

    for k, v in TINY_ENV.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "ev"
    shutil.copytree(evaluated, out)
    before = _state(out)
    own = ["evaluate", "--model-path", str(tiny_model_dir), "--output-dir", str(out), "--output-file", "e.csv",
           *EVALUATED_ARGS]
    other = [*own, "--max-new-tokens", "4", "--overwrite"]

    def engine_fails(self, *args, **kwargs):
        raise RuntimeError("the engine failed")
        yield

    with monkeypatch.context() as m:
        m.setattr(TransformersBackend, "generate_iter", engine_fails)
        with pytest.raises(RuntimeError, match="the engine failed"):
            cli.main(other)
    assert _state(out) == before
    assert cli.main([*own, "--resume"]) == 0
    assert _state(out) == before
    assert cli.main(other) == 0
    recorded = json.loads((out / "debug" / "e_settings.json").read_text())
    assert recorded["eval.generation.max_new_tokens"] == 4
    assert sorted(p.name for p in (out / "debug").iterdir()) == sorted(Path(p).name for p in before)

"""Rejection sampling against a scripted backend: kept traces, fallbacks, attempts, stats, rounds, resume."""

import json
import subprocess
import sys

import pytest

from gsm8k_lab.config import GenerationSettings
from gsm8k_lab.data import Problem, load_traces
from gsm8k_lab.generation import Completion
from gsm8k_lab.task import format_target
from gsm8k_lab.traces import (
    TraceJob,
    completion_to_trace,
    progress_path,
    run_rejection_sampling,
    settings_path,
    stats_path,
)

RIGHT = "{a} + {a} = {s}<end_working_out><SOLUTION>{s}</SOLUTION>"
WRONG = "{a} + {a} = 0<end_working_out><SOLUTION>0</SOLUTION>"
BROKEN = "the answer is {s}"  # correct number, out of format: rejected


class Scripted:
    """Answers prompt p in attempt k (its key is [question, k]) with script[p][k - 1], like a seeded
    model whose k-th sample does not depend on the batch; records every call (a round, or a part of one)."""

    name = "scripted"

    def __init__(self, script, batch_size=2, stop_after_batches=None):
        self.script, self.batch_size = script, batch_size
        self.rounds: list[list[str]] = []
        self.stop_after, self.batches = stop_after_batches, 0

    def describe(self):
        return self.name

    def generate_iter(self, prompts, params, n=1, desc="", keys=None):
        assert params.seed == BASE_SEED  # the settings' seed; the attempt is in the key
        self.rounds.append(list(prompts))
        for start in range(0, len(prompts), self.batch_size):
            if self.stop_after is not None and self.batches >= self.stop_after:
                raise KeyboardInterrupt
            self.batches += 1
            idx, comps = [], []
            for j in range(start, min(start + self.batch_size, len(prompts))):
                p = prompts[j]
                question, k = keys[j]
                assert question == p  # the test's prompts are the questions
                idx.append(j)
                comps.append([Completion(self.answer(p, k, prompts), 10, False)])
            yield idx, comps

    def answer(self, prompt, attempt, batch):
        return self.script[prompt][attempt - 1]


def _problems(n):
    return [Problem(i, f"What is {i + 1} + {i + 1}?", f"{i + 1}+{i + 1}=<<{i + 1}+{i + 1}={2 * i + 2}>>{2 * i + 2}\n#### {2 * i + 2}", 2 * i + 2)
            for i in range(n)]


def _script(problems, plans):
    """plans[i] = list of 'R' (right), 'W' (wrong), 'B' (broken format)."""
    out = {}
    for p, plan in zip(problems, plans):
        a, s = p.index + 1, int(p.gold)
        out[p.question] = [{"R": RIGHT, "W": WRONG, "B": BROKEN}[c].format(a=a, s=s) for c in plan]
    return out


BASE_SEED = 5
PLANS = ["R", "WR", "WWW", "BWR", "WBW"]  # max_attempts 3


@pytest.fixture
def job(tmp_path):
    problems = _problems(5)
    return TraceJob(problems, [p.question for p in problems], tmp_path / "t.jsonl", 3,
                    GenerationSettings(temperature=0.8, seed=BASE_SEED))


def test_kept_traces_fallbacks_attempts_and_stats(job):
    backend = Scripted(_script(job.problems, PLANS))
    stats = run_rejection_sampling(backend, job)
    records = [json.loads(x) for x in job.output_path.read_text().splitlines()]
    assert [r["source"] for r in records] == ["grpo", "grpo", "fallback", "grpo", "fallback"]
    assert [r["attempts"] for r in records] == [1, 2, 3, 3, 3]
    assert {r["split"] for r in records} == {"train"}  # where the problems came from, on every line
    assert records[0]["answer"] == "1 + 1 = 2\n\n#### 2"
    assert records[2]["answer"] == job.problems[2].answer  # the original solution
    # rounds resample only the unsolved problems
    assert [len(r) for r in backend.rounds] == [5, 4, 3]
    assert backend.rounds[1] == [job.problems[i].question for i in (1, 2, 3, 4)]
    assert stats == {
        "total_samples": 5, "grpo_successes": 3, "fallback_count": 2, "success_rate": 0.6,
        "avg_attempts_for_successes": pytest.approx((1 + 2 + 3) / 3),
        "avg_attempts_overall": pytest.approx((1 + 2 + 3 + 3 + 3) / 5),
        "tokens_generated": (5 + 4 + 3) * 10,  # every draw's completion tokens: what the traces cost
    }
    assert json.loads(stats_path(job.output_path).read_text()) == stats
    assert stats["grpo_successes"] + stats["fallback_count"] == stats["total_samples"]
    assert not progress_path(job.output_path).exists()
    # the file is valid input for train_sft.py --traces-file
    loaded = load_traces(job.output_path)
    assert [p.gold for p in loaded] == [p.gold for p in job.problems]
    assert format_target(loaded[0].answer) == "1 + 1 = 2<end_working_out><SOLUTION>2</SOLUTION>"


def test_all_solved_first_round_stops_early(job):
    backend = Scripted(_script(job.problems, ["R"] * 5))
    stats = run_rejection_sampling(backend, job)
    assert len(backend.rounds) == 1 and stats["success_rate"] == 1.0
    assert stats["avg_attempts_overall"] == 1.0


def test_none_solved(job):
    stats = run_rejection_sampling(Scripted(_script(job.problems, ["WWW"] * 5)), job)
    assert stats["grpo_successes"] == 0 and stats["avg_attempts_for_successes"] is None
    assert stats["avg_attempts_overall"] == 3.0


def test_resume_after_kill(job):
    script = _script(job.problems, PLANS)
    killed = Scripted(script, stop_after_batches=4)  # dies in round 2
    with pytest.raises(KeyboardInterrupt):
        run_rejection_sampling(killed, job)
    assert progress_path(job.output_path).exists() and not job.output_path.exists()
    resumed = Scripted(script)
    stats = run_rejection_sampling(resumed, job, resume=True)
    assert stats["grpo_successes"] == 3 and stats["fallback_count"] == 2
    assert stats["tokens_generated"] == (5 + 4 + 3) * 10  # draws before the kill counted once, from the progress
    assert job.problems[0].question not in resumed.rounds[0]  # solved before the kill: not resampled
    records = [json.loads(x) for x in job.output_path.read_text().splitlines()]
    assert [r["attempts"] for r in records] == [1, 2, 3, 3, 3]
    assert {r["split"] for r in records} == {"train"}  # where the problems came from, on every line


def test_completion_to_trace_strips_tags():
    t = completion_to_trace("step a\n#### not a marker<end_working_out><SOLUTION>$1,200</SOLUTION>")
    assert t == "step a\n not a marker\n\n#### 1200"


@pytest.mark.parametrize("args,needle", [
    (["--max-attempts", "0"], "--max-attempts must be a positive integer"),
    (["--temperature", "-1"], "--temperature must be > 0"),
    (["--num-samples", "99999"], "--num-samples=99999 is larger than the train split (7473 problems)"),
    (["--dataset-split", "dev"], "--dataset-split must be one of train, test, got 'dev'"),
    (["--grpo-model", "{model}"], "is not a run directory"),
])
def test_bad_cli_input(run_cli, tmp_path, tiny_model_dir, args, needle):
    args = [a.replace("{model}", str(tiny_model_dir)) for a in args]
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir)}))
    if "--grpo-model" not in args:
        args += ["--grpo-model", str(run)]
    out = tmp_path / "out"
    r = run_cli("generate_traces.py", "--output-dir", str(out), *args)
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr
    assert not out.exists()


def test_a_progress_file_torn_at_any_byte_resumes_to_the_uninterrupted_result(job, tmp_path):
    script = _script(job.problems, PLANS)
    want_stats = run_rejection_sampling(Scripted(script), job)
    want = job.output_path.read_bytes()
    job.output_path.unlink()
    stats_path(job.output_path).unlink()
    with pytest.raises(KeyboardInterrupt):  # a real progress file, killed in round 3
        run_rejection_sampling(Scripted(script, stop_after_batches=6), job)
    midway = progress_path(job.output_path).read_bytes()
    assert midway.count(b"\n") >= 4
    for cut in range(len(midway) + 1):
        progress_path(job.output_path).write_bytes(midway[:cut])
        job.output_path.unlink(missing_ok=True)
        assert run_rejection_sampling(Scripted(script), job, resume=True) == want_stats, cut
        assert job.output_path.read_bytes() == want, cut
        assert not progress_path(job.output_path).exists()


def test_a_kill_between_the_stats_and_the_traces_file_is_resumed(job, monkeypatch):
    from gsm8k_lab import traces

    script = _script(job.problems, PLANS)
    real = traces.atomic_write_text

    def killed_at_the_traces_file(path, text):
        if path == job.output_path:
            raise KeyboardInterrupt
        return real(path, text)

    monkeypatch.setattr(traces, "atomic_write_text", killed_at_the_traces_file)
    with pytest.raises(KeyboardInterrupt):
        run_rejection_sampling(Scripted(script), job)
    assert stats_path(job.output_path).exists() and progress_path(job.output_path).exists()
    assert not job.output_path.exists()  # unfinished: the progress file says so
    monkeypatch.setattr(traces, "atomic_write_text", real)
    resumed = Scripted(script)
    stats = run_rejection_sampling(resumed, job, resume=True)
    assert resumed.rounds == []  # every round was done: only the files are written
    assert stats["grpo_successes"] == 3 and job.output_path.exists() and not progress_path(job.output_path).exists()


def test_a_resume_with_other_settings_is_refused(run_cli, tmp_path, chain):
    out = tmp_path / "t"
    base = ["--grpo-model", str(chain / "grpo"), "--output-dir", str(out), "--num-samples", "3",
            "--max-attempts", "2", "--max-new-tokens", "4", "--dtype", "fp32"]
    progress = out / "grpo_traces_train.jsonl.progress.jsonl"
    out.mkdir()
    from gsm8k_lab.config import Settings
    from gsm8k_lab.traces import prepare_traces

    s = Settings()
    s.model.name, s.traces.num_samples, s.traces.max_attempts = str(chain / "grpo"), 3, 2
    s.traces.generation.max_new_tokens = 4
    _, _, fingerprint = prepare_traces(s, out, "grpo_traces_train.jsonl", resume=False, overwrite=False)
    progress.write_text(json.dumps({"settings": fingerprint}) + "\n" + json.dumps({"round_done": 1}) + "\n")
    before = progress.read_bytes()
    r = run_cli("generate_traces.py", *base, "--resume", "--temperature", "0.5")
    assert r.returncode == 2 and "traces.generation.temperature 0.8 (then) vs 0.5 (now)" in r.stderr
    assert progress.read_bytes() == before
    r = run_cli("generate_traces.py", *base, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "grpo_traces_train.jsonl.stats.json").read_text())["total_samples"] == 3


def test_traces_of_test_problems_say_so_on_every_line(job):
    job.split = "test"
    run_rejection_sampling(Scripted(_script(job.problems, PLANS)), job)
    records = [json.loads(x) for x in job.output_path.read_text().splitlines()]
    assert {r["split"] for r in records} == {"test"}


def test_traces_on_train_never_cover_held_out_problems(chain, tmp_path):
    from gsm8k_lab.config import SettingError, Settings
    from gsm8k_lab.data import load_split, train_regions
    from gsm8k_lab.traces import prepare_traces

    s = Settings()
    s.model.name = str(chain / "grpo")
    problems, _, _ = prepare_traces(s, tmp_path, "t.jsonl", resume=False, overwrite=False)  # 'all' of train
    regions = train_regions(load_split("train"), s)
    assert problems == regions.budget(None) and len(problems) == 7473 - 512 - 64
    s.traces.num_samples = 7000
    with pytest.raises(SettingError, match="traces.num_samples=7000 reaches into the held-out problems"):
        prepare_traces(s, tmp_path, "t.jsonl", resume=False, overwrite=False)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_an_overwrite_changes_nothing_until_its_first_batch_is_on_disk(job):
    """A finished traces run, then a new run over it (overwrite) that fails before its first batch:
    every old file is byte-identical and nothing else is left; one that fails after its first
    batch has made its own progress file the one a resume continues."""
    script = _script(job.problems, PLANS)
    run_rejection_sampling(Scripted(script), job)
    before = _files(job.output_path.parent)
    with pytest.raises(KeyboardInterrupt):
        run_rejection_sampling(Scripted(script, stop_after_batches=0), job)
    assert _files(job.output_path.parent) == before
    with pytest.raises(KeyboardInterrupt):
        run_rejection_sampling(Scripted(script, stop_after_batches=1), job)
    after = _files(job.output_path.parent)
    assert sorted(after) == sorted([*before, progress_path(job.output_path).name])
    assert all(after[name] == data for name, data in before.items())  # the old traces stay until the end
    stats = run_rejection_sampling(Scripted(script), job, resume=True)
    assert stats == json.loads(before[stats_path(job.output_path).name])


# --------------------------------------------------------------------------
# a kill anywhere, then --resume: the same bytes as an uninterrupted run
# --------------------------------------------------------------------------
def _sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digests(out):
    return _sha(out), _sha(stats_path(out))


class BatchSensitive(Scripted):
    """A model whose answers depend on the other prompts of the call, as bf16 logits do in their last bits:
    a resume reproduces a draw only by sampling its part of the round with the same neighbours."""

    def answer(self, prompt, attempt, batch):
        import hashlib

        digest = hashlib.sha256(repr((prompt, attempt, sorted(batch))).encode()).digest()
        plan = "R" if digest[0] % 3 == 0 else "W"
        return self.script[prompt][plan == "W"]  # script[p] = [right, wrong]


def _killed_then_resumed(make_backend, job, kills):
    """One run killed after each count of delivered batches in turn, resumed each time, then finished."""
    for count in kills:
        with pytest.raises(KeyboardInterrupt):
            run_rejection_sampling(make_backend(count), job, resume=True)
        assert progress_path(job.output_path).exists() and not job.output_path.exists()
    run_rejection_sampling(make_backend(None), job, resume=True)
    assert not progress_path(job.output_path).exists()
    return _digests(job.output_path)


@pytest.mark.parametrize("kills", [[4], [7, 4], [11, 3, 1]])
def test_a_killed_part_of_a_round_is_sampled_again_whole(tmp_path, monkeypatch, kills):
    """Rounds go in parts (ROUND_CHUNK problems); a resume skips the parts whose outcomes are all on disk and
    samples the part a kill cut short again with all its problems, so every draw sees the neighbours it had."""
    from gsm8k_lab import traces

    monkeypatch.setattr(traces, "ROUND_CHUNK", 5)
    problems = _problems(12)
    script = _script(problems, ["RW"] * 12)
    job = TraceJob(problems, [p.question for p in problems], tmp_path / "a" / "t.jsonl", 3,
                   GenerationSettings(temperature=0.8, seed=BASE_SEED))
    full = BatchSensitive(script)
    run_rejection_sampling(full, job)
    want = _digests(job.output_path)
    assert len(full.rounds[0]) == 5 and len(full.rounds) >= 5  # parts of 5, over more than one round
    stats = json.loads(stats_path(job.output_path).read_text())
    assert 0 < stats["grpo_successes"] < 12  # the outcomes depend on what was drawn
    job.output_path = tmp_path / "b" / "t.jsonl"
    backends = []

    def make(count):
        backends.append(BatchSensitive(script, stop_after_batches=count))
        return backends[-1]

    assert _killed_then_resumed(make, job, kills) == want
    # a resume calls the backend with whole parts only, each one a part the uninterrupted run sampled
    assert all(part in full.rounds for b in backends for part in b.rounds)


class Judge:
    """Acceptance by a hash of the sampled text (a tiny random model never solves a problem): about a third
    of the draws are accepted, and which ones depends on every sampled token."""

    def __init__(self):
        self.seen = []

    def accept(self, text, gold):
        import hashlib

        self.seen.append(text)
        return hashlib.sha256(text.encode()).digest()[0] % 3 == 0

    @staticmethod
    def trace(text):
        return f"{text.strip()}\n\n#### 0"


class KilledAfter:
    """A backend that dies (KeyboardInterrupt) when it has delivered ``count`` batches."""

    def __init__(self, backend, count):
        self.backend, self.left, self.name = backend, count, backend.name

    def generate_iter(self, *args, **kwargs):
        inner = self.backend.generate_iter(*args, **kwargs)
        try:
            for batch in inner:
                if self.left == 0:
                    raise KeyboardInterrupt
                self.left -= 1
                yield batch
        finally:
            inner.close()


@pytest.mark.parametrize("kills", [[8, 11], [2, 30], [19, 6, 14]])
def test_traces_killed_anywhere_resume_to_the_same_bytes(tiny_model_dir, tmp_path, monkeypatch, kills):
    """The real sampler (the tiny model, continuous batching, 4 rows) under a judge that accepts by the sampled
    text: killed at two or three points (within parts, between parts, in later rounds) and resumed, the
    traces and stats files have the sha256 of an uninterrupted run."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gsm8k_lab import traces
    from gsm8k_lab.generation.hf import TransformersBackend
    from gsm8k_lab.task import build_prompt

    judge = Judge()
    monkeypatch.setattr(traces, "accept", judge.accept)
    monkeypatch.setattr(traces, "completion_to_trace", judge.trace)
    monkeypatch.setattr(traces, "ROUND_CHUNK", 10)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    backend = TransformersBackend(model, tok, batch_size=4)
    assert backend.engine == "refill"
    problems = _problems(24)
    gen = GenerationSettings(temperature=1.0, top_p=0.95, max_new_tokens=6, seed=BASE_SEED)
    job = TraceJob(problems, [build_prompt(tok, p.question) for p in problems], tmp_path / "a" / "t.jsonl", 3, gen)
    stats = run_rejection_sampling(backend, job)
    want = _digests(job.output_path)
    assert 0 < stats["grpo_successes"] < 24 and stats["avg_attempts_for_successes"] > 1
    drawn = len(judge.seen)
    job.output_path = tmp_path / "b" / "t.jsonl"
    got = _killed_then_resumed(lambda count: backend if count is None else KilledAfter(backend, count), job, kills)
    assert got == want
    assert len(judge.seen) > drawn  # the killed runs judged draws too


JUDGED_CLI = """
import hashlib, os, signal, sys

from gsm8k_lab import cli, traces
from gsm8k_lab.generation.hf import TransformersBackend

traces.ROUND_CHUNK = 5
traces.accept = lambda text, gold: hashlib.sha256(text.encode()).digest()[0] % 3 == 0
traces.completion_to_trace = lambda text: text.strip() + "\\n\\n#### 0"
kill_after = int(os.environ.get("KILL_AFTER_BATCHES", "-1"))
real, delivered = TransformersBackend.generate_iter, [0]


def generate_iter(self, *args, **kwargs):
    for batch in real(self, *args, **kwargs):
        if delivered[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        delivered[0] += 1
        yield batch


TransformersBackend.generate_iter = generate_iter
sys.exit(cli.main(["generate-traces", *sys.argv[1:]]))
"""


def test_the_command_killed_twice_with_sigkill_resumes_to_the_same_bytes(chain, tmp_path):
    """generate-traces through the command line (the tiny GRPO run, a judge that accepts by the sampled text),
    killed with SIGKILL in round 1 and again in round 2, then resumed: the sha256 of the traces and stats
    files are those of an uninterrupted run."""
    import os
    import subprocess
    import sys

    script = tmp_path / "judged_cli.py"
    script.write_text(JUDGED_CLI)

    def run(out, *extra, kill=None):
        args = ["--grpo-model", str(chain / "grpo"), "--output-dir", str(out), "--num-samples", "14",
                "--max-attempts", "3", "--max-new-tokens", "6", "--batch-size", "4", "--temperature", "1.0",
                "--seed", "3", *extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "KILL_AFTER_BATCHES": str(kill if kill is not None else -1)}
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                              timeout=600)

    r = run(tmp_path / "whole")
    assert r.returncode == 0, r.stderr[-3000:]
    whole = tmp_path / "whole" / "grpo_traces_train.jsonl"
    stats = json.loads(stats_path(whole).read_text())
    assert 0 < stats["grpo_successes"] < 14 and stats["avg_attempts_for_successes"] > 1
    out = tmp_path / "killed"
    traces_file = out / "grpo_traces_train.jsonl"
    lines = []
    for kill, extra in ((7, ()), (12, ("--resume",))):  # round 1, part 2 of 3; then round 2
        r = run(out, *extra, kill=kill)
        assert r.returncode == -9, r.stderr[-3000:]  # SIGKILL: no handler, no cleanup
        assert not traces_file.exists()
        lines.append(len(progress_path(traces_file).read_text().splitlines()))
    assert 1 < lines[0] < lines[1]  # progress was on disk at each kill
    r = run(out, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _digests(traces_file) == _digests(whole)
    assert not progress_path(traces_file).exists()


def _stamps(folder):
    """sha256 and modification time (ns) of every file in a folder."""
    return {p.name: (_sha(p), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_resuming_finished_traces_changes_nothing(run_cli, tmp_path, chain):
    """--resume on finished traces with their own settings says so and exits 0, every byte and mtime as it
    was; with another setting it is refused naming it; traces finished before their settings were kept
    beside them are taken as finished."""
    out = tmp_path / "t"
    base = ["--grpo-model", str(chain / "grpo"), "--output-dir", str(out), "--num-samples", "3",
            "--max-attempts", "1", "--max-new-tokens", "4", "--dtype", "fp32"]
    r = run_cli("generate_traces.py", *base)
    assert r.returncode == 0, r.stderr[-2000:]
    traces_file = out / "grpo_traces_train.jsonl"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [traces_file.name, stats_path(traces_file).name, settings_path(traces_file).name])
    before = _stamps(out)
    r = run_cli("generate_traces.py", *base, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "are finished: nothing to do" in r.stdout
    assert "total_samples" in r.stdout  # the stats, as a finished run prints them
    assert _stamps(out) == before
    plan = subprocess.run([sys.executable, "-m", "gsm8k_lab", "plan", "generate-traces", *base, "--resume", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert [run["done"] for run in json.loads(plan.stdout)["runs"]] == [True]  # the plan agrees: nothing to run
    assert _stamps(out) == before
    r = run_cli("generate_traces.py", *base, "--resume", "--temperature", "0.5")
    assert r.returncode == 2 and "traces.generation.temperature 0.8 (then) vs 0.5 (now)" in r.stderr
    r = run_cli("generate_traces.py", *base)
    assert r.returncode == 2 and "already exists; pass --overwrite to replace it" in r.stderr
    assert _stamps(out) == before
    settings_path(traces_file).unlink()  # finished by a version that did not keep its settings
    before = _stamps(out)
    r = run_cli("generate_traces.py", *base, "--resume")
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stderr[-2000:]
    assert _stamps(out) == before

"""Rejection sampling against a scripted backend: kept traces, fallbacks, attempts, stats, rounds, resume."""

import json

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
    stats_path,
)

RIGHT = "{a} + {a} = {s}<end_working_out><SOLUTION>{s}</SOLUTION>"
WRONG = "{a} + {a} = 0<end_working_out><SOLUTION>0</SOLUTION>"
BROKEN = "the answer is {s}"  # correct number, out of format: rejected


class Scripted:
    """Answers prompt p in attempt k (the round's seed is base seed + k) with script[p][k - 1],
    like a seeded model whose k-th sample does not depend on the batch; records every round."""

    name = "scripted"

    def __init__(self, script, batch_size=2, stop_after_batches=None):
        self.script, self.batch_size = script, batch_size
        self.rounds: list[list[str]] = []
        self.stop_after, self.batches = stop_after_batches, 0

    def describe(self):
        return self.name

    def generate_iter(self, prompts, params, n=1, desc=""):
        self.rounds.append(list(prompts))
        for start in range(0, len(prompts), self.batch_size):
            if self.stop_after is not None and self.batches >= self.stop_after:
                raise KeyboardInterrupt
            self.batches += 1
            idx, comps = [], []
            for j in range(start, min(start + self.batch_size, len(prompts))):
                p = prompts[j]
                k = params.seed - BASE_SEED
                idx.append(j)
                comps.append([Completion(self.script[p][k - 1], 10, False)])
            yield idx, comps


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

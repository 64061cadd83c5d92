"""The report on synthetic run directories."""

import csv
import json
import math
import subprocess
import sys

import pytest

from gsm8k_lab.config import UsageError
from gsm8k_lab.evaluate import COLUMNS, wilson_interval
from gsm8k_lab.figures import _rolling_mean
from gsm8k_lab.report import write_report
from gsm8k_lab.results import collect_runs
from gsm8k_lab.stats import (
    detectable_from_se,
    hierarchical_bootstrap,
    mcnemar_exact,
    newcombe_paired_interval,
    paired_comparison,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(root, rel, stage, n, correct, seed=42, source="bundled", status="complete", answers=None,
             samples=1, log=None, symbolic=None, traces_file=None, split=None, prep_learning_rate=None, cut=None,
             unclosed=None, tokens=5, engine="transformers", dtype="fp32", trained=None, params=None, beta=0.04,
             matched=False):
    """A finished run; ``correct`` (and ``answers``, ``cut``, ``unclosed``) per problem: a bool, or a list of K
    bools with samples=K (``cut``/``unclosed`` one bool per problem, the same for its samples)."""
    d = root / rel
    (d / "debug").mkdir(parents=True)
    (d / "model").mkdir()
    (d / "model" / "adapter_config.json").write_text("{}")
    answers = answers or [True] * len(correct)
    cols = COLUMNS if samples == 1 else ["index", "sample", *COLUMNS[1:]]
    rows = []
    cut = cut or [False] * len(correct)
    unclosed = unclosed or [False] * len(correct)
    for i, (ok, ans) in enumerate(zip(correct, answers)):
        oks, anss = (ok, ans) if samples > 1 else ([ok], [ans])
        for k, (o, a) in enumerate(zip(oks, anss)):
            text = ("w<end_working_out><SOLUTION>7" + ("" if unclosed[i] else "</SOLUTION>")) if a else "w"
            rows.append({c: "" for c in cols} | {"index": i, "correct": o, "has_thinking": True, "has_answer": a,
                                                 "completion": text, "completion_tokens": tokens,
                                                 "truncated": cut[i], "strict_match": False,
                                                 "flexible_match": o} | ({"sample": k} if samples > 1 else {}))
    with open(d / "debug" / "e.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    if log:
        (d / "train_log.jsonl").write_text("".join(json.dumps(rec) + "\n" for rec in log))
    correct = [sum(c) / len(c) if samples > 1 else c for c in correct]
    k = sum(correct)
    group = 4 if stage == "grpo" else 1  # GRPO's batches count completions, num_generations per problem
    info = {"status": status, "stage": stage, "run_id": "x",
        "settings": {"seed": seed, "sft": {"learning_rate": 1e-3, "epochs": None, "match_grpo_steps": matched,
                                           "prep_learning_rate": prep_learning_rate},
                     "grpo": {"learning_rate": 1e-4, "epochs": 1.0, "num_generations": group, "beta": beta}},
        "data": {"n": n, "source": source, **({"traces_file": str(traces_file)} if traces_file else {})},
        "train": {"examples_seen": n * group, "num_processes": 1, "tokens_generated": 160 if stage == "grpo" else 0,
                  "global_steps": n // 4, "epochs": 1.0 if stage != "prep_sft" else 2.0,
                  **({"num_generations": group} if stage == "grpo" else {}),
                  **({"tokens_trained": trained} if trained is not None else {}),
                  **({"model_parameters": params} if params is not None else {})},
        "timings": {"train_seconds": 10.0, "eval_seconds": 2.0}, "environment": {"device": "cpu (2 cores)"},
        "eval": {"n": len(correct), "accuracy": k / len(correct), "samples_per_problem": samples,
                 "accuracy_ci95_low": wilson_interval(round(k), len(correct))[0],
                 "accuracy_ci95_high": wilson_interval(round(k), len(correct))[1], "thinking_proportion": 1.0,
                 "answer_proportion": sum(map(_share, answers)) / len(answers), "csv": "e.csv",
                 "engine": engine, "dtype": dtype}}
    if split is not None:
        info["eval"]["split"] = split
    if isinstance(symbolic, float):  # a run evaluated before the originals were: an accuracy only
        info["eval_extra"] = {"gsm-symbolic:10": {"accuracy": symbolic, "n": 10}}  # keyed as eval.extra_sources
    elif symbolic is not None:  # (originals, variants): correct or not per test index, CSVs beside the run's
        info["eval_extra"] = {}
        for source, values in zip(("gsm-symbolic-originals:10", "gsm-symbolic:10"), symbolic):
            name = source.replace(":", "-") + ".csv"
            with open(d / "debug" / name, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=COLUMNS)
                w.writeheader()
                w.writerows({c: "" for c in COLUMNS} | {"index": i, "correct": ok, "has_thinking": True,
                            "has_answer": True, "completion_tokens": 5, "truncated": False, "strict_match": False,
                            "flexible_match": ok} for i, ok in values.items())
            info["eval_extra"][source] = {"accuracy": sum(values.values()) / len(values), "csv": name}
    (d / "run.json").write_text(json.dumps(info))
    return d


def _share(answer):
    return sum(answer) / len(answer) if isinstance(answer, list) else float(answer)


def test_mcnemar_matches_hand_computation():
    # 1 vs 7 discordant pairs: P(X<=1 | n=8, 1/2) = (1 + 8) / 256; two-sided doubles it
    assert mcnemar_exact(1, 7) == pytest.approx(2 * 9 / 256)
    assert mcnemar_exact(7, 1) == pytest.approx(2 * 9 / 256)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_exact(2, 5) == pytest.approx(2 * (math.comb(7, 0) + math.comb(7, 1) + math.comb(7, 2)) / 128)


def test_report_table_pairs_and_plots(tmp_path):
    # SFT solves problems 0-3; GRPO solves 0-1 and 4-11: 2 only-SFT, 8 only-GRPO
    sft = [i < 4 for i in range(20)]
    grpo = [i < 2 or 4 <= i < 12 for i in range(20)]
    make_run(tmp_path, "sweep/prep_sft", "prep_sft", 8, [i < 1 for i in range(20)])
    make_run(tmp_path, "sweep/32/full_sft", "full_sft", 32, sft)
    make_run(tmp_path, "sweep/32/grpo", "grpo", 32, grpo)
    make_run(tmp_path, "sweep/64/full_sft", "full_sft", 64, sft)
    make_run(tmp_path, "sweep/64/grpo", "grpo", 64, sft)  # identical: p = 1
    make_run(tmp_path, "traces/64", "full_sft", 64, grpo, source="traces")
    make_run(tmp_path, "sweep/128/grpo", "grpo", 128, grpo, status="training")  # unfinished: ignored

    out = tmp_path / "report"
    summary = write_report([tmp_path / "sweep", tmp_path / "traces"], out)
    # the detail: each seed's pair of checkpoints, SFT vs GRPO twice and traces vs original once
    assert summary["runs"] == 6 and summary["pairs"] == 3 and summary["comparisons"] == 6
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], r["budget"]) for r in rows] == [
        ("prep SFT", "8"), ("SFT", "32"), ("GRPO", "32"), ("SFT", "64"), ("GRPO", "64"), ("SFT on GRPO traces", "64")]
    grpo_row = rows[2]
    assert float(grpo_row["accuracy"]) == pytest.approx(10 / 20)
    assert int(grpo_row["train_tokens_generated"]) == 160  # what training recorded
    md = (out / "report.md").read_text()
    p32 = 2 * sum(math.comb(10, i) for i in range(3)) / 1024
    row32 = next(line for line in md.splitlines() if line.startswith("| SFT vs GRPO, 32 problems, seed 42 | accuracy"))
    assert "| 20 | 20.0% | 50.0% | +30.0% (" in row32
    # detail family: Tarone keeps the two pairs with 10 discordant problems (the identical pair and the answer
    # rows have none and can never reject), so Holm multiplies by 2
    assert f"exact McNemar (2 vs 8 discordant) | {p32:.3g} | {2 * p32:.3g} | ±" in row32
    lo, hi = newcombe_paired_interval(both=2, only_a=2, only_b=8, neither=8)
    assert f"+30.0% ({lo:+.1%} to {hi:+.1%})" in row32
    row64 = next(line for line in md.splitlines() if line.startswith("| SFT vs GRPO, 64 problems, seed 42 | accuracy"))
    lo, hi = newcombe_paired_interval(both=4, only_a=0, only_b=0, neither=16)
    assert (f"+0.0% ({lo:+.1%} to {hi:+.1%}) | exact McNemar (0 vs 0 discordant) | 1 | screened out | – | "
            "cannot reject (too few discordant problems) |") in row64
    assert lo < -0.1 and hi > 0.1  # never a zero-width interval
    # one seed per arm: the research questions' rows describe the checkpoints, with no verdict
    primary = next(line for line in md.splitlines() if line.startswith("| SFT vs GRPO, 32 problems | accuracy |"))
    assert "| 20 | 1 vs 1 | 20.0% | 50.0% | +30.0%" in primary and primary.endswith("| no verdict (one seed) |")
    assert "SFT original vs SFT on GRPO traces, 64 problems" in md
    for png in ("accuracy_vs_samples.png", "format_vs_samples.png", "traces_vs_original.png", "compute.png"):
        data = (out / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000


def test_each_stage_is_compared_with_the_model_it_started_from(tmp_path):
    # base: an answer on problems 0-1 only; prep SFT: on 0-13 (12 gained, none lost); SFT from prep: on 0-15
    make_run(tmp_path, "s/base_model", "base", 0, [False] * 20, answers=[i < 2 for i in range(20)])
    make_run(tmp_path, "s/prep_sft", "prep_sft", 8, [False] * 20, answers=[i < 14 for i in range(20)])
    make_run(tmp_path, "s/32/full_sft", "full_sft", 32, [False] * 20, answers=[i < 16 for i in range(20)])
    summary = write_report([tmp_path / "s"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    fmt = next(line for line in md.splitlines()
               if line.startswith("| base model vs prep SFT (8 problems) | answer format |"))
    assert "| 20 | 1 vs 1 | 10.0% | 70.0% | +60.0% (" in fmt
    # secondary family: each stage is one run, so the exact paired test; the accuracy rows (nothing differs)
    # are screened out; the prep -> SFT answer row (2 discordant, p >= 0.5) too: Holm over one test
    assert f"| exact McNemar, 12 discordant | {2 / 4096:.3g} | {2 / 4096:.3g} |" in fmt
    assert fmt.endswith("| prep SFT higher, significant after Holm |")
    start = next(line for line in md.splitlines()
                 if line.startswith("| prep SFT vs SFT from it, 32 problems | answer format |"))
    assert f"| exact McNemar, 2 discordant | {mcnemar_exact(0, 2):.3g} | – |" in start
    assert start.endswith("| cannot reject (screened out) |")
    assert summary["resolved"] == 1
    table = next(line for line in md.splitlines() if line.startswith("| base model | 0 |"))
    assert "| 0.0% |" in table


def test_clear_difference_is_called(tmp_path):
    for k in range(2):
        make_run(tmp_path, f"a/32/full_sft-seed{k}", "full_sft", 32, [False] * 40, seed=42 + k)
        make_run(tmp_path, f"a/32/grpo-seed{k}", "grpo", 32, [True] * 20 + [False] * 20, seed=42 + k)
    summary = write_report([tmp_path / "a"], tmp_path / "r")
    row = next(line for line in (tmp_path / "r" / "report.md").read_text().splitlines()
               if line.startswith("| SFT vs GRPO, 32 problems | accuracy |"))
    assert "| 40 | 2 vs 2 | 0.0% | 50.0% | +50.0%" in row and "| 2 of 2 |" in row
    assert row.endswith("| GRPO 32 higher, significant after Holm |")
    assert summary["resolved_primary"] == 1


def test_seeds_are_summarised(tmp_path):
    make_run(tmp_path, "s/32/full_sft-seed0", "full_sft", 32, [True] * 5 + [False] * 5, seed=42)
    make_run(tmp_path, "s/32/full_sft-seed1", "full_sft", 32, [True] * 7 + [False] * 3, seed=43)
    write_report([tmp_path / "s"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| SFT 32 | test | 2 |"))
    assert "| 60.0% (" in row  # the mean over both seeds, with the arm's hierarchical interval


def test_report_without_finished_runs(tmp_path):
    make_run(tmp_path, "x/grpo", "grpo", 4, [True], status="training")
    with pytest.raises(UsageError, match="no finished runs"):
        collect_runs([tmp_path / "x"])


def test_report_cli_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "gsm8k_lab", "report", str(tmp_path / "empty")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no finished runs" in r.stderr
    assert not (tmp_path / "empty" / "report").exists()


def test_the_report_of_one_run_goes_next_to_it_never_into_it(tmp_path):
    """``report <a finished run>`` wrote report/ into the run itself; now beside it, and into a folder
    of runs as before. An explicit --out decides for itself."""
    from gsm8k_lab import cli

    run = make_run(tmp_path, "runs/grpo", "grpo", 4, [True, False])
    before = sorted(p.name for p in run.rglob("*"))
    assert cli.main(["report", str(run)]) == 0
    assert sorted(p.name for p in run.rglob("*")) == before
    assert (tmp_path / "runs" / "report" / "report.md").is_file()
    assert cli.default_report_folder(tmp_path / "runs") == tmp_path / "runs" / "report"
    assert cli.main(["report", str(run), "--out", str(run / "own-report")]) == 0
    assert (run / "own-report" / "report.md").is_file()


def test_broken_runs_are_skipped_with_a_warning(tmp_path, capsys):
    make_run(tmp_path, "r/32/full_sft", "full_sft", 32, [True, False])
    gone = make_run(tmp_path, "r/32/grpo", "grpo", 32, [True, True])
    (gone / "debug" / "e.csv").unlink()
    lacking = make_run(tmp_path, "r/64/grpo", "grpo", 64, [True])
    info = json.loads((lacking / "run.json").read_text())
    del info["eval"]["accuracy"]
    (lacking / "run.json").write_text(json.dumps(info))
    (tmp_path / "r" / "torn").mkdir()
    (tmp_path / "r" / "torn" / "run.json").write_text('{"status": "compl')
    summary = write_report([tmp_path / "r"], tmp_path / "out")
    assert summary["runs"] == 1
    err = capsys.readouterr().err
    assert f"skipping {gone}: its evaluation CSV" in err
    assert f"skipping {lacking}: run.json lacks 'accuracy'" in err
    assert "torn: run.json is not readable JSON" in err


def test_runs_that_cannot_be_read_are_skipped_with_one_warning_each(tmp_path, capsys):
    """A CSV index that is no number, a flag that is neither True nor False, a run.json whose data is
    text or that nests too deeply, and FIFOs in place of run.json or the CSV (opening one would wait
    for a writer forever): each run is skipped with one warning line, and the report is written."""
    import os
    import signal

    make_run(tmp_path, "r/32/full_sft", "full_sft", 32, [True, False])
    make_run(tmp_path, "r/64/full_sft", "full_sft", 64, [True, True])
    idx = [11, 20]
    kept = make_run(tmp_path, "r/16/full_sft", "full_sft", 16, [True, True],
                    symbolic=({i: True for i in idx}, {i: False for i in idx}))
    variants = kept / "debug" / "gsm-symbolic-10.csv"
    variants.write_text(variants.read_text().replace("\n11,", "\nx1,", 1))
    broken = {}
    bad_index = broken["index"] = make_run(tmp_path, "r/32/grpo", "grpo", 32, [True, True])
    csv_file = bad_index / "debug" / "e.csv"
    csv_file.write_text(csv_file.read_text().replace("\n1,", "\nabc,", 1))
    bad_flag = broken["flag"] = make_run(tmp_path, "r/64/grpo", "grpo", 64, [True, True])
    csv_file = bad_flag / "debug" / "e.csv"
    csv_file.write_text(csv_file.read_text().replace(",True,", ",maybe,", 1))
    text_data = broken["data"] = make_run(tmp_path, "r/8/full_sft", "full_sft", 8, [True])
    info = json.loads((text_data / "run.json").read_text())
    info["data"] = "bundled"
    (text_data / "run.json").write_text(json.dumps(info))
    fifo_csv = broken["fifo csv"] = make_run(tmp_path, "r/128/grpo", "grpo", 128, [True])
    (fifo_csv / "debug" / "e.csv").unlink()
    os.mkfifo(fifo_csv / "debug" / "e.csv")
    fifo_run = broken["fifo run.json"] = tmp_path / "r" / "fifo"
    fifo_run.mkdir()
    os.mkfifo(fifo_run / "run.json")
    deep = broken["deep"] = tmp_path / "r" / "deep"
    deep.mkdir()
    (deep / "run.json").write_text("[" * 100_000 + "]" * 100_000)

    def hung(*_):
        raise TimeoutError("the report waited on a file")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        summary = write_report([tmp_path / "r"], tmp_path / "out")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert summary["runs"] == 3
    lines = capsys.readouterr().err.strip().splitlines()
    why = {"index": "e.csv is not readable (line 3: index 'abc' is not an integer)",
           "flag": "e.csv is not readable (line 2: correct 'maybe' is neither True nor False)",
           "data": "run.json's data is not an object", "fifo csv": "e.csv is not a regular file",
           "fifo run.json": "run.json is not a regular file", "deep": "run.json is not readable JSON"}
    for name, run in broken.items():
        (line,) = [line for line in lines if f"{run}:" in line]
        assert line.startswith(f"warning: skipping {run}: ") and why[name] in line, line
    (line,) = [line for line in lines if f"{kept}:" in line]
    assert line == (f"warning: {kept}: its evaluation CSV {variants} is not readable (line 2: index 'x1' is not "
                    "an integer): no GSM-Symbolic column")
    assert len(lines) == len(broken) + 1


def test_sampled_runs_are_compared_on_every_sample(tmp_path):
    # K = 4: SFT gets 1 of 4 right on each of 30 problems, GRPO 3 of 4; answers: SFT half, GRPO all
    sft = [[True, False, False, False]] * 30
    grpo = [[True, True, True, False]] * 30
    make_run(tmp_path, "k/32/full_sft", "full_sft", 32, sft, samples=4, answers=[[True, False] * 2] * 30)
    make_run(tmp_path, "k/32/grpo", "grpo", 32, grpo, samples=4, answers=[[True] * 4] * 30)
    summary = write_report([tmp_path / "k"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    acc = next(line for line in md.splitlines() if "| accuracy |" in line and line.startswith("| SFT vs GRPO, 32 "
                                                                                            "problems, seed"))
    assert "| 30 | 25.0% | 75.0% | +50.0% (" in acc and "| sign-flip" in acc and "GRPO higher" in acc
    assert "(+50.0% to +50.0%)" not in acc  # every difference is +50%, the interval still has a width
    fmt = next(line for line in md.splitlines() if "| answer format |" in line and "seed 42" in line)
    assert "| 50.0% | 100.0% | +50.0%" in fmt and "GRPO higher" in fmt
    assert summary["resolved"] == 0  # one seed per arm: no verdict on the methods


def test_generalisation_is_a_paired_drop_on_the_test_index(tmp_path):
    # 10 templates at test indices 11, 20, ...: originals right on 8, variants right on 3; the variants' right
    # ones are among the originals' right ones, so the drop is 5 of 10 problems
    idx = [11, 20, 43, 74, 99, 103, 107, 116, 125, 145]
    originals = {i: k < 8 for k, i in enumerate(idx)}
    variants = {i: k < 3 for k, i in enumerate(idx)}
    make_run(tmp_path, "g/32/full_sft", "full_sft", 32, [True] * 5 + [False] * 5, symbolic=(originals, variants))
    make_run(tmp_path, "g/32/grpo", "grpo", 32, [True] * 4 + [False] * 6, symbolic=0.3)  # no originals: no drop
    write_report([tmp_path / "g"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| GSM-Symbolic pairs | original | variant | drop (95% CI) | drop p |" in md
    row = next(line for line in md.splitlines() if line.startswith("| SFT | 32 |"))
    drop = paired_comparison([float(originals[i]) for i in idx], [float(variants[i]) for i in idx])
    assert drop.difference == pytest.approx(-0.5)
    assert (f"| 10 | 80.0% | 30.0% | +50.0% ({-drop.ci_high:+.1%} to {-drop.ci_low:+.1%}) | "
            f"{drop.p_value:.3g} |") in row
    assert -drop.ci_high > 0  # 5 of 10 pairs drop, none rises: the interval excludes no drop
    grpo = next(line for line in md.splitlines() if line.startswith("| GRPO | 32 |"))
    assert "| – | – | – | – | – |" in grpo  # an accuracy on other problems is never shown as a drop
    rows = {r["method"]: r for r in csv.DictReader(open(tmp_path / "r" / "results.csv"))}
    assert rows["SFT"]["symbolic_pairs"] == "10" and float(rows["SFT"]["symbolic_drop"]) == pytest.approx(0.5)


def test_runs_on_different_splits_are_labelled_and_never_paired(tmp_path):
    make_run(tmp_path, "s/64/full_sft", "full_sft", 64, [i < 2 for i in range(20)], split="test")
    make_run(tmp_path, "s/64/grpo", "grpo", 64, [i < 12 for i in range(20)], split="test")
    make_run(tmp_path, "v/64/full_sft", "full_sft", 64, [i < 3 for i in range(20)], split="validation", seed=7)
    make_run(tmp_path, "v/64/grpo", "grpo", 64, [i < 4 for i in range(20)], split="validation", seed=7)
    make_run(tmp_path, "x/64/grpo", "grpo", 64, [True] * 20, split="validation")  # test SFT's key, other split
    summary = write_report([tmp_path / "s", tmp_path / "v", tmp_path / "x"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| method | train problems | seed | split |" in md and "comparisons are made only" in md
    assert any(line.startswith("| SFT | 64 | 7 | validation |") for line in md.splitlines())
    labels = [line.split(" | ")[0] for line in md.splitlines() if line.startswith("| SFT vs GRPO, 64 problems, seed")]
    assert labels == ["| SFT vs GRPO, 64 problems, seed 42"] * 2 + ["| SFT vs GRPO, 64 problems, seed 7"] * 2
    # seed 42: test SFT (10%) against test GRPO (60%), never against the validation GRPO (100%)
    assert "| SFT vs GRPO, 64 problems, seed 42 | accuracy | 20 | 10.0% | 60.0% |" in md
    assert summary["pairs"] == 2
    # the validation arms: SFT seed 7 against both validation GRPO runs (seeds 7 and 42)
    val = next(line for line in md.splitlines() if line.startswith("| GRPO 64 | validation | 2 |"))
    assert "| 60.0% (" in val  # seed 7 solves 4 of 20, seed 42 all 20


def test_curves_and_reward_trends(tmp_path):
    import random

    rng = random.Random(0)
    grpo_log = [{"step": s, "reward": 0.1 * s + rng.random(), "reward_std": 0.5, "kl": 0.001 * s,
                 "rewards/format_exact/mean": min(1.0, 0.05 * s), "rewards/answer_correct/mean": 0.0,
                 "completions/mean_length": 100.0, "completions/clipped_ratio": 0.2} for s in range(1, 33)]
    sft_log = [{"step": s, "loss": 2.0 - 0.05 * s} for s in range(1, 17)]
    make_run(tmp_path, "c/32/full_sft", "full_sft", 32, [False] * 10, log=sft_log)
    make_run(tmp_path, "c/32/grpo", "grpo", 32, [False] * 10, log=[*grpo_log, {"step": 33, "reward": 9}][:-1])
    (tmp_path / "c" / "32" / "grpo" / "train_log.jsonl").open("a").write('{"step": 33, "rew')  # torn: ignored
    summary = write_report([tmp_path / "c"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    trend = next(line for line in md.splitlines() if "| format_exact |" in line)
    assert "| 32 | 0.225 | 1.000 | +0.775 |" in trend and trend.endswith("| rose |")  # steps 1-8: mean of 0.05 s
    assert next(line for line in md.splitlines() if "| answer_correct |" in line).endswith(
        "| not significant after Holm |")
    assert "curves_experiment_1.png" in summary["files"]
    assert (tmp_path / "r" / "curves_experiment_1.png").read_bytes().startswith(PNG_MAGIC)


def test_verdict_rests_on_the_holm_adjusted_p(tmp_path):
    # two seeds per arm on 20 problems: GRPO solves 3 and 5 more problems than SFT at 32, 3 and 4 more at 64;
    # both raw p are below 0.05, but Holm over the two testable tests (the answer rows never differ and are
    # screened out) multiplies the smaller by 2, above 0.05: neither is called
    extra = {32: (3, 5), 64: (3, 4)}
    for k in range(2):
        for n, more in extra.items():
            make_run(tmp_path, f"h/{n}/full_sft-seed{k}", "full_sft", n, [i < 2 for i in range(20)], seed=42 + k)
            make_run(tmp_path, f"h/{n}/grpo-seed{k}", "grpo", n, [i < 2 + more[k] for i in range(20)], seed=42 + k)
    write_report([tmp_path / "h"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    sft = [[float(i < 2) for i in range(20)]] * 2
    res = {n: hierarchical_bootstrap([[float(i < 2 + m) for i in range(20)] for m in more], sft)
           for n, more in extra.items()}
    assert all(r.p < 0.05 for r in res.values())
    holm = max(2 * min(r.p for r in res.values()), max(r.p for r in res.values()))
    assert holm >= 0.05
    for n, r in res.items():
        row = next(line for line in md.splitlines() if line.startswith(f"| SFT vs GRPO, {n} problems | accuracy |"))
        assert f"| {r.diff:+.1%} ({r.low:+.1%} to {r.high:+.1%}) | hierarchical bootstrap | {r.p:.3g} | {holm:.3g} |" \
            in row
        assert r.low > 0 and row.endswith("| not significant after Holm |")  # the unadjusted interval excludes 0
    assert "Holm p (2 tests)" in md and "the verdict rests on the **Holm-adjusted p**" in md


def test_each_row_shows_what_training_paid(tmp_path):
    make_run(tmp_path, "m/32/full_sft", "full_sft", 32, [True, False], trained=3000, params=1000)
    make_run(tmp_path, "m/32/grpo", "grpo", 32, [True, True], trained=5000, params=1000)
    make_run(tmp_path, "m/32/full_sft_matched", "full_sft", 32, [True, False], matched=True)
    write_report([tmp_path / "m"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| steps | epochs | learning rate | problems seen | completions sampled | tokens generated in training |" in md
    sft = next(line for line in md.splitlines() if line.startswith("| SFT | 32 |"))
    grpo = next(line for line in md.splitlines() if line.startswith("| GRPO | 32 |"))
    # FLOPs by hand: SFT 6 x 1000 x 3000; GRPO with a KL term (8 x 1000 x 5000) + 2 x 1000 x 160 generated
    assert f"| 8 | 1 | 0.001 | 32 | 0 | 0 | 3000 | {6 * 1000 * 3000:.2e} | 10 |" in sft
    # GRPO recorded 128 examples (its batches count completions, 4 per problem): 32 problems, 128 completions
    assert f"| 8 | 1 | 0.0001 | 32 | 128 | 160 | 5000 | {8 * 1000 * 5000 + 2 * 1000 * 160:.2e} | 10 |" in grpo
    assert any(line.startswith("| SFT (GRPO's steps) | 32 |") for line in md.splitlines())
    with open(tmp_path / "r" / "results.csv", newline="") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert rows["GRPO"]["problems_seen"] == "32" and rows["GRPO"]["completions_sampled"] == "128"
    assert rows["SFT"]["learning_rate"] == "0.001" and rows["GRPO"]["optimizer_steps"] == "8"
    assert float(rows["SFT"]["flops"]) == 6 * 1000 * 3000 and rows["SFT (GRPO's steps)"]["flops"] == ""


def test_the_prep_row_shows_the_rate_the_prep_stage_trained_at(tmp_path):
    """sft.prep_learning_rate, when set, is the prep stage's rate (the full stage keeps sft.learning_rate)."""
    make_run(tmp_path, "p/prep_sft", "prep_sft", 64, [True, False], prep_learning_rate=5e-4)
    make_run(tmp_path, "p/64/full_sft", "full_sft", 64, [True, False], prep_learning_rate=5e-4)
    write_report([tmp_path / "p"], tmp_path / "r")
    with open(tmp_path / "r" / "results.csv", newline="") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert rows["prep SFT"]["learning_rate"] == "0.0005" and rows["SFT"]["learning_rate"] == "0.001"


def test_traces_run_reports_its_share_of_grpo_traces(tmp_path):
    traces = tmp_path / "traces.jsonl"
    lines = [{"question": f"q{i}", "answer": "x\n\n#### 1", "source": "grpo" if i < 9 else "fallback"}
             for i in range(70)]  # the run trains on the first 64 lines
    traces.write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    (tmp_path / "traces.jsonl.stats.json").write_text(json.dumps({"tokens_generated": 4000, "seconds": 12.5}))
    make_run(tmp_path, "t/64/full_sft", "full_sft", 64, [True, False, False])
    make_run(tmp_path, "t/traces/64", "full_sft", 64, [True, False, False], source="traces", traces_file=traces,
             trained=100, params=10)
    write_report([tmp_path / "t"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| 9 of 64 (14%) |" in md
    assert "| SFT original vs SFT on GRPO traces, 64 problems; 9 of 64 examples are GRPO traces |" in md
    with open(tmp_path / "r" / "results.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["method"] == "SFT on GRPO traces")
    assert row["grpo_traces"] == "9" and float(row["grpo_trace_share"]) == pytest.approx(9 / 64)
    # the traces' sampling is charged to the arm that trains on them: 2 x 10 x 4000 on top of 6 x 10 x 100
    assert float(row["flops"]) == 6 * 10 * 100 + 2 * 10 * 4000 and row["traces_tokens"] == "4000"
    traces.unlink()  # the file gone: the share is unknown, not zero
    write_report([tmp_path / "t"], tmp_path / "r2")
    md = (tmp_path / "r2" / "report.md").read_text()
    assert "| GRPO traces |" not in md and "examples are GRPO traces" not in md


def test_rolling_mean_by_hand():
    assert _rolling_mean([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]
    assert _rolling_mean([4, 0, 2], 3) == [4, 2, 2]
    assert _rolling_mean([5], 1) == [5]


def test_report_states_what_the_design_can_detect(tmp_path):
    for k in range(3):
        make_run(tmp_path, f"d/32/full_sft-seed{k}", "full_sft", 32, [i < 10 + k for i in range(40)], seed=42 + k)
        make_run(tmp_path, f"d/32/grpo-seed{k}", "grpo", 32, [i < 12 + 2 * k for i in range(40)], seed=42 + k)
    write_report([tmp_path / "d"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    sft = [[float(i < 10 + k) for i in range(40)] for k in range(3)]
    grpo = [[float(i < 12 + 2 * k) for i in range(40)] for k in range(3)]
    res = hierarchical_bootstrap(grpo, sft)
    d = detectable_from_se(res.se, 0.05 / 1)  # one testable test: the answer rows never differ
    assert (f"What the primary family can detect: with 3x3 seeds and up to 40 problems, at 0.05/1 with 80% power, "
            f"differences of {d:.1%} to {d:.1%}") in md
    row = next(line for line in md.splitlines() if line.startswith("| SFT vs GRPO, 32 problems | accuracy |"))
    assert f"| ±{d:.1%} |" in row and "| 3 of 3 |" in row
    assert "Declared in src/gsm8k_lab/report.py" in md and "2 or more training seeds per arm" in md




def test_how_completions_look_by_hand(tmp_path):
    """Cut at the budget, mean length, closed and unclosed answers, answers among uncut completions."""
    from gsm8k_lab.results import completion_profile

    run = make_run(tmp_path, "c/32/full_sft", "full_sft", 32, [False] * 4, answers=[True, True, True, False],
                   cut=[True, True, False, False], unclosed=[True, False, False, False], tokens=40)
    profile = completion_profile(run / "debug" / "e.csv")
    # 4 completions: 2 cut; 3 answers, 1 of them from an unclosed block; uncut: 1 answered of 2
    assert profile == {"truncated": 0.5, "mean_tokens": 40.0, "answer_closed": 0.5, "answer_unclosed": 0.25,
                       "answer_uncut": 0.5}
    write_report([tmp_path / "c"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    arm = next(line for line in md.splitlines() if line.startswith("| SFT 32 | test | 1 |"))
    assert "| 50.0% | 40 | 50.0% / 25.0% | 50.0% |" in arm


def test_a_format_comparison_is_also_made_where_no_run_ran_out_of_tokens(tmp_path):
    """Whether 'GRPO answers more often' is 'SFT runs out of tokens': the answer-format row again, on the
    problems no run of either arm cut."""
    for k in range(2):
        make_run(tmp_path, f"u/32/full_sft-seed{k}", "full_sft", 32, [False] * 10, seed=42 + k,
                 answers=[i >= 6 for i in range(10)], cut=[i < 6 for i in range(10)])
        make_run(tmp_path, f"u/32/grpo-seed{k}", "grpo", 32, [False] * 10, seed=42 + k, answers=[True] * 10)
    write_report([tmp_path / "u"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    all_rows = next(line for line in md.splitlines() if line.startswith("| SFT vs GRPO, 32 problems | answer format |"))
    uncut = next(line for line in md.splitlines()
                 if line.startswith("| SFT vs GRPO, 32 problems | answer format (on the 4 of 10 problems no run"))
    assert "| 40.0% | 100.0% | +60.0%" in all_rows
    assert "| 4 | 2 vs 2 | 100.0% | 100.0% | +0.0%" in uncut  # the whole difference was running out of tokens


def test_runs_evaluated_with_different_engines_are_never_compared(tmp_path):
    for k in range(2):
        make_run(tmp_path, f"e/32/full_sft-seed{k}", "full_sft", 32, [False] * 10, seed=42 + k, dtype="bf16")
        make_run(tmp_path, f"e/32/grpo-seed{k}", "grpo", 32, [True] * 10, seed=42 + k)
    summary = write_report([tmp_path / "e"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "**Warning:** the runs were evaluated with different engines or dtypes (transformers/bf16, " \
           "transformers/fp32)" in md
    row = next(line for line in md.splitlines() if line.startswith("| SFT vs GRPO, 32 problems | accuracy ("))
    assert "not comparable: evaluated with transformers/bf16 and transformers/fp32" in row
    assert row.endswith("| not comparable |") and summary["resolved"] == 0


def test_a_question_whose_completions_were_all_cut_still_gets_its_rows(tmp_path):
    """With every completion cut at the token budget there is no uncut problem to compare on: that row
    says so, and the others stand."""
    for k in range(2):
        make_run(tmp_path, f"z/4/full_sft-seed{k}", "full_sft", 4, [False] * 3, seed=42 + k, cut=[True] * 3)
        make_run(tmp_path, f"z/4/grpo-seed{k}", "grpo", 4, [False] * 3, seed=42 + k, cut=[True] * 3)
    summary = write_report([tmp_path / "z"], tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    row = next(line for line in md.splitlines()
               if line.startswith("| SFT vs GRPO, 4 problems | answer format (on the 0 of 3 problems"))
    assert row.endswith("| no common problems |") and summary["resolved"] == 0

"""Results table, plots and paired tests over finished run directories.

``write_report(roots, out_dir)`` finds every finished run (``run.json`` with
status ``complete``) under the given folders and writes:

- ``results.csv``: one row per run: method, budget, seed, accuracy with its 95%
  Wilson interval, thinking and answer proportions, and compute (training
  examples seen, tokens generated in training, wall time, device);
- ``report.md``: the table, then paired comparisons (SFT vs GRPO at each budget,
  SFT on GRPO traces vs SFT on the original solutions) with an exact McNemar
  test on the problems both runs were evaluated on, saying plainly when a
  difference is within noise;
- ``accuracy_vs_samples.png``, ``format_vs_samples.png`` and, when there are
  traces runs, ``traces_vs_original.png``.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import UsageError
from .runs import RunStatus, atomic_write_text
from .stats import mcnemar_exact, wilson_interval

ALPHA = 0.05
METHOD_ORDER = ["prep SFT", "SFT", "GRPO", "SFT on GRPO traces"]


@dataclass
class RunResult:
    path: str
    method: str
    budget: int
    seed: int
    n_eval: int
    accuracy: float
    ci_low: float
    ci_high: float
    thinking: float
    answer: float
    examples_seen: int
    train_tokens_generated: int
    train_seconds: float
    eval_seconds: float
    device: str
    csv: str


@dataclass
class Pair:
    label: str
    a: RunResult
    b: RunResult
    n_common: int
    only_a: int  # problems only a solved
    only_b: int
    p_value: float

    @property
    def within_noise(self) -> bool:
        return self.p_value >= ALPHA


def collect_runs(roots: list[str | Path]) -> list[RunResult]:
    """Every finished run under the folders; a run whose record or CSV is broken is skipped with a warning."""
    runs = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise UsageError(f"report folder {str(root)!r} does not exist")
        for run_file in sorted(root.rglob("run.json")):
            try:
                info = json.loads(run_file.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                _warn(run_file.parent, "run.json is not readable JSON")
                continue
            if not isinstance(info, dict) or info.get("status") != RunStatus.COMPLETE.value:
                continue
            try:
                result = _result(run_file.parent, info)
            except (KeyError, TypeError, ValueError) as exc:
                _warn(run_file.parent, f"run.json lacks {exc}")
                continue
            if not Path(result.csv).is_file():
                _warn(run_file.parent, f"its evaluation CSV {result.csv} is missing")
                continue
            runs.append(result)
    if not runs:
        raise UsageError(f"no finished runs under {', '.join(map(str, roots))}: "
                         "expected run directories whose run.json says status complete")
    return runs


def _warn(run_dir: Path, why: str) -> None:
    print(f"warning: skipping {run_dir}: {why}", file=sys.stderr)


def pair_runs(label: str, a: RunResult, b: RunResult) -> Pair:
    ca, cb = _correct_by_index(a.csv), _correct_by_index(b.csv)
    common = sorted(set(ca) & set(cb))
    only_a = sum(1 for i in common if ca[i] and not cb[i])
    only_b = sum(1 for i in common if cb[i] and not ca[i])
    return Pair(label, a, b, len(common), only_a, only_b, mcnemar_exact(only_a, only_b))


def find_pairs(runs: list[RunResult]) -> list[Pair]:
    by_key = {(r.method, r.budget, r.seed): r for r in runs}
    pairs = []
    for (method, budget, seed), r in sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if method == "SFT" and ("GRPO", budget, seed) in by_key:
            pairs.append(pair_runs(f"SFT vs GRPO, {budget} problems, seed {seed}", r, by_key["GRPO", budget, seed]))
        if method == "SFT" and ("SFT on GRPO traces", budget, seed) in by_key:
            pairs.append(pair_runs(f"SFT original vs SFT on GRPO traces, {budget} problems, seed {seed}",
                                   r, by_key["SFT on GRPO traces", budget, seed]))
    return pairs


def write_report(roots: list[str | Path], out_dir: str | Path) -> dict:
    runs = collect_runs(roots)
    pairs = find_pairs(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(asdict(runs[0]).keys()))
    writer.writeheader()
    for r in _sorted(runs):
        writer.writerow(asdict(r))
    atomic_write_text(out / "results.csv", buf.getvalue())
    plots = _plots(runs, out)
    atomic_write_text(out / "report.md", render_markdown(runs, pairs, plots))
    return {"runs": len(runs), "pairs": len(pairs), "files": ["results.csv", "report.md", *plots]}


def render_markdown(runs: list[RunResult], pairs: list[Pair], plots: list[str]) -> str:
    lines = ["# GSM8K: SFT vs GRPO", "",
             f"{len(runs)} finished runs. Accuracy with its 95% Wilson interval on the evaluated test problems.", "",
             "| method | train problems | seed | eval n | accuracy | 95% CI | thinking | answer | "
             "examples seen | tokens generated in training | train s | eval s | device | run |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in _sorted(runs):
        lines.append(f"| {r.method} | {r.budget} | {r.seed} | {r.n_eval} | {r.accuracy:.1%} | "
                     f"{r.ci_low:.1%}–{r.ci_high:.1%} | {r.thinking:.1%} | {r.answer:.1%} | {r.examples_seen} | "
                     f"{r.train_tokens_generated} | {r.train_seconds:.0f} | {r.eval_seconds:.0f} | {r.device} | "
                     f"`{r.path}` |")
    seeds = _seed_summary(runs)
    if seeds:
        lines += ["", "## Across seeds", "", "| method | train problems | seeds | mean accuracy | std |",
                  "|---|---:|---:|---:|---:|"]
        for (method, budget), accs in seeds:
            lines.append(f"| {method} | {budget} | {len(accs)} | {statistics.mean(accs):.1%} | "
                         f"{statistics.stdev(accs):.1%} |")
    if pairs:
        lines += ["", "## Paired comparisons (exact McNemar test on the same problems)", "",
                  "| comparison | problems | only first solved | only second solved | accuracy difference "
                  "| p | verdict |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for p in pairs:
            diff = (p.only_b - p.only_a) / p.n_common if p.n_common else 0.0
            lines.append(f"| {p.label} | {p.n_common} | {p.only_a} | {p.only_b} | {diff:+.1%} | "
                         f"{p.p_value:.3g} | {_verdict(p)} |")
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    lines += ["", "Accuracy: the SOLUTION number equals the gold number. Thinking: a non-empty reasoning "
              "block. Answer: a number could be read from a SOLUTION block. A difference whose McNemar "
              f"p-value is {ALPHA} or more is reported as within noise.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------
def _result(run_dir: Path, info: dict) -> RunResult:
    ev, data, train = info["eval"], info.get("data", {}), info.get("train", {})
    stage = info.get("stage", "")
    method = {"prep_sft": "prep SFT", "grpo": "GRPO"}.get(
        stage, "SFT on GRPO traces" if data.get("source") == "traces" else "SFT")
    timings = info.get("timings", {})
    return RunResult(
        path=str(run_dir), method=method, budget=int(data.get("n", 0)),
        seed=int(info["settings"]["seed"]), n_eval=int(ev["n"]), accuracy=ev["accuracy"],
        ci_low=ev["accuracy_ci95_low"], ci_high=ev["accuracy_ci95_high"],
        thinking=ev["thinking_proportion"], answer=ev["answer_proportion"],
        examples_seen=int(train.get("examples_seen", 0)),
        train_tokens_generated=int(train.get("tokens_generated", 0)),
        train_seconds=float(timings.get("train_seconds", 0.0)), eval_seconds=float(timings.get("eval_seconds", 0.0)),
        device=str(info.get("environment", {}).get("device", "")),
        csv=str(run_dir / "debug" / ev["csv"]),
    )


def _correct_by_index(csv_path: str) -> dict[int, bool]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return {int(r["index"]): r["correct"] == "True" for r in csv.DictReader(fh)}


def _sorted(runs: list[RunResult]) -> list[RunResult]:
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(runs, key=lambda r: (r.budget, order.get(r.method, 99), r.seed, r.path))


def _seed_summary(runs: list[RunResult]):
    groups = defaultdict(list)
    for r in runs:
        groups[r.method, r.budget].append(r.accuracy)
    return sorted(((k, v) for k, v in groups.items() if len(v) > 1), key=lambda kv: (kv[0][1], kv[0][0]))


def _verdict(p: Pair) -> str:
    if p.within_noise:
        return "within noise"
    better = p.b.method if p.only_b > p.only_a else p.a.method
    return f"{better} better"


def _plots(runs: list[RunResult], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    budgets_methods = [m for m in ("SFT", "GRPO") if any(r.method == m for r in runs)]
    if budgets_methods:
        fig, ax = plt.subplots(figsize=(6, 4))
        for k, method in enumerate(budgets_methods):
            xs, ys, lo, hi = _series(runs, method)
            dodge = 1 + 0.04 * (k - (len(budgets_methods) - 1) / 2)  # keep equal points apart
            ax.errorbar([x * dodge for x in xs], ys, yerr=[lo, hi], marker="o", capsize=4, label=method)
        prep = [r for r in runs if r.method == "prep SFT"]
        if prep:
            ax.axhline(statistics.mean(r.accuracy for r in prep), ls="--", color="grey", label="prep SFT")
        ax.set_xscale("log", base=2)
        budgets = sorted({r.budget for r in runs if r.method in budgets_methods})
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.set_xlabel("training problems")
        ax.set_ylabel("GSM8K test accuracy")
        ax.set_title("Accuracy vs training problems (95% CI, or mean ± std over seeds)", fontsize=9)
        ax.legend()
        ax.grid(alpha=0.3)
        files.append(_save(fig, out / "accuracy_vs_samples.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        for method in budgets_methods:
            rs = sorted((r for r in runs if r.method == method), key=lambda r: r.budget)
            xs = sorted({r.budget for r in rs})
            for attr, style in (("thinking", "-"), ("answer", ":")):
                ys = [statistics.mean(getattr(r, attr) for r in rs if r.budget == x) for x in xs]
                ax.plot(xs, ys, style, marker="o", label=f"{method} {attr}")
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("training problems")
        ax.set_ylabel("share of completions")
        ax.set_title("Thinking and answer proportions", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        files.append(_save(fig, out / "format_vs_samples.png"))

    traces = [r for r in runs if r.method == "SFT on GRPO traces"]
    if traces:
        budgets = sorted({r.budget for r in traces})
        fig, ax = plt.subplots(figsize=(6, 4))
        width = 0.38
        for k, method in enumerate(("SFT", "SFT on GRPO traces")):
            pts = [[r for r in runs if r.method == method and r.budget == b] for b in budgets]
            ys = [statistics.mean(r.accuracy for r in p) if p else 0 for p in pts]
            lo = [max(0.0, ys[i] - min(r.ci_low for r in p)) if p else 0 for i, p in enumerate(pts)]
            hi = [max(0.0, max(r.ci_high for r in p) - ys[i]) if p else 0 for i, p in enumerate(pts)]
            ax.bar([i + (k - 0.5) * width for i in range(len(budgets))], ys, width, yerr=[lo, hi], capsize=4,
                   label=method)
        ax.set_xticks(range(len(budgets)), [str(b) for b in budgets])
        ax.set_xlabel("training problems")
        ax.set_ylabel("GSM8K test accuracy")
        ax.set_title("SFT on GRPO traces vs original solutions (95% CI)", fontsize=9)
        ax.legend()
        files.append(_save(fig, out / "traces_vs_original.png"))
    return files


def _series(runs, method):
    xs = sorted({r.budget for r in runs if r.method == method})
    ys, lo, hi = [], [], []
    for x in xs:
        rs = [r for r in runs if r.method == method and r.budget == x]
        mean = statistics.mean(r.accuracy for r in rs)
        ys.append(mean)
        if len(rs) > 1:
            sd = statistics.stdev(r.accuracy for r in rs)
            lo.append(sd)
            hi.append(sd)
        else:
            lo.append(max(0.0, mean - rs[0].ci_low))
            hi.append(max(0.0, rs[0].ci_high - mean))
    return xs, ys, lo, hi


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name("." + path.name)
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path.name


__all__ = ["collect_runs", "write_report", "mcnemar_exact", "wilson_interval"]

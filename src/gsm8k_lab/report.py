"""Results table, paired tests, training curves and plots over finished run directories.

``write_report(roots, out_dir)`` finds every finished run (``run.json`` with
status ``complete``) under the given folders; it reads only what runs recorded
(``run.json``, their evaluation CSVs and ``train_log.jsonl``) and writes:

- ``results.csv``: one row per run: method, budget, seed, the split its numbers
  come from (test or validation), accuracy (mean@K with K samples per problem;
  the seed's greedy accuracy when K = 1) with its 95% interval, thinking and
  answer proportions, the GSM-Symbolic drop when the run was evaluated there
  (originals minus variants, paired on the test index, with its interval), and
  compute (training examples seen, tokens generated in training, wall time, device);
- ``report.md``: the table; paired comparisons (SFT vs GRPO at each budget, SFT on
  GRPO traces vs SFT on the original solutions) on the problems both runs were
  evaluated on, only between runs of the same split, for accuracy and for the answer-format proportion: the difference
  with a paired-bootstrap 95% interval and a p-value (exact McNemar with one
  sample per problem, a sign-flip permutation test on per-problem shares with
  several); how GRPO's rewards moved (first vs last quarter of steps, permutation
  test); plainly "within noise" when p >= 0.05;
- plots, every proportion in percent: ``accuracy_vs_samples.png``,
  ``format_vs_samples.png``, ``compute.png`` (accuracy against training examples
  seen, tokens generated in training and wall time), ``curves_<experiment>.png``
  (SFT loss; GRPO reward and each reward function, reward std, KL, completion
  length and truncated share by step) and, with traces runs,
  ``traces_vs_original.png``.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import UsageError
from .evaluate import per_problem_scores
from .runs import BASE_STAGE, RunStatus, atomic_write_text, read_jsonl
from .stats import Paired, bootstrap_interval, mcnemar_exact, paired_comparison, two_sample_p
from .symbolic import is_variants, originals_of

ALPHA = 0.05
METHOD_ORDER = ["base model", "prep SFT", "SFT", "GRPO", "SFT on GRPO traces"]
#: GRPO curves: train_log.jsonl key -> panel title
GRPO_CURVES = {"reward": "total reward", "reward_std": "reward std (within groups)", "kl": "KL to the reference",
               "completions/mean_length": "completion length (tokens)",
               "completions/clipped_ratio": "truncated completions"}


@dataclass
class RunResult:
    path: str
    method: str
    experiment: str
    budget: int
    seed: int
    n_eval: int
    samples_per_problem: int
    accuracy: float
    ci_low: float
    ci_high: float
    thinking: float
    answer: float
    symbolic_accuracy: float | None
    symbolic_drop: float | None
    examples_seen: int
    train_tokens_generated: int
    train_seconds: float
    eval_seconds: float
    device: str
    csv: str
    log: str = field(default="", repr=False)
    eval_split: str = "test"  # the problems every number of this run comes from
    symbolic_original: float | None = None  # accuracy on the test problems the GSM-Symbolic variants come from
    symbolic_pairs: int = 0
    symbolic_drop_ci_low: float | None = None
    symbolic_drop_ci_high: float | None = None
    symbolic_p: float | None = None


@dataclass
class Comparison:
    label: str
    metric: str  # "accuracy" or "answer format"
    a: RunResult
    b: RunResult
    result: Paired
    test: str
    only_a: int | None = None  # with one sample per problem: problems where only a has it
    only_b: int | None = None

    @property
    def within_noise(self) -> bool:
        return self.result.p_value >= ALPHA


@dataclass
class Trend:
    run: RunResult
    key: str
    early: float
    late: float
    p_value: float
    steps: int


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


def compare(label: str, a: RunResult, b: RunResult) -> list[Comparison]:
    """Accuracy and answer format of ``b`` against ``a`` on the problems both were evaluated on."""
    sa, sb = per_problem_scores(a.csv), per_problem_scores(b.csv)
    common = sorted(set(sa) & set(sb))
    out = []
    for key, metric in (("correct", "accuracy"), ("has_answer", "answer format")):
        xa, xb = [sa[i][key] for i in common], [sb[i][key] for i in common]
        result = paired_comparison(xa, xb)
        if a.samples_per_problem == b.samples_per_problem == 1:  # binary per problem: McNemar
            only_a = sum(x > y for x, y in zip(xa, xb))
            only_b = sum(y > x for x, y in zip(xa, xb))
            p = mcnemar_exact(only_a, only_b)
            result = Paired(result.n, result.mean_a, result.mean_b, result.difference, result.ci_low,
                            result.ci_high, p, "exact McNemar")
            out.append(Comparison(label, metric, a, b, result, "exact McNemar", only_a, only_b))
        else:
            out.append(Comparison(label, metric, a, b, result, result.test))
    return out


def find_comparisons(runs: list[RunResult]) -> list[Comparison]:
    """SFT vs GRPO at each budget and seed, SFT on traces vs on the original solutions; then what each
    stage changed from the model it started from (base -> prep SFT -> SFT / GRPO)."""
    by_key = {(r.method, r.budget, r.seed): r for r in runs}
    out = []
    for (method, budget, seed), r in sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if method != "SFT":
            continue
        if ("GRPO", budget, seed) in by_key:
            out += compare(f"SFT vs GRPO, {budget} problems, seed {seed}", r, by_key["GRPO", budget, seed])
        if ("SFT on GRPO traces", budget, seed) in by_key:
            out += compare(f"SFT original vs SFT on GRPO traces, {budget} problems, seed {seed}",
                           r, by_key["SFT on GRPO traces", budget, seed])
    base = [r for r in runs if r.method == "base model"]
    prep = [r for r in runs if r.method == "prep SFT"]
    if base and prep:
        out += compare(f"base model vs prep SFT ({prep[0].budget} problems)", base[0], prep[0])
    if prep:
        for (method, budget, seed), r in sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
            if method in ("SFT", "GRPO"):
                out += compare(f"prep SFT vs {method} from it, {budget} problems, seed {seed}", prep[0], r)
    return out


def comparisons_within_splits(runs: list[RunResult]) -> list[Comparison]:
    """:func:`find_comparisons` among the runs of each evaluation split on its own: a run evaluated on
    validation is never paired with one evaluated on test (their problem indices name different problems)."""
    splits = sorted({r.eval_split for r in runs}, key=lambda split: (split != "test", split))
    return [c for split in splits for c in find_comparisons([r for r in runs if r.eval_split == split])]


def symbolic_pairing(run_dir: Path, info: dict) -> Paired | None:
    """A run's GSM-Symbolic result paired on the GSM8K test index: for each template, its original test problem
    (first) against its variant (second), both under the same prompt; None when the run has no such pair
    (not evaluated there, or evaluated before the originals were)."""
    extra = info.get("eval_extra", {})
    for source, variants in extra.items():
        originals = extra.get(originals_of(source)) if is_variants(source) else None
        if not originals:
            continue
        files = [run_dir / "debug" / summary["csv"] for summary in (originals, variants)]
        if not all(f.is_file() for f in files):
            _warn(run_dir, "a GSM-Symbolic evaluation CSV is missing: no GSM-Symbolic column")
            return None
        orig, var = (per_problem_scores(f) for f in files)
        common = sorted(set(orig) & set(var))
        if common:
            return paired_comparison([orig[i]["correct"] for i in common], [var[i]["correct"] for i in common])
    return None


def reward_trends(runs: list[RunResult]) -> list[Trend]:
    """Each GRPO reward's mean in the first vs the last quarter of logged steps, with a permutation p."""
    trends = []
    for r in runs:
        if r.method != "GRPO":
            continue
        log = _curves(r.log)
        keys = ["reward", *sorted(k for k in log if k.startswith("rewards/") and k.endswith("/mean"))]
        for key in keys:
            values = [v for _, v in log.get(key, [])]
            if len(values) < 8:
                continue
            q = len(values) // 4
            early, late = values[:q], values[-q:]
            trends.append(Trend(r, key, statistics.mean(early), statistics.mean(late), two_sample_p(early, late),
                                len(values)))
    return trends


def write_report(roots: list[str | Path], out_dir: str | Path) -> dict:
    runs = collect_runs(roots)
    comparisons = comparisons_within_splits(runs)
    trends = reward_trends(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    fields = [k for k in asdict(runs[0]) if k != "log"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for r in _sorted(runs):
        writer.writerow(asdict(r))
    atomic_write_text(out / "results.csv", buf.getvalue())
    plots = _plots(runs, out)
    atomic_write_text(out / "report.md", render_markdown(runs, comparisons, trends, plots))
    return {"runs": len(runs), "pairs": len(comparisons) // 2, "comparisons": len(comparisons),
            "resolved": sum(not c.within_noise for c in comparisons),
            "files": ["results.csv", "report.md", *plots]}


def render_markdown(runs: list[RunResult], comparisons: list[Comparison], trends: list[Trend],
                    plots: list[str]) -> str:
    ks = sorted({r.samples_per_problem for r in runs})
    acc = "accuracy" if ks == [1] else "accuracy (mean@K)"
    symbolic = any(r.symbolic_accuracy is not None for r in runs)
    lines = ["# GSM8K: SFT vs GRPO", "",
             f"{len(runs)} finished runs. {acc.capitalize()} with its 95% interval on the evaluated problems of "
             "the run's split (Wilson with one sample per problem, a bootstrap over problems with several). "
             + _split_words(runs), "",
             "| method | train problems | seed | split | eval n | K | " + acc + " | 95% CI | thinking | answer | "
             + (_SYMBOLIC_HEADER if symbolic else "")
             + "examples seen | tokens generated in training | train s | eval s | device | run |",
             "|---|---:|---:|---|---:|---:|---:|---|---:|---:|" + ("---:|---:|---:|---|---:|" if symbolic else "")
             + "---:|---:|---:|---:|---|---|"]
    for r in _sorted(runs):
        sym = _symbolic_cells(r) if symbolic else ""
        lines.append(f"| {r.method} | {r.budget} | {r.seed} | {r.eval_split} | {r.n_eval} | {r.samples_per_problem} | "
                     f"{r.accuracy:.1%} | {r.ci_low:.1%}–{r.ci_high:.1%} | {r.thinking:.1%} | {r.answer:.1%} | "
                     f"{sym}{r.examples_seen} | {r.train_tokens_generated} | {r.train_seconds:.0f} | "
                     f"{r.eval_seconds:.0f} | {r.device} | `{r.path}` |")
    seeds = _seed_summary(runs)
    if seeds:
        lines += ["", "## Across seeds", "", "| method | train problems | seeds | mean accuracy | std |",
                  "|---|---:|---:|---:|---:|"]
        for (method, budget), accs in seeds:
            lines.append(f"| {method} | {budget} | {len(accs)} | {statistics.mean(accs):.1%} | "
                         f"{statistics.stdev(accs):.1%} |")
    if comparisons:
        lines += ["", "## Paired comparisons on the same problems", "",
                  "Second minus first, per problem (the share of its samples that are correct, or that have "
                  "an answer), averaged; 95% interval by a paired bootstrap over problems. The first rows "
                  "answer the research questions; the last ones say what each stage changed from the model it "
                  "started from. Each p is for its own row, uncorrected for the number of rows.", "",
                  "| comparison | measure | problems | first | second | difference (95% CI) | test | p | verdict |",
                  "|---|---|---:|---:|---:|---|---|---:|---|"]
        for c in comparisons:
            res = c.result
            test = c.test + (f" ({c.only_a} vs {c.only_b} discordant)" if c.only_a is not None else "")
            lines.append(f"| {c.label} | {c.metric} | {res.n} | {res.mean_a:.1%} | {res.mean_b:.1%} | "
                         f"{res.difference:+.1%} ({res.ci_low:+.1%} to {res.ci_high:+.1%}) | {test} | "
                         f"{res.p_value:.3g} | {_verdict(c)} |")
    if trends:
        lines += ["", "## How GRPO's rewards moved", "",
                  "Mean over the first and the last quarter of logged steps; two-sample permutation test.", "",
                  "| run | reward | steps | first quarter | last quarter | change | p | verdict |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for t in trends:
            name = t.key.replace("rewards/", "").replace("/mean", "")
            verdict = "within noise" if t.p_value >= ALPHA else ("rose" if t.late > t.early else "fell")
            lines.append(f"| `{t.run.path}` | {name} | {t.steps} | {t.early:.3f} | {t.late:.3f} | "
                         f"{t.late - t.early:+.3f} | {t.p_value:.3g} | {verdict} |")
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    lines += ["", "Accuracy: the SOLUTION number equals the gold number. Thinking: a non-empty reasoning "
              "block. Answer: a number could be read from a SOLUTION block. GSM-Symbolic: the same models on one "
              "templated variant (new names and numbers) of each GSM8K test problem that has a template, and on "
              "those test problems themselves, under the same prompt; drop = accuracy on the originals minus on "
              "the variants, paired on the test index, with a paired-bootstrap 95% interval and a sign-flip p. "
              f"A difference whose p-value is {ALPHA} or more is reported as within noise.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------
def _result(run_dir: Path, info: dict) -> RunResult:
    ev, data, train = info["eval"], info.get("data", {}), info.get("train", {})
    stage = info.get("stage", "")
    method = {BASE_STAGE: "base model", "prep_sft": "prep SFT", "grpo": "GRPO"}.get(
        stage, "SFT on GRPO traces" if data.get("source") == "traces" else "SFT")
    timings = info.get("timings", {})
    sym = symbolic_pairing(run_dir, info)
    return RunResult(
        path=str(run_dir), method=method,
        experiment="experiment 2" if method == "SFT on GRPO traces" else "experiment 1",
        budget=int(data.get("n", 0)), seed=int(info["settings"]["seed"]), n_eval=int(ev["n"]),
        samples_per_problem=int(ev.get("samples_per_problem", 1)), accuracy=ev["accuracy"],
        ci_low=ev["accuracy_ci95_low"], ci_high=ev["accuracy_ci95_high"],
        thinking=ev["thinking_proportion"], answer=ev["answer_proportion"],
        symbolic_accuracy=sym.mean_b if sym else None, symbolic_drop=-sym.difference if sym else None,
        examples_seen=int(train.get("examples_seen", 0)),
        train_tokens_generated=int(train.get("tokens_generated", 0)),
        train_seconds=float(timings.get("train_seconds", 0.0)), eval_seconds=float(timings.get("eval_seconds", 0.0)),
        device=str(info.get("environment", {}).get("device", "")),
        csv=str(run_dir / "debug" / ev["csv"]), log=str(run_dir / "train_log.jsonl"),
        eval_split=str(ev.get("split", "test")),
        symbolic_original=sym.mean_a if sym else None, symbolic_pairs=sym.n if sym else 0,
        symbolic_drop_ci_low=-sym.ci_high if sym else None, symbolic_drop_ci_high=-sym.ci_low if sym else None,
        symbolic_p=sym.p_value if sym else None,
    )


_SYMBOLIC_HEADER = "GSM-Symbolic pairs | original | variant | drop (95% CI) | drop p | "


def _symbolic_cells(r: RunResult) -> str:
    """The paired GSM-Symbolic cells of a run's row (dashes when it has no pairs)."""
    if r.symbolic_drop is None:
        return "– | – | – | – | – | "
    return (f"{r.symbolic_pairs} | {r.symbolic_original:.1%} | {r.symbolic_accuracy:.1%} | {r.symbolic_drop:+.1%} "
            f"({r.symbolic_drop_ci_low:+.1%} to {r.symbolic_drop_ci_high:+.1%}) | {r.symbolic_p:.3g} | ")


def _split_words(runs: list[RunResult]) -> str:
    """Which split the numbers come from; comparisons never pair runs of different splits."""
    splits = sorted({r.eval_split for r in runs})
    if splits == ["test"]:
        return "Every number comes from the test split."
    return (f"The split column says where each run's numbers come from ({', '.join(splits)}: validation is "
            "held-out train problems, for tuning; test is for final reports); paired comparisons are made "
            "only between runs of the same split.")


def _warn(run_dir: Path, why: str) -> None:
    print(f"warning: skipping {run_dir}: {why}", file=sys.stderr)


def _curves(log_path: str) -> dict[str, list[tuple[int, float]]]:
    """key -> [(step, value)] from a run's train_log.jsonl (a torn last record is left out)."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for rec in read_jsonl(Path(log_path))[0] if log_path else []:
        step = rec.get("step")
        for key, value in rec.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(step, int):
                out[key].append((step, float(value)))
    return out


def _sorted(runs: list[RunResult]) -> list[RunResult]:
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(runs, key=lambda r: (r.budget, order.get(r.method, 99), r.seed, r.path))


def _seed_summary(runs: list[RunResult]):
    groups = defaultdict(list)
    for r in runs:
        groups[r.method, r.budget].append(r.accuracy)
    return sorted(((k, v) for k, v in groups.items() if len(v) > 1), key=lambda kv: (kv[0][1], kv[0][0]))


def _verdict(c: Comparison) -> str:
    if c.within_noise:
        return "within noise"
    better = c.b.method if c.result.difference > 0 else c.a.method
    return f"{better} better"


# --------------------------------------------------------------------------
# Plots: proportions in percent, budgets as ticks on a log2 axis, the same style everywhere
# --------------------------------------------------------------------------
def _style(ax, percent: bool = True, budgets: list[int] | None = None, xlabel: str | None = None) -> None:
    from matplotlib.ticker import PercentFormatter

    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    if budgets:
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)


def _plots(runs: list[RunResult], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    methods = [m for m in ("SFT", "GRPO") if any(r.method == m for r in runs)]
    budgets = sorted({r.budget for r in runs if r.method in methods})
    if methods:
        fig, ax = plt.subplots(figsize=(6, 4))
        for k, method in enumerate(methods):
            xs, ys, lo, hi = _series(runs, method)
            dodge = 1 + 0.04 * (k - (len(methods) - 1) / 2)  # keep equal points apart
            ax.errorbar([x * dodge for x in xs], ys, yerr=[lo, hi], marker="o", capsize=4, label=method)
        for start, style in (("base model", ":"), ("prep SFT", "--")):
            rs = [r for r in runs if r.method == start]
            if rs:
                ax.axhline(statistics.mean(r.accuracy for r in rs), ls=style, color="grey", label=start)
        _style(ax, budgets=budgets, xlabel="training problems")
        ax.set_ylabel("GSM8K test accuracy")
        ax.set_title("Accuracy vs training problems (95% CI, or mean ± std over seeds)", fontsize=9)
        ax.legend(fontsize=8)
        files.append(_save(fig, out / "accuracy_vs_samples.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        for method in methods:
            rs = [r for r in runs if r.method == method]
            xs = sorted({r.budget for r in rs})
            for attr, style in (("thinking", "-"), ("answer", ":")):
                ys = [statistics.mean(getattr(r, attr) for r in rs if r.budget == x) for x in xs]
                ax.plot(xs, ys, style, marker="o", label=f"{method} {attr}")
        ax.set_ylim(-0.05, 1.05)
        _style(ax, budgets=budgets, xlabel="training problems")
        ax.set_ylabel("share of completions")
        ax.set_title("Thinking and answer proportions", fontsize=9)
        ax.legend(fontsize=8)
        files.append(_save(fig, out / "format_vs_samples.png"))

        files.append(_compute_plot(plt, runs, methods, out))
    for experiment in sorted({r.experiment for r in runs}):
        members = [r for r in runs if r.experiment == experiment]
        if experiment == "experiment 2":  # SFT on traces beside SFT on the original solutions
            members += [r for r in runs if r.method == "SFT" and r.budget in {m.budget for m in members}]
        name = _curves_plot(plt, members, experiment, out)
        if name:
            files.append(name)

    traces = [r for r in runs if r.method == "SFT on GRPO traces"]
    if traces:
        tb = sorted({r.budget for r in traces})
        fig, ax = plt.subplots(figsize=(6, 4))
        width = 0.38
        for k, method in enumerate(("SFT", "SFT on GRPO traces")):
            pts = [[r for r in runs if r.method == method and r.budget == b] for b in tb]
            ys = [statistics.mean(r.accuracy for r in p) if p else 0 for p in pts]
            lo = [max(0.0, ys[i] - min(r.ci_low for r in p)) if p else 0 for i, p in enumerate(pts)]
            hi = [max(0.0, max(r.ci_high for r in p) - ys[i]) if p else 0 for i, p in enumerate(pts)]
            ax.bar([i + (k - 0.5) * width for i in range(len(tb))], ys, width, yerr=[lo, hi], capsize=4,
                   label=method)
        ax.set_xticks(range(len(tb)), [str(b) for b in tb])
        _style(ax, xlabel="training problems")
        ax.set_ylabel("GSM8K test accuracy")
        ax.set_title("SFT on GRPO traces vs original solutions (95% CI)", fontsize=9)
        ax.legend(fontsize=8)
        files.append(_save(fig, out / "traces_vs_original.png"))
    return files


def _compute_plot(plt, runs: list[RunResult], methods: list[str], out: Path) -> str:
    """What each method paid: accuracy against examples seen, tokens generated and wall time."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    panels = (("examples_seen", "training examples seen"), ("train_tokens_generated", "tokens generated in training"),
              ("train_seconds", "training wall time (s)"))
    for ax, (attr, label) in zip(axes, panels):
        for method in methods:
            rs = sorted((r for r in runs if r.method == method), key=lambda r: getattr(r, attr))
            ax.errorbar([getattr(r, attr) for r in rs], [r.accuracy for r in rs],
                        yerr=[[r.accuracy - r.ci_low for r in rs], [r.ci_high - r.accuracy for r in rs]],
                        marker="o", capsize=3, label=method)
        xs = [getattr(r, attr) for r in runs if r.method in methods and getattr(r, attr) > 0]
        if xs and max(xs) / max(1, min(xs)) > 8:
            ax.set_xscale("symlog")
        _style(ax, xlabel=label)
    axes[0].set_ylabel("GSM8K test accuracy")
    axes[0].legend(fontsize=8)
    fig.suptitle("Accuracy against what training paid (95% CI)", fontsize=9)
    return _save(fig, out / "compute.png")


def _curves_plot(plt, runs: list[RunResult], experiment: str, out: Path) -> str | None:
    """SFT loss and GRPO's reward, reward functions, reward std, KL, lengths and truncation by step."""
    sft = [r for r in runs if r.method in ("SFT", "SFT on GRPO traces", "prep SFT")]
    grpo = [r for r in runs if r.method == "GRPO"]
    if not sft and not grpo:
        return None
    panels = ["loss"] + (list(GRPO_CURVES) + ["rewards"] if grpo else [])
    cols = 3 if grpo else 1
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels):]:
        ax.axis("off")
    for r in sft:
        pts = _curves(r.log).get("loss", [])
        if pts:
            flat[0].plot(*zip(*pts), label=f"{r.method} {r.budget}")
    _style(flat[0], percent=False, xlabel="step")
    flat[0].set_title("SFT loss", fontsize=9)
    _legend(flat[0])
    for ax, key in zip(flat[1:], panels[1:]):
        for r in grpo:
            log = _curves(r.log)
            if key == "rewards":
                for name in sorted(k for k in log if k.startswith("rewards/") and k.endswith("/mean")):
                    ax.plot(*zip(*log[name]), label=f"{name.split('/')[1]} ({r.budget})")
            elif log.get(key):
                ax.plot(*zip(*log[key]), label=f"GRPO {r.budget}")
        _style(ax, percent=key == "completions/clipped_ratio", xlabel="step")
        ax.set_title("GRPO " + ("reward functions (means)" if key == "rewards" else GRPO_CURVES[key]), fontsize=9)
        _legend(ax)
    fig.suptitle(f"Training curves, {experiment}", fontsize=10)
    slug = "".join(ch if ch.isalnum() else "_" for ch in experiment).strip("_")
    return _save(fig, out / f"curves_{slug}.png")


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


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


__all__ = ["collect_runs", "write_report", "compare", "reward_trends", "bootstrap_interval"]

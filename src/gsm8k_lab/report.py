"""Results table and paired tests over finished run directories (read by :mod:`.results`, drawn by
:mod:`.figures`).

``write_report(roots, out_dir)`` finds every finished run (``run.json`` with
status ``complete``) under the given folders; it reads only what runs recorded
(``run.json``, their evaluation CSVs and ``train_log.jsonl``) and writes:

- ``results.csv``: one row per run: method, budget, seed, the split its numbers
  come from (test or validation), accuracy (mean@K with K samples per problem;
  the seed's greedy accuracy when K = 1) with its 95% interval, thinking and
  answer proportions, the GSM-Symbolic drop when the run was evaluated there
  (originals minus variants, paired on the test index, with its interval), and
  what training paid (optimizer steps, epochs, learning rate, problems seen,
  completions sampled, tokens generated, wall time, device); for SFT on GRPO
  traces, the share of its training examples that are accepted GRPO traces (the
  treatment's strength);
- ``report.md``: the table; paired comparisons on the problems both runs were
  evaluated on, only between runs of the same split, for accuracy and for the
  answer-format proportion, in two families declared here: **primary** (the
  research questions: SFT vs GRPO at each budget and seed, SFT on GRPO traces vs
  SFT on the original solutions) and **secondary** (each stage against the model
  it started from, and how GRPO's rewards moved: first vs last quarter of steps).
  Each row has the difference with a 95% interval (Newcombe's paired interval for
  binary per-problem results, a two-stage bootstrap with several samples per
  problem), the raw p (exact McNemar, or a sign-flip test on per-problem shares;
  a permutation test for reward trends), the Holm-adjusted p within its family,
  the smallest difference the comparison could detect (and, per family, what the
  design detects at assumed discordances), and a verdict that rests on the
  adjusted p only;
- plots, every proportion in percent: ``accuracy_vs_samples.png``,
  ``format_vs_samples.png`` (thinking and answer proportions with their
  intervals), ``compute.png`` (accuracy against problems seen, completions
  sampled, tokens generated in training and wall time), ``curves_<experiment>.png``
  (SFT loss; GRPO reward, a rolling mean of each reward function, reward std, KL,
  completion length and truncated share by step) and, with traces runs,
  ``traces_vs_original.png``. Every error bar's legend says what it is.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .evaluate import per_problem_scores
from .figures import write_figures
from .results import RunResult, collect_runs, curves, sorted_runs
from .runs import atomic_write_text
from .stats import Paired, detectable_difference, holm, paired_comparison, two_sample_p

ALPHA = 0.05

#: The comparison families, declared before any result is seen; Holm's adjustment runs within each.
PRIMARY, SECONDARY = "primary", "secondary"
FAMILIES = {
    PRIMARY: "the research questions: SFT vs GRPO at each budget and seed; SFT on GRPO traces vs SFT on "
             "the original solutions",
    SECONDARY: "what each stage changed from the model it started from (base -> prep SFT -> SFT / GRPO), and "
               "how GRPO's rewards moved during training",
}


@dataclass
class Comparison:
    label: str
    metric: str  # "accuracy" or "answer format"
    a: RunResult
    b: RunResult
    result: Paired
    family: str = PRIMARY
    p_holm: float = 1.0  # Holm-adjusted within the family

    @property
    def test(self) -> str:
        return self.result.test

    @property
    def within_noise(self) -> bool:
        return self.p_holm >= ALPHA


@dataclass
class Trend:
    run: RunResult
    key: str
    early: float
    late: float
    p_value: float
    steps: int
    family: str = SECONDARY
    p_holm: float = 1.0


def compare(label: str, a: RunResult, b: RunResult, family: str = PRIMARY, alpha: float = ALPHA) -> list[Comparison]:
    """Accuracy and answer format of ``b`` against ``a`` on the problems both were evaluated on;
    ``alpha`` is the level at which the smallest detectable difference is computed."""
    sa, sb = (r.scores if r.scores is not None else per_problem_scores(r.csv) for r in (a, b))
    common = sorted(set(sa) & set(sb))
    out = []
    for key, metric in (("correct", "accuracy"), ("has_answer", "answer format")):
        xa, xb = [sa[i][key] for i in common], [sb[i][key] for i in common]
        result = paired_comparison(xa, xb, samples=(a.samples_per_problem, b.samples_per_problem), alpha=alpha)
        out.append(Comparison(label, metric, a, b, result, family))
    return out


def find_comparisons(runs: list[RunResult], trends: list[Trend] | None = None) -> list[Comparison]:
    """The declared families (see ``FAMILIES``), each Holm-adjusted as a whole: primary first, then
    secondary (whose family also holds the reward ``trends``, adjusted in place)."""
    specs = pair_specs(runs)
    trends = trends or []
    out = []
    for family in (PRIMARY, SECONDARY):
        members = [(label, a, b) for fam, label, a, b in specs if fam == family]
        family_trends = [t for t in trends if t.family == family]
        m = 2 * len(members) + len(family_trends)  # two measures per pair
        comparisons = [c for label, a, b in members for c in compare(label, a, b, family, ALPHA / max(1, m))]
        adjusted = holm([c.result.p_value for c in comparisons] + [t.p_value for t in family_trends])
        for item, p in zip([*comparisons, *family_trends], adjusted):
            item.p_holm = p
        out += comparisons
    return out


def pair_specs(runs: list[RunResult]) -> list[tuple[str, str, RunResult, RunResult]]:
    """(family, label, first, second) for every comparison the runs allow."""
    by_key = {(r.method, r.budget, r.seed): r for r in runs}
    specs = []
    for (method, budget, seed), r in sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if method != "SFT":
            continue
        if ("GRPO", budget, seed) in by_key:
            specs.append((PRIMARY, f"SFT vs GRPO, {budget} problems, seed {seed}", r, by_key["GRPO", budget, seed]))
        traces = by_key.get(("SFT on GRPO traces", budget, seed))
        if traces is not None:
            share = (f"; {traces.grpo_traces} of {traces.budget} examples are GRPO traces"
                     if traces.grpo_traces is not None else "")
            specs.append((PRIMARY, f"SFT original vs SFT on GRPO traces, {budget} problems, seed {seed}{share}",
                          r, traces))
    base = [r for r in runs if r.method == "base model"]
    prep = [r for r in runs if r.method == "prep SFT"]
    if base and prep:
        specs.append((SECONDARY, f"base model vs prep SFT ({prep[0].budget} problems)", base[0], prep[0]))
    if prep:
        for (method, budget, seed), r in sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
            if method in ("SFT", "GRPO"):
                specs.append((SECONDARY, f"prep SFT vs {method} from it, {budget} problems, seed {seed}", prep[0], r))
    return specs


def comparisons_within_splits(runs: list[RunResult], trends: list[Trend] | None = None) -> list[Comparison]:
    """:func:`find_comparisons` among the runs of each evaluation split on its own: a run evaluated on
    validation is never paired with one evaluated on test (their problem indices name different problems)."""
    splits = sorted({r.eval_split for r in runs}, key=lambda split: (split != "test", split))
    return [c for split in splits for c in find_comparisons([r for r in runs if r.eval_split == split],
                                                            [t for t in trends or [] if t.run.eval_split == split])]


def reward_trends(runs: list[RunResult]) -> list[Trend]:
    """Each GRPO reward's mean in the first vs the last quarter of logged steps, with a permutation p."""
    trends = []
    for r in runs:
        if r.method != "GRPO":
            continue
        log = curves(r.log)
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
    trends = reward_trends(runs)
    comparisons = comparisons_within_splits(runs, trends)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    fields = [f for f in asdict(runs[0]) if f not in ("log", "answer_ci", "thinking_ci", "scores")]
    writer = csv.DictWriter(buf, fieldnames=[*fields, "grpo_trace_share"], extrasaction="ignore")
    writer.writeheader()
    for r in sorted_runs(runs):
        writer.writerow({**asdict(r), "grpo_trace_share": r.grpo_trace_share})
    atomic_write_text(out / "results.csv", buf.getvalue())
    plots = write_figures(runs, out)
    atomic_write_text(out / "report.md", render_markdown(runs, comparisons, trends, plots))
    return {"runs": len(runs), "pairs": len(comparisons) // 2, "comparisons": len(comparisons),
            "resolved": sum(not c.within_noise for c in comparisons),
            "files": ["results.csv", "report.md", *plots]}


def render_markdown(runs: list[RunResult], comparisons: list[Comparison], trends: list[Trend],
                    plots: list[str]) -> str:
    ks = sorted({r.samples_per_problem for r in runs})
    acc = "accuracy" if ks == [1] else "accuracy (mean@K)"
    cols = _table_columns(runs)
    lines = ["# GSM8K: SFT vs GRPO", "",
             f"{len(runs)} finished runs. {acc.capitalize()} with its 95% interval on the evaluated problems of "
             "the run's split (Wilson with one sample per problem, a bootstrap over problems with several). "
             + _split_words(runs) + " Beside each run, what its training paid: optimizer steps, epochs, peak "
             "learning rate, training problems seen (GRPO: prompts, each sampled as a group), completions sampled "
             "in training, tokens generated in training and wall time.", "",
             "| " + " | ".join(c[0] for c in cols) + " |",
             "|" + "|".join(c[1] for c in cols) + "|"]
    lines += ["| " + " | ".join(cell(r) for _, _, cell in cols) + " |" for r in sorted_runs(runs)]
    seeds = _seed_summary(runs)
    if seeds:
        lines += ["", "## Across seeds", "", "| method | train problems | seeds | mean accuracy | std |",
                  "|---|---:|---:|---:|---:|"]
        for (method, budget), accs in seeds:
            lines.append(f"| {method} | {budget} | {len(accs)} | {statistics.mean(accs):.1%} | "
                         f"{statistics.stdev(accs):.1%} |")
    if comparisons:
        lines += ["", "## Paired comparisons on the same problems", "", *_comparison_preamble(comparisons, trends)]
        for family in (PRIMARY, SECONDARY):
            rows = [c for c in comparisons if c.family == family]
            if not rows:
                continue
            lines += ["", f"### {family.capitalize()}: {FAMILIES[family]}", "",
                      "| comparison | measure | problems | first | second | difference (95% CI) | test | p | "
                      "Holm p | detectable | verdict |",
                      "|---|---|---:|---:|---:|---|---|---:|---:|---:|---|"]
            lines += [_comparison_row(c) for c in rows]
    if trends:
        lines += ["", "## How GRPO's rewards moved (secondary family)", "",
                  "Mean over the first and the last quarter of logged steps; two-sample permutation test; Holm p "
                  "adjusted together with the secondary comparisons above.", "",
                  "| run | reward | steps | first quarter | last quarter | change | p | Holm p | verdict |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for t in trends:
            name = t.key.replace("rewards/", "").replace("/mean", "")
            verdict = "within noise" if t.p_holm >= ALPHA else ("rose" if t.late > t.early else "fell")
            lines.append(f"| `{t.run.path}` | {name} | {t.steps} | {t.early:.3f} | {t.late:.3f} | "
                         f"{t.late - t.early:+.3f} | {t.p_value:.3g} | {t.p_holm:.3g} | {verdict} |")
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    lines += ["", "Accuracy: the SOLUTION number equals the gold number. Thinking: a non-empty reasoning "
              "block. Answer: a number could be read from a SOLUTION block. GSM-Symbolic: the same models on one "
              "templated variant (new names and numbers) of each GSM8K test problem that has a template, and on "
              "those test problems themselves, under the same prompt; drop = accuracy on the originals minus on "
              "the variants, paired on the test index, with its 95% interval and p. "
              f"A difference is called only when its Holm-adjusted p is below {ALPHA}.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------
def _comparison_preamble(comparisons: list[Comparison], trends: list[Trend]) -> list[str]:
    sizes = {f: sum(c.family == f for c in comparisons) + sum(t.family == f for t in trends) for f in FAMILIES}
    return [
        "Second minus first, per problem (the share of its samples that are correct, or that have an answer), "
        "averaged. The 95% interval: Newcombe's paired interval (method 10 of Newcombe 1998, built on Wilson "
        "intervals) when each problem's result is binary, a two-stage bootstrap (problems, then each problem's "
        "samples) with several samples per problem; neither collapses to zero width. p: exact McNemar on the "
        "discordant problems, or a sign-flip permutation test on per-problem shares.",
        "",
        "The families were fixed before looking at results: " + "; ".join(
            f"**{f}** ({sizes[f]} tests) = {FAMILIES[f]}" for f in FAMILIES) + ". "
        f"Holm's step-down adjustment runs within each family; the verdict uses the Holm p only (below {ALPHA}), "
        "the raw p is shown beside it.",
        "",
        "Detectable: the smallest difference this comparison could find with 80% power, two-sided, at "
        f"{ALPHA} divided by the family's size (Holm's first, strictest threshold), on its number of problems. "
        "With one sample per problem it uses the discordance observed in this comparison (the share of problems "
        "on which the two runs disagree) in Connor's (1987) formula for McNemar's test: '> d' when not even the "
        "largest difference that discordance allows (d) is detectable; with several samples, the standard "
        "deviation of the observed per-problem differences. '–' when there is nothing to base it on (no "
        "discordant problem, or per-problem differences that are all equal).",
        "", *_design_lines(comparisons, sizes),
    ]


#: Discordances assumed for the design statement (the share of problems on which two runs disagree).
ASSUMED_DISCORDANCE = (0.1, 0.2, 0.3)


def _design_lines(comparisons: list[Comparison], sizes: dict[str, int]) -> list[str]:
    """What each family's design can detect whatever was observed: on its problems, at alpha over the
    family's size, with 80% power, for a few assumed discordances."""
    lines = []
    for family in FAMILIES:
        ns = [c.result.n for c in comparisons if c.family == family]
        if not ns:
            continue
        n, m = max(ns), sizes[family]
        found = [detectable_difference(n, discordant=psi, alpha=ALPHA / m) for psi in ASSUMED_DISCORDANCE]
        lines.append(f"Design, {family} family: on {n} problems at {ALPHA}/{m} with 80% power, the smallest "
                     "detectable paired difference is " + " / ".join("none" if d is None else f"{d:.1%}" for d in found)
                     + " when " + " / ".join(f"{psi:.0%}" for psi in ASSUMED_DISCORDANCE)
                     + " of the problems are discordant (assumed; 'none': not even a difference as large as the "
                     "discordance).")
    return lines


def _comparison_row(c: Comparison) -> str:
    res = c.result
    test = res.test + (f" ({res.only_a} vs {res.only_b} discordant)" if res.only_a is not None else "")
    if res.detectable is not None:
        detectable = f"±{res.detectable:.1%}"
    elif res.only_a or res.only_b:  # discordant problems, but even a difference that large would be missed
        detectable = f"> {(res.only_a + res.only_b) / res.n:.0%}"
    else:
        detectable = "–"
    return (f"| {c.label} | {c.metric} | {res.n} | {res.mean_a:.1%} | {res.mean_b:.1%} | "
            f"{res.difference:+.1%} ({res.ci_low:+.1%} to {res.ci_high:+.1%}) | {test} | {res.p_value:.3g} | "
            f"{c.p_holm:.3g} | {detectable} | {_verdict(c)} |")


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _symbolic_drop(r: RunResult) -> str:
    """The paired GSM-Symbolic drop with its interval (a dash when the run has no pairs)."""
    if r.symbolic_drop is None:
        return "–"
    return f"{r.symbolic_drop:+.1%} ({r.symbolic_drop_ci_low:+.1%} to {r.symbolic_drop_ci_high:+.1%})"


def _split_words(runs: list[RunResult]) -> str:
    """Which split the numbers come from; comparisons never pair runs of different splits."""
    splits = sorted({r.eval_split for r in runs})
    if splits == ["test"]:
        return "Every number comes from the test split."
    return (f"The split column says where each run's numbers come from ({', '.join(splits)}: validation is "
            "held-out train problems, for tuning; test is for final reports); paired comparisons are made "
            "only between runs of the same split.")


def _seed_summary(runs: list[RunResult]):
    groups = defaultdict(list)
    for r in runs:
        groups[r.method, r.budget].append(r.accuracy)
    return sorted(((k, v) for k, v in groups.items() if len(v) > 1), key=lambda kv: (kv[0][1], kv[0][0]))


def _verdict(c: Comparison) -> str:
    """From the Holm-adjusted p only."""
    if c.within_noise:
        return "within noise"
    better = c.b.method if c.result.difference > 0 else c.a.method
    return f"{better} better"


#: The results table: (header, alignment, cell). A column is one entry here.
def _table_columns(runs: list[RunResult]) -> list[tuple[str, str, Callable[[RunResult], str]]]:
    acc = "accuracy" if {r.samples_per_problem for r in runs} == {1} else "accuracy (mean@K)"
    cols = [
        ("method", "---", lambda r: r.method),
        ("train problems", "---:", lambda r: str(r.budget)),
        ("seed", "---:", lambda r: str(r.seed)),
        ("split", "---", lambda r: r.eval_split),
        ("eval n", "---:", lambda r: str(r.n_eval)),
        ("K", "---:", lambda r: str(r.samples_per_problem)),
        (acc, "---:", lambda r: f"{r.accuracy:.1%}"),
        ("95% CI", "---", lambda r: f"{r.ci_low:.1%}–{r.ci_high:.1%}"),
        ("thinking", "---:", lambda r: f"{r.thinking:.1%}"),
        ("answer", "---:", lambda r: f"{r.answer:.1%}"),
    ]
    if any(r.symbolic_accuracy is not None for r in runs):
        cols += [("GSM-Symbolic pairs", "---:", lambda r: str(r.symbolic_pairs) if r.symbolic_pairs else "–"),
                 ("original", "---:", lambda r: _pct(r.symbolic_original)),
                 ("variant", "---:", lambda r: _pct(r.symbolic_accuracy)),
                 ("drop (95% CI)", "---", _symbolic_drop),
                 ("drop p", "---:", lambda r: f"{r.symbolic_p:.3g}" if r.symbolic_p is not None else "–")]
    cols += [
        ("steps", "---:", lambda r: str(r.optimizer_steps) if r.optimizer_steps else "–"),
        ("epochs", "---:", lambda r: f"{r.epochs:g}" if r.epochs else "–"),
        ("learning rate", "---:", lambda r: f"{r.learning_rate:g}" if r.learning_rate else "–"),
        ("problems seen", "---:", lambda r: str(r.problems_seen)),
        ("completions sampled", "---:", lambda r: str(r.completions_sampled)),
        ("tokens generated in training", "---:", lambda r: str(r.train_tokens_generated)),
        ("train s", "---:", lambda r: f"{r.train_seconds:.0f}"),
        ("eval s", "---:", lambda r: f"{r.eval_seconds:.0f}"),
    ]
    if any(r.grpo_traces is not None for r in runs):
        cols.append(("GRPO traces", "---:", lambda r: f"{r.grpo_traces} of {r.budget} ({r.grpo_trace_share:.0%})"
                     if r.grpo_traces is not None else "–"))
    return cols + [("device", "---", lambda r: r.device), ("run", "---", lambda r: f"`{r.path}`")]

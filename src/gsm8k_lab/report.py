"""Results table, paired tests, training curves and plots over finished run directories.

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
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import UsageError
from .evaluate import per_problem_scores
from .runs import BASE_STAGE, RunStatus, atomic_write_text, read_jsonl
from .stats import (
    Paired,
    bootstrap_interval,
    detectable_difference,
    holm,
    paired_comparison,
    two_sample_p,
    wilson_interval,
)
from .symbolic import is_variants, originals_of

ALPHA = 0.05
METHOD_ORDER = ["base model", "prep SFT", "SFT", "GRPO", "SFT on GRPO traces"]
#: The comparison families, declared before any result is seen; Holm's adjustment runs within each.
PRIMARY, SECONDARY = "primary", "secondary"
FAMILIES = {
    PRIMARY: "the research questions: SFT vs GRPO at each budget and seed; SFT on GRPO traces vs SFT on "
             "the original solutions",
    SECONDARY: "what each stage changed from the model it started from (base -> prep SFT -> SFT / GRPO), and "
               "how GRPO's rewards moved during training",
}
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
    optimizer_steps: int
    epochs: float | None
    learning_rate: float | None
    problems_seen: int  # training problems presented (GRPO: prompts, each with its group of completions)
    completions_sampled: int  # GRPO's rollouts; 0 for SFT
    train_tokens_generated: int
    train_seconds: float
    eval_seconds: float
    device: str
    csv: str
    grpo_traces: int | None = None  # SFT on traces: training examples that are accepted GRPO traces
    answer_ci: tuple[float, float] | None = field(default=None, repr=False)
    thinking_ci: tuple[float, float] | None = field(default=None, repr=False)
    log: str = field(default="", repr=False)
    eval_split: str = "test"  # the problems every number of this run comes from
    symbolic_original: float | None = None  # accuracy on the test problems the GSM-Symbolic variants come from
    symbolic_pairs: int = 0
    symbolic_drop_ci_low: float | None = None
    symbolic_drop_ci_high: float | None = None
    symbolic_p: float | None = None

    @property
    def grpo_trace_share(self) -> float | None:
        return self.grpo_traces / self.budget if self.grpo_traces is not None and self.budget else None


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


def compare(label: str, a: RunResult, b: RunResult, family: str = PRIMARY, alpha: float = ALPHA) -> list[Comparison]:
    """Accuracy and answer format of ``b`` against ``a`` on the problems both were evaluated on;
    ``alpha`` is the level at which the smallest detectable difference is computed."""
    sa, sb = per_problem_scores(a.csv), per_problem_scores(b.csv)
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
    trends = reward_trends(runs)
    comparisons = comparisons_within_splits(runs, trends)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    fields = [f for f in asdict(runs[0]) if f not in ("log", "answer_ci", "thinking_ci")]
    writer = csv.DictWriter(buf, fieldnames=[*fields, "grpo_trace_share"], extrasaction="ignore")
    writer.writeheader()
    for r in _sorted(runs):
        writer.writerow({**asdict(r), "grpo_trace_share": r.grpo_trace_share})
    atomic_write_text(out / "results.csv", buf.getvalue())
    plots = _plots(runs, out)
    atomic_write_text(out / "report.md", render_markdown(runs, comparisons, trends, plots))
    return {"runs": len(runs), "pairs": len(comparisons) // 2, "comparisons": len(comparisons),
            "resolved": sum(not c.within_noise for c in comparisons),
            "files": ["results.csv", "report.md", *plots]}


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
    lines += ["| " + " | ".join(cell(r) for _, _, cell in cols) + " |" for r in _sorted(runs)]
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


def _result(run_dir: Path, info: dict) -> RunResult:
    ev, data, train = info["eval"], info.get("data", {}), info.get("train", {})
    stage = info.get("stage", "")
    method = {BASE_STAGE: "base model", "prep_sft": "prep SFT", "grpo": "GRPO"}.get(
        stage, "SFT on GRPO traces" if data.get("source") == "traces" else "SFT")
    timings = info.get("timings", {})
    settings = info["settings"]
    section = settings.get("grpo" if stage == "grpo" else "sft", {}) if stage != BASE_STAGE else {}
    sym = symbolic_pairing(run_dir, info)
    seen = int(train.get("examples_seen", 0))  # per-device batches count completions in GRPO
    group = int(train.get("num_generations", section.get("num_generations", 1)) or 1) if stage == "grpo" else 1
    n_eval = int(ev["n"])
    return RunResult(
        path=str(run_dir), method=method,
        experiment="experiment 2" if method == "SFT on GRPO traces" else "experiment 1",
        budget=int(data.get("n", 0)), seed=int(settings["seed"]), n_eval=n_eval,
        samples_per_problem=int(ev.get("samples_per_problem", 1)), accuracy=ev["accuracy"],
        ci_low=ev["accuracy_ci95_low"], ci_high=ev["accuracy_ci95_high"],
        thinking=ev["thinking_proportion"], answer=ev["answer_proportion"],
        symbolic_accuracy=sym.mean_b if sym else None, symbolic_drop=-sym.difference if sym else None,
        optimizer_steps=int(train.get("global_steps", 0)),
        epochs=_float(train.get("epochs", section.get("epochs"))),
        learning_rate=_float(section.get("prep_learning_rate") if stage == "prep_sft"
                             and section.get("prep_learning_rate") is not None else section.get("learning_rate")),
        problems_seen=seen // group, completions_sampled=seen if stage == "grpo" else 0,
        train_tokens_generated=int(train.get("tokens_generated", 0)),
        train_seconds=float(timings.get("train_seconds", 0.0)), eval_seconds=float(timings.get("eval_seconds", 0.0)),
        device=str(info.get("environment", {}).get("device", "")),
        csv=str(run_dir / "debug" / ev["csv"]),
        grpo_traces=_grpo_traces(data) if method == "SFT on GRPO traces" else None,
        answer_ci=_interval(ev, "answer_proportion", n_eval), thinking_ci=_interval(ev, "thinking_proportion", n_eval),
        log=str(run_dir / "train_log.jsonl"),
        eval_split=str(ev.get("split", "test")),
        symbolic_original=sym.mean_a if sym else None, symbolic_pairs=sym.n if sym else 0,
        symbolic_drop_ci_low=-sym.ci_high if sym else None, symbolic_drop_ci_high=-sym.ci_low if sym else None,
        symbolic_p=sym.p_value if sym else None,
    )


def _grpo_traces(data: dict) -> int | None:
    """How many of the examples an SFT-on-traces run trained on (the traces file's first ``n``
    lines) are accepted GRPO completions rather than original solutions; None when the file is gone."""
    path, n = data.get("traces_file"), int(data.get("n", 0))
    if not path or not Path(path).is_file():
        return None
    records = read_jsonl(Path(path))[0][:n]
    return sum(rec.get("source") == "grpo" for rec in records)


def _interval(ev: dict, key: str, n: int) -> tuple[float, float]:
    """A proportion's recorded 95% interval, or its Wilson interval for records that lack it."""
    recorded = ev.get(f"{key}_ci95")
    if isinstance(recorded, list) and len(recorded) == 2:
        return (float(recorded[0]), float(recorded[1]))
    return wilson_interval(round(float(ev[key]) * n), n)


def _float(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
    """From the Holm-adjusted p only."""
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
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
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
            xs, ys, lo, hi, spread = _series(runs, method, "accuracy")
            ax.errorbar([x * _dodge(k, len(methods)) for x in xs], ys, yerr=[lo, hi], marker=MARKERS[k], capsize=4,
                        label=f"{method} ({spread})")
        for start, style in (("base model", ":"), ("prep SFT", "--")):
            rs = [r for r in runs if r.method == start]
            if rs:
                ax.axhline(statistics.mean(r.accuracy for r in rs), ls=style, color="grey", label=start)
        _style(ax, budgets=budgets, xlabel="training problems")
        ax.set_ylabel("GSM8K test accuracy")
        ax.set_title("Accuracy vs training problems", fontsize=9)
        ax.legend(fontsize=8)
        files.append(_save(fig, out / "accuracy_vs_samples.png"))
        files.append(_format_plot(plt, runs, methods, budgets, out))
        files.append(_compute_plot(plt, runs, methods, out))
    for experiment in sorted({r.experiment for r in runs}):
        members = [r for r in runs if r.experiment == experiment]
        if experiment == "experiment 2":  # SFT on traces beside SFT on the original solutions
            members += [r for r in runs if r.method == "SFT" and r.budget in {m.budget for m in members}]
        name = _curves_plot(plt, members, experiment, out)
        if name:
            files.append(name)
    if any(r.method == "SFT on GRPO traces" for r in runs):
        files.append(_traces_plot(plt, runs, out))
    return files


#: One marker per series, so series that coincide stay visible (filled and hollow alternate).
MARKERS = ["o", "s", "^", "D", "v", "P"]


def _format_plot(plt, runs: list[RunResult], methods: list[str], budgets: list[int], out: Path) -> str:
    """Thinking and answer proportions per budget, each with its 95% interval (or spread over seeds),
    and the answer proportion of the base model and the prep SFT model they started from."""
    fig, ax = plt.subplots(figsize=(6, 4))
    series = [(m, attr) for m in methods for attr in ("thinking", "answer")]
    for k, (method, attr) in enumerate(series):
        xs, ys, lo, hi, spread = _series(runs, method, attr)
        line = ax.errorbar([x * _dodge(k, len(series)) for x in xs], ys, yerr=[lo, hi], capsize=3,
                           marker=MARKERS[k % len(MARKERS)], ls="-" if attr == "answer" else ":",
                           mfc="none" if attr == "thinking" else None, ms=7 if attr == "thinking" else 5,
                           label=f"{method} {attr} ({spread})")
        line[0].set_zorder(3 + k)
    for start, style in (("base model", ":"), ("prep SFT", "--")):  # where training started, with its band
        rs = [r for r in runs if r.method == start]
        if rs:
            low, high = rs[0].answer_ci
            ax.axhline(rs[0].answer, ls=style, color="grey", label=f"{start} answer (band: 95% CI)")
            ax.axhspan(low, high, color="grey", alpha=0.12)
    ax.set_ylim(-0.05, 1.05)
    _style(ax, budgets=budgets, xlabel="training problems")
    ax.set_ylabel("share of completions")
    ax.set_title("Thinking (hollow) and answer (filled) proportions", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out / "format_vs_samples.png")


def _traces_plot(plt, runs: list[RunResult], out: Path) -> str:
    """SFT on GRPO traces beside SFT on the original solutions: bars with a marker and interval on
    each (so a bar at 0% still shows its value), and the share of GRPO traces under each budget."""
    traces = [r for r in runs if r.method == "SFT on GRPO traces"]
    tb = sorted({r.budget for r in traces})
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.38
    for k, method in enumerate(("SFT", "SFT on GRPO traces")):
        xs, ys, lo, hi, spread = _series(runs, method, "accuracy", only=tb)
        pos = [tb.index(x) + (k - 0.5) * width for x in xs]
        colour = f"C{k}"
        ax.bar(pos, ys, width, color=colour, alpha=0.35, edgecolor=colour)
        ax.errorbar(pos, ys, yerr=[lo, hi], fmt=MARKERS[k], color=colour, capsize=4, ms=6,
                    label=f"{method} ({spread})")
    labels = []
    for b in tb:
        shares = [r for r in traces if r.budget == b and r.grpo_traces is not None]
        labels.append(f"{b}\n{shares[0].grpo_traces}/{b} GRPO traces" if shares else str(b))
    ax.set_xticks(range(len(tb)), labels)
    ax.set_ylim(bottom=-0.02)
    _style(ax, xlabel="training problems (and how many of them have an accepted GRPO trace)")
    ax.set_ylabel("GSM8K test accuracy")
    ax.set_title("SFT on GRPO traces vs on the original solutions", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, out / "traces_vs_original.png")


def _compute_plot(plt, runs: list[RunResult], methods: list[str], out: Path) -> str:
    """What each method paid: accuracy against problems seen, completions sampled, tokens generated
    and wall time."""
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), sharey=True)
    panels = (("problems_seen", "training problems seen"), ("completions_sampled", "completions sampled in training"),
              ("train_tokens_generated", "tokens generated in training"), ("train_seconds", "training wall time (s)"))
    for ax, (attr, label) in zip(axes, panels):
        for k, method in enumerate(methods):
            rs = sorted((r for r in runs if r.method == method), key=lambda r: getattr(r, attr))
            ax.errorbar([getattr(r, attr) for r in rs], [r.accuracy for r in rs],
                        yerr=[[r.accuracy - r.ci_low for r in rs], [r.ci_high - r.accuracy for r in rs]],
                        marker=MARKERS[k], capsize=3, label=f"{method} (95% CI)")
        xs = [getattr(r, attr) for r in runs if r.method in methods and getattr(r, attr) > 0]
        if xs and max(xs) / max(1, min(xs)) > 8:
            ax.set_xscale("symlog")
        _style(ax, xlabel=label)
    axes[0].set_ylabel("GSM8K test accuracy")
    axes[0].legend(fontsize=8)
    fig.suptitle("Accuracy against what training paid (SFT samples no completions: 0 on the second panel)",
                 fontsize=9)
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
        if key == "rewards":
            _rewards_panel(ax, grpo)
            continue
        for r in grpo:
            log = _curves(r.log)
            if log.get(key):
                ax.plot(*zip(*log[key]), label=f"GRPO {r.budget}")
        _style(ax, percent=key == "completions/clipped_ratio", xlabel="step")
        ax.set_title("GRPO " + GRPO_CURVES[key], fontsize=9)
        _legend(ax)
    fig.suptitle(f"Training curves, {experiment}", fontsize=10)
    slug = "".join(ch if ch.isalnum() else "_" for ch in experiment).strip("_")
    return _save(fig, out / f"curves_{slug}.png")


def _rewards_panel(ax, grpo: list[RunResult]) -> None:
    """Each reward function's mean as a rolling mean over steps, one line per function, for the GRPO
    run with the most logged steps (the others are in their own runs' logs)."""
    logs = [(r, _curves(r.log)) for r in grpo]
    run, log = max(logs, key=lambda rl: max((len(v) for k, v in rl[1].items() if k.startswith("rewards/")),
                                            default=0))
    names = sorted(k for k in log if k.startswith("rewards/") and k.endswith("/mean"))
    window = 1
    for k, name in enumerate(names):
        steps, values = zip(*log[name])
        window = max(1, len(values) // 8)
        ax.plot(steps, _rolling_mean(values, window), marker=MARKERS[k % len(MARKERS)], markevery=max(1, window),
                ms=4, label=name.split("/")[1])
    _style(ax, percent=False, xlabel="step")
    ax.set_title(f"GRPO reward functions, rolling mean of {window} logs ({run.budget} problems)", fontsize=9)
    _legend(ax)


def _rolling_mean(values: list[float], window: int) -> list[float]:
    """The mean of each value and the ``window - 1`` before it (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _series(runs: list[RunResult], method: str, attr: str, only: list[int] | None = None):
    """Per budget: the mean of ``attr`` over seeds and its error bar (the 95% interval with one
    run, the standard deviation over seeds with several); and what the bars are, for the legend."""
    xs = sorted({r.budget for r in runs if r.method == method and (only is None or r.budget in only)})
    ys, lo, hi, spreads = [], [], [], []
    for x in xs:
        rs = [r for r in runs if r.method == method and r.budget == x]
        mean = statistics.mean(getattr(r, attr) for r in rs)
        ys.append(mean)
        if len(rs) > 1:
            sd = statistics.stdev(getattr(r, attr) for r in rs)
            lo.append(sd)
            hi.append(sd)
        else:
            low, high = {"accuracy": (rs[0].ci_low, rs[0].ci_high), "answer": rs[0].answer_ci,
                         "thinking": rs[0].thinking_ci}[attr]
            lo.append(max(0.0, mean - low))
            hi.append(max(0.0, high - mean))
        spreads.append(len(rs) > 1)
    meaning = ("bars: ± std over seeds" if spreads and all(spreads) else
               "bars: 95% CI; ± std over seeds where several" if any(spreads) else "bars: 95% CI")
    return xs, ys, lo, hi, meaning


def _dodge(k: int, count: int) -> float:
    """A small factor on a log axis that keeps equal points of different series apart."""
    return 1 + 0.04 * (k - (count - 1) / 2)


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name("." + path.name)
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path.name


__all__ = ["collect_runs", "write_report", "compare", "reward_trends", "bootstrap_interval"]

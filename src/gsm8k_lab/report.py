"""Results tables and tests over finished run directories (read by :mod:`.results`, drawn by
:mod:`.figures`).

``write_report(roots, out_dir)`` finds every finished run (``run.json`` with status ``complete``)
under the given folders, reads only what runs recorded and writes ``results.csv`` (one row per
run), ``report.md`` and the figures. The report answers its questions at the level of **training
seeds**: runs of one method at one budget are an *arm*, and two arms are compared over their seeds
and the problems they were evaluated on, never as one checkpoint against another.

``report.md`` holds, in order:

- the design: the comparison families and measures as declared in this module (:data:`FAMILIES`,
  :data:`MEASURES`), the rule for tests that cannot reject (Tarone's screen), what each family's
  seeds and problems can detect;
- the arms: per method and budget, the mean over seeds of accuracy and answer format with a 95%
  interval from a hierarchical bootstrap (seeds, then problems), how the completions look (cut at
  the token budget, length, closed and unclosed answers) and what training computed (optimizer
  steps, trained and generated tokens, FLOPs by :data:`~.results.FLOPS_FORMULA`, wall time);
- the **primary** family (the research questions: SFT vs GRPO and step-matched SFT vs GRPO at each
  budget, SFT on GRPO traces vs SFT on the original solutions) and the **secondary** family (each
  stage against the model it started from; answer format among problems that no run of either arm
  cut; how GRPO's rewards moved), each a seed-level difference with its unadjusted 95% interval,
  p, Holm-adjusted p (over the tests Tarone's screen keeps), how many seeds agree in sign and the
  smallest difference the family could detect; the verdict rests on the Holm p;
- the per-run table, and as detail each seed's checkpoint pair (exact McNemar, its own family);
- the figures.

Runs evaluated with different engines or dtypes are flagged wherever they are compared.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .evaluate import per_problem_scores
from .figures import write_figures
from .results import FLOPS_FORMULA, MATCHED_SFT, METHOD_ORDER, RunResult, collect_runs, curves, sorted_runs
from .runs import atomic_write_text
from .stats import (
    POWER,
    SEED_LEVEL_RESAMPLES,
    Paired,
    SeedLevel,
    detectable_from_se,
    hierarchical_bootstrap,
    holm_testable,
    mcnemar_min_p,
    paired_comparison,
    tarone,
    two_sample_p,
)

ALPHA = 0.05

#: The comparison families and what they hold, declared here, in code, before a report is read; Holm's
#: adjustment runs within each, over the tests Tarone's screen keeps.
PRIMARY, SECONDARY, DETAIL = "primary", "secondary", "detail"
FAMILIES = {
    PRIMARY: "the research questions, at the seed level: SFT vs GRPO and step-matched SFT vs GRPO at each "
             "budget; SFT on GRPO traces vs SFT on the original solutions",
    SECONDARY: "what each stage changed from the model it started from (base -> prep SFT -> each arm); answer "
               "format among problems no run of either arm cut at the token budget; how GRPO's rewards moved",
    DETAIL: "each seed's checkpoint pair of a primary question (exact McNemar): what one pair of runs shows, "
            "not the verdict on the methods",
}
#: The measures each comparison tests: per-problem share of completions that are correct, that have an answer.
MEASURES = {"accuracy": "correct", "answer format": "has_answer"}
#: A research question is answered only over this many training seeds per arm or more; with fewer, its
#: rows describe the checkpoints and get no verdict (and cost the family nothing).
MIN_SEEDS = 2
#: Where the families, measures and rules of this report are declared.
DECLARED_IN = "src/gsm8k_lab/report.py (FAMILIES, MEASURES, Tarone's screen, Holm within each family)"


@dataclass
class Arm:
    """The runs of one method at one budget (one per training seed), evaluated on one split."""

    method: str
    budget: int
    split: str
    runs: list[RunResult]

    @property
    def name(self) -> str:
        return self.method if self.method in ("base model", "prep SFT") else f"{self.method} {self.budget}"

    @property
    def seeds(self) -> int:
        return len(self.runs)

    @property
    def evaluated_with(self) -> set[str]:
        return {r.evaluated_with for r in self.runs}


@dataclass
class SeedComparison:
    """Arm ``b`` minus arm ``a`` on one measure, over seeds and shared problems."""

    label: str
    measure: str
    a: Arm
    b: Arm
    result: SeedLevel | None  # None: no problem both arms were evaluated on
    family: str = PRIMARY
    testable: bool = True  # kept by Tarone's screen
    p_holm: float | None = None
    mean_a: float = 0.0
    mean_b: float = 0.0
    note: str = ""  # why it is not comparable, or what subset it is on
    test: str = "hierarchical bootstrap"  # exact McNemar (or a sign-flip test) when each arm is one run
    discordant: int | None = None  # McNemar: problems on which the two runs differ
    eligible: bool = True  # a primary question needs MIN_SEEDS seeds per arm for a verdict

    @property
    def significant(self) -> bool:
        return (self.p_holm is not None and self.p_holm < ALPHA and self.eligible
                and not self.note.startswith("not comparable"))


@dataclass
class Comparison:
    """One seed's checkpoint pair (detail): ``b`` minus ``a`` per problem, exact McNemar."""

    label: str
    metric: str
    a: RunResult
    b: RunResult
    result: Paired
    family: str = DETAIL
    testable: bool = True
    p_holm: float | None = None

    @property
    def test(self) -> str:
        return self.result.test

    @property
    def within_noise(self) -> bool:
        return self.p_holm is None or self.p_holm >= ALPHA


@dataclass
class Trend:
    run: RunResult
    key: str
    early: float
    late: float
    p_value: float
    steps: int
    family: str = SECONDARY
    testable: bool = True
    p_holm: float | None = None


@dataclass
class Analysis:
    """Everything a report states, before it is written."""

    runs: list[RunResult]
    arms: list[Arm]
    seed_level: list[SeedComparison]
    detail: list[Comparison]
    trends: list[Trend]
    family_sizes: dict[str, int] = field(default_factory=dict)


def write_report(roots: list[str | Path], out_dir: str | Path) -> dict:
    runs = collect_runs(roots)
    analysis = analyse(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    fields = [f for f in asdict(runs[0]) if f not in ("log", "answer_ci", "thinking_ci", "scores")]
    extra = ["grpo_trace_share", "flops", "evaluated_with"]
    writer = csv.DictWriter(buf, fieldnames=[*fields, *extra], extrasaction="ignore")
    writer.writeheader()
    for r in sorted_runs(runs):
        writer.writerow({**asdict(r), **{k: getattr(r, k) for k in extra}})
    atomic_write_text(out / "results.csv", buf.getvalue())
    plots = write_figures(runs, out)
    atomic_write_text(out / "report.md", render_markdown(analysis, plots))
    called = [c for c in analysis.seed_level if c.significant]
    return {"runs": len(runs), "arms": len(analysis.arms), "seed_level": len(analysis.seed_level),
            "resolved": len(called), "resolved_primary": sum(c.family == PRIMARY for c in called),
            "pairs": len(analysis.detail) // len(MEASURES), "comparisons": len(analysis.detail),
            "files": ["results.csv", "report.md", *plots]}


def analyse(runs: list[RunResult], n_boot: int = SEED_LEVEL_RESAMPLES) -> Analysis:
    """Arms, seed-level comparisons in the declared families, the per-seed detail and reward trends,
    each family Holm-adjusted over the tests Tarone's screen keeps; runs of different splits are
    never compared."""
    arms = arms_of(runs)
    seed_level = [c for family, label, a, b in seed_specs(arms) for c in compare_arms(label, a, b, family, n_boot)]
    detail = [c for label, a, b in detail_specs(runs) for c in compare(label, a, b)]
    trends = reward_trends(runs)
    sizes = {}
    for family in (PRIMARY, SECONDARY):
        members = [c for c in seed_level if c.family == family] + [t for t in trends if t.family == family]
        min_ps = [_min_p(m, n_boot) for m in members]
        testable = tarone(min_ps, ALPHA)
        ps = [(m.result.p if m.result is not None else 1.0) if isinstance(m, SeedComparison) else m.p_value
              for m in members]
        for m, keep, p in zip(members, testable, holm_testable(ps, testable)):
            m.testable, m.p_holm = keep, p
        sizes[family] = sum(testable)
    testable = tarone([mcnemar_min_p((c.result.only_a or 0) + (c.result.only_b or 0)) if c.result.only_a is not None
                       else 0.0 for c in detail], ALPHA)
    for c, keep, p in zip(detail, testable, holm_testable([c.result.p_value for c in detail], testable)):
        c.testable, c.p_holm = keep, p
    sizes[DETAIL] = sum(testable)
    return Analysis(runs, arms, seed_level, detail, trends, sizes)


def arms_of(runs: list[RunResult]) -> list[Arm]:
    """Runs grouped by split, method and budget (the seeds of one arm), in report order."""
    groups: dict[tuple, list[RunResult]] = defaultdict(list)
    for r in runs:
        groups[r.eval_split, r.method, r.budget].append(r)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    keys = sorted(groups, key=lambda k: (k[0] != "test", k[0], k[2] if k[1] not in ("base model", "prep SFT") else -1,
                                         order.get(k[1], 99)))
    return [Arm(method, budget, split, sorted(groups[split, method, budget], key=lambda r: (r.seed, r.path)))
            for split, method, budget in keys]


def seed_specs(arms: list[Arm]) -> list[tuple[str, str, Arm, Arm]]:
    """(family, label, first, second) for every seed-level comparison the arms allow."""
    specs = []
    by_key = {(a.split, a.method, a.budget): a for a in arms}
    for arm in arms:
        key = (arm.split, "GRPO", arm.budget)
        if arm.method in ("SFT", MATCHED_SFT) and key in by_key:
            specs.append((PRIMARY, f"{arm.method} vs GRPO, {arm.budget} problems", arm, by_key[key]))
        traces = by_key.get((arm.split, "SFT on GRPO traces", arm.budget))
        if arm.method == "SFT" and traces is not None:
            shares = [r.grpo_traces for r in traces.runs if r.grpo_traces is not None]
            share = f"; {shares[0]} of {arm.budget} examples are GRPO traces" if shares else ""
            specs.append((PRIMARY, f"SFT original vs SFT on GRPO traces, {arm.budget} problems{share}", arm, traces))
    for split in sorted({a.split for a in arms}):
        base = [a for a in arms if a.split == split and a.method == "base model"]
        prep = [a for a in arms if a.split == split and a.method == "prep SFT"]
        if base and prep:
            specs.append((SECONDARY, f"base model vs prep SFT ({prep[0].budget} problems)", base[0], prep[0]))
        if prep:
            for arm in arms:
                if arm.split == split and arm.method in ("SFT", MATCHED_SFT, "GRPO"):
                    specs.append((SECONDARY, f"prep SFT vs {arm.method} from it, {arm.budget} problems", prep[0], arm))
    return specs


def compare_arms(label: str, a: Arm, b: Arm, family: str = PRIMARY,
                 n_boot: int = SEED_LEVEL_RESAMPLES) -> list[SeedComparison]:
    """Each measure of arm ``b`` against arm ``a`` over their seeds, on the problems every run of both
    was evaluated on; for a primary question also the answer format among the problems that no run of
    either arm cut at the token budget (in the secondary family: it explains, it does not decide)."""
    scores = [[_scores(r) for r in arm.runs] for arm in (a, b)]
    common = sorted(set.intersection(*(set(s) for arm in scores for s in arm)))
    flag = _engines_differ(a, b)
    out = []
    subsets = [(measure, key, family, common, "") for measure, key in MEASURES.items()]
    if family == PRIMARY:
        uncut = [i for i in common if all(s[i]["truncated"] == 0 for arm in scores for s in arm)]
        subsets.append(("answer format", "has_answer", SECONDARY, uncut,
                        f"on the {len(uncut)} of {len(common)} problems no run of either arm cut"))
    few = family == PRIMARY and min(a.seeds, b.seeds) < MIN_SEEDS
    for measure, key, fam, problems, subset in subsets:
        xa = [[s[i][key] for i in problems] for s in scores[0]]
        xb = [[s[i][key] for i in problems] for s in scores[1]]
        note = "; ".join(x for x in (flag, subset) if x)
        c = SeedComparison(label, measure, a, b, None, fam, mean_a=_grand_mean(xa), mean_b=_grand_mean(xb), note=note)
        if problems and a.seeds == 1 and b.seeds == 1:  # two checkpoints: the exact paired test on problems
            paired = paired_comparison(xa[0], xb[0], samples=(a.runs[0].samples_per_problem,
                                                               b.runs[0].samples_per_problem))
            c.result, c.test = _as_seed_level(paired), paired.test
            c.discordant = (paired.only_a + paired.only_b) if paired.only_a is not None else None
        elif problems:
            c.result = hierarchical_bootstrap(xb, xa, n_boot=n_boot)
        if few:
            c.eligible = False  # the verdict column says why
        out.append(c)
    return out


def detail_specs(runs: list[RunResult]) -> list[tuple[str, RunResult, RunResult]]:
    """(label, first, second): each seed's checkpoint pair of a primary question."""
    by_key = {(r.eval_split, r.method, r.budget, r.seed): r for r in runs}
    specs = []
    for (split, method, budget, seed), r in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][3],
                                                                                    kv[0][1])):
        grpo = by_key.get((split, "GRPO", budget, seed))
        if method in ("SFT", MATCHED_SFT) and grpo is not None:
            specs.append((f"{method} vs GRPO, {budget} problems, seed {seed}", r, grpo))
        traces = by_key.get((split, "SFT on GRPO traces", budget, seed))
        if method == "SFT" and traces is not None:
            specs.append((f"SFT original vs SFT on GRPO traces, {budget} problems, seed {seed}", r, traces))
    return specs


def compare(label: str, a: RunResult, b: RunResult, family: str = DETAIL) -> list[Comparison]:
    """Accuracy and answer format of ``b`` against ``a`` on the problems both were evaluated on."""
    sa, sb = _scores(a), _scores(b)
    common = sorted(set(sa) & set(sb))
    out = []
    for metric, key in MEASURES.items():
        xa, xb = [sa[i][key] for i in common], [sb[i][key] for i in common]
        result = paired_comparison(xa, xb, samples=(a.samples_per_problem, b.samples_per_problem))
        out.append(Comparison(label, metric, a, b, result, family))
    return out


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


def render_markdown(analysis: Analysis, plots: list[str]) -> str:
    runs, arms = analysis.runs, analysis.arms
    seeds = sorted({a.seeds for a in arms if a.method not in ("base model", "prep SFT")})
    lines = ["# GSM8K: SFT vs GRPO", "",
             f"{len(runs)} finished runs in {len(arms)} arms (a method at a budget; training seeds per trained arm: "
             f"{', '.join(map(str, seeds)) or '–'}). " + _split_words(runs), ""]
    lines += _engine_warning(runs)
    lines += ["## Design", "", *_design(analysis), ""]
    lines += ["## Arms: mean over training seeds", "", *_arm_table(arms), ""]
    for family in (PRIMARY, SECONDARY):
        rows = [c for c in analysis.seed_level if c.family == family]
        trends = [t for t in analysis.trends if t.family == family]
        if not rows and not trends:
            continue
        lines += [f"## {family.capitalize()} family: {FAMILIES[family]}", ""]
        if rows:
            lines += _seed_table(rows, analysis.family_sizes[family]) + [""]
        if trends:
            lines += _trend_table(trends) + [""]
    lines += ["## Runs", "", *_run_table(runs), ""]
    if analysis.detail:
        lines += [f"## Detail: {FAMILIES[DETAIL]}", "", *_detail_table(analysis.detail, analysis.family_sizes[DETAIL]),
                  ""]
    lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots]
    lines += ["", "Accuracy: the SOLUTION number equals the gold number. Thinking: a non-empty reasoning "
              "block. Answer: a number could be read from a SOLUTION block, closed (`<SOLUTION>n</SOLUTION>`) "
              "or, when a completion ends inside its last block, unclosed; the closed and unclosed shares add up "
              "to the answer share. Cut: the completion reached the evaluation's token budget. GSM-Symbolic: the "
              "same models on one templated variant of each GSM8K test problem that has a template and on those "
              "test problems themselves, under the same prompt; drop = originals minus variants, paired on the "
              "test index. FLOPs: " + FLOPS_FORMULA + ".", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------
def _min_p(member, n_boot: int) -> float:
    """The smallest p a test could reach (Tarone's screen): a seed-level bootstrap reaches 2/B unless its
    arms agree on every problem in every seed (then p is 1 whatever is resampled); a trend its permutation floor."""
    if isinstance(member, Trend):
        return 0.0
    res = member.result
    if res is None or member.note.startswith("not comparable") or not member.eligible:
        return 1.0
    if member.discordant is not None:
        return mcnemar_min_p(member.discordant)
    if member.test != "hierarchical bootstrap":  # a sign-flip test on shares: its floor is its permutations
        return 0.0
    varies = res.se > 0 or res.diff != 0
    return 2 / n_boot if varies else 1.0


def _as_seed_level(p: Paired) -> SeedLevel:
    """A paired comparison of two single runs, in the seed-level shape (one 'seed' per arm)."""
    return SeedLevel(diff=p.difference, low=p.ci_low, high=p.ci_high, p=p.p_value, se=0.0,
                     per_seed=[p.difference], same_sign=1, seeds=(1, 1), problems=p.n,
                     detectable=p.detectable if p.detectable is not None else float("nan"))


def _scores(run: RunResult) -> dict[int, dict[str, float]]:
    """A run's per-problem scores, as read when the run was collected (or from its CSV)."""
    return run.scores if run.scores is not None else per_problem_scores(run.csv)


def _grand_mean(matrix: list[list[float]]) -> float:
    cells = [x for row in matrix for x in row]
    return sum(cells) / len(cells) if cells else 0.0


def _engines_differ(a: Arm, b: Arm) -> str:
    used = a.evaluated_with | b.evaluated_with
    return "" if len(used) <= 1 else "not comparable: evaluated with " + " and ".join(sorted(used))


def _engine_warning(runs: list[RunResult]) -> list[str]:
    used = sorted({r.evaluated_with for r in runs})
    if len(used) <= 1:
        return [f"Every run was evaluated with the same engine and dtype ({used[0] if used else '?'})."
                " The same checkpoint gives the same greedy text only within one engine and dtype "
                "(docs/benchmarks.md), so this is what makes the runs' numbers comparable.", ""]
    return ["**Warning:** the runs were evaluated with different engines or dtypes (" + ", ".join(used) + "): "
            "the same checkpoint can give different greedy text under each, so comparisons that mix them are "
            "marked 'not comparable' and get no verdict.", ""]


def _design(analysis: Analysis) -> list[str]:
    sizes = analysis.family_sizes
    lines = [
        f"Declared in {DECLARED_IN}; a report states its results under these rules whatever the runs show. "
        "Families: " + "; ".join(f"**{f}** = {FAMILIES[f]}" for f in FAMILIES) + ". Measures: "
        + ", ".join(MEASURES) + " (the per-problem share of completions that are correct, that have an answer).",
        "",
        "Seed-level test: second arm minus first, averaged over its seeds and the problems every run of both "
        "arms was evaluated on; the 95% interval and p come from a hierarchical bootstrap "
        f"({SEED_LEVEL_RESAMPLES} replicates; each resamples each arm's seeds, then the problems, shared by both "
        "arms). The interval is **unadjusted**; the verdict rests on the **Holm-adjusted p** within the family, "
        f"below {ALPHA}, so a row can have an interval that excludes zero and still be 'not significant after Holm'. "
        "A test that can never reject (its arms agree on every problem in every seed, so p is 1 whatever is "
        "resampled; or an exact McNemar test whose discordant problems are too few) is screened out before "
        "Holm by Tarone's (1990) rule and costs the others nothing. 'Seeds agree' counts seed pairs (seed i of "
        "one arm with seed i of the other) whose difference has the sign of the whole. A research question is "
        f"answered only with {MIN_SEEDS} or more training seeds per arm: with fewer its rows describe the "
        "checkpoints and get no verdict (nor a place in Holm). Where each arm is a single run (the base model and "
        "the prep model, one run by design) the comparison is the exact paired test of the two checkpoints.",
        "",
    ]
    for family in (PRIMARY, SECONDARY):
        rows = [c for c in analysis.seed_level if c.family == family and c.result is not None and c.testable
                and c.eligible and c.test == "hierarchical bootstrap"]
        if not rows:
            continue
        m = max(sizes[family], 1)
        detect = [_detectable(c.result, m) for c in rows]
        n = max(c.result.problems for c in rows)
        k = sorted({c.result.seeds for c in rows})
        lines.append(f"What the {family} family can detect: with {' / '.join(f'{x}x{y}' for x, y in k)} seeds "
                     f"and up to {n} problems, at {ALPHA}/{m} with {POWER:.0%} power, differences of "
                     f"{min(detect):.1%} to {max(detect):.1%} (normal approximation from each test's bootstrap "
                     "standard error; a null result says the difference is probably smaller than this, not "
                     "that there is none).")
    lines.append("")
    lines.append("The detail family (each seed's pair of checkpoints, exact McNemar) is Holm-adjusted on its own "
                 "after Tarone's screen (McNemar with d discordant problems cannot reach p below 2 x 0.5^d).")
    return lines


def _arm_table(arms: list[Arm]) -> list[str]:
    head = ("| arm | split | seeds | accuracy (95% CI) | answer (95% CI) | cut | mean tokens | closed / unclosed "
            "answer | answer among uncut | steps | trained tokens | generated tokens | FLOPs | train s |")
    lines = [head, "|---|---|---:|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for arm in arms:
        rs = arm.runs
        acc, ans = (_arm_interval(arm, key) for key in ("correct", "has_answer"))
        lines.append(
            f"| {arm.name} | {arm.split} | {arm.seeds} | {acc} | {ans} | {_mean_pct(rs, 'truncated')} | "
            f"{_mean_num(rs, 'mean_tokens', '.0f')} | {_mean_pct(rs, 'answer_closed')} / "
            f"{_mean_pct(rs, 'answer_unclosed')} | {_mean_pct(rs, 'answer_uncut')} | "
            f"{_mean_num(rs, 'optimizer_steps', '.0f')} | {_mean_num(rs, 'tokens_trained', '.3g')} | "
            f"{_generated(rs)} | {_mean_num(rs, 'flops', '.2e')} | {_mean_num(rs, 'train_seconds', '.0f')} |")
    lines += ["", "Means over the arm's seeds; intervals from the hierarchical bootstrap of the arm alone (its "
              "seeds, then the problems). Generated tokens of SFT on GRPO traces include those sampled to make "
              "the traces (charged to that arm's compute)."]
    return lines


def _seed_table(rows: list[SeedComparison], size: int) -> list[str]:
    lines = ["| comparison | measure | problems | seeds | first | second | difference (unadjusted 95% CI) | test | p | "
             f"Holm p ({size} tests) | seeds agree | detectable | verdict |",
             "|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|"]
    for c in rows:
        res = c.result
        measure = c.measure + (f" ({c.note})" if c.note else "")
        if res is None:
            lines.append(f"| {c.label} | {measure} | 0 | – | – | – | – | – | – | – | – | no common problems |")
            continue
        holm_p = f"{c.p_holm:.3g}" if c.p_holm is not None else "–"
        agree = f"{res.same_sign} of {len(res.per_seed)}" if len(res.per_seed) > 1 else "–"
        test = c.test + (f", {c.discordant} discordant" if c.discordant is not None else "")
        lines.append(
            f"| {c.label} | {measure} | {res.problems} | {res.seeds[1]} vs {res.seeds[0]} | {c.mean_a:.1%} | "
            f"{c.mean_b:.1%} | {res.diff:+.1%} ({res.low:+.1%} to {res.high:+.1%}) | {test} | {res.p:.3g} | "
            f"{holm_p} | {agree} | {_detectable_text(c, max(size, 1))} | {_seed_verdict(c)} |")
    return lines


def _trend_table(trends: list[Trend]) -> list[str]:
    lines = ["How GRPO's rewards moved: mean over the first and the last quarter of logged steps, two-sample "
             "permutation test, Holm p within the secondary family.", "",
             "| run | reward | steps | first quarter | last quarter | change | p | Holm p | verdict |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for t in trends:
        name = t.key.replace("rewards/", "").replace("/mean", "")
        significant = t.p_holm is not None and t.p_holm < ALPHA
        verdict = ("rose" if t.late > t.early else "fell") if significant else "not significant after Holm"
        holm_p = f"{t.p_holm:.3g}" if t.p_holm is not None else "screened out"
        lines.append(f"| `{t.run.path}` | {name} | {t.steps} | {t.early:.3f} | {t.late:.3f} | "
                     f"{t.late - t.early:+.3f} | {t.p_value:.3g} | {holm_p} | {verdict} |")
    return lines


def _detail_table(detail: list[Comparison], size: int) -> list[str]:
    lines = ["Second minus first per problem; interval: Newcombe's paired interval (unadjusted, 95%), or a "
             "two-stage bootstrap with several samples per problem; p: exact McNemar (or a sign-flip test); "
             "detectable: the smallest difference this pair could show with 80% power at 0.05 (Connor's formula "
             "on the observed discordance; '> d' when not even the largest difference it allows is).", "",
             f"| comparison | measure | problems | first | second | difference (unadjusted 95% CI) | test | p | "
             f"Holm p ({size} tests) | detectable | verdict |",
             "|---|---|---:|---:|---:|---|---|---:|---:|---:|---|"]
    lines += [_comparison_row(c) for c in detail]
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
    holm_p = f"{c.p_holm:.3g}" if c.p_holm is not None else "screened out"
    return (f"| {c.label} | {c.metric} | {res.n} | {res.mean_a:.1%} | {res.mean_b:.1%} | "
            f"{res.difference:+.1%} ({res.ci_low:+.1%} to {res.ci_high:+.1%}) | {test} | {res.p_value:.3g} | "
            f"{holm_p} | {detectable} | {_verdict(c)} |")


def _run_table(runs: list[RunResult]) -> list[str]:
    cols = _table_columns(runs)
    return (["One row per run: its own evaluation (accuracy with its 95% Wilson interval, or a bootstrap over "
             "problems with several samples each) and what its training paid.", "",
             "| " + " | ".join(c[0] for c in cols) + " |", "|" + "|".join(c[1] for c in cols) + "|"]
            + ["| " + " | ".join(cell(r) for _, _, cell in cols) + " |" for r in sorted_runs(runs)])


def _table_columns(runs: list[RunResult]) -> list[tuple[str, str, Callable[[RunResult], str]]]:
    """The per-run table: (header, alignment, cell). A column is one entry here."""
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
        ("closed / unclosed", "---", lambda r: f"{_pct(r.answer_closed)} / {_pct(r.answer_unclosed)}"),
        ("cut", "---:", lambda r: _pct(r.truncated)),
        ("mean tokens", "---:", lambda r: f"{r.mean_tokens:.0f}" if r.mean_tokens is not None else "–"),
        ("answer among uncut", "---:", lambda r: _pct(r.answer_uncut)),
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
        ("tokens trained", "---:", lambda r: str(r.tokens_trained) if r.tokens_trained is not None else "–"),
        ("FLOPs", "---:", lambda r: f"{r.flops:.2e}" if r.flops is not None else "–"),
        ("train s", "---:", lambda r: f"{r.train_seconds:.0f}"),
        ("eval s", "---:", lambda r: f"{r.eval_seconds:.0f}"),
        ("evaluated with", "---", lambda r: r.evaluated_with),
    ]
    if any(r.grpo_traces is not None for r in runs):
        cols.append(("GRPO traces", "---:", lambda r: f"{r.grpo_traces} of {r.budget} ({r.grpo_trace_share:.0%})"
                     if r.grpo_traces is not None else "–"))
    return cols + [("device", "---", lambda r: r.device), ("run", "---", lambda r: f"`{r.path}`")]


def _arm_interval(arm: Arm, key: str) -> str:
    """The arm's mean over seeds and problems with its hierarchical 95% interval."""
    scores = [_scores(r) for r in arm.runs]
    common = sorted(set.intersection(*(set(s) for s in scores)))
    if not common:
        return "–"
    matrix = [[s[i][key] for i in common] for s in scores]
    res = hierarchical_bootstrap(matrix, [[0.0] * len(common)], n_boot=2000)
    return f"{res.diff:.1%} ({res.low:.1%}–{res.high:.1%})"


def _detectable_text(c: SeedComparison, m: int) -> str:
    if c.test == "hierarchical bootstrap":
        return f"±{_detectable(c.result, m):.1%}"
    return f"±{c.result.detectable:.1%}" if c.result.detectable == c.result.detectable else "–"


def _detectable(res: SeedLevel, m: int) -> float:
    """The smallest difference found with 80% power at alpha/m: (z_{1-alpha/2m} + z_0.8) x bootstrap SE."""
    return detectable_from_se(res.se, ALPHA / m)


def _seed_verdict(c: SeedComparison) -> str:
    if c.note.startswith("not comparable"):
        return "not comparable"
    if not c.eligible:
        return "no verdict (one seed)" if min(c.a.seeds, c.b.seeds) == 1 else "no verdict (too few seeds)"
    if not c.testable:
        return "cannot reject (screened out)"
    if c.significant:
        better = c.b.name if c.result.diff > 0 else c.a.name
        return f"{better} higher, significant after Holm"
    return "not significant after Holm"


def _verdict(c: Comparison) -> str:
    """From the Holm-adjusted p only."""
    if c.p_holm is None:
        return "cannot reject (too few discordant problems)"
    if c.within_noise:
        return "not significant after Holm"
    better = c.b.method if c.result.difference > 0 else c.a.method
    return f"{better} higher, significant after Holm"


def _mean_pct(runs: list[RunResult], attr: str) -> str:
    values = [getattr(r, attr) for r in runs if getattr(r, attr) is not None]
    return f"{sum(values) / len(values):.1%}" if values else "–"


def _mean_num(runs: list[RunResult], attr: str, fmt: str) -> str:
    values = [getattr(r, attr) for r in runs if getattr(r, attr) is not None]
    return format(sum(values) / len(values), fmt) if values else "–"


def _generated(runs: list[RunResult]) -> str:
    values = [r.train_tokens_generated + (r.traces_tokens or 0) for r in runs]
    return f"{sum(values) / len(values):.3g}" if values else "–"


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
            "held-out train problems, for tuning; test is for final reports); comparisons are made only "
            "between runs of the same split.")

"""The report's figures, every proportion in percent, budgets as ticks on a log2 axis.

:func:`write_figures` draws what the runs allow (see :mod:`.report` for the list) and returns the
file names written. matplotlib is imported only here, and only when a report is written.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from .results import MATCHED_SFT, RunResult, curves
from .rewards import REWARD_RANGES

#: GRPO curves: train_log.jsonl key -> panel title
GRPO_CURVES = {"reward": "total reward", "reward_std": "reward std (within groups)", "kl": "KL to the reference",
               "completions/mean_length": "completion length (tokens)",
               "completions/clipped_ratio": "truncated completions"}


def write_figures(runs: list[RunResult], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    methods = [m for m in ("SFT", MATCHED_SFT, "GRPO") if any(r.method == m for r in runs)]
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
    """SFT on GRPO traces beside SFT on the original solutions, answer format and accuracy: a bar per
    arm at its mean over seeds, a dot per seed, the interval (or spread) on the bar, and the share of
    GRPO traces under each budget."""
    traces = [r for r in runs if r.method == "SFT on GRPO traces"]
    tb = sorted({r.budget for r in traces})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.38
    for ax, attr, title in ((axes[0], "answer", "answer proportion"), (axes[1], "accuracy", "accuracy")):
        for k, method in enumerate(("SFT", "SFT on GRPO traces")):
            xs, ys, lo, hi, spread = _series(runs, method, attr, only=tb)
            pos = [tb.index(x) + (k - 0.5) * width for x in xs]
            colour = f"C{k}"
            ax.bar(pos, ys, width, color=colour, alpha=0.35, edgecolor=colour)
            ax.errorbar(pos, ys, yerr=[lo, hi], fmt=MARKERS[k], color=colour, capsize=4, ms=6,
                        label=f"{method} ({spread})")
            for x, p in zip(xs, pos):
                seeds = [getattr(r, attr) for r in runs if r.method == method and r.budget == x]
                ax.scatter([p] * len(seeds), seeds, color="black", s=10, zorder=5)
        labels = []
        for b in tb:
            shares = [r for r in traces if r.budget == b and r.grpo_traces is not None]
            labels.append(f"{b}\n{shares[0].grpo_traces}/{b} GRPO traces" if shares else str(b))
        ax.set_xticks(range(len(tb)), labels)
        ax.set_ylim(-0.02, 1.02)
        _style(ax, xlabel="training problems (and how many have an accepted GRPO trace)")
        ax.set_ylabel(f"GSM8K test {title}")
        ax.set_title(f"{title.capitalize()}: SFT on GRPO traces vs on the original solutions (dots: seeds)",
                     fontsize=8)
        ax.legend(fontsize=7)
    return _save(fig, out / "traces_vs_original.png")


def _compute_plot(plt, runs: list[RunResult], methods: list[str], out: Path) -> str:
    """What each method paid for what it got: the answer proportion (the measure that resolves at a
    small model's accuracy floor) against training FLOPs and against training wall time, one point
    per run, the arm's mean over seeds as a larger marker, both axes readable on a log scale."""
    from matplotlib.ticker import LogLocator

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    panels = (("flops", "training FLOPs (6P x trained + 2P x generated tokens)"),
              ("train_seconds", "training wall time (s)"))
    for ax, (attr, label) in zip(axes, panels):
        for k, method in enumerate(methods):
            rs = [r for r in runs if r.method == method and (getattr(r, attr) or 0) > 0]
            if not rs:
                continue
            ax.scatter([getattr(r, attr) for r in rs], [r.answer for r in rs], marker=MARKERS[k], s=18,
                       color=f"C{k}", alpha=0.45)
            by_budget = sorted({r.budget for r in rs})
            xs = [statistics.mean(getattr(r, attr) for r in rs if r.budget == b) for b in by_budget]
            ys = [statistics.mean(r.answer for r in rs if r.budget == b) for b in by_budget]
            ax.plot(xs, ys, marker=MARKERS[k], ms=8, color=f"C{k}", label=f"{method} (mean over seeds; dots: runs)")
            for x, y, b in zip(xs, ys, by_budget):
                ax.annotate(str(b), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        _style(ax, xlabel=label)
    axes[0].set_ylabel("answer proportion (GSM8K test)")
    axes[0].set_ylim(-0.05, 1.05)
    _legend(axes[0])
    fig.suptitle("Answer format against what training paid (labels: training problems)", fontsize=9)
    return _save(fig, out / "compute.png")


def _curves_plot(plt, runs: list[RunResult], experiment: str, out: Path) -> str | None:
    """SFT loss and GRPO's reward, reward functions, reward std, KL, lengths and truncation by step."""
    sft = [r for r in runs if r.method in ("SFT", MATCHED_SFT, "SFT on GRPO traces", "prep SFT")]
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
        pts = curves(r.log).get("loss", [])
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
            log = curves(r.log)
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
    logs = [(r, curves(r.log)) for r in grpo]
    run, log = max(logs, key=lambda rl: max((len(v) for k, v in rl[1].items() if k.startswith("rewards/")),
                                            default=0))
    names = sorted(k for k in log if k.startswith("rewards/") and k.endswith("/mean"))
    window = 1
    for k, name in enumerate(names):
        steps, values = zip(*log[name])
        window = max(1, len(values) // 8)
        low, high = REWARD_RANGES.get(name.split("/")[1], (0.0, 1.0))
        scaled = [(v - low) / (high - low) for v in values]  # each reward on one scale: 0% its lowest, 100% its top
        ax.plot(steps, _rolling_mean(scaled, window), marker=MARKERS[k % len(MARKERS)], markevery=max(1, window),
                ms=4, label=f"{name.split('/')[1]} ({low:g} to {high:g})")
    _style(ax, percent=True, xlabel="step")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"GRPO rewards, share of each one's range, rolling mean of {window} ({run.budget} problems)",
                 fontsize=8)
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

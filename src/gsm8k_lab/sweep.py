"""Learning-rate sweeps on the validation split: one run per rate from one prep model, and the pick.

SFT and GRPO differ in how far one step moves a LoRA adapter, so each method gets
its own rate, chosen on held-out train problems (``eval.split validation``), never
on the test problems the experiments report::

    <root>/prep_sft                the prep model every sweep run starts from (trained if missing)
    <root>/<method>/lr<rate>       one run per rate, at sweep.budget problems, evaluated on validation
    <root>/sweep.md                per method: the table and the pick
    <root>/sweep.json              the same as data (every run, the criterion, the pick)
    <root>/picked.yaml             the picked values as a settings file: ``--config <root>/picked.yaml``

The pick maximises ``sweep.metric`` on validation. ``accuracy`` (the default) is
the outcome the experiments compare; ``answer_proportion`` (the share of
completions with a readable SOLUTION block) moves first on a small model, where
a few validation problems decide accuracy. A tie goes to the other measure, then
to the smaller rate (the smaller change from the prep model). ``picked.yaml``
also pins ``sft.prep_learning_rate`` to the rate the prep model was trained at,
so an experiment run with the picked SFT rate trains the same prep model that
the sweep started from. The steps are resumable like the experiments': a
finished run is skipped, an unfinished one resumed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from .config import SWEEP_METHODS, SettingError, Settings, validate
from .data import eval_split_size, load_split, train_regions
from .experiments import Step, step_settings, train_grpo_step
from .runs import RunDir, atomic_write_json, atomic_write_text
from .sft import train_sft

#: The stage a prep SFT run records in its run.json.
PREP_STAGE = "prep_sft"


def sweep_settings(settings: Settings) -> Settings:
    """The settings every sweep run shares: evaluated on validation, without further evaluation sets."""
    c = copy.deepcopy(settings)
    c.eval.split = "validation"
    c.eval.extra_sources = []
    return c


def sweep_budget(settings: Settings) -> int:
    return settings.sweep.budget or max(settings.experiment.budgets)


def check_sweep(settings: Settings, prep_model: str | None = None) -> None:
    """Every method, rate and count of a sweep against the data, before its first step trains."""
    s = settings.sweep
    if not s.methods or any(m not in SWEEP_METHODS for m in s.methods) or len(set(s.methods)) != len(s.methods):
        raise SettingError("sweep.methods", s.methods, "{name} must list methods among "
                           + ", ".join(SWEEP_METHODS) + " once each, got {value}")
    for method in s.methods:
        path = f"sweep.{method}_learning_rates"
        rates = settings.get(path)
        if not rates or any(not 0 < r <= 1 for r in rates):
            raise SettingError(path, rates, "{name} needs learning rates > 0 and <= 1, got {value}")
    if settings.experiment.seeds != 1:
        raise SettingError("experiment.seeds", settings.experiment.seeds, "{name}={value}: a sweep trains one run per "
                           "rate with one seed (choose it with the seed setting)")
    train = load_split("train", settings.data.train_source, "data.train_source")
    validate(settings, {"train": len(train), "test": eval_split_size(settings)},
             counts=["sft.prep_train_samples", "eval.samples", "sweep.budget"])
    regions = train_regions(train, settings)
    regions.prep()
    regions.budget(sweep_budget(settings), "sweep.budget" if s.budget else "experiment.budgets")
    if prep_model is not None:
        check_prep_model(prep_model)


def check_prep_model(prep_model: str) -> None:
    """``--prep-model`` is a finished prep SFT run (stage prep_sft): every sweep run trains on top of
    its adapter, and the pick pins the rate it was trained at."""
    run = RunDir(prep_model)
    if not run.is_complete():
        raise SettingError("prep_model", prep_model, "{name} {value} is not a finished prep run")
    info = run.read()
    stage = info.get("stage") if isinstance(info, dict) else None
    if stage != PREP_STAGE:
        raise SettingError("prep_model", prep_model, "{name} {value} is not a prep SFT run: its run.json says stage "
                           f"{stage} (expected {PREP_STAGE}, a run of train-sft --stage prep)")


def sweep_steps(settings: Settings, root: str | Path, prep_model: str | Path | None = None) -> list[Step]:
    """The prep run (unless given), then one run per method and learning rate."""
    root = Path(root)
    prep = Path(prep_model) if prep_model else root / "prep_sft"
    steps = [] if prep_model else [Step("prep SFT", prep, lambda r: train_sft(settings, "prep", prep, resume=r))]
    n = sweep_budget(settings)
    for method in settings.sweep.methods:
        for lr in settings.get(f"sweep.{method}_learning_rates"):
            c = step_settings(settings, n, seed=settings.seed, model=prep)
            c.set(f"{method}.learning_rate", lr)
            d = run_dir(root, method, lr)
            train = (lambda r, c=c, d=d: train_sft(c, "full", d, resume=r)) if method == "sft" else \
                (lambda r, c=c, d=d: train_grpo_step(c, d, resume=r))
            steps.append(Step(f"{method.upper()} lr {lr:g}", d, train))
    return steps


def run_dir(root: Path, method: str, lr: float) -> Path:
    return root / method / f"lr{lr:g}"


def pick(rows: list[dict], metric: str) -> dict:
    """The row with the highest ``metric``; ties go to the other measure, then to the smaller rate."""
    other = "answer_proportion" if metric == "accuracy" else "accuracy"
    return max(rows, key=lambda r: (r[metric], r[other], -r["learning_rate"]))


def write_sweep_report(settings: Settings, root: str | Path, prep_model: str | Path | None = None) -> dict:
    """Read the finished sweep runs, pick per method, write sweep.json, sweep.md and picked.yaml.

    Methods swept earlier into the same folder (another ``sweep.methods``) keep their entries."""
    root = Path(root)
    prep = Path(prep_model) if prep_model else root / "prep_sft"
    record = _read_record(root / "sweep.json")
    prep_info = RunDir(prep).read()
    prep_sft = prep_info["settings"]["sft"]
    prep_lr = prep_sft.get("prep_learning_rate") or prep_sft["learning_rate"]
    for method in settings.sweep.methods:
        rows = [_row(run_dir(root, method, lr), lr) for lr in settings.get(f"sweep.{method}_learning_rates")]
        best = pick(rows, settings.sweep.metric)
        record["methods"][method] = {"metric": settings.sweep.metric, "budget": sweep_budget(settings),
                                     "prep_model": str(prep), "prep_learning_rate": prep_lr,
                                     "rows": rows, "pick": best["learning_rate"]}
    atomic_write_json(root / "sweep.json", record)
    picked = {"sft": {"prep_learning_rate": prep_lr}}
    for method, entry in record["methods"].items():
        picked.setdefault(method, {})["learning_rate"] = entry["pick"]
    atomic_write_text(root / "picked.yaml", _yaml(picked))
    atomic_write_text(root / "sweep.md", render_sweep(record))
    return record


def render_sweep(record: dict) -> str:
    lines = ["# Learning-rate sweep on the validation split", "",
             "Each run starts from the same prep model and is evaluated greedily on held-out train problems "
             "(the validation split), never on test. 95% Wilson intervals: rates whose intervals overlap are "
             "not told apart by this many problems, and the pick is then a point estimate.", ""]
    for method, entry in record["methods"].items():
        other = "answer proportion" if entry["metric"] == "accuracy" else "accuracy"
        lines += [f"## {method.upper()} ({entry['budget']} problems, from `{entry['prep_model']}`)", "",
                  "| learning rate | steps | validation n | accuracy (95% CI) | answer (95% CI) | thinking | "
                  "train s | run |", "|---:|---:|---:|---|---|---:|---:|---|"]
        for r in entry["rows"]:
            mark = " **picked**" if r["learning_rate"] == entry["pick"] else ""
            lines.append(f"| {r['learning_rate']:g}{mark} | {r['steps']} | {r['n']} | {r['accuracy']:.1%} "
                         f"({r['accuracy_ci95'][0]:.1%}–{r['accuracy_ci95'][1]:.1%}) | "
                         f"{r['answer_proportion']:.1%} ({r['answer_ci95'][0]:.1%}–{r['answer_ci95'][1]:.1%}) | "
                         f"{r['thinking_proportion']:.1%} | {r['train_seconds']:.0f} | `{r['run']}` |")
        lines += ["", f"Pick: learning rate {entry['pick']:g}, the highest validation "
                  f"{entry['metric'].replace('_', ' ')} (ties: the higher {other}, then the smaller rate).", ""]
    lines += ["Use the picks with `--config picked.yaml` (it also pins `sft.prep_learning_rate` to the prep "
              "model's rate).", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------
def _row(run: Path, lr: float) -> dict:
    info = RunDir(run).read()
    ev = info["eval"]
    if ev.get("split") != "validation":
        raise SettingError("root", str(run), "{name} {value} was not evaluated on the validation split")
    return {"learning_rate": lr, "run": str(run), "n": ev["n"], "accuracy": ev["accuracy"],
            "accuracy_ci95": [ev["accuracy_ci95_low"], ev["accuracy_ci95_high"]],
            "answer_proportion": ev["answer_proportion"], "answer_ci95": ev["answer_proportion_ci95"],
            "thinking_proportion": ev["thinking_proportion"],
            "steps": info.get("train", {}).get("global_steps"),
            "train_seconds": info.get("timings", {}).get("train_seconds", 0.0),
            "validation": ev.get("provenance", {})}


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {"methods": {}}
    return record if isinstance(record.get("methods"), dict) else {"methods": {}}


def _yaml(tree: dict) -> str:
    import yaml

    return "# learning rates picked on the validation split (sweep.md); use with --config\n" + \
        yaml.safe_dump(tree, sort_keys=True)


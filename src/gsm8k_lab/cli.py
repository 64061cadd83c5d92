"""The one command-line interface: ``gsm8k-lab <command>``.

The seed's scripts in ``src/`` (``evaluate_model.py``, ``train_sft.py``, ...) are
thin wrappers that call :func:`main` with their command name.

Flags are generated from the settings tree (:mod:`gsm8k_lab.config`): each
command lists, in ``COMMANDS``, which settings it exposes and under which
flag, so a field's help text exists once. Values are resolved defaults <
``--config FILE`` < environment < flags; :func:`gsm8k_lab.config.validate`
checks them before any work, and an error names the flag, variable or file
that gave the bad value. Bad input is one line on stderr and exit code 2,
with nothing written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import runtime
from .config import (
    PRESETS,
    SettingError,
    Settings,
    Source,
    Sources,
    UsageError,
    iter_settings,
    leaf,
    load_settings,
    unwrap,
)
from .evaluate import evaluate_model, format_table, metrics_path, prepare_evaluation
from .experiments import check_experiment, experiment1_steps, experiment2_steps, grpo_run_dir, run_steps
from .folders import Kind, check_output_folder, check_path, folder_kind
from .grpo import prepare_grpo, train_grpo
from .plan import Plan, estimate, evaluation_run, render, steps_runs, traces_run, training_run
from .report import write_report
from .runs import check_writable_dir
from .sft import prepare_sft, train_sft
from .sweep import check_sweep, sweep_settings, sweep_steps, write_sweep_report
from .traces import generate_traces, stats_path

EXIT_USAGE = 2
EXIT_OOM = 3


# --------------------------------------------------------------------------
# Which settings each command exposes, and under which flags
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Expose:
    """Settings under ``path`` as flags: a section with a flag prefix, or one setting with its flag."""

    path: str
    flag: str = ""  # a prefix ("eval-") for a section, the whole flag ("--model-path") for a setting
    only: tuple[str, ...] = ()  # a section's fields to expose (default: all)
    aliases: tuple[str, ...] = ()  # a setting's older flags, still accepted


DATA = (Expose("data.source", "--data"), Expose("data.train_source", "--train-data"),
        Expose("data.budget_seed", "--budget-seed"), Expose("data.validation_size", "--validation-size"))
ENGINE = (Expose("model"), Expose("vllm", "vllm-"), Expose("runtime"))
TRAINING = (Expose("model.name", "--base-model"), *DATA, *ENGINE, Expose("seed", "--seed"),
            Expose("report_to", "--report-to"), Expose("lora", "lora-"), Expose("eval", "eval-"),
            Expose("eval.generation", "eval-"))
EXPERIMENT = (Expose("model.name", "--base-model"), *DATA, *ENGINE, Expose("seed", "--seed"),
              Expose("report_to", "--report-to"), Expose("lora", "lora-"), Expose("sft", "sft-"),
              Expose("grpo", "grpo-"), Expose("grpo.rollout", "rollout-"), Expose("eval", "eval-"),
              Expose("eval.generation", "eval-"), Expose("experiment.seeds", "--seeds"),
              Expose("experiment.step_matched_sft", "--step-matched-sft"))
DECODING = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


def arg(*names: str, **kw) -> tuple[tuple[str, ...], dict]:
    """A plain argparse argument of a command, as ``add_argument`` takes it."""
    return names, kw


@dataclass
class Command:
    help: str
    settings: tuple[Expose, ...]
    func: str  # name of the cmd_ function
    args: list[tuple[tuple[str, ...], dict]] = field(default_factory=list)  # plain argparse arguments
    run_flags: bool = True  # --resume / --overwrite


COMMANDS: dict[str, Command] = {
    "evaluate": Command(
        "evaluate a model on GSM8K test (or validation) problems",
        (Expose("model.name", "--model-path"), Expose("eval.samples_per_problem", "--samples-per-problem"), *DATA,
         *ENGINE, Expose("eval", "eval-"), Expose("eval.generation")),
        "cmd_evaluate",
        [arg("--output-dir", help="results go to [output-dir]/debug/ (default: <output_root>/base_eval)"),
         arg("--output-file", default="eval.csv", help="per-example CSV file name (no directory part)")]),
    "train-sft": Command(
        "supervised fine-tuning (prep or full stage) with LoRA",
        (*TRAINING, Expose("sft")),
        "cmd_train_sft",
        [arg("--output-dir", required=True, help="run directory (model/, debug/, run.json)"),
         arg("--stage", default="full", help="prep (sft.prep_train_samples problems) or full (sft.train_samples)"),
         arg("--traces-file", help="JSONL of {question, answer: '<reasoning>\\n\\n#### N'} to train on")]),
    "train-grpo": Command(
        "GRPO with format and correctness rewards, LoRA",
        (*TRAINING, Expose("grpo.per_device_batch_size", "--per-device-batch-size", aliases=("--batch-size",)),
         Expose("grpo.rollout.max_new_tokens", "--max-completion-length"),
         Expose("grpo.rollout", only=DECODING), Expose("grpo")),
        "cmd_train_grpo",
        [arg("--output-dir", required=True, help="run directory (model/, debug/, run.json)")]),
    "generate-traces": Command(
        "rejection-sample reasoning traces from a GRPO run",
        (Expose("model.name", "--grpo-model"), Expose("traces.split", "--dataset-split"), *DATA, *ENGINE,
         Expose("traces"), Expose("traces.generation")),
        "cmd_generate_traces",
        [arg("--output-dir", required=True, help="folder of the traces file"),
         arg("--output-file", default="grpo_traces_train.jsonl", help="traces JSONL name (no directory part)")]),
    "experiment1": Command(
        "SFT vs GRPO at several training budgets (resumable sweep)",
        (Expose("experiment.budgets", "--budgets"), *EXPERIMENT),
        "cmd_experiment1",
        [arg("--root", help="sweep folder (default: <output_root>/compare-train-samples)")], run_flags=False),
    "experiment2": Command(
        "SFT on GRPO traces vs SFT on the original solutions",
        (Expose("experiment.traces_budget", "--budget"), Expose("traces.num_samples", "--num-samples"),
         Expose("traces.max_attempts", "--max-attempts"),
         Expose("traces.generation.temperature", "--temperature"), Expose("traces.generation", "traces-"),
         *EXPERIMENT),
        "cmd_experiment2",
        [arg("--grpo-model", help="GRPO run to sample traces from (default: <root>/<budget>/grpo)"),
         arg("--root", help="Experiment 1 folder (default: <output_root>/compare-train-samples)"),
         arg("--traces-root", help="traces folder (default: <output_root>/traces)")], run_flags=False),
    "preset": Command(
        "both experiments at a small size that fits 2 CPU cores",
        EXPERIMENT,
        "cmd_preset",
        [arg("--name", default="small", choices=sorted(PRESETS), help="which preset"),
         arg("--root", help="folder of the whole preset (default: <output_root>/preset, or preset-<name> for "
             "another preset)")], run_flags=False),
    "sweep-lr": Command(
        "learning-rate sweep of SFT and GRPO on the validation split; records the pick (resumable)",
        (Expose("sweep.methods", "--methods"), Expose("sweep.sft_learning_rates", "--sft-learning-rates"),
         Expose("sweep.grpo_learning_rates", "--grpo-learning-rates"), Expose("sweep.budget", "--budget"),
         Expose("sweep.metric", "--metric"), *EXPERIMENT),
        "cmd_sweep_lr",
        [arg("--root", help="sweep folder (default: <output_root>/sweep-lr)"),
         arg("--prep-model", help="finished prep run to start from (default: <root>/prep_sft, trained if missing)"),
         arg("--preset", choices=sorted(PRESETS), help="start from a preset's values (as the preset command)")],
        run_flags=False),
    "report": Command(
        "results table, plots and paired tests over finished runs", (), "cmd_report",
        [arg("folders", nargs="+", help="folders holding run directories"),
         arg("--out", help="report folder (default: <first folder>/report)")], run_flags=False),
}


#: Commands ``plan`` can plan: it takes each one's own flags.
PLANNABLE = ("evaluate", "train-sft", "train-grpo", "generate-traces", "experiment1", "experiment2", "preset")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or argparse's own error, printed as one line (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    ctx = Context(args)
    try:
        ctx.load()
        return int(globals()["cmd_plan" if args.command == "plan" else ctx.cmd.func](ctx) or 0)
    except SettingError as exc:
        print(f"error: {ctx.word(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        end_progress_lines()
        print("interrupted: finished work is kept; rerun with --resume to continue", file=sys.stderr)
        return 130
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
            print("error: the GPU ran out of memory; lower the batch size (--per-device-batch-size in training, "
                  "--batch-size or --eval-batch-size in evaluation), NUM_GENERATIONS, --max-completion-length or "
                  "--max-new-tokens, or add --gradient-checkpointing; "
                  "finished work is kept, rerun with --resume", file=sys.stderr)
            return EXIT_OOM
        if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
            print(f"error: no space left on the device writing {exc.filename or 'results'}; free space and "
                  "rerun with --resume", file=sys.stderr)
            return EXIT_USAGE
        raise


def end_progress_lines() -> None:
    """Close the progress bars an interrupt left open (a trainer's bar lives in its callback and is closed
    only when training ends), so each ends its line and a message printed next starts on a line of its own."""
    if "tqdm" not in sys.modules:
        return
    from tqdm import tqdm

    sys.stdout.flush()
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


# --------------------------------------------------------------------------
# Parser generated from the settings
# --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(prog="gsm8k-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, cmd in COMMANDS.items():
        _add_command(sub, name, cmd)
    plan_help = ("what a command would do and cost on this machine (runs, steps, time, memory), without doing it: "
                 "gsm8k-lab plan <command> [that command's flags]")
    plan = sub.add_parser("plan", help=plan_help, description=plan_help)
    planned = plan.add_subparsers(dest="planned", required=True, metavar="{" + ",".join(PLANNABLE) + "}")
    for name in PLANNABLE:
        p = _add_command(planned, name, COMMANDS[name])
        p.add_argument("--json", action="store_true", help="print the plan as JSON")
    return parser


def setting_flags(cmd: Command) -> dict[str, str]:
    """path -> flag for every setting a command exposes (explicit flags win over section prefixes)."""
    flags: dict[str, str] = {}
    leaves = [p for p, _, _ in iter_settings()]
    for e in cmd.settings:
        if e.path in leaves:
            flags.setdefault(e.path, e.flag)
            continue
        for path in leaves:
            head, _, name = path.rpartition(".")
            if head == e.path and (not e.only or name in e.only):
                flags.setdefault(path, "--" + e.flag + name.replace("_", "-"))
    return flags


_METAVAR = {int: "N", float: "X", str: "TEXT"}


class Context:
    """One command's arguments, resolved settings and the sources of their values."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.name = args.planned if args.command == "plan" else args.command  # plan takes its command's flags
        self.cmd = COMMANDS[self.name]
        self.flags = setting_flags(self.cmd)
        self.settings = Settings()
        self.sources = Sources()
        self.arg_flags = {dest: flag for dest, flag in _plain_args(self.cmd)}

    def load(self) -> None:
        a = vars(self.args)
        used = a.get("_flags_used", {})  # an alias the user typed names the setting in errors
        overrides = {path: (a[path], Source("flag", used.get(path, flag), _text(a[path])))
                     for path, flag in self.flags.items() if path in a}
        for dest, flag in self.arg_flags.items():  # plain arguments are named by their flags in errors
            self.sources[dest] = Source("flag", flag, a.get(dest) if isinstance(a.get(dest), str) else None)
        preset = a.get("name") if self.name == "preset" else a.get("preset")
        if a.get("config"):
            check_path("config", a["config"])
        settings, sources = load_settings(config_file=a.get("config"), overrides=overrides, preset=preset)
        self.settings = settings
        self.sources.update(sources)
        check_paths(settings, a)

    def word(self, err: SettingError) -> str:
        src = self.sources.of(err.path)
        if src.kind == "default" and err.path in self.flags:  # name the flag that would change it
            self.sources[err.path] = Source("flag", self.flags[err.path])
        return self.sources.word(err, resume="--resume", overwrite="--overwrite")

    def flag_of(self, path: str) -> str:
        """How the user sets a setting: its flag, or its path in a settings file."""
        return self.flags.get(path) or f"{path} (settings file)"

    @property
    def resume(self) -> bool:
        return bool(getattr(self.args, "resume", False))

    @property
    def overwrite(self) -> bool:
        return bool(getattr(self.args, "overwrite", False))


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------
#: Plain arguments that name folders a command writes into, and those that name what it reads.
OUTPUT_ARGS = ("output_dir", "root", "traces_root", "out")
INPUT_ARGS = ("traces_file", "grpo_model", "prep_model")


def check_paths(settings: Settings, args: dict) -> None:
    """Every path a command was given, checked before any work (see :func:`folders.check_path`):
    output folders, the output file's name, the files and models it reads, the cache folder."""
    for dest in OUTPUT_ARGS:
        if args.get(dest) is not None:
            check_path(dest, args[dest], output=True)
    for dest in INPUT_ARGS:
        if args.get(dest) is not None:
            check_path(dest, args[dest])
    if args.get("output_file") is not None:
        check_path("output_file", args["output_file"])
    for folder in args.get("folders") or []:
        check_path("folders", folder)
    check_path("output_root", settings.output_root, output=True)
    for path in ("model.name", "data.source", "data.train_source"):
        value = settings.get(path)
        if value:
            check_path(path, value)
    for source in settings.eval.extra_sources:
        check_path("eval.extra_sources", source)
    runtime.cache_dir()


def cmd_evaluate(ctx: Context) -> int:
    s, a = ctx.settings, ctx.args
    ref, csv_path = prepare_evaluation(s, _eval_dir(ctx), a.output_file, resume=ctx.resume, overwrite=ctx.overwrite)
    metrics = evaluate_model(s, ref, csv_path, resume=ctx.resume)
    print_metrics(metrics, csv_path)
    return 0


def cmd_train_sft(ctx: Context) -> int:
    a = ctx.args
    info = train_sft(ctx.settings, a.stage, a.output_dir, traces_file=a.traces_file, resume=ctx.resume,
                     overwrite=ctx.overwrite)
    _print_run(info, a.output_dir)
    return 0


def cmd_train_grpo(ctx: Context) -> int:
    info = train_grpo(ctx.settings, ctx.args.output_dir, resume=ctx.resume, overwrite=ctx.overwrite)
    _print_run(info, ctx.args.output_dir)
    return 0


def cmd_generate_traces(ctx: Context) -> int:
    a = ctx.args
    out, stats = generate_traces(ctx.settings, a.output_dir, a.output_file, resume=ctx.resume,
                                 overwrite=ctx.overwrite)
    print(f"\ntraces: {out}\nstats:  {stats_path(out)}")
    for k, v in stats.items():
        print(f"  {k:<28} {v if not isinstance(v, float) else round(v, 4)}")
    return 0


def cmd_experiment1(ctx: Context) -> int:
    return _run_experiment(ctx)


def cmd_experiment2(ctx: Context) -> int:
    return _run_experiment(ctx)


def cmd_preset(ctx: Context) -> int:
    return _run_experiment(ctx)


def cmd_plan(ctx: Context) -> int:
    """What the planned command would do and cost; measures this machine once (cached)."""
    import contextlib
    import json

    with contextlib.redirect_stdout(sys.stderr):  # progress to stderr: stdout holds the plan (or its JSON)
        plan = _plan(ctx)
        estimate(plan, ctx.settings, measure=True)
    print(json.dumps(plan.to_dict(), indent=1) if ctx.args.json else render(plan, ctx.flag_of))
    return 0


def experiment_steps(ctx: Context) -> tuple[list, list[Path], Path]:
    """An experiment command's runs in order (after its whole-experiment checks), the folders its
    report reads and where the report goes."""
    s, a, name = ctx.settings, ctx.args, ctx.name
    for which in (1, 2):
        if name in (f"experiment{which}", "preset"):
            check_experiment(s, which)
    budget = s.experiment.traces_budget
    if name == "experiment1":
        root = check_output_folder("root", a.root or os.path.join(s.output_root, "compare-train-samples"), None)
        return experiment1_steps(s, root), [root], root / "report"
    if name == "experiment2":
        if s.traces.num_samples is not None and s.traces.num_samples < budget:
            raise SettingError("traces.num_samples", s.traces.num_samples,
                               "{name} ({value}) must cover the budget " + f"({budget} problems)")
        root = check_output_folder("root", a.root or os.path.join(s.output_root, "compare-train-samples"), None)
        traces_root = check_output_folder("traces_root", a.traces_root or os.path.join(s.output_root, "traces"),
                                          Kind.TRACES)
        grpo = a.grpo_model or str(grpo_run_dir(root, budget, 0, s.experiment.seeds))
        return experiment2_steps(s, grpo, root, traces_root), [root, traces_root], traces_root / "report"
    folder = "preset" if a.name == "small" else f"preset-{a.name}"
    root = check_output_folder("root", a.root or os.path.join(s.output_root, folder), None)
    sweep = check_output_folder("root", root / "compare-train-samples", None)
    traces_root = check_output_folder("root", root / "traces", Kind.TRACES)
    steps = experiment1_steps(s, sweep) + experiment2_steps(s, grpo_run_dir(sweep, budget, 0, s.experiment.seeds),
                                                            sweep, traces_root)
    return steps, [sweep, traces_root], root / "report"


def cmd_sweep_lr(ctx: Context) -> int:
    s, a = ctx.settings, ctx.args
    if ctx.sources.of("eval.split").kind != "default" and s.eval.split != "validation":
        raise SettingError("eval.split", s.eval.split, "{name} {value}: a sweep tunes on the validation split")
    s = sweep_settings(s)
    check_sweep(s, a.prep_model)
    root = check_output_folder("root", a.root or os.path.join(s.output_root, "sweep-lr"), Kind.SWEEP)
    run_steps(sweep_steps(s, root, a.prep_model))
    write_sweep_report(s, root, a.prep_model)
    print(f"\nsweep: {root / 'sweep.md'}\npicked: {root / 'picked.yaml'} (use with --config)\n")
    print((root / "sweep.md").read_text())
    return 0


def cmd_report(ctx: Context) -> int:
    a = ctx.args
    return _report([Path(f) for f in a.folders], Path(a.out) if a.out else default_report_folder(Path(a.folders[0])))


def default_report_folder(first: Path) -> Path:
    """Where ``report`` writes without ``--out``: into the folder of runs it reads, or, when that
    folder is itself a run (or holds any other result), next to it, never into it."""
    return first / "report" if folder_kind(first) in (None, Kind.REPORT) else first.parent / "report"


def print_metrics(metrics: dict, csv_path: Path) -> None:
    print(f"\nGSM8K {metrics.get('split', 'test')}, {metrics['n']} problems ({metrics.get('model', '')})")
    print(format_table(metrics))
    print(f"  per-example rows:    {csv_path}")
    print(f"  metrics:             {metrics_path(csv_path)}")


def _add_command(sub, name: str, cmd: Command) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=cmd.help, description=cmd.help)
    for names, kw in cmd.args:
        p.add_argument(*names, **kw)
    if cmd.settings:
        p.add_argument("--config", help="settings file (YAML, or a run's run.json to repeat it)")
    if cmd.run_flags:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--resume", action="store_true", help="continue an interrupted run")
        g.add_argument("--overwrite", action="store_true", help="replace existing results")
    group = p.add_argument_group("settings (flags override environment variables and --config)")
    aliases = {e.path: e.aliases for e in cmd.settings if e.aliases}
    for path, flag in setting_flags(cmd).items():
        _add_setting(group, path, flag, aliases.get(path, ()))
    return p


def _add_setting(group, path: str, flag: str, aliases: tuple[str, ...] = ()) -> None:
    f, hint = leaf(path)
    meta = f.metadata
    default = Settings().get(path) if "." not in path else _default(path)
    extra = [f"default {default!r}" if default not in (None, []) else "default unset"]
    if meta.get("env"):
        extra.append(f"env {meta['env']}")
    help_text = f"{meta['help']} [{path}; {', '.join(extra)}]".replace("%", "%%")
    kw = dict(dest=path, default=argparse.SUPPRESS, help=help_text)
    if _base(hint) is bool:
        group.add_argument(flag, *aliases, action=argparse.BooleanOptionalAction, **kw)
    elif "dict" in str(hint):
        group.add_argument(flag, *aliases, nargs="+", metavar="KEY=VALUE", **kw)
    elif "list" in str(hint):
        shown = [str(c) for c in meta.get("choices") or () if c is not None]
        group.add_argument(flag, *aliases, nargs="+", metavar="{" + ",".join(shown) + "}" if shown else "ITEM", **kw)
    else:
        choices = meta.get("choices")
        shown = [str(c) for c in choices or () if c is not None]  # None (unset) is the absence of the flag
        metavar = "{" + ",".join(shown) + "}" if shown else _METAVAR.get(_base(hint), "TEXT")
        group.add_argument(flag, *aliases, metavar=metavar, **kw, **({"action": _StoreNamed} if aliases else {}))


class _StoreNamed(argparse.Action):
    """Store a value and the flag it came by (a setting with an older alias): errors name what was typed."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace._flags_used = {**getattr(namespace, "_flags_used", {}), self.dest: option_string}


def _base(hint):
    return unwrap(hint)[0]


def _default(path: str):
    return Settings().get(path)


def _plain_args(cmd: Command):
    for names, _ in cmd.args:
        flag = names[0]
        yield flag.lstrip("-").replace("-", "_"), flag
    yield "config", "--config"


def _text(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _run_experiment(ctx: Context) -> int:
    steps, folders, out = experiment_steps(ctx)
    plan = estimate(Plan(ctx.name, steps_runs(steps, ctx.settings.model.name)), ctx.settings, measure=False)
    print(f"[gsm8k-lab] {plan.summary()}", flush=True)
    t0 = time.perf_counter()
    run_steps(steps)
    code = _report(folders, out)
    print(f"{ctx.name} finished in {(time.perf_counter() - t0) / 60:.1f} min")
    return code


def _plan(ctx: Context):
    """The plan of ``ctx``'s command: its runs, checked as the command checks them."""
    s, a, name = ctx.settings, ctx.args, ctx.name
    if name == "evaluate":
        runs = [evaluation_run(s, _eval_dir(ctx), a.output_file, ctx.resume, ctx.overwrite)]
    elif name == "train-sft":
        job = prepare_sft(s, a.stage, a.output_dir, a.traces_file)
        runs = [training_run(s, job, ctx.resume, ctx.overwrite)]
    elif name == "train-grpo":
        runs = [training_run(s, prepare_grpo(s, a.output_dir), ctx.resume, ctx.overwrite)]
    elif name == "generate-traces":
        runs = [traces_run(s, a.output_dir, a.output_file, ctx.resume, ctx.overwrite)]
    else:
        runs = steps_runs(experiment_steps(ctx)[0], s.model.name)
    return Plan(name, runs)


def _eval_dir(ctx: Context) -> str:
    return ctx.args.output_dir or os.path.join(ctx.settings.output_root, "base_eval")


def _report(folders: list[Path], out: Path) -> int:
    check_output_folder("out", out, Kind.REPORT)
    check_writable_dir(out, "out")
    summary = write_report(folders, out)
    print(f"\nreport: {out / 'report.md'} ({summary['runs']} runs, {summary['pairs']} paired comparisons)")
    print((out / "report.md").read_text().split("## Plots")[0])
    return 0


def _print_run(info: dict, output_dir: str) -> None:
    ev = info.get("eval")
    if not ev:
        return
    print(f"\n{info['stage']} finished: {output_dir}/model (adapter), {output_dir}/debug/{ev['csv']}")
    print(f"  accuracy {ev['accuracy']:.1%} (95% CI {ev['accuracy_ci95_low']:.1%}-{ev['accuracy_ci95_high']:.1%}), "
          f"thinking {ev['thinking_proportion']:.1%}, answer {ev['answer_proportion']:.1%}, n={ev['n']}")
    t = info.get("timings", {})
    print(f"  train {t.get('train_seconds', 0):.0f} s, eval {t.get('eval_seconds', 0):.0f} s")


class _OneLineErrors(argparse.ArgumentParser):
    """argparse's own errors (an unknown flag, a missing value, a bad choice of a plain argument) as one
    line like every other bad input, instead of the whole usage before it; ``--help`` is unchanged.
    Subcommands' parsers are of this class too (argparse makes them of their parent's class)."""

    def parse_args(self, args=None, namespace=None):
        """As argparse's, with unknown arguments named by the command that was given them."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            words = (self.prog, getattr(namespace, "command", None), getattr(namespace, "planned", None))
            _OneLineErrors(prog=" ".join(w for w in words if w)).error("unrecognized arguments: " + " ".join(extras))
        return namespace

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {self.prog}: {' '.join(message.split())} (see --help)\n")

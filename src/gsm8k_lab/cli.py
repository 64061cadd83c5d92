"""The one command-line interface: ``gsm8k-lab <command>``.

The seed's scripts in ``src/`` (``evaluate_model.py``, ``train_sft.py``, ...) are
thin wrappers that call :func:`main` with their command name. Bad input is
reported as one line on stderr with exit code 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .config import EXPERIMENT_BUDGETS, Config, UsageError, load_config, parse_count

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = load_config()
        return int(args.func(args, cfg) or 0)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; rerun with --resume to continue", file=sys.stderr)
        return 130
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
            print("error: the GPU ran out of memory; lower the batch size (--batch-size / --eval-batch-size), "
                  "NUM_GENERATIONS, --max-completion-length or --max-new-tokens, or add --gradient-checkpointing; "
                  "finished work is kept, rerun with --resume", file=sys.stderr)
            return 3
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gsm8k-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="evaluate a model on GSM8K test problems")
    ev.add_argument("--model-path", help="run directory, local model folder or hub id "
                    "(default: MODEL_NAME or the embedded SmolLM2-135M-Instruct)")
    ev.add_argument("--output-dir", help="results go to [output-dir]/debug/ (default: $OUTPUT_DIR/base_eval)")
    ev.add_argument("--output-file", default="eval.csv", help="per-example CSV file name (no directory part)")
    ev.add_argument("--eval-samples", help="test problems: a positive integer or 'all' (default: EVAL_SAMPLES or 512)")
    add_generation_flags(ev)
    add_run_flags(ev)
    ev.set_defaults(func=cmd_evaluate)

    sft = sub.add_parser("train-sft", help="supervised fine-tuning (prep or full stage) with LoRA")
    sft.add_argument("--output-dir", required=True, help="run directory (model/, debug/, run.json)")
    sft.add_argument("--stage", default="full", help="prep (PREP_TRAIN_SAMPLES problems) or full (TRAIN_SAMPLES)")
    sft.add_argument("--base-model", help="run directory, model folder or hub id to start from")
    sft.add_argument("--traces-file", help="JSONL of {question, answer: '<reasoning>\\n\\n#### N'} to train on")
    add_training_flags(sft)
    sft.set_defaults(func=cmd_train_sft)

    grpo = sub.add_parser("train-grpo", help="GRPO with format and correctness rewards, LoRA")
    grpo.add_argument("--output-dir", required=True, help="run directory (model/, debug/, run.json)")
    grpo.add_argument("--base-model", help="run directory, model folder or hub id to start from")
    grpo.add_argument("--batch-size", dest="train_batch_size", type=int,
                      help="completions per device per step (a multiple of NUM_GENERATIONS)")
    grpo.add_argument("--max-completion-length", type=int, help="GRPO completion budget in tokens")
    grpo.add_argument("--use-vllm", action="store_true", help="roll out with vLLM (TRL use_vllm)")
    grpo.add_argument("--vllm-mode", choices=["colocate", "server"], help="vLLM beside training or a server")
    add_training_flags(grpo)
    grpo.set_defaults(func=cmd_train_grpo)

    tr = sub.add_parser("generate-traces", help="rejection-sample reasoning traces from a GRPO run")
    tr.add_argument("--grpo-model", required=True, help="run directory of a GRPO (or any) training run")
    tr.add_argument("--output-dir", required=True, help="folder of the traces file")
    tr.add_argument("--output-file", default="grpo_traces_train.jsonl", help="traces JSONL name (no directory part)")
    tr.add_argument("--dataset-split", default="train", help="train or test")
    tr.add_argument("--num-samples", default="all", help="problems to cover: a positive integer or 'all'")
    tr.add_argument("--max-attempts", type=int, default=5, help="samples per problem before the fallback")
    tr.add_argument("--batch-size", type=int, help="prompts generated together")
    tr.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (> 0)")
    tr.add_argument("--max-new-tokens", type=int, help="generation budget per completion")
    tr.add_argument("--seed", type=int, help="sampling seed (round r uses seed + r)")
    tr.add_argument("--backend", choices=["auto", "transformers", "vllm"], help="generation backend")
    tr.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], help="weights dtype")
    tr.add_argument("--data", help="GSM8K source: bundled (default), hub, or a JSONL path")
    add_run_flags(tr)
    tr.set_defaults(func=cmd_generate_traces)

    e1 = sub.add_parser("experiment1", help="SFT vs GRPO at several training budgets (resumable sweep)")
    e1.add_argument("--budgets", nargs="+", default=[str(b) for b in EXPERIMENT_BUDGETS],
                    help="training problems per run (default: 256 512 1024 2048)")
    e1.add_argument("--root", help="sweep folder (default: $OUTPUT_DIR/compare-train-samples)")
    e1.add_argument("--seeds", type=int, default=1, help="repeat each training run with K seeds")
    e1.set_defaults(func=cmd_experiment1)

    e2 = sub.add_parser("experiment2", help="SFT on GRPO traces vs SFT on the original solutions")
    e2.add_argument("--grpo-model", help="GRPO run to sample traces from (default: <root>/<budget>/grpo)")
    e2.add_argument("--budget", default="1024", help="training problems of both SFT runs")
    e2.add_argument("--num-samples", help="problems covered by the traces (default: the budget)")
    e2.add_argument("--max-attempts", type=int, default=5, help="samples per problem before the fallback")
    e2.add_argument("--temperature", type=float, default=0.8, help="trace sampling temperature")
    e2.add_argument("--root", help="Experiment 1 folder (default: $OUTPUT_DIR/compare-train-samples)")
    e2.add_argument("--traces-root", help="traces folder (default: $OUTPUT_DIR/traces)")
    e2.add_argument("--seeds", type=int, default=1, help="repeat each SFT run with K seeds")
    e2.set_defaults(func=cmd_experiment2)

    pr = sub.add_parser("preset", help="both experiments at a small size that fits 2 CPU cores in about an hour")
    pr.add_argument("--root", help="folder of the whole preset (default: $OUTPUT_DIR/preset)")
    pr.set_defaults(func=cmd_preset)

    rp = sub.add_parser("report", help="results table, plots and paired tests over finished runs")
    rp.add_argument("folders", nargs="+", help="folders holding run directories")
    rp.add_argument("--out", help="report folder (default: <first folder>/report)")
    rp.set_defaults(func=cmd_report)
    return parser


def add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=float, help="passes over the training problems")
    p.add_argument("--learning-rate", type=float, help="peak learning rate")
    p.add_argument("--save-steps", type=int, help="checkpoint every N optimizer steps (resume points)")
    p.add_argument("--seed", dest="train_seed", type=int, help="training seed")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], help="base weights dtype")
    p.add_argument("--data", help="GSM8K source: bundled (default), hub, or a JSONL path")
    p.add_argument("--report-to", help="none, tensorboard, wandb or trackio")
    p.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for GPU memory")
    p.add_argument("--eval-batch-size", type=int, help="batch size of the automatic evaluation")
    p.add_argument("--eval-max-new-tokens", type=int, help="generation budget of the automatic evaluation")
    add_run_flags(p)


def add_generation_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, help="prompts generated together")
    p.add_argument("--max-new-tokens", type=int, help="generation budget per completion")
    p.add_argument("--temperature", type=float, help="0 means greedy")
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--backend", choices=["auto", "transformers", "vllm"], help="generation backend")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], default=None,
                   help="weights dtype (auto: bf16 where supported, else fp32)")
    p.add_argument("--data", help="GSM8K source: bundled (default), hub, or a JSONL path")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue an interrupted run")
    g.add_argument("--overwrite", action="store_true", help="replace existing results")


def apply_common_flags(args, cfg: Config) -> None:
    """Flags override environment variables and defaults."""
    for flag, section, key in [("batch_size", cfg.eval, "batch_size"),
                               ("max_new_tokens", cfg.eval, "max_new_tokens"),
                               ("temperature", cfg.eval, "temperature"),
                               ("seed", cfg.eval, "seed"), ("backend", cfg.eval, "backend"),
                               ("dtype", cfg.model, "dtype")]:
        value = getattr(args, flag, None)
        if value is not None:
            setattr(section, key, value)
    if getattr(args, "data", None):
        cfg.data_source = args.data
    if getattr(args, "eval_samples", None) is not None:
        cfg.eval.samples = parse_count("--eval-samples", args.eval_samples)
    for name, value in [("--batch-size", cfg.eval.batch_size), ("--max-new-tokens", cfg.eval.max_new_tokens)]:
        if value <= 0:
            raise UsageError(f"{name} must be a positive integer, got {value}")
    if cfg.eval.temperature < 0:
        raise UsageError(f"--temperature must be >= 0, got {cfg.eval.temperature}")


# --------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------
def cmd_evaluate(args, cfg: Config) -> int:
    from .runs import check_writable_dir

    apply_common_flags(args, cfg)
    check_file_name("--output-file", args.output_file, ".csv")
    output_dir = Path(args.output_dir or os.path.join(cfg.output_root, "base_eval"))
    check_writable_dir(output_dir)
    csv_path = output_dir / "debug" / args.output_file
    if csv_path.exists() and not (args.resume or args.overwrite):
        raise UsageError(f"{csv_path} already exists; pass --resume to continue it or --overwrite to replace it")
    from .models import resolve_model

    ref = resolve_model(args.model_path or cfg.model.name, flag="--model-path")
    from .evaluate import evaluate_model

    metrics = evaluate_model(cfg, ref, csv_path, resume=args.resume)
    print_metrics(metrics, csv_path)
    return 0


def _apply_training_flags(args, cfg: Config, section) -> None:
    if args.epochs is not None:
        section.epochs = args.epochs
        if section is cfg.sft:
            section.prep_epochs = args.epochs
    if args.learning_rate is not None:
        section.learning_rate = args.learning_rate
    if args.save_steps is not None:
        if args.save_steps <= 0:
            raise UsageError(f"--save-steps must be a positive integer, got {args.save_steps}")
        section.save_steps = args.save_steps
    if args.train_seed is not None:
        cfg.seed = args.train_seed
    if args.dtype:
        cfg.model.dtype = args.dtype
    if args.data:
        cfg.data_source = args.data
    if args.report_to:
        cfg.report_to = args.report_to
    if args.gradient_checkpointing:
        section.gradient_checkpointing = True
    if args.eval_batch_size:
        cfg.eval.batch_size = args.eval_batch_size
    if args.eval_max_new_tokens:
        cfg.eval.max_new_tokens = args.eval_max_new_tokens


def cmd_train_sft(args, cfg: Config) -> int:
    from .sft import train_sft

    _apply_training_flags(args, cfg, cfg.sft)
    info = train_sft(cfg, args.stage, args.output_dir, base_model=args.base_model,
                     traces_file=args.traces_file, resume=args.resume, overwrite=args.overwrite)
    _print_run(info, args.output_dir)
    return 0


def cmd_train_grpo(args, cfg: Config) -> int:
    from .grpo import train_grpo

    _apply_training_flags(args, cfg, cfg.grpo)
    if args.train_batch_size is not None:
        if args.train_batch_size <= 0:
            raise UsageError(f"--batch-size must be a positive integer, got {args.train_batch_size}")
        cfg.grpo.per_device_batch_size = args.train_batch_size
    if args.max_completion_length is not None:
        cfg.grpo.max_completion_length = args.max_completion_length
    if args.use_vllm:
        cfg.grpo.use_vllm = True
    if args.vllm_mode:
        cfg.grpo.vllm_mode = args.vllm_mode
    info = train_grpo(cfg, args.output_dir, base_model=args.base_model,
                      resume=args.resume, overwrite=args.overwrite)
    _print_run(info, args.output_dir)
    return 0


def cmd_generate_traces(args, cfg: Config) -> int:
    from .traces import check_trace_args, generate_traces, stats_path

    check_trace_args(args.max_attempts, args.temperature)
    apply_common_flags(args, cfg)
    check_file_name("--output-file", args.output_file, ".jsonl")
    out, stats = generate_traces(
        cfg, args.grpo_model, args.output_dir, args.output_file, split=args.dataset_split,
        num_samples=parse_count("--num-samples", args.num_samples), max_attempts=args.max_attempts,
        temperature=args.temperature, resume=args.resume, overwrite=args.overwrite)
    print(f"\ntraces: {out}\nstats:  {stats_path(out)}")
    for k, v in stats.items():
        print(f"  {k:<28} {v if not isinstance(v, float) else round(v, 4)}")
    return 0


def cmd_experiment1(args, cfg: Config) -> int:
    from .experiments import check_budgets, experiment1_steps, run_steps

    budgets = check_budgets(args.budgets)
    seeds = _check_seeds(args.seeds)
    root = Path(args.root or os.path.join(cfg.output_root, "compare-train-samples"))
    run_steps(experiment1_steps(cfg, budgets, root, seeds=seeds))
    return _report([root], root / "report")


def cmd_experiment2(args, cfg: Config) -> int:
    from .experiments import check_budgets, experiment2_steps, run_steps
    from .traces import check_trace_args

    (budget,) = check_budgets([args.budget])
    check_trace_args(args.max_attempts, args.temperature)
    seeds = _check_seeds(args.seeds)
    root = Path(args.root or os.path.join(cfg.output_root, "compare-train-samples"))
    traces_root = Path(args.traces_root or os.path.join(cfg.output_root, "traces"))
    grpo = args.grpo_model or str(root / str(budget) / "grpo")
    num = parse_count("--num-samples", args.num_samples, allow_all=False) if args.num_samples else budget
    if num < budget:
        raise UsageError(f"--num-samples ({num}) must cover the budget ({budget} problems)")
    run_steps(experiment2_steps(cfg, grpo, budget, root, traces_root, num_samples=num,
                                max_attempts=args.max_attempts, temperature=args.temperature, seeds=seeds))
    return _report([root, traces_root], traces_root / "report")


def cmd_preset(args, cfg: Config) -> int:
    from .experiments import PRESET, apply_preset, experiment1_steps, experiment2_steps, run_steps

    apply_preset(cfg)
    root = Path(args.root or os.path.join(cfg.output_root, "preset"))
    sweep, traces_root = root / "compare-train-samples", root / "traces"
    t0 = time.perf_counter()
    run_steps(experiment1_steps(cfg, PRESET["budgets"], sweep))
    b = PRESET["traces_budget"]
    run_steps(experiment2_steps(cfg, sweep / str(b) / "grpo", b, sweep, traces_root,
                                max_attempts=PRESET["max_attempts"], temperature=PRESET["temperature"]))
    code = _report([sweep, traces_root], root / "report")
    print(f"preset finished in {_elapsed(t0) / 60:.1f} min")
    return code


def cmd_report(args, cfg: Config) -> int:
    return _report([Path(f) for f in args.folders], Path(args.out) if args.out else Path(args.folders[0]) / "report")


def _report(folders: list[Path], out: Path) -> int:
    from .report import write_report

    summary = write_report(folders, out)
    print(f"\nreport: {out / 'report.md'} ({summary['runs']} runs, {summary['pairs']} paired comparisons)")
    print((out / "report.md").read_text().split("## Plots")[0])
    return 0


def _check_seeds(k: int) -> int:
    if k < 1:
        raise UsageError(f"--seeds must be a positive integer, got {k}")
    return k


def check_file_name(flag: str, name: str, suffix: str) -> None:
    if Path(name).name != name or name in ("", ".", ".."):
        raise UsageError(f"{flag} must be a file name without a directory part, got {name!r}")
    if not name.endswith(suffix):
        raise UsageError(f"{flag} must end in {suffix}, got {name!r}")


def _print_run(info: dict, output_dir: str) -> None:
    ev = info.get("eval")
    if not ev:
        return
    print(f"\n{info['stage']} finished: {output_dir}/model (adapter), {output_dir}/debug/{ev['csv']}")
    print(f"  accuracy {ev['accuracy']:.1%} (95% CI {ev['accuracy_ci95_low']:.1%}-{ev['accuracy_ci95_high']:.1%}), "
          f"thinking {ev['thinking_proportion']:.1%}, answer {ev['answer_proportion']:.1%}, n={ev['n']}")
    t = info.get("timings", {})
    print(f"  train {t.get('train_seconds', 0):.0f} s, eval {t.get('eval_seconds', 0):.0f} s")


def print_metrics(metrics: dict, csv_path: Path) -> None:
    from .evaluate import format_table, metrics_path

    print(f"\nGSM8K test, {metrics['n']} problems ({metrics.get('model', '')})")
    print(format_table(metrics))
    print(f"  per-example rows:    {csv_path}")
    print(f"  metrics:             {metrics_path(csv_path)}")


def _elapsed(t0: float) -> float:
    return round(time.perf_counter() - t0, 1)

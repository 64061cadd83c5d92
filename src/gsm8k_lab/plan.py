"""What a command would do and what it will cost on this machine, without doing it.

A plan lists every run a command would make, in order, each with its counts
(problems, epochs, optimizer steps, completions generated in training,
evaluation problems x samples x max tokens, trace attempts), its time and its
peak memory. Counts come from the same code the command runs: each stage's
``prepare_*`` (so a plan validates exactly as the command does and raises the
same errors) and each experiment's step list (so finished steps are marked as
the sweep would skip them). Optimizer steps follow the trainers' own
arithmetic (transformers' ``Trainer`` for SFT, TRL's ``RepeatSampler`` for GRPO).

Times are counts times rates measured on this machine (:mod:`.calibrate`):
generation tokens/s at each run's batch, seconds per SFT and GRPO micro-batch
at each run's geometry, model loading and process start. Evaluation and trace
sampling are counted at their full token budgets (every completion as long as
``max_new_tokens``, every problem using all its attempts). That is not an
upper bound: decoding is probed for 32 new tokens with every row of the batch
busy, and a real evaluation decodes at up to 512 tokens of context while its
batch empties as rows finish, so it runs slower than the probe (on the small
preset, 64-problem evaluations took 0.8-1.7x their estimate; docs/benchmarks.md,
plan vs actual). Memory is estimated from
the model's configuration (weights, LoRA and its optimizer state, activations
of one micro-batch, the KV cache, a vLLM engine's share of the GPU) against
what the machine has.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import calibrate, runtime
from .config import Settings
from .data import load_split
from .evaluate import extra_evaluations, metrics_path, prepare_evaluation
from .experiments import check_finished
from .generation import uses_vllm
from .grpo import prepare_grpo
from .memory import BYTES, GiB, ModelShape, estimate_training, needs_checkpointing
from .models import base_path, resolve_model
from .runs import RunDir
from .sft import prepare_sft
from .traces import is_finished, prepare_traces
from .training import TrainingJob, check_run, grpo_steps, sft_steps


@dataclass
class EvalSet:
    source: str
    problems: int
    samples: int
    max_new_tokens: int
    batch: int

    @property
    def rows(self) -> int:
        return self.problems * self.samples


@dataclass
class Run:
    """One run of a plan and what it costs."""

    name: str
    kind: str  # evaluate, base, sft, grpo, traces
    path: str
    done: bool = False
    repeat: bool = False  # the same run directory as an earlier run of the plan: made by then
    model: str = ""
    problems: int | None = None  # training problems, or the problems traces cover
    epochs: float | None = None
    steps: int | None = None  # optimizer steps
    per_device_batch: int | None = None
    gradient_accumulation_steps: int | None = None
    processes: int = 1
    own_process: bool = False  # a command of its own (its process start counts), not a step of a sweep
    examples_per_step: int | None = None  # SFT examples, GRPO completions
    completions: int | None = None  # generated in training (GRPO)
    rollout_tokens: int | None = None  # GRPO: longest completion
    max_length: int | None = None  # SFT: longest example
    evaluations: list[EvalSet] = field(default_factory=list)
    trace_attempts: int | None = None  # at most
    trace_tokens: int | None = None  # per attempt, at most
    trace_batch: int | None = None
    seconds: float | None = None
    time_parts: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)  # phase -> {component: bytes}
    peak_bytes: int | None = None
    fits: bool | None = None
    change_first: str | None = None  # the setting path to lower first when it does not fit
    settings: Settings | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("settings")
        return d


@dataclass
class Plan:
    command: str
    runs: list[Run]
    machine: dict = field(default_factory=dict)
    memory_available: int | None = None
    model: dict = field(default_factory=dict)
    rates: dict = field(default_factory=dict)  # probe key -> measurements
    calibration_file: str | None = None
    calibrated: bool = False

    @property
    def todo(self) -> list[Run]:
        return [r for r in self.runs if not r.done]

    @property
    def seconds(self) -> float | None:
        times = [r.seconds for r in self.todo]
        return None if any(t is None for t in times) else sum(times)

    def summary(self) -> str:
        """One line: runs, finished, estimated time (or that this machine is not calibrated)."""
        runs = [r for r in self.runs if not r.repeat]  # a run met twice is made once
        done = len(runs) - len(self.todo)
        head = f"plan: {len(runs)} runs" + (f" ({done} finished, {len(self.todo)} to run)" if done else "")
        if not self.todo:
            return head + ", nothing to run"
        if not self.calibrated or self.seconds is None:
            return head + ", time not calibrated on this machine (gsm8k-lab plan <command> measures it)"
        return head + f", estimated {_duration(self.seconds)} on this machine"

    def to_dict(self) -> dict:
        return {"command": self.command, "summary": self.summary(), "seconds": self.seconds,
                "calibrated": self.calibrated, "calibration_file": self.calibration_file,
                "machine": self.machine, "memory_available_bytes": self.memory_available, "model": self.model,
                "rates": self.rates, "runs": [r.to_dict() for r in self.runs]}


# --------------------------------------------------------------------------
# Runs, from the command's own checks and step lists
# --------------------------------------------------------------------------
def evaluation_run(settings: Settings, output_dir: str | Path, output_file: str, resume: bool,
                   overwrite: bool) -> Run:
    """``evaluate``: checked by :func:`~gsm8k_lab.evaluate.prepare_evaluation`."""
    ref, csv_path = prepare_evaluation(settings, output_dir, output_file, resume=resume, overwrite=overwrite)
    done = resume and metrics_path(csv_path).with_suffix(".json").is_file()
    run = Run("evaluate", "evaluate", str(csv_path), done=done, model=_model_name(ref), own_process=True,
              settings=settings)
    run.evaluations = [_eval_set(settings, settings.data.source, _test_size(settings))]
    return run


def training_run(settings: Settings, job, resume: bool, overwrite: bool, name: str = "") -> Run:
    """``train-sft`` / ``train-grpo``: a prepared job, its run directory checked as training checks it."""
    check_run(settings, job, resume=resume, overwrite=overwrite)
    done = resume and RunDir(job.output_dir).is_complete()
    run = _from_job(name or job.stage.replace("_", " "), settings, job, done)
    run.own_process = True
    return run


def traces_run(settings: Settings, output_dir: str | Path, output_file: str, resume: bool,
               overwrite: bool) -> Run:
    """``generate-traces``: checked by :func:`~gsm8k_lab.traces.prepare_traces`."""
    problems, out, _ = prepare_traces(settings, output_dir, output_file, resume, overwrite)
    done = resume and is_finished(out)  # finished traces resumed with their own settings: nothing to do
    run = _traces(settings, "traces", out, len(problems), done, _model_name(resolve_model(settings.model.name)))
    run.own_process = True
    return run


def steps_runs(steps, base_model: str | None) -> list[Run]:
    """An experiment's step list as runs. A step whose parent run does not exist yet is planned
    on the experiment's base model (its adapters change no count, size or speed)."""
    runs, seen = [], set()
    for step in steps:
        s = _planned(step.settings, base_model)
        repeat = Path(step.run_dir) in seen
        if not repeat:
            check_finished(step)  # a finished run with other settings is refused, as the sweep refuses it
        done = step.is_done() or repeat
        seen.add(Path(step.run_dir))
        if step.kind == "base":
            runs.append(_base(step.name, s, step.run_dir, done))
        elif step.kind == "sft":
            traces = str(step.traces_file) if step.traces_file and Path(step.traces_file).is_file() else None
            job: TrainingJob = prepare_sft(s, step.stage, step.run_dir, traces)
            runs.append(_from_job(step.name, s, job, done))
        elif step.kind == "grpo":
            runs.append(_from_job(step.name, s, prepare_grpo(s, step.run_dir), done))
        elif step.kind == "traces":
            runs.append(_traces(s, step.name, step.traces_file, s.traces.num_samples, done,
                                step.settings.model.name))
        else:
            runs.append(Run(step.name, step.kind or "unknown", str(step.run_dir), done=done))
        runs[-1].repeat = repeat
    return runs


# --------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------
def estimate(plan: Plan, settings: Settings, measure: bool) -> Plan:
    """Fill in memory (always) and times: from the cache, measuring what is missing when ``measure``."""
    ref = resolve_model(_base_model(settings))
    facts = model_facts(ref, settings)
    plan.model = {k: v for k, v in facts.items() if not k.startswith("_")}
    plan.machine, plan.memory_available = _memory_available(settings)
    for run in plan.runs:
        _memory(run, facts, settings, plan.memory_available)
    cal = calibrate.Calibration(settings, _model_key(ref))
    plan.machine.update(cal.machine)
    plan.calibration_file = str(cal.path)
    needed = {}
    for run in plan.todo:
        needed.update(_probes(run))
    if measure:
        for key, probe in needed.items():
            cal.measure(key, probe)
    plan.rates = {k: cal.get(k) for k in needed if cal.get(k)}
    plan.calibrated = all(cal.get(k) for k in needed)
    if plan.calibrated:
        for run in plan.todo:
            _time(run, plan.rates)
    return plan


def model_facts(ref, settings: Settings) -> dict:
    """Sizes from the model's configuration (no weights loaded): parameters, LoRA parameters,
    layers, hidden size, KV heads, vocabulary; and the bytes of one weight in the run's dtype."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base_path(ref))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    targets = set(settings.lora.target_modules)
    lora = sum(settings.lora.r * (m.in_features + m.out_features) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    dtype = runtime.current(settings).dtype_name
    return {"name": _model_name(ref), "parameters": params, "lora_parameters": lora,
            "layers": text.num_hidden_layers, "hidden_size": text.hidden_size,
            "kv_heads": getattr(text, "num_key_value_heads", None) or heads, "head_dim": head_dim,
            "vocab_size": text.vocab_size, "dtype": dtype, "_bytes": BYTES[dtype],
            "_shape": ModelShape.from_config(config)}


def render(plan: Plan, flag_of=lambda path: path) -> str:
    """The plan as text; ``flag_of`` words a setting path as the user would set it (a flag)."""
    lines = [f"plan of `{plan.command}` with {plan.model.get('name', '?')} "
             f"({plan.model.get('parameters', 0) / 1e6:.0f}M parameters, {plan.model.get('dtype')}) on "
             f"{_machine_text(plan.machine)}"]
    for i, run in enumerate(plan.runs, 1):
        state = ("made above, skipped" if run.repeat else "finished, skipped") if run.done else \
            (_duration(run.seconds) if run.seconds is not None else "?")
        lines.append(f"{i:>2}. {run.name:<28} {state:>18}   {run.path}")
        lines += ["      " + x for x in _run_lines(run, flag_of)]
    if plan.calibrated and plan.rates:
        lines.append("measured on this machine (" + (plan.calibration_file or "") + "):")
        lines += ["  " + _rate_text(k, v) for k, v in plan.rates.items()]
    lines.append(plan.summary() + (" (evaluation and traces counted at their full token budgets)"
                                   if plan.calibrated and plan.todo else ""))
    return "\n".join(lines)


def _run_lines(run: Run, flag_of) -> list[str]:
    out = []
    if run.kind in ("sft", "grpo"):
        what = (f"{run.problems} problems, {run.epochs:g} epochs, {run.steps} optimizer steps of "
                f"{run.examples_per_step} {'completions' if run.kind == 'grpo' else 'examples'} "
                f"({run.per_device_batch} per device x {run.gradient_accumulation_steps} accumulation"
                f"{f' x {run.processes} processes' if run.processes > 1 else ''})")
        if run.kind == "grpo":
            what += f"; {run.completions} completions of at most {run.rollout_tokens} tokens generated"
        out.append(what)
    if run.kind == "traces":
        out.append(f"traces for {run.problems} problems: at most {run.trace_attempts} attempts of "
                   f"{run.trace_tokens} tokens")
    if run.evaluations:
        out.append("evaluation: " + " + ".join(f"{e.problems} x {e.samples} x {e.max_new_tokens} tokens ({e.source})"
                                                for e in run.evaluations))
    if run.time_parts:
        out.append("time: " + ", ".join(f"{k} {_duration(v)}" for k, v in run.time_parts.items()))
    if run.peak_bytes is not None:
        phase = max(run.memory, key=lambda k: sum(run.memory[k].values()))
        parts = ", ".join(f"{k} {v / GiB:.2f}" for k, v in run.memory[phase].items())
        mem = f"peak memory {run.peak_bytes / GiB:.2f} GiB in {phase} ({parts} GiB)"
        if run.fits is False:
            mem += f": DOES NOT FIT; lower {flag_of(run.change_first)} first"
        out.append(mem)
    return out


def _machine_text(m: dict) -> str:
    if m.get("device") == "cuda":
        return f"{m.get('count', 1)} x {m.get('name')}"
    flags = "/".join(m.get("flags", [])) or "no AVX2"
    return f"{m.get('name', 'cpu')} ({m.get('threads')} threads, {flags})"


def _rate_text(key: str, r: dict) -> str:
    if key.startswith("generate"):
        return (f"{key}: {r['tokens_per_s']:.0f} tokens/s decoding, {r['prompt_seconds_per_row']:.2f} s per prompt, "
                f"model load {r['load_seconds']:.1f} s")
    if key.startswith("sft"):
        return f"{key}: {r['micro_batch_seconds']:.2f} s per micro-batch"
    if key.startswith("grpo"):
        return f"{key}: {r['group_seconds']:.2f} s per group of completions"
    return f"{key}: process start {r['seconds']:.1f} s"


# --------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------
def _from_job(name: str, settings: Settings, job, done: bool) -> Run:
    g = job.geometry
    n = job.data["n"]
    run = Run(name, "grpo" if job.stage == "grpo" else "sft", str(job.output_dir), done=done,
              model=_model_name(job.parent), problems=n, epochs=g["epochs"], per_device_batch=g["per_device_batch"],
              gradient_accumulation_steps=g["gradient_accumulation_steps"], processes=g["processes"],
              settings=settings)
    if run.kind == "grpo":
        run.examples_per_step = g["completions_per_step"]
        run.steps = grpo_steps(n, g["prompts_per_step"], g["epochs"], g.get("max_steps"))
        run.completions = run.steps * g["completions_per_step"]
        run.rollout_tokens = g["max_completion_length"]
    else:
        run.examples_per_step = g["examples_per_step"]
        run.steps = sft_steps(n, g["per_device_batch"], g["gradient_accumulation_steps"], g["processes"],
                              g["epochs"], g.get("max_steps"))
        run.max_length = settings.sft.max_length
    run.evaluations = [_eval_set(settings, settings.data.source, _test_size(settings)),
                       *(_eval_set(settings, src, k) for src, k in job.extra_eval.items())]
    return run


def _base(name: str, settings: Settings, run_dir, done: bool) -> Run:
    run = Run(name, "base", str(run_dir), done=done, model=_model_name(resolve_model(settings.model.name)),
              settings=settings)
    run.evaluations = [_eval_set(settings, settings.data.source, _test_size(settings)),
                       *(_eval_set(settings, src, k) for src, k in extra_evaluations(settings).items())]
    return run


def _traces(settings: Settings, name: str, out, n: int, done: bool, model) -> Run:
    t = settings.traces
    return Run(name, "traces", str(out), done=done, model=str(model), problems=n, trace_attempts=n * t.max_attempts,
               trace_tokens=t.generation.max_new_tokens, trace_batch=min(t.generation.batch_size, n),
               settings=settings)


def _eval_set(settings: Settings, source: str, size: int) -> EvalSet:
    e = settings.eval
    n = min(e.samples or size, size)
    return EvalSet(source, n, e.samples_per_problem, e.generation.max_new_tokens,
                   min(e.generation.batch_size, n * e.samples_per_problem))


def _test_size(settings: Settings) -> int:
    return len(load_split("test", settings.data.source))


def _planned(settings: Settings, base_model: str | None) -> Settings:
    """A step's settings, its model the experiment's base model while its parent run is not finished."""
    name = settings.model.name
    if name == base_model or (name and RunDir(name).is_complete()):
        return settings
    settings = copy.deepcopy(settings)
    settings.model.name = base_model
    return settings


def _base_model(settings: Settings) -> str | None:
    return resolve_model(settings.model.name).base if settings.model.name else None


def _model_name(ref) -> str:
    return "the embedded SmolLM2-135M-Instruct" if ref.base == "embedded" else str(ref.base)


def _model_key(ref) -> str:
    base = ref.base
    return base if base == "embedded" or not Path(base).exists() else str(Path(base).resolve())


def _probes(run: Run) -> dict:
    """The measurements a run's time needs: probe key -> a function that measures it."""
    s = run.settings
    out: dict = {"start": calibrate.probe_start}
    for ev in run.evaluations:
        out[calibrate.generation_key(ev.batch)] = lambda s=s, b=ev.batch: calibrate.probe_generation(s, b)
    if run.kind == "traces":
        b = run.trace_batch
        out[calibrate.generation_key(b)] = lambda s=s, b=b: calibrate.probe_generation(s, b)
    if run.kind == "sft":
        out[calibrate.sft_key(run.per_device_batch, run.max_length)] = lambda s=s: calibrate.probe_sft(s)
    if run.kind == "grpo":
        out[calibrate.grpo_key(s.grpo.num_generations, run.rollout_tokens)] = lambda s=s: calibrate.probe_grpo(s)
    return out


def _time(run: Run, rates: dict) -> None:
    start = rates["start"]["seconds"]
    parts = {"process start": start} if run.own_process else {}
    fresh = run.kind in ("base", "sft", "grpo")  # evaluations after training run in a fresh process
    for ev in run.evaluations:
        gen = rates[calibrate.generation_key(ev.batch)]
        seconds = ev.rows * (gen["prompt_seconds_per_row"] + ev.max_new_tokens / gen["tokens_per_s"]) \
            + gen["load_seconds"] + (start if fresh else 0)
        parts[f"evaluation {ev.source}"] = seconds
    if run.kind == "traces":
        gen = rates[calibrate.generation_key(run.trace_batch)]
        per_attempt = gen["prompt_seconds_per_row"] + run.trace_tokens / gen["tokens_per_s"]
        parts["traces"] = run.trace_attempts * per_attempt + gen["load_seconds"]
    if run.kind in ("sft", "grpo"):
        load = max((r["load_seconds"] for k, r in rates.items() if k.startswith("generate")), default=0.0)
        if run.kind == "sft":
            micro = rates[calibrate.sft_key(run.per_device_batch, run.max_length)]["micro_batch_seconds"]
        else:
            group = run.settings.grpo.num_generations
            r = rates[calibrate.grpo_key(group, run.rollout_tokens)]
            longer = max(1.0, run.rollout_tokens / r["rollout_tokens"])
            micro = r["group_seconds"] * run.per_device_batch / group * longer
        parts["training"] = load + run.steps * run.gradient_accumulation_steps * micro
    run.time_parts = {k: round(v, 1) for k, v in parts.items()}
    run.seconds = round(sum(parts.values()), 1)


def _memory(run: Run, facts: dict, settings: Settings, available: int | None) -> None:
    """Peak bytes per phase: training, then each generation (evaluation, traces), each in its own process."""
    s = run.settings or settings
    gpu = runtime.current(settings).on_gpu
    b = facts["_bytes"]
    weights = facts["parameters"] * b
    kv_per_token = facts["_shape"].kv_bytes_per_token(facts["dtype"])
    prompt = 256  # tokens: the chat template, system prompt and a GSM8K question fit well within it
    phases: dict[str, dict[str, int]] = {}
    vllm = uses_vllm(s)
    for ev in run.evaluations:
        p = {"weights": weights}
        if vllm:
            p["vllm share"] = int(s.vllm.gpu_memory_utilization * (available or 0))
        else:
            p["kv cache"] = ev.batch * (prompt + ev.max_new_tokens) * kv_per_token
        phases["evaluation"] = max(phases.get("evaluation", {}), p, key=lambda d: sum(d.values()))
    if run.kind == "traces":
        phases["traces"] = {"weights": weights,
                            **({"vllm share": int(s.vllm.gpu_memory_utilization * (available or 0))} if vllm else
                               {"kv cache": run.trace_batch * (prompt + run.trace_tokens) * kv_per_token})}
    if run.kind in ("sft", "grpo"):
        seq = run.max_length if run.kind == "sft" else prompt + run.rollout_tokens
        tokens = run.per_device_batch * seq
        colocated = run.kind == "grpo" and s.grpo.use_vllm and s.grpo.vllm_mode == "colocate"
        vllm_bytes = int(s.grpo.colocate_gpu_memory_utilization * (available or 0)) if colocated else 0
        ckpt = (s.grpo if run.kind == "grpo" else s.sft).gradient_checkpointing
        if ckpt is None:  # as training decides it: on where a GPU step would not fit without it
            ckpt = gpu and needs_checkpointing(facts["_shape"], facts["dtype"], s.lora.r, s.lora.target_modules,
                                               tokens, available or 0, vllm_bytes, s.lora.dropout)
        m = estimate_training(facts["_shape"], facts["dtype"], s.lora.r, s.lora.target_modules, tokens, bool(ckpt),
                              vllm_bytes, s.lora.dropout)
        p = {"weights": m.weights, "optimizer state": m.optimizer, "activations": m.activations + m.logits}
        if colocated:
            p["vllm share"] = vllm_bytes
        elif run.kind == "grpo":
            p["kv cache"] = run.per_device_batch * seq * kv_per_token
        phases["training"] = p
    run.memory = phases
    if not phases:
        return
    peak_phase, peak = max(((k, sum(v.values())) for k, v in phases.items()), key=lambda kv: kv[1])
    run.peak_bytes = peak
    run.fits = available is None or peak <= available
    if not run.fits:
        run.change_first = _change_first(run.kind, peak_phase, phases[peak_phase])


def _change_first(kind: str, phase: str, parts: dict) -> str:
    """The setting to lower first: the one behind the largest part that a setting controls."""
    largest = max(parts, key=parts.get)
    if largest == "activations":
        return "grpo.per_device_batch_size" if kind == "grpo" else "sft.per_device_batch_size"
    if largest == "kv cache":
        if phase == "training":
            return "grpo.per_device_batch_size"
        return "traces.generation.batch_size" if phase == "traces" else "eval.generation.batch_size"
    if largest == "vllm share":
        return "grpo.colocate_gpu_memory_utilization" if phase == "training" else "vllm.gpu_memory_utilization"
    return "model.dtype"


def _memory_available(settings: Settings) -> tuple[dict, int | None]:
    """The device and the memory a run may use: the GPU's total, or the machine's available RAM."""
    if runtime.current(settings).on_gpu:
        import torch

        free, total = torch.cuda.mem_get_info()
        return {"memory": "GPU"}, total
    try:
        return {"memory": "RAM available"}, runtime.available_memory()
    except OSError:
        pass
    return {"memory": "unknown"}, None


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"

"""What this machine measures for one model and dtype: the rates a plan's times come from.

A plan's time is counts (tokens to generate, optimizer steps) times rates, and
the rates are measured here, on this machine, with the run's own model and the
pipeline's own code paths:

- ``generate bB``: tokens per second of the evaluation engine with B rows
  decoding together (the project's backend, greedy, :data:`PROBE_TOKENS` tokens
  per row on the first B test prompts), less the time of the prompts alone
  (measured with one new token, and counted per row), and the seconds to load it;
- ``sft bB lenL``: seconds of one SFT micro-batch of B examples (real GSM8K
  targets, cut at L tokens): two optimizer steps of TRL's trainer, the second timed;
- ``grpo gG tT``: seconds of one GRPO step of one group of G completions
  (rollouts of at most T tokens): TRL's trainer with the project's rewards and
  rollout engine; a micro-batch of k groups is counted k times that;
- ``start``: seconds to start a Python process that imports torch and
  transformers (every automatic evaluation runs in a fresh process).

Results are cached in ``<GSM8K_LAB_CACHE>/calibration/`` under a key of the
machine (CPU model and flags, threads, or the GPU's name), the model and the
dtype, so a second plan on the same machine measures nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import runtime
from .config import Settings
from .data import load_split
from .generation import generate, make_backend
from .grpo import prepare_grpo
from .models import resolve_model
from .runs import atomic_write_json
from .sft import prepare_sft
from .task import build_prompt
from .training import time_steps

CACHE_VERSION = 4  # a new probe layout, or an engine that got faster, measures again
PROBE_TOKENS = 32  # new tokens per row in a generation probe
GRPO_PROBE_TOKENS = 128  # longest rollout a GRPO probe samples; longer runs are scaled from it
_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


class Calibration:
    """The measured rates of one machine, model and dtype (loaded from the cache when there)."""

    def __init__(self, settings: Settings, model: str):
        self.settings = settings
        self.model = model
        self.machine = machine_info(settings)
        key = json.dumps({"machine": self.machine, "model": model, "version": CACHE_VERSION}, sort_keys=True)
        self.path = runtime.cache_dir() / "calibration" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
        self.data = _read(self.path) or {"machine": self.machine, "model": model, "probes": {}}

    def get(self, key: str) -> dict | None:
        return self.data["probes"].get(key)

    def measure(self, key: str, probe) -> dict:
        """Run ``probe()`` (returns a dict of measurements) unless cached; cache it."""
        if key not in self.data["probes"]:
            print(f"[gsm8k-lab] calibrating {key} on this machine ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            result = probe()
            result["probe_seconds"] = round(time.perf_counter() - t0, 1)
            result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            self.data["probes"][key] = result
            atomic_write_json(self.path, self.data)
        return self.data["probes"][key]



def machine_info(settings: Settings) -> dict:
    """What decides the speed: the device (GPU name, or CPU model, flags and threads) and the dtype."""
    import torch

    rt = runtime.current(settings)
    if rt.on_gpu:
        return {"device": "cuda", "name": torch.cuda.get_device_name(), "count": torch.cuda.device_count(),
                "dtype": rt.dtype_name}
    name, flags = "cpu", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "cpu":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"device": "cpu", "name": name, "flags": [f for f in _CPU_FLAGS if f in flags],
            "threads": rt.threads, "dtype": rt.dtype_name}


def generation_key(batch: int) -> str:
    return f"generate b{batch}"


def sft_key(batch: int, max_length: int) -> str:
    return f"sft b{batch} len{max_length}"


def grpo_key(group: int, tokens: int) -> str:
    return f"grpo g{group} t{min(tokens, GRPO_PROBE_TOKENS)}"


# --------------------------------------------------------------------------
# Probes: each returns a dict of measurements
# --------------------------------------------------------------------------
def probe_generation(settings: Settings, batch: int) -> dict:
    """Decoding tokens/s of the evaluation backend with ``batch`` rows together, and its prompt
    seconds per row: one run of 1 new token (the prompts alone) and one of :data:`PROBE_TOKENS`."""
    from dataclasses import replace

    t0 = time.perf_counter()
    backend = make_backend(settings, resolve_model(settings.model.name), "eval.generation")
    load = time.perf_counter() - t0
    try:
        test = load_split("test", "bundled")
        prompts = [build_prompt(backend.tokenizer, test[i % len(test)].question) for i in range(batch)]
        generate(backend, prompts[:2], replace(settings.eval.generation, max_new_tokens=1, batch_size=2))  # warm-up
        runs = []
        for new in (1, PROBE_TOKENS):
            gen = replace(settings.eval.generation, max_new_tokens=new, temperature=0.0, batch_size=batch)
            t0 = time.perf_counter()
            out = generate(backend, prompts, gen)
            runs.append((time.perf_counter() - t0, sum(c[0].n_tokens for c in out)))
    finally:
        backend.close()
    (first, first_tokens), (seconds, tokens) = runs
    decode, decoded = seconds - first, tokens - first_tokens
    if decode < 0.25 * seconds or decoded <= 0:  # the prompts cannot be told apart: count them in the rate
        first, decode, decoded = 0.0, seconds, tokens
    return {"tokens": decoded, "seconds": round(decode, 3), "tokens_per_s": round(decoded / decode, 2),
            "prompt_seconds_per_row": round(first / batch, 4), "load_seconds": round(load, 2)}


def probe_sft(settings: Settings) -> dict:
    """Seconds of one SFT micro-batch at the settings' batch and length (two steps, the second timed)."""
    c = _probe_settings(settings)
    s = c.sft
    s.gradient_accumulation_steps, s.epochs, s.train_samples = 1, 1.0, 2 * s.per_device_batch_size
    with tempfile.TemporaryDirectory(prefix="gsm8k-lab-calibrate-") as tmp:
        seconds = time_steps(c, prepare_sft(c, "full", Path(tmp) / "run"))
    return {"micro_batch_seconds": round(seconds[-1], 3), "steps": [round(x, 3) for x in seconds]}


def probe_grpo(settings: Settings) -> dict:
    """Seconds of one GRPO step of one group (rollouts, rewards, backward) with the settings' group size
    and rollout budget (at most :data:`GRPO_PROBE_TOKENS`); a micro-batch of several groups costs
    about as many times more, which keeps the probe short on a CPU."""
    c = _probe_settings(settings)
    g = c.grpo
    g.per_device_batch_size = g.num_generations
    g.gradient_accumulation_steps, g.epochs, g.train_samples = 1, 1.0, 1
    g.rollout.max_new_tokens = min(g.rollout.max_new_tokens, GRPO_PROBE_TOKENS)
    with tempfile.TemporaryDirectory(prefix="gsm8k-lab-calibrate-") as tmp:
        seconds = time_steps(c, prepare_grpo(c, Path(tmp) / "run"))
    return {"group_seconds": round(seconds[-1], 3), "rollout_tokens": g.rollout.max_new_tokens}


def probe_start() -> dict:
    """Seconds to start a process that imports what an evaluation imports."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, transformers, peft"], check=True,
                   capture_output=True)
    return {"seconds": round(time.perf_counter() - t0, 2)}


def _probe_settings(settings: Settings) -> Settings:
    """The run's settings for a probe: the same model and geometry, nothing reported or saved."""
    c = copy.deepcopy(settings)
    c.report_to = ["none"]
    c.eval.extra_sources = []
    for t in (c.sft, c.grpo):
        t.save_steps, t.logging_steps, t.warmup_ratio = 10_000, 10_000, 0.0
    return c


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data.get("probes"), dict) else None

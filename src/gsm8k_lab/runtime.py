"""Device, dtype and CPU threads, decided once per process.

Every module that loads a model or sets up training asks :func:`current` for
the one :class:`Runtime`; nothing else looks at CUDA, ``/proc/cpuinfo`` or the
thread count. The choice is printed once at start-up.

- **device**: CUDA when available, else the CPU;
- **dtype**: bf16 where the hardware runs it natively (CUDA with bf16, a CPU
  with AVX512-BF16 or AMX), fp16 on older GPUs, fp32 on other CPUs; or what
  ``model.dtype`` asks for;
- **threads**: on a CPU, torch's intra-op threads are the cores this process
  may use (its affinity mask) divided among the processes that share the
  machine (accelerate's ``LOCAL_WORLD_SIZE``), so two processes never ask for
  twice the cores (oversubscribed OpenMP threads slow torch down several-fold);
  ``runtime.threads`` overrides it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import Settings

_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class Runtime:
    device: str  # "cuda" or "cpu"
    dtype_name: str  # bf16, fp16, fp32
    threads: int  # torch intra-op threads (CPU)
    local_processes: int  # processes of this job on this machine

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def dtype(self):
        import torch

        return getattr(torch, _DTYPES[self.dtype_name])

    def describe(self) -> str:
        where = self.device if self.on_gpu else f"cpu, {self.threads} threads"
        if self.local_processes > 1:
            where += f", {self.local_processes} processes"
        return f"{where}, {self.dtype_name}"

    def as_dict(self) -> dict:
        return {"device": self.device, "dtype": self.dtype_name, "threads": self.threads,
                "local_processes": self.local_processes}


_current: Runtime | None = None


def current(settings: Settings | None = None) -> Runtime:
    """The process's runtime, decided at the first call (later calls return the same)."""
    global _current
    if _current is None:
        _current = decide(settings or Settings())
        _apply(_current)
        print(f"[gsm8k-lab] runtime: {_current.describe()}", flush=True)
    return _current


def decide(settings: Settings) -> Runtime:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    local = local_processes()
    threads = settings.runtime.threads or max(1, available_cores() // local)
    return Runtime(device, pick_dtype(settings.model.dtype, device), threads, local)


def pick_dtype(setting: str, device: str) -> str:
    """bf16 where the device runs it natively, else fp16 (GPU) or fp32 (CPU); or what is asked."""
    if setting != "auto":
        return setting
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def local_processes() -> int:
    """Processes of this job on this machine (accelerate / torchrun set LOCAL_WORLD_SIZE)."""
    for var in ("LOCAL_WORLD_SIZE", "ACCELERATE_NUM_PROCESSES"):
        try:
            n = int(os.environ.get(var, ""))
        except ValueError:
            continue
        if n > 0:
            return n
    return 1


def world_size() -> int:
    """Processes of this job in all (1 without a launcher)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _apply(rt: Runtime) -> None:
    import torch

    if not rt.on_gpu:
        torch.set_num_threads(rt.threads)


def reset() -> None:
    """Forget the decision (tests)."""
    global _current
    _current = None

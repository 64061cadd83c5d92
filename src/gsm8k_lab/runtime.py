"""Device, dtype and CPU threads, decided once per process.

Every module that loads a model or sets up training asks :func:`current` for
the one :class:`Runtime`; nothing else looks at CUDA, ``/proc/cpuinfo`` or the
thread count. The choice is printed once at start-up.

- **device**: CUDA when available, else the CPU; an NVIDIA GPU that torch cannot
  use (a driver older than torch's CUDA build needs) is refused rather than
  silently left idle while the work crawls on the CPU;
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

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from .config import Settings, UsageError

#: The torch dtype name of each dtype setting (also what vLLM takes).
TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


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

        return getattr(torch, TORCH_DTYPES[self.dtype_name])

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
    if device == "cpu":
        check_gpu_usable(torch.version.cuda)
    local = local_processes()
    threads = settings.runtime.threads or max(1, available_cores() // local)
    return Runtime(device, pick_dtype(settings.model.dtype, device), threads, local)


#: The oldest NVIDIA driver each CUDA major release runs on (NVIDIA's compatibility table).
MIN_DRIVER = {11: 450, 12: 525, 13: 580}
NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")


def check_gpu_usable(torch_cuda: str | None, driver_file: Path | None = None) -> None:
    """Refuse to run on the CPU when an NVIDIA GPU is present that torch cannot use.

    The locked torch wheels are a CUDA 13.0 build, which needs driver 580 or newer; on an older
    driver ``torch.cuda.is_available()`` is simply False. A GPU hidden on purpose
    (``CUDA_VISIBLE_DEVICES`` empty or -1) is respected.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return
    driver = nvidia_driver_version(driver_file or NVIDIA_DRIVER_FILE)
    if driver is None:
        return
    import torch

    version = torch.__version__.split("+")[0]
    hide = "or set CUDA_VISIBLE_DEVICES= to run on the CPU on purpose"
    if torch_cuda is None:
        why = "it is a CPU-only build; install a CUDA build (docs/gpu-and-scale-out.md)"
    else:
        need = MIN_DRIVER.get(int(torch_cuda.split(".")[0]))
        if need is not None and _major(driver) is not None and _major(driver) < need:
            why = (f"it is built for CUDA {torch_cuda}, which needs driver {need} or newer; install a torch built for "
                   "this driver (docs/gpu-and-scale-out.md)")
        else:
            why = (f"it is built for CUDA {torch_cuda} and finds no usable device; check nvidia-smi and the "
                   "container's GPU access")
    raise UsageError(f"an NVIDIA GPU is present (driver {driver}) but torch {version} cannot use it: {why}, {hide}")


def nvidia_driver_version(driver_file: Path = NVIDIA_DRIVER_FILE) -> str | None:
    """The loaded NVIDIA kernel driver's version (``535.104.05``), or None without one."""
    import re

    try:
        text = driver_file.read_text()
    except OSError:
        return None
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else "of unknown version"


def pick_dtype(setting: str, device: str) -> str:
    """bf16 where the device runs it natively, else fp16 (GPU) or fp32 (CPU); or what is asked."""
    if setting != "auto":
        return setting
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def evaluation_dtype(settings: Settings) -> str:
    """The dtype evaluation loads weights in (``eval.dtype``): as asked, else fp32 on a CPU, where bf16
    greedy text depends on the engine and on the machine's bf16 arithmetic, and ``model.dtype`` on a GPU."""
    if settings.eval.dtype != "auto":
        return settings.eval.dtype
    import torch

    return settings.model.dtype if torch.cuda.is_available() else "fp32"


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


def check_training_gpus(device_count: int | None = None) -> None:
    """A training run in one process sees one GPU: with several visible and no launcher (``WORLD_SIZE``
    unset), transformers wraps the model in ``nn.DataParallel``, which TRL's trainers refuse after the
    model has loaded. Refused here in one line, before anything loads."""
    if "WORLD_SIZE" in os.environ:
        return
    if device_count is None:
        import torch

        device_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device_count > 1:
        raise UsageError(f"{device_count} GPUs are visible to a single training process, which TRL's trainers "
                         "refuse (nn.DataParallel): run on one with CUDA_VISIBLE_DEVICES=0, or on all of them "
                         "with accelerate launch (docs/gpu-and-scale-out.md)")


def cache_dir() -> Path:
    """The per-machine cache (the converted embedded model, GSM-Symbolic, calibrations):
    ``GSM8K_LAB_CACHE``, default ``~/.cache/gsm8k-lab``; a UsageError when it names a file."""
    value = os.environ.get("GSM8K_LAB_CACHE", "")
    path = Path(value) if value else Path.home() / ".cache" / "gsm8k-lab"
    probe = path
    while not probe.exists() and probe != probe.parent and not probe.is_symlink():
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "GSM8K_LAB_CACHE=" + repr(value) if value else f"the cache folder {path}"
        raise UsageError(f"{where}: {probe} is a file, expected a folder (or a path that can become one)")
    return path


def vllm_available() -> bool:
    """vLLM is installed (the GPU build or the CPU one), found without importing it (seconds)."""
    return importlib.util.find_spec("vllm") is not None


def uses_vllm(settings: Settings, gen_path: str = "eval.generation") -> bool:
    """Whether generation for ``gen_path`` runs on a vLLM engine: ``vllm`` asks for it on any device,
    ``auto`` takes it on a CUDA GPU where it is installed (on a CPU the transformers backend's own
    loop starts at once and decodes about as fast)."""
    name = settings.get(gen_path).backend
    return name == "vllm" or (name == "auto" and current(settings).on_gpu and vllm_available())


def available_memory() -> int:
    """Bytes of the machine's memory free for a new allocation (``MemAvailable`` in ``/proc/meminfo``)."""
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")  # pragma: no cover - not Linux


def release_memory() -> None:
    """Collect what the process dropped and give the CUDA allocator's cached blocks back to the
    device, so that another process (a vLLM engine) can have them."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def reset() -> None:
    """Forget the decision (tests)."""
    global _current
    _current = None


def _major(version: str) -> int | None:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else None


def _apply(rt: Runtime) -> None:
    import torch

    if not rt.on_gpu:
        torch.set_num_threads(rt.threads)

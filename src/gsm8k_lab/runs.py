"""Run directories: layout, atomic writes, ``run.json`` and resume rules.

Layout of ``[output-dir]``::

    model/        LoRA adapter + tokenizer (+ parents/, lineage.json); written last, atomically
    debug/        [stage]_[run_id].csv and [stage]_[run_id]_metrics.txt (+ .json)
    checkpoints/  trainer checkpoints, the resume points of an unfinished run
    run.json      resolved config, versions, seed, git commit, model chain, timings, status
    train_log.jsonl  training curves, one JSON object per logging step
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .config import UsageError

RUN_FILE = "run.json"
STATUS_COMPLETE = "complete"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a file so that readers see the old content or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def check_writable_dir(path: str | Path, flag: str = "--output-dir") -> Path:
    """Make sure ``path`` is (or can become) a writable directory; UsageError if not."""
    path = Path(path)
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is not a directory ({probe} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {str(path)!r} is not writable")
    return path


class RunDir:
    """One training run's directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.model_dir = self.root / "model"
        self.debug_dir = self.root / "debug"
        self.checkpoints_dir = self.root / "checkpoints"
        self.run_file = self.root / RUN_FILE
        self.log_file = self.root / "train_log.jsonl"

    # -- state ---------------------------------------------------------
    def read(self) -> dict:
        if not self.run_file.is_file():
            return {}
        try:
            return json.loads(self.run_file.read_text())
        except json.JSONDecodeError:
            return {}

    def is_complete(self) -> bool:
        return self.read().get("status") == STATUS_COMPLETE and (self.model_dir / "adapter_config.json").is_file()

    def has_partial(self) -> bool:
        return self.root.exists() and any(
            p.exists() for p in (self.run_file, self.checkpoints_dir, self.model_dir, self.log_file)
        )

    def latest_checkpoint(self) -> Path | None:
        if not self.checkpoints_dir.is_dir():
            return None
        ckpts = [p for p in self.checkpoints_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
        return max(ckpts, key=lambda p: int(p.name.split("-")[-1]), default=None)

    def check(self, *, resume: bool, overwrite: bool) -> dict:
        """Refuse to clobber what is there (writes nothing); returns the run.json to continue, or {}."""
        check_writable_dir(self.root)
        if overwrite:
            return {}
        previous = self.read()
        if self.is_complete() and not resume:
            raise UsageError(
                f"--output-dir {str(self.root)!r} already holds a finished run; "
                "pass --overwrite to replace it"
            )
        if self.has_partial() and not resume:
            raise UsageError(
                f"--output-dir {str(self.root)!r} holds an unfinished run; "
                "pass --resume to continue it or --overwrite to start again"
            )
        return previous

    def clear(self) -> None:
        for p in (self.model_dir, self.debug_dir, self.checkpoints_dir,
                  self.model_dir.with_name("model.tmp")):
            shutil.rmtree(p, ignore_errors=True)
        for f in (self.run_file, self.log_file):
            f.unlink(missing_ok=True)

    def write(self, info: dict) -> None:
        atomic_write_json(self.run_file, info)

    def update(self, **fields) -> dict:
        info = self.read()
        info.update(fields)
        self.write(info)
        return info


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def environment_info() -> dict:
    """Versions, device and git commit, saved with every run."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("gsm8k-lab", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "versions": versions, "git_commit": _git_commit()}
    try:
        import torch

        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    except Exception:  # pragma: no cover - torch missing is caught elsewhere
        pass
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None

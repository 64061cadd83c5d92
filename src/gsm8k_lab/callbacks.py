"""Trainer callbacks of a run: its curves, its training clock, and step times for calibration."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback

from .runs import RunDir, read_jsonl


class JsonlLogger(TrainerCallback):
    """Appends every log record to ``train_log.jsonl`` (main process only), and counts generated tokens."""

    def __init__(self, path: Path, completions_per_step: int = 0):
        self.path = Path(path)
        self.completions_per_step = completions_per_step
        self._tokens = 0.0
        self._last_step = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs}
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, default=float) + "\n")
            if "completions/mean_length" in logs and self.completions_per_step:
                steps = max(1, state.global_step - self._last_step)
                self._tokens += logs["completions/mean_length"] * self.completions_per_step * steps
            self._last_step = state.global_step

    def tokens_generated(self) -> int:
        """Completion tokens sampled in training (GRPO), from the logged mean lengths."""
        total = self._tokens
        if self.path.is_file() and self.completions_per_step:  # a resumed run: count the whole log
            total, last = 0.0, 0
            for rec in read_jsonl(self.path)[0]:
                if "completions/mean_length" in rec:
                    total += rec["completions/mean_length"] * self.completions_per_step * max(1, rec["step"] - last)
                    last = rec["step"]
        return int(total)


class TrainClock(TrainerCallback):
    """Training seconds across resumed segments: recorded at every checkpoint, so a run resumed
    from checkpoint k starts from the seconds it had spent up to k."""

    def __init__(self, run: RunDir, info: dict, resumed_step: int, is_main: bool):
        self.run, self.info, self.is_main = run, info, is_main
        at = info.setdefault("timings", {}).setdefault("train_seconds_at_checkpoint", {})
        self.base = float(at.get(str(resumed_step), 0.0)) if resumed_step else 0.0
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        return round(self.base + time.perf_counter() - self.t0, 1)

    def on_save(self, args, state, control, **kwargs):
        if self.is_main:
            self.info["timings"]["train_seconds_at_checkpoint"][str(state.global_step)] = self.seconds()
            self.run.write(self.info)


class StepTimer(TrainerCallback):
    """Seconds of each optimizer step (forward, backward and, for GRPO, the rollouts it starts)."""

    def __init__(self):
        self.seconds: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._t0)


class OnFirstSave(TrainerCallback):
    """Calls ``action`` once, when the first checkpoint is on disk (an overwrite's moment to let
    the run it replaces go)."""

    def __init__(self, action=None):
        self.action = action

    def on_save(self, args, state, control, **kwargs):
        if self.action is not None:
            action, self.action = self.action, None
            action()

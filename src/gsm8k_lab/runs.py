"""Run directories: layout, atomic writes, ``run.json`` and resume rules.

Layout of ``[output-dir]``::

    model/        LoRA adapter composing the chain + tokenizer, README.md (model card), lineage.json
                  (+ parents/); written last, atomically
    debug/        [stage]_[run_id].csv and [stage]_[run_id]_metrics.txt (+ .json)
    checkpoints/  trainer checkpoints, the resume points of an unfinished run
    run.json      resolved config, versions, seed, git commit, model chain, timings, status
    train_log.jsonl  training curves, one JSON object per logging step
    .replaced/    while an overwrite has not yet produced a checkpoint or a model: the run it
                  replaces, moved aside whole, put back if the new run fails before that
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from enum import StrEnum
from pathlib import Path

from .config import SettingError, defaults
from .folders import Kind, check_output_folder

RUN_FILE = "run.json"


class RunStatus(StrEnum):
    """Where a run directory stands; ``run.json`` records it."""

    TRAINING = "training"  # set up, training (checkpoints may exist)
    TRAINED = "trained"  # model/ written; the evaluation may be missing
    COMPLETE = "complete"  # trained and evaluated


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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for the team to read
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def check_writable_dir(path: str | Path, name: str = "output_dir") -> Path:
    """Make sure ``path`` is (or can become) a writable directory; a SettingError naming ``name`` if not."""
    path = Path(path)
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SettingError(name, str(path), "{name} {value} is not a directory " + f"({probe} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SettingError(name, str(path), "{name} {value} is not writable")
    return path


def check_can_write(folder: Path, name: str, value: str) -> None:
    """An existing ``folder`` takes new files (tried, not inferred from permission bits, which do not
    bind every user); a SettingError naming ``name`` if not."""
    if not folder.is_dir():
        return
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
    except OSError as exc:
        raise SettingError(name, value, "{name} {value}: " + f"{folder} cannot be written ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def check_file_name(name: str, value: str, suffix: str) -> None:
    """An output file name without a directory part, with the expected suffix."""
    if Path(value).name != value or value in ("", ".", ".."):
        raise SettingError(name, value, "{name} must be a file name without a directory part, got {value}")
    if not value.endswith(suffix):
        raise SettingError(name, value, "{name} must end in " + suffix + ", got {value}")


#: The stage of an evaluation-only run (the starting model, untrained): it saves no adapter.
BASE_STAGE = "base"


class RunDir:
    """One training run's directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.model_dir = self.root / "model"
        self.debug_dir = self.root / "debug"
        self.checkpoints_dir = self.root / "checkpoints"
        self.run_file = self.root / RUN_FILE
        self.log_file = self.root / "train_log.jsonl"
        self.aside_dir = self.root / ".replaced"

    # -- state ---------------------------------------------------------
    def read(self) -> dict:
        """The recorded run.json; {} when there is none, or when it is not a regular file (a FIFO would
        block) or not a readable JSON object."""
        if not self.run_file.is_file():  # is_file: a regular file, through links
            return {}
        try:
            info = json.loads(self.run_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return {}
        return info if isinstance(info, dict) else {}

    def status(self) -> RunStatus | None:
        try:
            return RunStatus(self.read().get("status"))
        except ValueError:
            return None

    def is_complete(self) -> bool:
        """Evaluated, with its adapter saved (an evaluation-only run, :data:`BASE_STAGE`, has none)."""
        info = self.read()
        if info.get("status") != RunStatus.COMPLETE.value:
            return False
        return info.get("stage") == BASE_STAGE or (self.model_dir / "adapter_config.json").is_file()

    def has_partial(self) -> bool:
        return self.root.exists() and any(
            p.exists() for p in (self.run_file, self.checkpoints_dir, self.model_dir, self.log_file)
        )

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint that holds everything a resume needs (a kill while saving leaves
        a folder whose trainer_state.json may exist without the weights)."""
        if not self.checkpoints_dir.is_dir():
            return None
        ckpts = [p for p in self.checkpoints_dir.glob("checkpoint-*")
                 if p.name.split("-")[-1].isdigit() and checkpoint_is_whole(p)]
        return max(ckpts, key=lambda p: int(p.name.split("-")[-1]), default=None)

    def check(self, *, resume: bool, overwrite: bool) -> dict:
        """Refuse to clobber what is there; returns the run.json to continue, or {}. Writes nothing,
        except putting back a run that an interrupted overwrite had moved aside (:meth:`recover`)."""
        check_output_folder("output_dir", self.root, Kind.RUN)  # never into an evaluation, traces, a model...
        check_writable_dir(self.root)
        if self.run_file.is_dir():
            raise SettingError("output_dir", str(self.root), "{name} {value} is not a run directory: "
                               f"{RUN_FILE} is a directory")
        for sub in (self.debug_dir, self.model_dir, self.checkpoints_dir):
            if sub.exists() and not sub.is_dir():
                raise SettingError("output_dir", str(self.root), "{name} {value} is not a run directory: "
                                   f"{sub.name} is a file")
        for folder in (self.root, self.debug_dir, self.checkpoints_dir):
            check_can_write(folder, "output_dir", str(self.root))
        self.recover()
        if overwrite:
            return {}
        previous = self.read()
        if self.is_complete() and not resume:
            raise SettingError("output_dir", str(self.root),
                               "{name} {value} already holds a finished run; pass {overwrite} to replace it")
        if self.has_partial() and not resume:
            raise SettingError("output_dir", str(self.root), "{name} {value} holds an unfinished run; "
                               "pass {resume} to continue it or {overwrite} to start again")
        return previous

    def set_aside(self) -> bool:
        """Make room for a new run (overwrite) without deleting the old one: its files move into
        ``.replaced/`` (renames: nothing is copied) until :meth:`drop_aside` or :meth:`restore`.
        Other files in the folder stay where they are. False when there was nothing to move."""
        present = [p for p in self._own() if p.exists()]
        if not present:
            return False
        self.aside_dir.mkdir()
        for p in present:
            os.rename(p, self.aside_dir / p.name)
        fsync_dir(self.root)
        return True

    def drop_aside(self) -> None:
        """The new run has a durable result (a checkpoint or its model): the old one goes."""
        shutil.rmtree(self.aside_dir, ignore_errors=True)

    def restore(self) -> None:
        """The new run failed before a durable result: remove what it wrote, put the old run (if any) back."""
        for p in self._own():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        if self.aside_dir.is_dir():
            for p in self.aside_dir.iterdir():
                os.rename(p, self.root / p.name)
            self.aside_dir.rmdir()
        if self.root.is_dir():
            fsync_dir(self.root)

    def recover(self) -> None:
        """After an overwrite that was killed: keep the new run if it got as far as a checkpoint or
        its model, else put the old one back."""
        if not self.aside_dir.is_dir():
            return
        if self.latest_checkpoint() is not None or (self.model_dir / "adapter_config.json").is_file():
            self.drop_aside()
        else:
            print(f"[gsm8k-lab] {self.root}: an overwrite was interrupted before its first checkpoint; "
                  "the run it was replacing is put back", flush=True)
            self.restore()

    def _own(self) -> list[Path]:
        """What belongs to the run (everything else in the folder is left alone)."""
        return [self.model_dir, self.debug_dir, self.checkpoints_dir, self.model_dir.with_name("model.tmp"),
                self.run_file, self.log_file]

    def write(self, info: dict) -> None:
        atomic_write_json(self.run_file, info)


class NewRun:
    """A new run in a run directory (fresh, or replacing one: overwrite) until its first durable
    result, a checkpoint or its model: :meth:`undo` removes what it wrote (and the folders it
    created) and puts the run it replaces back; after :meth:`commit` the replaced run is gone."""

    def __init__(self, run: RunDir):
        self.run = run
        missing = [p for p in (run.root, *run.root.parents) if not p.exists()]
        self.created = missing[-1] if missing else None  # the topmost folder this run creates
        run.set_aside()
        self.open = True

    def commit(self) -> None:
        if self.open:
            self.run.drop_aside()
            self.open = False

    def undo(self) -> None:
        if not self.open:
            return
        self.open = False
        self.run.restore()
        if self.created is not None:
            for folder in (self.run.root, *self.run.root.parents):
                try:
                    folder.rmdir()  # only folders this run made, and only while empty
                except OSError:
                    break
                if folder == self.created:
                    break


def checkpoint_is_whole(path: Path) -> bool:
    weights = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin")
    return ((path / "trainer_state.json").is_file() and (path / "optimizer.pt").is_file()
            and any((path / w).is_file() and (path / w).stat().st_size > 0 for w in weights))


# --------------------------------------------------------------------------
# Resuming only what matches
# --------------------------------------------------------------------------
def check_same_settings(name: str, value: str, recorded: dict | None, current: dict) -> None:
    """Refuse to continue ``value`` (named by ``name``) when the settings that determine its
    content differ from those it was made with; the error lists each difference."""
    diffs = setting_differences(recorded, current)
    if diffs:
        raise SettingError(name, value, "{name} {value} was made with other settings: " + "; ".join(diffs)
                           + "; continue it with those settings or pass {overwrite} to start again")


def setting_differences(recorded: dict | None, current: dict) -> list[str]:
    """Each setting whose recorded value differs from the current one, worded ``key then vs now``;
    nothing for a record made before fingerprints were kept. A setting the record lacks (added to
    the project after it was made) that now holds its default is no difference."""
    if not recorded:
        return []
    known = defaults()
    return [f"{key} {_fmt(recorded.get(key, '(unset)'))} (then) vs {_fmt(current.get(key, '(unset)'))} (now)"
            for key in [*current, *(k for k in recorded if k not in current)]
            if recorded.get(key, "(unset)") != current.get(key, "(unset)")
            and not (key not in recorded and key in known and current.get(key) == known[key])]


# --------------------------------------------------------------------------
# JSONL, and append-only files that a kill may leave torn
# --------------------------------------------------------------------------
BOM = "\ufeff"


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text. Only a newline ends a line (a carriage return before it is dropped):
    ``str.splitlines`` also breaks at U+2028, U+2029, form feeds and other separators, which a JSON
    string may hold raw. One byte-order mark at the start belongs to no line."""
    lines = text.removeprefix(BOM).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def json_line(line: str):
    """The value of one JSONL line, or a ValueError that says what is wrong with it."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:  # json recurses once per level: [[[[... a few thousand deep
        raise ValueError("is nested too deeply to read as JSON") from None


def read_jsonl(path: Path) -> tuple[list[dict], int, bool]:
    """Complete JSON records of an append-only file, the byte length they fill, and whether a
    torn final record (cut by a kill, a full disk or power loss) was dropped."""
    if not path.is_file():
        return [], 0, False
    raw = path.read_bytes()
    records, good = [], len(BOM.encode()) if raw.startswith(BOM.encode()) else 0
    while (end := raw.find(b"\n", good)) >= 0:  # a last line without its newline: torn
        try:
            rec = json_line(raw[good:end].decode("utf-8"))
        except ValueError:  # not UTF-8 or not JSON: a damaged record, nothing after it is trusted
            break
        if isinstance(rec, dict):
            records.append(rec)
        good = end + 1
    return records, good, good < len(raw)


def drop_torn_tail(path: Path, good_bytes: int, what: str) -> None:
    """Cut an append-only file back to its last complete record before appending again."""
    if path.is_file() and path.stat().st_size > good_bytes:
        print(f"[gsm8k-lab] {path}: dropped a torn last record ({path.stat().st_size - good_bytes} bytes) "
              f"left by an interruption; {what}", flush=True)
        with path.open("r+b") as fh:
            fh.truncate(good_bytes)
            fh.flush()
            os.fsync(fh.fileno())


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fmt(v) -> str:
    if v is None:
        return "unset"
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)

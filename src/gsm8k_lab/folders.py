"""What a folder holds, and where results may go: every command checks its output folder here
before it writes anything.

A folder's **kind** is read from what it holds at its top level (hidden names aside)::

    run.json, model/, checkpoints/, train_log.jsonl, .replaced/   a training run (or a base-model run)
    config.json, adapter_config.json, *.safetensors              a model folder
    report.md, results.csv                                       a report
    <name>.jsonl.stats.json, <name>.jsonl.progress.jsonl         traces
    sweep.json, picked.yaml                                      a learning-rate sweep
    debug/                                                       an evaluation
    other files                                                  something else
    only folders, or nothing                                     no kind: anything may go there

A command writes only into a folder of no kind or of its own kind (an overwrite replaces only its
own kind), never into a run's ``model/``, ``checkpoints/``, ``debug/`` or ``.replaced/``; an
evaluation also goes into the run directory it evaluates (the evaluation after training). Paths
are checked before any of this: text the file system can take (no lone surrogate, no NUL, no name
over 255 bytes), no symbolic-link loop, no dangling link, nothing under ``/proc``, ``/sys`` or
``/dev``, never ``/`` itself.
"""

from __future__ import annotations

import errno
import os
from enum import StrEnum
from pathlib import Path

from .config import SettingError


class Kind(StrEnum):
    """What a folder holds; the value is how an error names it."""

    RUN = "a training run"
    MODEL = "a model folder"
    REPORT = "a report"
    TRACES = "traces"
    SWEEP = "a learning-rate sweep"
    EVALUATION = "an evaluation"
    OTHER = "other files"


#: Folders inside a run that belong to it: nothing else is ever written into them.
RUN_PARTS = ("model", "checkpoints", "debug", ".replaced")
#: Longest file name (one path component) and path, in bytes, that Linux file systems take.
NAME_MAX, PATH_MAX = 255, 4095
#: Kernel and device file systems: never a place for results.
SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))

_RUN_MARKERS = ("run.json", "model", "checkpoints", "train_log.jsonl", ".replaced")
_MODEL_MARKERS = ("config.json", "adapter_config.json")
_REPORT_MARKERS = ("report.md", "results.csv")
_SWEEP_MARKERS = ("sweep.json", "picked.yaml")


def folder_kind(path: str | Path) -> Kind | None:
    """The kind of what ``path`` holds (see the module docstring); None for a missing or empty
    folder or one that holds only folders."""
    path = Path(path)
    try:
        names = [e.name for e in os.scandir(path)]
    except (FileNotFoundError, NotADirectoryError):
        return None
    if any(n in names for n in _RUN_MARKERS):
        return Kind.RUN
    visible = [n for n in names if not n.startswith(".")]
    if any(n in visible for n in _MODEL_MARKERS) or any(n.endswith(".safetensors") for n in visible):
        return Kind.MODEL
    if any(n in visible for n in _REPORT_MARKERS):
        return Kind.REPORT
    if any(n.endswith((".jsonl.stats.json", ".jsonl.progress.jsonl")) for n in visible):
        return Kind.TRACES
    if any(n in visible for n in _SWEEP_MARKERS):
        return Kind.SWEEP
    if "debug" in visible:  # a file named debug too: the folder is refused as an evaluation's, with why
        return Kind.EVALUATION
    if any(not (path / n).is_dir() or (path / n).is_symlink() for n in visible):
        return Kind.OTHER
    return None


def check_path(name: str, value: str | Path, *, output: bool = False) -> Path:
    """A path the file system can take, named by ``name`` in errors: encodable, within the length
    limits, without a symbolic-link loop; for an ``output`` also not a dangling link, not under a
    kernel or device file system and not ``/``. Returns it as a Path."""
    text = os.fspath(value)
    shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\x00" in text:
        raise SettingError(name, shown, "{name} {value} holds a NUL character, which no file name can")
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raise SettingError(name, shown, "{name} {value} holds a character no file name can (a lone surrogate); "
                           "expected UTF-8 text") from None
    if len(raw) > PATH_MAX:
        raise SettingError(name, shown[:60] + "…", "{name} {value} is " + f"{len(raw)} bytes long, more than the "
                           f"{PATH_MAX} a path may have")
    long = next((part for part in raw.split(b"/") if len(part) > NAME_MAX), None)
    if long is not None:
        raise SettingError(name, shown[:60] + "…", "{name} {value}: a name in it is " + f"{len(long)} bytes long, "
                           f"more than the {NAME_MAX} a file name may have")
    path = Path(text)
    for p in (path, *path.parents):
        try:
            os.stat(p)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SettingError(name, shown, "{name} {value} goes through a loop of symbolic links"
                                   + ("" if p == path else f" at {p}")) from None
            if p.is_symlink() and output:
                raise SettingError(name, shown, "{name} {value}: " + f"{p} is a symbolic link to "
                                   f"{os.readlink(p)}, which does not exist") from None
            continue
        break
    if output:
        resolved = path.resolve()
        if resolved == Path(resolved.anchor):
            raise SettingError(name, shown, "{name} {value} is the root of the file system; name a folder for "
                               "the results")
        for root in SYSTEM_ROOTS:
            if resolved == root or root in resolved.parents:
                raise SettingError(name, shown, "{name} {value} is under " + f"{root}, a kernel or device file "
                                   "system, not a place for results")
    return path


def check_output_folder(name: str, value: str | Path, own: Kind | None, *, allow: tuple[Kind, ...] = ()) -> Path:
    """Refuse to write into ``value`` unless it holds nothing of another kind than ``own`` (or one of
    ``allow``; ``own`` None: a folder that only holds folders, such as an experiment's root), and
    unless it lies outside every run's own folders. Writes nothing."""
    path = check_path(name, value, output=True)
    shown = os.fspath(value)
    inside = _inside_run_part(path)
    if inside is not None:
        run, part = inside
        raise SettingError(name, shown, "{name} {value} is inside " + f"{run}/{part}/, which belongs to that run; "
                           "name a folder outside it")
    kind = folder_kind(path)
    if path.exists() and not path.is_dir():
        raise SettingError(name, shown, "{name} {value} is a file, not a folder")
    if kind is not None and kind is not own and kind not in allow:
        wanted = own.value if own is not None else "the runs of an experiment"
        raise SettingError(name, shown, "{name} {value} holds " + f"{kind.value}, not {wanted}: nothing "
                           f"there is replaced; name another folder for {wanted}")
    return path


def _inside_run_part(path: Path) -> tuple[Path, str] | None:
    """The run (or evaluation) folder and its own part (``model``, ``debug`` ...) that ``path`` lies in."""
    absolute = Path(os.path.abspath(path))
    for folder in (absolute, *absolute.parents):
        if folder.name in RUN_PARTS and folder_kind(folder.parent) in (Kind.RUN, Kind.EVALUATION):
            return folder.parent, folder.name
    return None

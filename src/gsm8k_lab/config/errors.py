"""Errors for bad input, and where each value came from, so an error names what the user wrote.

Library modules raise :class:`SettingError` naming a setting by its path (``eval.samples``); the
command line words it with the flag, variable or file that gave the value (:meth:`Sources.word`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class UsageError(ValueError):
    """A bad input from the user: reported as one line, exit code 2."""


class SettingError(UsageError):
    """A bad value of one setting (or command argument), named by its ``path``.

    ``template`` words the problem with ``{name}`` and ``{value}``; the library
    fills in the path, the command line the flag, variable or file that gave
    the value (see :meth:`render`).
    """

    def __init__(self, path: str, value: Any, template: str):
        self.path, self.value, self.template = path, value, template
        super().__init__(self.render(path, show_value(value)))

    def render(self, name: str, value: str, resume: str = "resume=True", overwrite: str = "overwrite=True") -> str:
        words = {"name": name, "value": value, "resume": resume, "overwrite": overwrite}
        # one pass over the placeholders only: braces in paths or values stay as they are
        return re.sub(r"\{(name|value|resume|overwrite)\}", lambda m: words[m.group(1)], self.template)


def show_value(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)



@dataclass(frozen=True)
class Source:
    """Where one setting's value came from: a default, a file, a variable, a preset or a flag."""

    kind: str  # default | file | env | preset | flag
    name: str = ""  # the file, variable or flag
    raw: str | None = None  # the text as written

    def label(self, path: str) -> str:
        """How an error names the value: ``--eval-samples``, ``EVAL_SAMPLES``, ``eval.samples (in f.yaml)``."""
        if self.kind in ("env", "flag"):
            return self.name
        if self.kind == "file":
            return f"{path} (in {self.name})"
        if self.kind == "preset":
            return f"{path} (preset {self.name})"
        return path


class Sources(dict):
    """path -> :class:`Source`; a path not listed holds its default."""

    def of(self, path: str) -> Source:
        return self.get(path, Source("default"))

    def word(self, err: SettingError, **words: str) -> str:
        """The error worded with the source of its value (the text as the user wrote it)."""
        src = self.of(err.path)
        if src.raw is None:
            value = show_value(err.value)
        else:
            value = repr(src.raw) if isinstance(err.value, str) else src.raw
        return err.render(src.label(err.path), value, **words)


"""How a setting is declared: a dataclass field carrying its default, help and the rules that
:func:`~gsm8k_lab.config.validation.validate` applies (the ``metadata`` of the field)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import field
from typing import Any


def setting(default: Any, help: str, *, env: str | None = None, choices: Iterable | None = None,
            min: float | None = None, max: float | None = None, above: float | None = None,
            split: str | None = None, all_is_none: bool = False, why: str | None = None,
            floor: float | None = None, library: str | None = None, unset: str | None = None) -> Any:
    """A settings field: default, help text and the rules :func:`validate` applies.

    ``min``/``max`` bound it inclusively, ``above`` exclusively (an integer without ``max`` is
    bounded by :data:`INT_MAX`); ``floor`` allows 0 or a value of at least ``floor``; ``split``
    marks a problem count checked against that split's size; ``all_is_none`` lets the word
    ``all`` stand for None (the whole split); ``why`` explains a range in its error;
    ``library`` names the entry of :data:`LIBRARY_CHOICES` whose library lists the valid values;
    ``unset`` says what leaving an optional text setting unset means, and makes an empty value or the
    words ``none``/``null`` an error that says so (rather than a silent unset).
    """
    meta = {"help": help, "env": env, "choices": tuple(choices) if choices is not None else None,
            "min": min, "max": max, "above": above, "split": split, "all_is_none": all_is_none,
            "why": why, "floor": floor, "library": library, "unset": unset}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(factory, help: str) -> Any:
    return field(default_factory=factory, metadata={"help": help, "section": True})


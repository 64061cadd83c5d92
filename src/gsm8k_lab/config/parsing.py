"""Text (from a flag, a variable or a file) into a setting's type; the tree walked leaf by leaf."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import types
import typing
from collections.abc import Iterable
from typing import Any

from .errors import Source, UsageError, show_value
from .settings import Settings


@functools.cache
def fields_of(cls) -> tuple[tuple[dataclasses.Field, Any], ...]:
    """A dataclass's fields with their resolved type hints (resolved once: every command line builds
    hundreds of flags from them)."""
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name]) for f in dataclasses.fields(cls))


def iter_settings(cls=Settings, prefix: str = "") -> Iterable[tuple[str, dataclasses.Field, Any]]:
    """Every leaf setting as ``(path, field, type)``, sections expanded."""
    for f, hint in fields_of(cls):
        path = f"{prefix}{f.name}"
        if f.metadata.get("section"):
            yield from iter_settings(hint, prefix=path + ".")
        else:
            yield path, f, hint


def leaf(path: str) -> tuple[dataclasses.Field, Any]:
    """The field and type of the setting at ``path`` (a KeyError for a path that is no setting)."""
    return _leaves()[path]


def parse_value(path: str, raw: Any, source: Source | None = None) -> Any:
    """Turn text (from a flag, a variable or a file) into the setting's type, or a SettingError."""
    f, hint = leaf(path)
    meta = f.metadata
    base, optional = unwrap(hint)

    def bad(expected: str) -> UsageError:
        shown = repr(raw) if isinstance(raw, str) else show_value(raw)
        return UsageError(f"{(source or Source('default')).label(path)} must be {expected}, got {shown}")

    if raw is None:
        if optional:
            return None
        raise bad(expected(base, meta))
    if typing.get_origin(base) is dict:
        return _parse_mapping(raw, bad)
    if isinstance(raw, dict) or (isinstance(raw, list) and typing.get_origin(base) is not list):
        raise bad(expected(base, meta))  # a mapping or list (from a file) where one value belongs
    if meta.get("unset") and isinstance(raw, str) and raw.strip().lower() in ("", "none", "null"):
        raise UsageError(f"{(source or Source('default')).label(path)} must not be empty, 'none' or 'null', got "
                         f"{raw!r}; leave it unset for {meta['unset']}")
    if isinstance(raw, str) and optional and meta.get("all_is_none") and raw.strip().lower() == "all":
        return None
    if isinstance(raw, str) and optional and raw.strip().lower() in ("none", "null") and not meta.get("all_is_none"):
        return None
    if base is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise bad("true or false")
    if base is int:
        if isinstance(raw, bool):
            raise bad(expected(base, meta))
        try:
            value = raw if isinstance(raw, int) else strict_int(raw)
        except ValueError:
            raise bad(expected(base, meta)) from None
        if meta.get("split") and value <= 0:  # counts are named for what they are
            raise bad(expected(base, meta))
        return value
    if base is float:
        try:
            value = strict_float(raw) if not isinstance(raw, (int, float)) or isinstance(raw, bool) else raw
        except ValueError:
            raise bad("a number") from None
        return float(value)
    if base is str:
        return str(raw)
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        items = raw if isinstance(raw, list) else [x for x in str(raw).replace(",", " ").split()]
        out = []
        for x in items:
            try:
                if isinstance(x, (list, dict)):
                    raise TypeError(x)
                out.append(_LIST_ITEMS[item](x))
            except (TypeError, ValueError):
                label = (source or Source("default")).label(path)
                kind = {int: "integers", float: "numbers"}.get(item, f"{item.__name__} values")
                raise UsageError(f"{label} must be a list of {kind}, got {x!r}") from None
        return out
    raise TypeError(f"unsupported setting type for {path}: {hint}")  # pragma: no cover


def strict_int(raw: Any) -> int:
    """An integer written as plain ASCII decimal digits (Python's ``1_0``, ``0x10`` or a fullwidth ``４``
    are not numbers to a user)."""
    if isinstance(raw, bool):
        raise ValueError(raw)
    if isinstance(raw, int):
        return raw
    text = str(raw)
    if not text.isascii() or not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        raise ValueError(raw)
    return int(text)


def strict_float(raw: Any) -> float:
    """A number as a user types it, in ASCII: Python's ``float`` also reads ``1_0.5`` and any Unicode digit
    (a fullwidth ``４`` is 4.0 to it), which are refused here; ``nan`` and ``inf`` are read (and refused
    by :func:`validate` as not finite)."""
    if isinstance(raw, bool):
        raise ValueError(raw)
    if isinstance(raw, (int, float)):
        return float(raw)
    text = str(raw)
    if not text.isascii() or "_" in text:
        raise ValueError(raw)
    return float(text)


#: A JSON literal as written unquoted (null, true, false, a number): read as JSON, anything else stays text.
JSON_LITERAL = re.compile(r"null|true|false|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def literal(value: Any) -> Any:
    """A mapping setting's value: text that is a JSON literal becomes it (``0.2``, ``true``, ``null``), other
    text stays text; lists and mappings (from a file) are read item by item; JSON's own types stay."""
    if isinstance(value, str):
        return json.loads(value) if JSON_LITERAL.fullmatch(value.strip()) else value
    if isinstance(value, list):
        return [literal(v) for v in value]
    if isinstance(value, dict):
        return {str(k): literal(v) for k, v in value.items()}
    return value


def unwrap(hint) -> tuple[Any, bool]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def expected(base, meta) -> str:
    if base is int:
        if meta.get("split"):
            return "a positive integer" + (" or 'all'" if meta.get("all_is_none") else "")
        return "an integer"
    if base is float:
        return "a number"
    if base is str:
        return "text"
    return base.__name__


#: How one item of a list setting is read.
_LIST_ITEMS = {int: strict_int, float: strict_float, str: str}


@functools.cache
def _leaves() -> dict[str, tuple[dataclasses.Field, Any]]:
    return {p: (f, hint) for p, f, hint in iter_settings()}


def _parse_mapping(raw: Any, bad) -> dict[str, Any]:
    """A mapping from a file, or ``KEY=VALUE`` pairs from a flag (several words) or a variable (one text)."""
    if isinstance(raw, dict):
        pairs = list(raw.items())
    else:
        words = raw if isinstance(raw, list) else str(raw).split()
        pairs = []
        for word in words:
            key, sep, value = str(word).partition("=")
            if not sep or not key.strip():
                raise bad("KEY=VALUE pairs (or a mapping in a settings file)")
            pairs.append((key.strip(), value))
    out: dict[str, Any] = {}
    for key, value in pairs:
        if not isinstance(key, str) or not key.isidentifier():
            raise bad("a mapping whose keys are field names")
        out[key] = literal(value)
    return out

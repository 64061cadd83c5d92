"""Where settings come from: defaults < preset < settings file < environment < flags."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import SettingError, Source, Sources
from .parsing import JSON_LITERAL, iter_settings, parse_value
from .settings import PRESETS, Settings


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------
def load_settings(env: Mapping[str, str] | None = None, config_file: str | Path | None = None,
                  overrides: Mapping[str, tuple[Any, Source]] | None = None,
                  preset: str | None = None) -> tuple[Settings, Sources]:
    """Defaults, then the preset, the settings file, the environment and the overrides (flags)."""
    env = os.environ if env is None else env
    settings, sources = Settings(), Sources()
    if preset is not None:
        if preset not in PRESETS:
            raise SettingError("preset", preset, "{name} must be one of " + ", ".join(PRESETS) + ", got {value}")
        for path, value in PRESETS[preset].items():
            settings.set(path, copy.deepcopy(value))
            sources[path] = Source("preset", preset)
    if config_file is not None:
        for path, raw in read_settings_file(config_file).items():
            src = Source("file", str(config_file))
            settings.set(path, parse_value(path, raw, src))
            sources[path] = src
    for path, f, _ in iter_settings():
        var = f.metadata.get("env")
        if var and env.get(var, "") != "":
            src = Source("env", var, env[var])
            settings.set(path, parse_value(path, env[var], src))
            sources[path] = src
    for path, (raw, src) in (overrides or {}).items():
        settings.set(path, parse_value(path, raw, src))
        sources[path] = src
    return settings, sources


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) file of the settings tree, flattened to ``path -> value``.

    A YAML file's values are kept as the text written and parsed later by :func:`parse_value`, as a
    flag's or a variable's are: YAML 1.1's own readings (``1:00`` as 60, ``1_0`` as 10, ``yes`` as
    true, ``null`` as nothing) never apply, so a value means in a file what it means on the command
    line. A ``.json`` file keeps JSON's types (numbers, booleans, null, lists), so a ``run.json``
    works too: its ``settings`` are used, and ``--config RUN/run.json`` repeats a run's settings.
    A key given twice in one mapping is refused, with its line, rather than the last one winning.
    """
    p = Path(path)
    if not p.is_file():
        raise SettingError("config", str(path), "{name} {value} is not a file")
    kind = "JSON" if p.suffix.lower() == ".json" else "YAML"
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_JSONLoader if kind == "JSON" else _TextLoader)
    except _DuplicateKey as exc:
        raise SettingError("config", str(path), "{name} {value} " + f"line {exc.line}: key {exc.key!r} is given "
                           f"twice in one mapping (first on line {exc.first}); keep one") from None
    except RecursionError:
        raise SettingError("config", str(path), "{name} {value} nests mappings or lists too deeply to be a "
                           "settings file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = str(exc).splitlines()[0]
        raise SettingError("config", str(path), "{name} {value} is not valid " + kind + " (" + problem + ")") from None
    if isinstance(data, dict) and isinstance(data.get("settings"), dict) and "run_id" in data:
        data = data["settings"]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingError("config", str(path), "{name} {value} must hold a mapping of settings")
    flat: dict[str, Any] = {}
    known = {p for p, _, _ in iter_settings()}
    sections = {p.rsplit(".", 1)[0] for p in known if "." in p}

    def walk(obj: dict, prefix: str) -> None:
        for key, value in obj.items():
            path_ = f"{prefix}{key}"
            if isinstance(value, dict) and path_ in sections:
                walk(value, path_ + ".")
            elif path_ in known:
                flat[path_] = value
            else:
                raise SettingError("config", str(path),
                                   "{name} {value}: unknown setting " + repr(path_))
    walk(data, "")
    return flat


def describe_settings(settings: Settings) -> str:
    """The tree as indented JSON (for printing)."""
    return json.dumps(settings.to_dict(), indent=2)


def env_vars() -> set[str]:
    """The environment variables that settings read."""
    return {f.metadata["env"] for _, f, _ in iter_settings() if f.metadata.get("env")}


# --------------------------------------------------------------------------
# Settings files read as text
# --------------------------------------------------------------------------
class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _TextLoader(yaml.BaseLoader):
    """YAML whose scalars stay the text written (no implicit types: :func:`parse_value` reads them as it
    reads a flag) and whose mappings refuse a key given twice."""

    def construct_mapping(self, node, deep=False):
        first: dict[Any, int] = {}
        for key_node, _value in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key, line = self.construct_scalar(key_node), key_node.start_mark.line + 1
                if key in first:
                    raise _DuplicateKey(key, line, first[key])
                first[key] = line
        return super().construct_mapping(node, deep=deep)


class _JSONLoader(_TextLoader):
    """A JSON file (a run.json): an unquoted scalar that is a JSON literal keeps its JSON type, as
    ``json.loads`` reads it; anything else stays text."""

    def construct_scalar(self, node):
        value = super().construct_scalar(node)
        if node.style is None and JSON_LITERAL.fullmatch(value):
            return json.loads(value)
        return value


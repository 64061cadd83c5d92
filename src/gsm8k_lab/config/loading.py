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
from .parsing import iter_settings, parse_value
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

    A ``run.json`` works too: its ``settings`` are used, so ``--config RUN/run.json``
    repeats a run's settings.
    """
    p = Path(path)
    if not p.is_file():
        raise SettingError("config", str(path), "{name} {value} is not a file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = str(exc).splitlines()[0]
        raise SettingError("config", str(path), "{name} {value} is not valid YAML (" + problem + ")") from None
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


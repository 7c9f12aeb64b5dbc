"""The config the deploy writes (JSON, 0600) and the env file beside it."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ConfigError(Exception):
    """The config cannot be used; the message is one line and never holds a value from it."""


def _text(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _env_entry(name: Any, value: Any) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)) and isinstance(value, str) and "\0" not in value


def read_env_file(path: str) -> dict[str, str]:
    """The deploy's env file (mode 0600, may hold secrets): NAME=<JSON string> lines, # comments."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError(f"env_file {path}: cannot read it: {e.strerror}") from None
    except ValueError:
        raise ConfigError(f"env_file {path}: not UTF-8") from None
    environment = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, value = line.partition("=")
        try:
            value = json.loads(value)
        except ValueError:
            value = None
        if not _env_entry(name, value):  # the message never shows the value
            raise ConfigError(f"env_file {path}, line {number}: expected NAME=<JSON string>")
        environment[name] = value
    return environment


REQUIRED = object()
# Config attribute: (key in the JSON file, check, what the value must be, default).
FIELDS: dict[str, tuple[str, Callable[[Any], bool], str, Any]] = {
    "name": ("name", _text, "a non-empty string", REQUIRED),
    "command": ("command", lambda v: isinstance(v, list) and v != [] and all(map(_text, v)),
                "a non-empty list of non-empty strings", REQUIRED),
    "environment": ("environment", lambda v: isinstance(v, dict) and all(_env_entry(k, x) for k, x in v.items()),
                    "an object of NAME: string", {}),
    "env_file": ("env_file", lambda v: _text(v) and os.path.isabs(v), "an absolute path", ""),
    "working_directory": ("working_directory", lambda v: _text(v) and os.path.isabs(v), "an absolute path", REQUIRED),
    "base_path": ("base_path", lambda v: isinstance(v, str) and re.fullmatch(r"(/[A-Za-z0-9._~-]+)*", v),
                  '"" or a path like "/time" (no trailing slash)', ""),
    "max_total": ("sessions.max_total", _count, "an integer >= 1", 16),
    "max_per_client": ("sessions.max_per_client", _count, "an integer >= 1", 4),
    "idle_timeout": ("sessions.idle_timeout", lambda v: _number(v) and v > 0, "a number > 0", 1800),
    "evict_min_idle": ("sessions.evict_min_idle", lambda v: _number(v) and v >= 0, "a number >= 0", 60),
    "keepalive_interval": ("keepalive_interval", lambda v: _number(v) and v > 0, "a number > 0", 25),
    "max_message_bytes": ("max_message_bytes", lambda v: _count(v) and v >= 1024, "an integer >= 1024", 8 << 20),
    "client_header": ("client_header", lambda v: _text(v) and re.fullmatch(r"[A-Za-z0-9-]+", v),
                      "a header name", "X-MCP-Edge-Client"),
    "bind_sessions_to_client": ("bind_sessions_to_client", lambda v: isinstance(v, bool), "true or false", False),
    "log_level": ("log_level", lambda v: v in ("debug", "info", "warning"), "debug, info or warning", "info"),
}


@dataclass(frozen=True)
class Config:
    name: str
    command: list[str]
    environment: dict[str, str]  # the env_file's entries, then the config's own
    env_file: str
    working_directory: str
    base_path: str
    max_total: int
    max_per_client: int
    idle_timeout: float
    evict_min_idle: float
    keepalive_interval: float
    max_message_bytes: int
    client_header: str
    bind_sessions_to_client: bool
    log_level: str

    @classmethod
    def load(cls, path: str) -> Config:
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        except ValueError as e:  # bad JSON or bad UTF-8
            raise ConfigError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("sessions", {}), dict):
            raise ConfigError(f"{path}: must be a JSON object, its sessions an object")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict) -> Config:
        flat = {k: v for k, v in raw.items() if k != "sessions"}
        flat.update({f"sessions.{k}": v for k, v in raw.get("sessions", {}).items()})
        known = {key for key, *_ in FIELDS.values()}
        for key in flat:
            if key not in known:
                raise ConfigError(f"unknown key {key!r}")
        values = {}
        for attr, (key, valid, what, default) in FIELDS.items():
            if key not in flat and default is REQUIRED:
                raise ConfigError(f"{key}: missing")
            if key in flat and not valid(flat[key]):
                raise ConfigError(f"{key}: must be {what}")
            values[attr] = flat.get(key, default)
        if values["env_file"]:
            values["environment"] = {**read_env_file(values["env_file"]), **values["environment"]}
        config = cls(**values)
        if not os.path.isdir(config.working_directory):
            raise ConfigError(f"working_directory {config.working_directory}: not a directory")
        return config

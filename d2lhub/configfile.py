"""Reading classroom.yaml's text, and saying what is wrong with it one line per key.

d2lhub.config holds the schema and `load`; this holds what comes before and after the
schema's checks, so that the schema module stays the list of keys an admin reads.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError


class ConfigError(Exception):
    """classroom.yaml is missing, unreadable or invalid; the message names each bad key."""


def read_mapping(path: Path) -> dict:
    """The file's YAML as a mapping (an empty file is an empty one), or a ConfigError naming the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: (top level): expected a mapping of keys, got {type(data).__name__}")
    return data


def describe(error: ValidationError, source: str) -> str:
    """One `SOURCE: key.path: problem` line per error pydantic found."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        message = message.removeprefix("Value error, ")
        lines.append(f"{source}: {path}: {message}")
    return "\n".join(lines)


def repeated(names: list[str] | tuple[str, ...]) -> list[str]:
    """The names given more than once, sorted: what a `listed twice` error names."""
    return sorted({name for name in names if names.count(name) > 1})

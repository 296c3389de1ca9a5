"""Validated configs: reading YAML, dotted ``key=value`` overrides, and one way to turn a mapping into a pydantic model
with errors that name the source and every offending key."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

M = TypeVar("M", bound=BaseModel)

log = get_logger("config")


def read_yaml(path: Path) -> Any:
    """The YAML document at ``path`` (None for an empty file); a CrossfakeError naming the file if it is
    unreadable or not YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CrossfakeError(f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise CrossfakeError(f"{path} is not valid YAML: {e}") from None


def validate_config(cls: type[M], data: Any, where: str, overrides: Iterable[str] = (), *, expected: str,
                    context: dict[str, Any] | None = None) -> M:
    """``cls`` validated from ``data`` with ``overrides`` applied first.

    Raises:
        CrossfakeError: ``data`` is not a mapping (the message says it should hold ``expected``), an
            override is malformed, or validation fails (naming ``where`` and every bad key).
    """
    if not isinstance(data, Mapping):
        raise CrossfakeError(f"{where}: expected a mapping with {expected}, got {type(data).__name__}")
    data = apply_overrides(data, overrides)
    try:
        return cls.model_validate(data, context=context)
    except ValidationError as e:
        problems = "; ".join(describe_error(err) for err in e.errors())
        raise CrossfakeError(f"{where} is invalid: {problems}") from None


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``data`` with each ``a.b.c=value`` override set (value parsed as a YAML scalar)."""
    out: dict[str, Any] = copy.deepcopy(dict(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise CrossfakeError(
                f"override {item!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=2"
            )
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CrossfakeError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a mapping")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise CrossfakeError(f"override {item!r}: the value is not valid YAML: {e}") from None
    return out


def renamed_keys(data: Any, renames: Mapping[str, str], what: str, *, warn: bool = True) -> Any:
    """``data`` with the keys of an older vocabulary under today's names (``renames``: old -> new).

    For a ``model_validator(mode="before")``: configs written before a rename keep working, with a warning
    that says what to rename (``warn=False`` for crossfake's own records, which it rewrites itself); a
    mapping giving both names is an error (which one was meant is unknown). Anything that is not a mapping
    is returned as is, for pydantic to reject.
    """
    if not isinstance(data, Mapping) or not any(old in data for old in renames):
        return data
    out = dict(data)
    for old, new in renames.items():
        if old not in out:
            continue
        if new in out:
            raise ValueError(f"{what} gives both `{old}` (the old name) and `{new}`; keep only `{new}`")
        out[new] = out.pop(old)
        if warn:
            log.warning("%s: `%s` is the old name of `%s`; read as `%s` (rename it in the file)", what, old, new, new)
    return out


def describe_error(err: Any) -> str:
    """One pydantic error as ``dotted.key: message`` (unknown keys named as such)."""
    key = ".".join(map(str, err["loc"])) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{key}: {msg}"


def add_override_argument(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """``--set KEY=VALUE`` (repeatable, into ``args.overrides``): dotted overrides of a YAML config."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a {what} key, e.g. {example} (repeatable)",
    )

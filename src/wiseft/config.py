"""Configuration is frozen dataclasses; YAML files and CLI flags are projections of them.

`load(cls, yaml_path, overrides)` reads a YAML mapping, lets every non-None override win, checks that
every key is a field of `cls` (recursively for nested dataclasses) and returns the frozen instance.
`write_resolved(dir, cfg)` writes what was actually run, with the package version, beside the results.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from wiseft import __version__
from wiseft.atomic import atomic_write_text
from wiseft.errors import ConfigError

T = TypeVar("T")


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at its top level, not {type(data).__name__}"
        )
    return data


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build the frozen dataclass `cls` from a mapping; unknown keys are an error naming `source`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} for {cls.__name__}; known keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints.get(name), value, f"{source}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if tp is None or value is None:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _coerce(args[0], value, where)
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        inner = args[0] if args else None
        return tuple(_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is tuple and isinstance(value, list):
        return tuple(value)
    return value


def load(
    cls: type[T], yaml_path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> T:
    data: dict[str, Any] = load_yaml(yaml_path) if yaml_path else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return from_dict(cls, data, str(yaml_path) if yaml_path else "flags")


def to_dict(cfg: Any) -> Any:
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def write_resolved(directory: str | os.PathLike, cfg: Any, name: str = "config.yaml") -> Path:
    """Write the resolved config and the package version as YAML into `directory`."""
    path = Path(directory) / name
    body = {"wiseft_version": __version__, **to_dict(cfg)}
    atomic_write_text(path, yaml.safe_dump(body, sort_keys=False))
    return path

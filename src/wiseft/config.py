"""Configuration is frozen dataclasses; YAML files and CLI flags are projections of them.

- `option(default, help, parse=...)` declares a field with its help text and, for fields whose text form
  needs parsing (a grid such as `0:1:0.125`), the parser; defaults live in the dataclass alone.
- `add_options(parser, cls)` adds one flag per declared field, its help showing the dataclass default;
  flags default to None so that a YAML `--config` fills in what the command line leaves out. A field
  whose type is itself a dataclass is a *section* (`ray:` in YAML): its own flag (`--ray [ADDRESS]`)
  switches it on, and each of its declared fields gets a flag `--ray-actors` (dest `ray.actors`).
- `load(cls, yaml_path, overrides)` reads a YAML mapping, lets every non-None override win (a section's
  flags are merged into its YAML mapping), parses text values with the field's parser, checks that every
  key is a field of `cls` (recursively for nested dataclasses) and returns the frozen instance.
- `write_resolved(dir, cfg)` writes what was actually run, with the package version, beside the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from wiseft import __version__
from wiseft.atomic import atomic_write_text
from wiseft.errors import ConfigError

T = TypeVar("T")


def option(
    default: Any,
    help: str,
    *,
    parse: Callable[[Any], Any] | None = None,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    shown: str | None = None,
    nargs: str | None = None,
    const: Any = None,
) -> Any:
    """A dataclass field with its command-line help (and parser for text values such as grids).

    The help gets "(default …)" from `default` (or `shown`); a None default ("automatic") adds nothing,
    so its help text says what happens. `nargs="?"` with `const` makes the value optional (`--ray` alone
    gives `const`)."""
    meta = {
        "help": help,
        "parse": parse,
        "flag": flag,
        "choices": choices,
        "metavar": metavar,
        "shown": shown,
        "nargs": nargs,
        "const": const,
    }
    return dataclasses.field(default=default, metadata=meta)


def add_options(parser: argparse.ArgumentParser, cls: type, names: Iterable[str] | None = None) -> None:
    """One flag per field of `cls` declared with `option` (or only `names`), in field order; a section's
    fields follow its own flag, as `--SECTION-FIELD` (dest `SECTION.FIELD`)."""
    wanted = set(names) if names is not None else None
    for f, dest, flag, tp in _declared(cls):
        if wanted is not None and dest.split(".")[0] not in wanted:
            continue
        meta = f.metadata
        shown = meta["shown"] or _describe(f.default)
        text = (meta["help"] + (f" (default {shown})" if shown else "")).replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": text}
        base = _base_type(tp)
        if base is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = str if meta["parse"] or base not in (int, float) else base
            for key in ("choices", "metavar", "nargs", "const"):
                if meta.get(key) is not None:
                    kwargs[key] = meta[key]
            if "." in dest and "choices" not in kwargs:
                kwargs.setdefault("metavar", dest.rpartition(".")[2].upper())
        parser.add_argument(flag, **kwargs)


def option_dests(cls: type) -> list[str]:
    """The argparse dests of `cls`'s flags: field names, and `SECTION.FIELD` for a section's fields."""
    return [dest for _, dest, _, _ in _declared(cls)]


def _declared(cls: type, prefix: str = "") -> list[tuple[dataclasses.Field, str, str, Any]]:
    """(field, dest, flag, type) of every declared option of `cls`, a section's fields after its own."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        dest = prefix + f.name
        out.append(
            (f, dest, f.metadata["flag"] or "--" + dest.replace(".", "-").replace("_", "-"), hints[f.name])
        )
        section = _base_type(hints[f.name])
        if not prefix and dataclasses.is_dataclass(section):
            out.extend(_declared(section, dest + "."))
    return out


def _base_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp


def _describe(default: Any) -> str:
    if default is None:
        return ""
    if isinstance(default, tuple):
        return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in default)
    return str(default)


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
        parse = fields[name].metadata.get("parse")
        if parse is not None and value is not None and not isinstance(value, tuple):
            value = parse(value)
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
    fields = {f.name: f for f in dataclasses.fields(cls)}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, value in sorted(given.items(), key=lambda kv: "." in kv[0]):  # sections before their fields
        section, _, name = key.partition(".")
        if section not in fields or not _is_section(cls, section):
            data[key] = value
            continue
        current = _section_mapping(data.get(section), fields[section])
        if name:
            if current is None:
                flag = "--" + key.replace(".", "-").replace("_", "-")
                raise ConfigError(f"{flag} needs --{section} (or a `{section}:` section in --config)")
            data[section] = {**current, name: value}
        else:  # the section's own flag: its mapping wins key by key over the YAML's
            data[section] = {**(current or {}), **_section_mapping(value, fields[section])}
    return from_dict(cls, data, str(yaml_path) if yaml_path else "flags")


def _is_section(cls: type, name: str) -> bool:
    return dataclasses.is_dataclass(_base_type(typing.get_type_hints(cls)[name]))


def _section_mapping(value: Any, f: dataclasses.Field) -> dict[str, Any] | None:
    """A section's value as a mapping: YAML shorthands (`ray: auto`) and flag text through its parser."""
    parse = f.metadata.get("parse")
    if value is None or value is False or isinstance(value, dict) or parse is None:
        return value if value is not False else None
    return parse(value)


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

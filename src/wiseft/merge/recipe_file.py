"""Recipe files: a YAML recipe (ours, or a mergekit configuration translated by `merge.mergekit`) read
into a `Recipe`, with flags as overrides and model paths taken relative to the file's directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wiseft.checkpoints.hub import looks_like_hub_name
from wiseft.config import load_yaml
from wiseft.errors import ConfigError
from wiseft.merge import mergekit
from wiseft.merge.recipe import RECIPE_KEYS, Recipe, unknown_key


def _relative_to(data: dict, root: Path, path: str) -> None:
    """Model paths in a recipe file are relative to the file's directory, not the current directory
    (issue 13); Hub names (org/model) that are not a directory there stay names."""
    if isinstance(data.get("models"), (list, tuple)):
        data["models"] = [
            resolve_reference(m, root, f"{path}: models[{i}]") if isinstance(m, str) else m
            for i, m in enumerate(data["models"])
        ]
    if isinstance(data.get("fishers"), (list, tuple)):
        data["fishers"] = [
            resolve_reference(f, root, f"{path}: fishers[{i}]") if isinstance(f, str) else f
            for i, f in enumerate(data["fishers"])
        ]
    if isinstance(data.get("base"), str):
        data["base"] = resolve_reference(data["base"], root, f"{path}: base")
    tokens = data.get("tokenizer_tokens")
    if isinstance(tokens, dict):
        data["tokenizer_tokens"] = {t: _relative_spec(s, root, path) for t, s in tokens.items()}
    tok = data.get("tokenizer_from")
    if isinstance(tok, str) and tok not in ("union", "base") and not tok.isdigit():
        data["tokenizer_from"] = resolve_reference(tok, root, f"{path}: tokenizer_from")


def _relative_spec(spec: Any, root: Path, path: str) -> Any:
    """A tokenizer_tokens entry with its model path taken relative to the recipe file."""
    if not isinstance(spec, dict):
        return spec
    source = spec.get("source")
    if isinstance(source, str):
        return {**spec, "source": resolve_reference(source, root, f"{path}: tokenizer_tokens")}
    if isinstance(source, dict) and isinstance(source.get("model"), str):
        model = resolve_reference(source["model"], root, f"{path}: tokenizer_tokens")
        return {**spec, "source": {**source, "model": model}}
    return spec


def resolve_reference(value: str, root: Path, where: str) -> str:
    """`value` (a model path or Hub name in a recipe file) with relative paths taken from `root`."""
    if not value or Path(value).expanduser().is_absolute():
        return str(Path(value).expanduser()) if value else value
    candidate = root / value
    if candidate.exists():
        return str(candidate.resolve())
    if looks_like_hub_name(value):
        if Path(value).exists() and root.resolve() != Path.cwd().resolve():
            raise ConfigError(
                f"{where}: {value!r} is not a directory beside the recipe ({candidate}) but is one in the "
                "current directory; paths in a recipe are relative to the recipe file: write the path from "
                "there or an absolute path"
            )
        return value
    return str(candidate)


def load_recipe(path: str, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a YAML recipe (ours, or a mergekit configuration: see merge/mergekit.py); non-None
    `overrides` (from flags) win over the file."""
    return read_recipe(path, overrides)[0]


def read_recipe(path: str, overrides: dict[str, Any] | None = None) -> tuple[Recipe, str, list[str]]:
    """(recipe, which schema the file was read as — "wiseft" or "mergekit", warnings)."""
    data = load_yaml(path)
    data.pop("wiseft_version", None)  # written beside the recipe in a merge output; informational
    warnings: list[str] = []
    schema = mergekit.detect(data, path)
    if schema == "mergekit":
        data, warnings = mergekit.translate(data, path)
    _relative_to(data, Path(path).parent, path)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "parameters" in overrides:
        data["parameters"] = {**(data.get("parameters") or {}), **overrides.pop("parameters")}
    data.update(overrides)
    for key in data:
        if key not in RECIPE_KEYS:
            raise unknown_key(key, RECIPE_KEYS, str(path))
    if "models" in data and not isinstance(data["models"], (list, tuple)):
        raise ConfigError(f"{path}: models must be a list of model directories or Hub names")
    if "rules" in data and not isinstance(data["rules"], (list, tuple)):
        raise ConfigError(f"{path}: rules must be a list of {{match, delta|weights|…}} mappings")
    if "parameters" in data and not isinstance(data["parameters"], dict):
        raise ConfigError(f"{path}: parameters must be a mapping of parameter names to values")
    try:
        return Recipe(**data), schema, warnings
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc

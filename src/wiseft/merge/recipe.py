"""Merge recipes: which method, which models, and the coefficient of every tensor (schedules).

A recipe is a frozen dataclass, written as YAML (`wiseft merge --config recipe.yaml`) or built from flags:

    method: wise-ft                 # wise-ft | linear | task_arithmetic  (wiseft merge --list)
    models: [EARLY, FINAL]          # wise-ft: exactly two, early first; linear/task_arithmetic: N models
    base: BASE                      # task_arithmetic only
    delta: 0.25                     # wise-ft: weight of EARLY (DESIGN §4)
    weights: [0.5, 0.5]             # linear: w_i (sum 1); task_arithmetic: λ_i
    rules:                          # ordered; the first rule whose regex FULLY matches a tensor name wins
      - match: 'model\\.embed_tokens\\.weight'
        delta: 0.0
      - match: 'model\\.layers\\.\\d+\\.mlp\\..*'
        delta: {gradient: [0.0, 0.5, 1.0]}   # interpolated over the layer index
    extrapolate: false              # allow δ (or linear weights) outside [0, 1]

A value is a number or `{gradient: [v_0, …, v_m]}`. A gradient is evaluated at t = L/(n_layers−1) for a
tensor of layer L (`…layers.L.…`), by linear interpolation between its evenly spaced points. Tensors outside
the layers: the input embeddings (a name containing `embed`, or GPT-2's `wte`/`wpe`; with tied embeddings
also the shared lm_head) take t = 0 (the first value); everything else outside the layers (final norm,
untied `lm_head`) takes t = 1 (the last value). The number of layers is counted from the tensor names. For `weights`, each model's entry is a value (number or gradient).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wiseft.errors import ConfigError
from wiseft.merge import regex

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")


@dataclass(frozen=True)
class Gradient:
    """Values at evenly spaced positions over the layers (first layer … last layer)."""

    gradient: tuple[float, ...]

    def at(self, t: float) -> float:
        points = self.gradient
        if len(points) == 1:
            return points[0]
        x = t * (len(points) - 1)
        i = min(int(math.floor(x)), len(points) - 2)
        frac = x - i
        if frac == 0.0:
            return points[i]
        if frac == 1.0:
            return points[i + 1]
        return points[i] + frac * (points[i + 1] - points[i])


Value = float | Gradient


@dataclass(frozen=True)
class Rule:
    """A schedule rule: tensors whose name fully matches `match` get this `delta` or these `weights`."""

    match: str
    delta: Any = None
    weights: Any = None


@dataclass(frozen=True)
class Recipe:
    method: str = "wise-ft"
    models: tuple[str, ...] = ()
    base: str | None = None
    delta: Any = None
    weights: Any = None
    rules: tuple[Rule, ...] = ()
    extrapolate: bool = False

    def __post_init__(self) -> None:
        from wiseft.merge.methods import get_method

        method = get_method(self.method)
        object.__setattr__(self, "method", method.name)
        object.__setattr__(self, "models", tuple(str(m) for m in self.models))
        n = len(self.models)
        if n < method.min_models or (method.max_models is not None and n > method.max_models):
            want = (
                f"exactly {method.min_models}"
                if method.max_models == method.min_models
                else f"at least {method.min_models}"
            )
            raise ConfigError(f"method {method.name} needs {want} model(s), got {n}: {list(self.models)}")
        if method.needs_base and not self.base:
            raise ConfigError(f"method {method.name} needs a base model (--base or `base:` in the recipe)")
        if not method.needs_base and self.base:
            raise ConfigError(f"method {method.name} takes no base model; remove --base/`base:`")
        object.__setattr__(self, "rules", tuple(_rule(r) for r in self.rules))
        if method.coefficient == "delta":
            if self.weights is not None:
                raise ConfigError(f"method {method.name} is set by delta, not weights; use --delta")
            if self.delta is None:
                raise ConfigError(f"method {method.name} needs --delta (or `delta:` in the recipe)")
            object.__setattr__(self, "delta", _value(self.delta, "delta"))
            for i, rule in enumerate(self.rules):
                if rule.weights is not None or rule.delta is None:
                    raise ConfigError(f"rules[{i}] ({rule.match!r}) must set delta for method {method.name}")
                object.__setattr__(rule, "delta", _value(rule.delta, f"rules[{i}].delta"))
        else:
            if self.delta is not None:
                raise ConfigError(f"method {method.name} is set by weights, not delta; use --weights")
            weights = self.weights
            if weights is None:
                if method.name == "linear":  # a plain average when no weights are given
                    weights = [1.0 / n] * n if n else []
                else:
                    raise ConfigError(f"method {method.name} needs --weights (one λ per model)")
            object.__setattr__(self, "weights", _values(weights, n, "weights"))
            for i, rule in enumerate(self.rules):
                if rule.delta is not None or rule.weights is None:
                    raise ConfigError(
                        f"rules[{i}] ({rule.match!r}) must set weights for method {method.name}"
                    )
                object.__setattr__(rule, "weights", _values(rule.weights, n, f"rules[{i}].weights"))

    # --- per-tensor coefficients ------------------------------------------------------------------
    def coefficients(self, name: str, n_layers: int) -> tuple[tuple[float, ...], str]:
        """The coefficients of tensor `name` and which rule chose them ('default' when none matched)."""
        spec, source = (self.delta if self.delta is not None else self.weights), "default"
        for i, rule in enumerate(self.rules):
            if regex.fullmatch(rule.match, name):
                spec = rule.delta if rule.delta is not None else rule.weights
                source = f"rules[{i}] {rule.match}"
                break
        t = layer_position(name, n_layers)
        if isinstance(spec, tuple):
            return tuple(_eval(v, t) for v in spec), source
        return (_eval(spec, t),), source


_EMBEDDING = re.compile(r"embed|(?:^|\.)(?:wte|wpe)\.")  # Llama/Qwen2/Gemma embed_tokens; GPT-2 wte, wpe


def layer_position(name: str, n_layers: int) -> float:
    """Where tensor `name` sits along the depth, in [0, 1] (see the module docstring)."""
    m = _LAYER.search(name)
    if m:
        layer = int(m.group(1))
        return 0.0 if n_layers <= 1 else min(layer / (n_layers - 1), 1.0)
    return 0.0 if _EMBEDDING.search(name) else 1.0


def layer_count(names: Iterable[str], config: dict | None = None) -> int:
    """Number of layers gradients are spread over: from the tensor names (`…layers.L.…`, `…h.L.…`), else
    from the config (num_hidden_layers, or GPT-2's n_layer), else 1."""
    indices = [int(m.group(1)) for m in map(_LAYER.search, names) if m]
    if indices:
        return max(indices) + 1
    config = config or {}
    return int(config.get("num_hidden_layers") or config.get("n_layer") or 1)


def _eval(v: Value, t: float) -> float:
    return v.at(t) if isinstance(v, Gradient) else v


def _value(raw: Any, where: str) -> Value:
    if isinstance(raw, Gradient):
        return raw
    if isinstance(raw, bool):
        raise ConfigError(f"{where}: expected a number or {{gradient: [...]}}, got {raw!r}")
    if isinstance(raw, (int, float)):
        value = float(raw)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {raw!r} is not a finite number")
        return value
    if isinstance(raw, dict) and set(raw) == {"gradient"}:
        points = raw["gradient"]
        if not isinstance(points, (list, tuple)) or not points:
            raise ConfigError(f"{where}: gradient needs a non-empty list of numbers")
        return Gradient(tuple(_value(p, f"{where}.gradient") for p in points))  # type: ignore[misc]
    if isinstance(raw, str):
        try:
            return _value(float(raw), where)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected a number or {{gradient: [v0, v1, ...]}}, got {raw!r}")


def _values(raw: Any, n: int, where: str) -> tuple[Value, ...]:
    if isinstance(raw, str):
        raw = [p for p in raw.replace(",", " ").split()]
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{where}: expected one value per model ({n}), got {raw!r}")
    if len(raw) != n:
        raise ConfigError(f"{where}: {len(raw)} value(s) given for {n} model(s); give one per model")
    return tuple(_value(v, f"{where}[{i}]") for i, v in enumerate(raw))


def _rule(raw: Any) -> Rule:
    if isinstance(raw, Rule):
        rule = raw
    elif isinstance(raw, dict):
        unknown = set(raw) - {"match", "delta", "weights"}
        if unknown or "match" not in raw:
            raise ConfigError(
                f"rule {raw!r}: needs `match` and `delta` or `weights` (unknown: {sorted(unknown)})"
            )
        rule = Rule(**raw)
    else:
        raise ConfigError(f"rule {raw!r}: expected a mapping with match and delta/weights")
    regex.compile_rule(rule.match)  # RE2: linear time; refuses backreferences and lookaround
    return Rule(rule.match, rule.delta, rule.weights)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as plain YAML/JSON data (gradients as {gradient: [...]})."""

    def enc(v: Any) -> Any:
        if isinstance(v, Gradient):
            return {"gradient": list(v.gradient)}
        if isinstance(v, tuple):
            return [enc(x) for x in v]
        return v

    out: dict[str, Any] = {"method": recipe.method, "models": list(recipe.models)}
    if recipe.base:
        out["base"] = recipe.base
    if recipe.delta is not None:
        out["delta"] = enc(recipe.delta)
    if recipe.weights is not None:
        out["weights"] = enc(recipe.weights)
    rules = []
    for r in recipe.rules:
        entry: dict[str, Any] = {"match": r.match}
        if r.delta is not None:
            entry["delta"] = enc(r.delta)
        if r.weights is not None:
            entry["weights"] = enc(r.weights)
        rules.append(entry)
    out["rules"] = rules
    out["extrapolate"] = recipe.extrapolate
    return out


def load_recipe(path: str, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a YAML recipe; non-None `overrides` (from flags) win over the file."""
    from wiseft.config import load_yaml

    data = load_yaml(path)
    data.pop("wiseft_version", None)  # written beside the recipe in a merge output; informational
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    known = {"method", "models", "base", "delta", "weights", "rules", "extrapolate"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )
    if "models" in data and not isinstance(data["models"], (list, tuple)):
        raise ConfigError(f"{path}: models must be a list of model directories or Hub names")
    if "rules" in data and not isinstance(data["rules"], (list, tuple)):
        raise ConfigError(f"{path}: rules must be a list of {{match, delta|weights}} mappings")
    try:
        return Recipe(**data)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc

"""Values of recipe parameters and where a tensor sits along the depth (what gradients are evaluated at).

A value is a number (or a boolean / a choice such as `rescale: l1`), or `{gradient: [v_0, …, v_m]}`:
values at evenly spaced positions over the layers. Two schedules say how a gradient is placed:

- `wiseft` (our recipes): a tensor of layer L of n takes t = L/(n−1) (t = 0 when n = 1); tensors outside
  the layers: the input embeddings (a name containing `embed`, or GPT-2's `wte`/`wpe`; with tied
  embeddings also the shared lm_head) take t = 0, everything else (final norm, untied lm_head) t = 1.
  Between points: v_i + f·(v_{i+1} − v_i).
- `mergekit` (a mergekit configuration, read as mergekit reads it): a tensor of layer L takes
  t = L/(n−1) (t = 1 when n = 1); every tensor outside the layers (embeddings, final norm, lm_head)
  takes t = 0, the first value. Between points: (1 − f)·v_i + f·v_{i+1}, mergekit's formula.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wiseft.errors import ConfigError

SCHEDULES = ("wiseft", "mergekit")
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")
_EMBEDDING = re.compile(r"embed|(?:^|\.)(?:wte|wpe)\.")  # Llama/Qwen2/Gemma embed_tokens; GPT-2 wte, wpe
LAYER, EMBEDDING = _LAYER, _EMBEDDING  # a tensor's layer index; input-embedding names (merge/slices.py)


@dataclass(frozen=True)
class Gradient:
    """Values at evenly spaced positions over the layers (first layer … last layer)."""

    gradient: tuple[float, ...]

    def at(self, t: float, schedule: str = "wiseft") -> float:
        points = self.gradient
        if schedule == "mergekit":
            scaled = t * (len(points) - 1)
            i0 = int(scaled)
            i1 = min(len(points) - 1, i0 + 1)
            frac = scaled - i0
            return (1 - frac) * points[i0] + frac * points[i1]
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


def layer_position(name: str, n_layers: int, schedule: str = "wiseft") -> float:
    """Where tensor `name` sits along the depth, in [0, 1] (see the module docstring)."""
    m = _LAYER.search(name)
    if m:
        layer = int(m.group(1))
        if n_layers <= 1:
            return 1.0 if schedule == "mergekit" else 0.0
        return min(layer / (n_layers - 1), 1.0)
    if schedule == "mergekit":
        return 0.0
    return 0.0 if _EMBEDDING.search(name) else 1.0


def layer_count(names: Iterable[str], config: dict | None = None) -> int:
    """Number of layers gradients are spread over: from the tensor names (`…layers.L.…`, `…h.L.…`), else
    from the config (num_hidden_layers, or GPT-2's n_layer), else 1."""
    indices = [int(m.group(1)) for m in map(_LAYER.search, names) if m]
    if indices:
        return max(indices) + 1
    config = config or {}
    return int(config.get("num_hidden_layers") or config.get("n_layer") or 1)


def evaluate(value: Any, t: float, schedule: str) -> Any:
    return value.at(t, schedule) if isinstance(value, Gradient) else value


def parse_value(raw: Any, where: str, numeric: bool = True) -> Any:
    """A number (or, when not `numeric`, a bool or a word) or {gradient: [...]}; ConfigError otherwise."""
    if isinstance(raw, Gradient):
        return raw
    if isinstance(raw, bool) or (isinstance(raw, str) and not numeric):
        if numeric:
            raise ConfigError(f"{where}: expected a number or {{gradient: [...]}}, got {raw!r}")
        return raw
    if isinstance(raw, (int, float)):
        value = float(raw)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {raw!r} is not a finite number")
        return value
    if isinstance(raw, dict) and set(raw) == {"gradient"}:
        points = raw["gradient"]
        if not isinstance(points, (list, tuple)) or not points:
            raise ConfigError(f"{where}: gradient needs a non-empty list of numbers")
        return Gradient(tuple(parse_value(p, f"{where}.gradient") for p in points))
    if isinstance(raw, str):
        try:
            return parse_value(float(raw), where)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected a number or {{gradient: [v0, v1, ...]}}, got {raw!r}")


def encode_value(value: Any) -> Any:
    """A parsed value as plain YAML/JSON data."""
    if isinstance(value, Gradient):
        return {"gradient": list(value.gradient)}
    if isinstance(value, tuple):
        return [encode_value(v) for v in value]
    return value

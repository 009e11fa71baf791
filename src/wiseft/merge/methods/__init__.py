"""The registry of merge methods. Each method is one small module registering a `Method`.

A method's kernel is a pure function: given flat chunks of its inputs (in their stored dtype) and its
per-tensor coefficients, it writes the merged values into a float64 accumulator. The caller (the streaming
driver or `WeightSpace`) rounds the accumulator once to the output dtype. Computing in float64 is what
makes every output element equal the float64 reference rounded to the output dtype (see merge/compute.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from wiseft.errors import ConfigError

# kernel(xs, coeffs, acc, scratch): xs are same-length 1-D chunks; acc a float64 buffer of that length;
# scratch a merge.compute.Scratch with more reusable float64 buffers.
Kernel = Callable[[Sequence[torch.Tensor], tuple[float, ...], torch.Tensor, Any], None]


@dataclass(frozen=True)
class Method:
    """A merge method: its name, what its coefficients are, and its per-chunk kernel."""

    name: str
    summary: str
    coefficient: str  # recipe field holding its coefficients: "delta" (one value) or "weights" (per model)
    needs_base: bool
    min_models: int
    max_models: int | None
    kernel: Kernel
    # check(coeffs, extrapolate) -> None or an error message (without the tensor name)
    check: Callable[[tuple[float, ...], bool], str | None]
    # For a method that is a plain weighted sum Σ w_i·x_i computed by `linear.weighted_sum`: the weights
    # its kernel uses for `coeffs` (lets WeightSpace take the exact float32 shortcut, merge/compute.py).
    weights: Callable[[tuple[float, ...]], tuple[float, ...]] | None = None


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    _REGISTRY[method.name] = method
    return method


def get_method(name: str) -> Method:
    _load_builtin()
    key = name.replace("_", "-").lower()
    for method in _REGISTRY.values():
        if method.name.replace("_", "-") == key:
            return method
    raise ConfigError(
        f"unknown merge method {name!r}; choose one of {', '.join(sorted(_REGISTRY))} (wiseft merge --list)"
    )


def all_methods() -> list[Method]:
    _load_builtin()
    return list(_REGISTRY.values())


def _load_builtin() -> None:
    from wiseft.merge.methods import linear, task_arithmetic, wiseft  # noqa: F401  (they register themselves)

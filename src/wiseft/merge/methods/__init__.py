"""The registry of merge methods. Each method is one small module registering a `Method`.

A method has parameters (`Param`: global, or one value per model), and one of two kinds of kernel:

- an elementwise `kernel(xs, coeffs, acc, scratch)`: given flat chunks of its inputs (in their stored
  dtype) and the tensor's coefficients, it writes the merged values into a float64 accumulator;
- a per-tensor `job(ctx, coeffs) -> merge.tensorwise.Job`, for methods that need the whole tensor (top-k,
  ranks, norms, angles): the job sees the tensor in chunks, first in zero or more observation passes
  (statistics: histograms, block sums, Gram matrices), then in the output pass, where it writes float64
  values like an elementwise kernel. Chunks are aligned to the job's `granularity` (whole rows for
  row-wise methods), so memory stays a few chunk-sized buffers whatever the tensor size.

In both cases the caller (the streaming driver or `WeightSpace`) rounds the float64 values once to the
output dtype. Computing in float64 is what makes every output element equal the float64 reference rounded
to the output dtype (see merge/compute.py).

Coefficients of a tensor are a flat tuple of floats laid out by `Method.layout(n)`: each global parameter
one slot, each per-model parameter n slots; booleans are 0/1, choices the index into `Param.choices`.
`Method.unpack(coeffs, n)` turns them into a `Coeffs` with attribute access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from wiseft.errors import ConfigError

# kernel(xs, coeffs, acc, scratch): xs are same-length 1-D chunks; acc a float64 buffer of that length;
# scratch a merge.compute.Scratch with more reusable float64 buffers.
Kernel = Callable[[Sequence[torch.Tensor], tuple[float, ...], torch.Tensor, Any], None]


@dataclass(frozen=True)
class Param:
    """A method parameter. `scope`: "global" (one value per tensor) or "model" (one per model);
    `default` None means required. `kind`: float, int, bool or choice (one of `choices`; `aliases` map
    other spellings, e.g. mergekit's booleans, onto a choice)."""

    name: str
    scope: str = "global"
    default: Any = None
    kind: str = "float"
    choices: tuple[str, ...] = ()
    aliases: Mapping[Any, str] = field(default_factory=dict)
    doc: str = ""

    def encode(self, value: Any, where: str) -> float:
        """The value as a float slot; raises ConfigError naming `where` when it has the wrong type."""
        if self.kind == "choice":
            key = value if not isinstance(value, str) else value.lower()
            key = self.aliases.get(key, key)
            if key not in self.choices:
                raise ConfigError(f"{where}: {self.name} {value!r} is not one of {', '.join(self.choices)}")
            return float(self.choices.index(key))
        if self.kind == "bool":
            if isinstance(value, bool):
                return 1.0 if value else 0.0
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return 1.0 if value.lower() == "true" else 0.0
            raise ConfigError(f"{where}: {self.name} must be true or false, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {self.name} must be a number, got {value!r}")
        if self.kind == "int" and float(value) != int(value):
            raise ConfigError(f"{where}: {self.name} must be a whole number, got {value!r}")
        return float(value)

    def decode(self, slot: float) -> Any:
        if self.kind == "choice":
            return self.choices[int(slot)]
        if self.kind == "bool":
            return slot != 0.0
        if self.kind == "int":
            return int(slot)
        return slot

    def describe(self) -> str:
        default = "required" if self.default is None else f"{self.default}"
        kind = "|".join(self.choices) if self.kind == "choice" else self.kind
        per = " per model" if self.scope == "model" else ""
        return f"{self.name}{per} ({kind}, {default})"


class Coeffs:
    """A tensor's resolved parameters: `c.t`, `c.weight` (a tuple for per-model parameters), `c["lambda"]`."""

    def __init__(self, values: dict[str, Any]):
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def items(self):
        return self._values.items()


@dataclass(frozen=True)
class TensorContext:
    """What a per-tensor job knows about its tensor besides the values."""

    name: str
    shape: tuple[int, ...]
    n_models: int
    has_base: bool
    seed: int = 0

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Method:
    """A merge method: its name, a one-line formula, its parameters and its kernel or per-tensor job."""

    name: str
    summary: str
    coefficient: str  # the recipe field users set first: "delta", "weights" or a parameter such as "t"
    needs_base: bool | str  # True, False or "optional"
    min_models: int
    max_models: int | None
    # check(coeffs, extrapolate) -> None or an error message (without the tensor name)
    check: Callable[[tuple[float, ...], bool], str | None]
    kernel: Kernel | None = None
    # For a method that is a plain weighted sum Σ w_i·x_i computed by `linear.weighted_sum`: the weights
    # its kernel uses for `coeffs` (lets WeightSpace take the exact float32 shortcut, merge/compute.py).
    weights: Callable[[tuple[float, ...]], tuple[float, ...]] | None = None
    params: tuple[Param, ...] = ()
    job: Callable[[TensorContext, tuple[float, ...]], Any] | None = None
    randomized: bool = False  # draws random numbers: the recipe's `seed` matters
    reference: str = ""

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def layout(self, n_models: int) -> list[tuple[str, int | None]]:
        """(parameter, model index or None) of every coefficient slot."""
        out: list[tuple[str, int | None]] = []
        for p in self.params:
            out += [(p.name, i) for i in range(n_models)] if p.scope == "model" else [(p.name, None)]
        return out

    def unpack(self, coeffs: Sequence[float], n_models: int) -> Coeffs:
        values: dict[str, Any] = {}
        k = 0
        for p in self.params:
            if p.scope == "model":
                values[p.name] = tuple(p.decode(v) for v in coeffs[k : k + n_models])
                k += n_models
            else:
                values[p.name] = p.decode(coeffs[k])
                k += 1
        return Coeffs(values)

    def n_models(self, coeffs: Sequence[float]) -> int:
        """How many models a coefficient tuple of this method is laid out for."""
        n_global = sum(p.scope != "model" for p in self.params)
        n_model = sum(p.scope == "model" for p in self.params)
        return (len(coeffs) - n_global) // n_model if n_model else 0


@dataclass(frozen=True)
class CommandMethod:
    """A merge method that is its own command because it needs more than the weights (an evaluation):
    listed by `wiseft merge --list`, and named by the error for `--method NAME`."""

    name: str
    summary: str
    inputs: str
    params: str
    command: str  # how to run it, e.g. "wiseft soup CKPT... --task T --split S --n N --metric M -o OUT"


# The module that registers each method, by name as `get_method` compares names ("_" read as "-"): looking
# a method up loads its module alone; `all_methods` loads them all and lists them in this order.
MODULES = {
    "arcee-fusion": "arcee_fusion",
    "linear": "linear",
    "ties": "ties",
    "breadcrumbs": "breadcrumbs",
    "breadcrumbs-ties": "breadcrumbs",
    "dare-linear": "dare",
    "dare-ties": "dare",
    "della": "della",
    "della-linear": "della",
    "fisher": "fisher",
    "multislerp": "multislerp",
    "karcher": "karcher",
    "model-stock": "model_stock",
    "nearswap": "nearswap",
    "nuslerp": "nuslerp",
    "passthrough": "passthrough",
    "sce": "sce",
    "slerp": "slerp",
    "task-arithmetic": "task_arithmetic",
    "wise-ft": "wiseft",
    "greedy-soup": "greedy_soup",
}
_REGISTRY: dict[str, Method] = {}
_COMMANDS: dict[str, CommandMethod] = {}


def register(method: Method) -> Method:
    _REGISTRY[method.name] = method
    return method


def register_command(method: CommandMethod) -> CommandMethod:
    _COMMANDS[method.name] = method
    return method


def command_methods() -> list[CommandMethod]:
    _load_builtin()
    return _in_table_order(_COMMANDS.values())


def get_method(name: str) -> Method:
    key = _key(name)
    if key in MODULES:
        importlib.import_module(f"{__name__}.{MODULES[key]}")
    found = _find(key)
    if found is None:  # not in the table: every module (the error lists every method)
        _load_builtin()
        found = _find(key)
    if isinstance(found, CommandMethod):
        raise ConfigError(
            f"merge method {found.name} needs an evaluation, so it is its own command: {found.command}"
        )
    if found is None:
        raise ConfigError(
            f"unknown merge method {name!r}; choose one of {', '.join(sorted(_REGISTRY))} (wiseft merge --list)"
        )
    return found


def _key(name: str) -> str:
    return str(name).replace("_", "-").lower()


def _find(key: str) -> Method | CommandMethod | None:
    for method in (*_REGISTRY.values(), *_COMMANDS.values()):
        if _key(method.name) == key:
            return method
    return None


def all_methods() -> list[Method]:
    _load_builtin()
    return _in_table_order(_REGISTRY.values())


def _in_table_order(methods):
    """`methods` in the order of MODULES (whichever modules loaded first); others after, as registered."""
    order = {key: i for i, key in enumerate(MODULES)}
    return sorted(methods, key=lambda m: order.get(_key(m.name), len(order)))


def _load_builtin() -> None:
    for module in sorted(set(MODULES.values())):
        importlib.import_module(f"{__name__}.{module}")

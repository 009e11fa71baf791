"""Merge recipes: which method, which models, and the parameters of every tensor (schedules).

A recipe is a frozen dataclass, written as YAML (`wiseft merge --config recipe.yaml`) or built from flags:

    method: ties                    # wiseft merge --list
    models: [A, B]                  # wise-ft: exactly two, EARLY first
    base: BASE                      # methods over task vectors (ties, dare_*, …), optional for nuslerp/multislerp
    delta: 0.25                     # wise-ft: weight of EARLY (DESIGN §4)
    weights: [0.5, 0.5]             # per-model `weight` (linear w_i, task-arithmetic λ_i, …)
    parameters:                     # the method's other parameters (see --list): a value, or one per model
      density: 0.5                  # a per-model parameter given once applies to every model
      lambda: 1.0
    seed: 0                         # randomised methods (dare_*, della*): same inputs + seed → same bytes
    rules:                          # ordered; per parameter the first matching rule that sets it wins
      - match: 'model\\.embed_tokens\\.weight'   # a regex that must FULLY match the tensor name, or
        density: 1.0
      - filter: mlp                 # a substring of the name (mergekit's filter), "*" matches all
        model: 1                    # optionally for one model only (index into models)
        density: {gradient: [0.2, 0.8]}
    extrapolate: false              # allow δ (or linear weights) outside [0, 1]
    schedule: wiseft                # how gradients are placed over the layers: wiseft | mergekit
    dtype: bfloat16                 # output dtype (default: the inputs'; --dtype wins)
    tokenizer_from: BASE            # the output's tokenizer (--copy-tokenizer-from wins): an input, `base`, or
                                    # `union` (every input's tokens; merge/union.py)
    tokenizer_tokens: {...}         # per-token embedding sources, as mergekit's tokenizer.tokens (merge/tokens.py)
    pad_to_multiple_of: 64          # output vocabulary rows rounded up (padding rows: each model's mean row)
    chat_template: "{% … %}"        # written into the output's tokenizer_config.json; `auto`: the inputs'
                                    # most common template
    layer_range: [0, 28]            # (older recipes) must be every layer of the inputs
    slices:                         # layer slices (merge/slices.py): stack or select layers
      - sources: [{model: A, layer_range: [0, 16]}]
    allow_unmatched: false          # a rule that matches no tensor: a warning instead of an error
    fishers: [FA, FB]               # method fisher: each model's Fisher directory (wiseft fisher)

For each parameter of each tensor (and each model, for per-model parameters) the value is: the first rule
that matches the tensor and sets it, else the recipe's value, else the method's default. Values are
numbers, booleans, choices, or gradients (merge/schedule.py says how a gradient is evaluated per layer).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from wiseft.errors import ConfigError
from wiseft.merge import regex
from wiseft.merge.methods import Method, Param, get_method
from wiseft.merge.schedule import (
    SCHEDULES,
    Gradient,
    encode_value,
    evaluate,
    layer_count,
    layer_position,
    parse_value,
)
from wiseft.merge.slices import parse_slices, slice_models, slices_to_data
from wiseft.merge.tokens import parse_pad, parse_tokens, tokens_to_data

__all__ = ["Gradient", "Recipe", "Rule", "layer_count", "layer_position", "recipe_to_dict"]

RECIPE_KEYS = (
    "method", "models", "base", "delta", "weights", "parameters", "seed", "rules", "extrapolate",
    "schedule", "dtype", "tokenizer_from", "chat_template", "layer_range", "allow_unmatched",
    "slices", "fishers", "tokenizer_tokens", "pad_to_multiple_of",
)  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """A schedule rule: tensors whose name fully matches `match` (a regex) and contains `filter` (a
    substring; "*" or None: any) get these values; `model` limits it to one model's parameters."""

    match: str | None = None
    delta: Any = None
    weights: Any = None
    params: Any = None  # tuple of (name, value) for the method's other parameters
    filter: str | None = None
    model: int | None = None
    slice: int | None = None  # only tensors of this output slice (index into the recipe's slices)

    def get(self, name: str) -> Any:
        if name == "delta":
            return self.delta
        if name == "weight":
            return self.weights
        return dict(self.params or ()).get(name)

    def matches(self, tensor: str) -> bool:
        if self.match is not None and not regex.fullmatch(self.match, tensor):
            return False
        return self.filter is None or self.filter == "*" or self.filter in tensor

    def label(self, i: int) -> str:
        parts = [f"rules[{i}]"]
        if self.match is not None:
            parts.append(self.match)
        if self.filter is not None:
            parts.append(f"filter={self.filter}")
        if self.model is not None:
            parts.append(f"model={self.model}")
        if self.slice is not None:
            parts.append(f"slice={self.slice}")
        return " ".join(parts)


@dataclass(frozen=True)
class Recipe:
    method: str = "wise-ft"
    models: tuple[str, ...] = ()
    base: str | None = None
    delta: Any = None
    weights: Any = None
    rules: tuple[Rule, ...] = ()
    extrapolate: bool = False
    parameters: Any = None  # tuple of (name, value) once built; a mapping is accepted
    seed: int | None = None
    schedule: str = "wiseft"
    dtype: str | None = None
    tokenizer_from: str | None = None
    chat_template: str | None = None
    layer_range: tuple[int, int] | None = None
    allow_unmatched: bool = False  # a rule that matches no tensor: a warning instead of an error
    slices: Any = None  # layer slices (merge/slices.py): tuple of slices, each a tuple of Source
    fishers: tuple[str, ...] | None = None  # method fisher: one Fisher directory per model (wiseft fisher)
    tokenizer_tokens: Any = None  # per-token embedding sources (merge/tokens.py); a mapping is accepted
    pad_to_multiple_of: int | None = None  # output vocabulary rows rounded up (merge/tokens.py)

    def __post_init__(self) -> None:
        method = get_method(self.method)
        object.__setattr__(self, "method", method.name)
        if self.slices is not None and not self.models:  # passthrough: the models are the slices'
            object.__setattr__(self, "models", slice_models(self.slices, self.base))
        object.__setattr__(self, "models", tuple(str(m) for m in self.models))
        object.__setattr__(self, "slices", parse_slices(self.slices, method, self.models, self.base))
        self._check_inputs(method)
        self._check_fishers(method)
        object.__setattr__(self, "tokenizer_tokens", parse_tokens(self.tokenizer_tokens))
        object.__setattr__(self, "pad_to_multiple_of", parse_pad(self.pad_to_multiple_of))
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        object.__setattr__(
            self, "rules", tuple(_rule(r, i, method, len(self.models)) for i, r in enumerate(self.rules))
        )
        object.__setattr__(self, "parameters", _parameters(self.parameters, method, len(self.models)))
        self._check_coefficients(method)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0
        ):
            raise ConfigError(f"seed {self.seed!r} must be a non-negative integer")
        if method.randomized and self.seed is None:
            object.__setattr__(self, "seed", 0)
        if self.layer_range is not None:
            r = self.layer_range
            if not isinstance(r, (list, tuple)) or len(r) != 2 or not all(isinstance(v, int) for v in r):
                raise ConfigError(f"layer_range {r!r} must be [start, end]")
            object.__setattr__(self, "layer_range", tuple(r))

    def unmatched(self, names: list[str], model: str) -> list[str]:
        """Check that every rule matches one of the tensor `names` of `model` (issue 13: a rule that
        matches nothing is a silent no-op). Raises ConfigError naming the first such rule and three of the
        model's names; with `allow_unmatched`, returns one warning per such rule instead."""
        found = []
        for i, rule in enumerate(self.rules):
            if not any(rule.matches(n) for n in names):
                found.append(rule.label(i))
        if not found:
            return []
        picks = list(dict.fromkeys([names[0], names[len(names) // 2], names[-1]])) if names else []
        examples = f" (its tensors are named like {', '.join(picks)})"
        if not self.allow_unmatched:
            raise ConfigError(
                f"recipe rule {found[0]} matches no tensor of {model}{examples}; fix the pattern, or pass "
                "--allow-unmatched (`allow_unmatched: true`) to merge anyway"
            )
        return [
            f"recipe rule {label} matches no tensor of {model}{examples}; it has no effect" for label in found
        ]

    def _check_fishers(self, method: Method) -> None:
        if method.name != "fisher":
            if self.fishers is not None:
                raise ConfigError(f"method {method.name} takes no fishers; remove `fishers:`")
            return
        if not isinstance(self.fishers, (list, tuple)) or len(self.fishers) != len(self.models):
            raise ConfigError(
                f"method fisher needs one Fisher per model (`fishers:` or --fisher, {len(self.models)} of them; "
                "compute each with wiseft fisher MODEL --data FILE -o FISHER), got "
                f"{0 if not self.fishers else len(self.fishers)}"
            )
        object.__setattr__(self, "fishers", tuple(str(f) for f in self.fishers))

    def _check_inputs(self, method: Method) -> None:
        n = len(self.models)
        if n < method.min_models or (method.max_models is not None and n > method.max_models):
            want = (
                f"exactly {method.min_models}"
                if method.max_models == method.min_models
                else f"at least {method.min_models}"
            )
            raise ConfigError(f"method {method.name} needs {want} model(s), got {n}: {list(self.models)}")
        if method.needs_base is True and not self.base:
            raise ConfigError(f"method {method.name} needs a base model (--base or `base:` in the recipe)")
        if method.needs_base is False and self.base:
            raise ConfigError(f"method {method.name} takes no base model; remove --base/`base:`")

    def _check_coefficients(self, method: Method) -> None:
        n = len(self.models)
        has = {p.name for p in method.params}
        if "delta" in has:
            if self.weights is not None:
                raise ConfigError(f"method {method.name} is set by delta, not weights; use --delta")
            if self.delta is None:
                raise ConfigError(f"method {method.name} needs --delta (or `delta:` in the recipe)")
            object.__setattr__(self, "delta", parse_value(self.delta, "delta"))
            return
        if self.delta is not None and not has:
            raise ConfigError(f"method {method.name} takes no parameters; remove --delta")
        if self.delta is not None:
            use = "--weights" if "weight" in has else f"--param {method.coefficient}=…"
            raise ConfigError(f"method {method.name} is set by {method.coefficient}, not delta; use {use}")
        if "weight" not in has:
            if self.weights is not None and not has:
                raise ConfigError(
                    f"method {method.name} takes no weights and no parameters; remove --weights"
                )
            if self.weights is not None:
                raise ConfigError(
                    f"method {method.name} takes no weights; set {method.coefficient} (--param {method.coefficient}=…)"
                )
            return
        weights = self.weights
        if weights is None and method.name == "linear":  # a plain average when no weights are given
            weights = [1.0 / n] * n if n else []
        if weights is None:
            default = method.param("weight").default
            if default is None and not any(r.get("weight") is not None for r in self.rules):
                raise ConfigError(f"method {method.name} needs --weights (one per model)")
            return
        object.__setattr__(self, "weights", _per_model(weights, n, "weights", method.param("weight")))

    # --- per-tensor coefficients ------------------------------------------------------------------
    def params_dict(self) -> dict[str, Any]:
        return dict(self.parameters or ())

    def coefficients(
        self, name: str, n_layers: int, t: float | None = None, slice_index: int | None = None
    ) -> tuple[tuple[float, ...], str]:
        """The coefficient slots of tensor `name` (Method.layout) and which rules chose them; `t` (where
        gradients are evaluated) and `slice_index` are given for the tensors of layer slices."""
        method = get_method(self.method)
        t = layer_position(name, n_layers, self.schedule) if t is None else t
        slots: list[float] = []
        sources: list[str] = []
        for p in method.params:
            models = range(len(self.models)) if p.scope == "model" else (None,)
            for i in models:
                value, source = self._lookup(p, name, i, slice_index)
                slots.append(p.encode(evaluate(value, t, self.schedule), f"tensor {name}"))
                if source not in sources:
                    sources.append(source)
        labels = [s for s in sources if s != "default"]
        return tuple(slots), " + ".join(labels) if labels else "default"

    def _lookup(self, p: Param, name: str, i: int | None, slice_index: int | None) -> tuple[Any, str]:
        for k, rule in enumerate(self.rules):
            value = rule.get(p.name)
            if value is None or not rule.matches(name) or (rule.model is not None and rule.model != i):
                continue
            if rule.slice is not None and rule.slice != slice_index:
                continue
            if isinstance(value, tuple):
                value = value[i]
            return value, rule.label(k)
        value = self._top(p.name)
        if value is not None:
            return (value[i] if isinstance(value, tuple) else value), "default"
        if p.default is not None:
            return p.default, "default"
        who = f" of model {self.models[i]}" if i is not None else ""
        raise ConfigError(
            f"tensor {name}: no value for parameter {p.name}{who}; set it in the recipe or a rule that matches"
        )

    def _top(self, name: str) -> Any:
        if name == "delta":
            return self.delta
        if name == "weight":
            return self.weights
        return self.params_dict().get(name)

    def with_parameter(self, name: str, value: Any) -> Recipe:
        """This recipe with one parameter replaced (what a sweep over e.g. density or t varies)."""
        if name == "delta":
            return dataclasses.replace(self, delta=value)
        if name in ("weight", "weights"):
            return dataclasses.replace(self, weights=value)
        return dataclasses.replace(self, parameters={**self.params_dict(), name: value})


def _known(method: Method) -> list[str]:
    return [{"weight": "weights"}.get(p.name, p.name) for p in method.params]


def unknown_key(key: str, known: list[str] | tuple[str, ...], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint} (known: {', '.join(known)})")


def _parse_param(p: Param, raw: Any, n: int, where: str, model: int | None) -> Any:
    if p.scope == "model" and model is None and isinstance(raw, (list, tuple)):
        return _per_model(raw, n, where, p)
    if isinstance(raw, (list, tuple)):
        raise ConfigError(
            f"{where}: {p.name} is one value per tensor; write a gradient as {{gradient: [...]}}"
        )
    value = parse_value(raw, where, numeric=p.kind in ("float", "int"))
    if not isinstance(value, Gradient):
        p.encode(value, where)  # type check now, before any tensor is read
    elif p.kind not in ("float", "int"):
        raise ConfigError(f"{where}: {p.name} cannot be a gradient")
    return value


def _per_model(raw: Any, n: int, where: str, p: Param) -> tuple:
    if isinstance(raw, str):
        raw = raw.replace(",", " ").split()
    if not isinstance(raw, (list, tuple)):
        return parse_value(raw, where, numeric=p.kind in ("float", "int"))
    if len(raw) != n:
        raise ConfigError(f"{where}: {len(raw)} value(s) given for {n} model(s); give one per model")
    return tuple(_parse_param(p, v, n, f"{where}[{i}]", i) for i, v in enumerate(raw))


def _parameters(raw: Any, method: Method, n: int) -> tuple:
    if raw is None:
        return ()
    items = dict(raw).items() if not isinstance(raw, tuple) else raw
    out = []
    for key, value in items:
        p = method.param(key)
        if p is None or key in ("delta", "weight"):
            raise unknown_key(key, _known(method), f"parameters of method {method.name}")
        out.append((key, _parse_param(p, value, n, f"parameters.{key}", None)))
    return tuple(sorted(out))


def _rule(raw: Any, i: int, method: Method, n: int) -> Rule:
    if isinstance(raw, Rule):
        raw = _rule_dict(raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"rules[{i}] {raw!r}: expected a mapping with match/filter and parameter values")
    where = f"rules[{i}] ({raw.get('match', raw.get('filter'))!r})"
    model = raw.get("model")
    if model is not None and (isinstance(model, bool) or not isinstance(model, int) or not 0 <= model < n):
        raise ConfigError(f"{where}: model {model!r} must be an index into models (0..{n - 1})")
    values = {
        _PARAM_OF.get(k, k): v for k, v in raw.items() if k not in ("match", "filter", "model", "slice")
    }
    piece = raw.get("slice")
    if piece is not None and (isinstance(piece, bool) or not isinstance(piece, int) or piece < 0):
        raise ConfigError(f"{where}: slice {piece!r} must be an index into slices")
    names = {p.name for p in method.params}
    if not any(k in names for k in values):
        wanted = " or ".join(_known(method))
        raise ConfigError(f"rules[{i}] ({raw.get('match')!r}) must set {wanted} for method {method.name}")
    for key in values:
        if key not in names:
            raise unknown_key(key, ["match", "filter", "model", "slice", *_known(method)], f"rules[{i}]")
    _check_regex(raw.get("match"), i)
    parsed = {k: _parse_param(method.param(k), v, n, f"rules[{i}].{k}", model) for k, v in values.items()}
    params = tuple(sorted((k, v) for k, v in parsed.items() if k not in ("delta", "weight")))
    return Rule(
        raw.get("match"),
        parsed.get("delta"),
        parsed.get("weight"),
        params or None,
        raw.get("filter"),
        model,
        piece,
    )


_PARAM_OF = {"weights": "weight"}


def _rule_dict(rule: Rule) -> dict:
    out = {
        "match": rule.match,
        "filter": rule.filter,
        "model": rule.model,
        "slice": rule.slice,
        "delta": rule.delta,
        "weights": rule.weights,
    }
    out.update(dict(rule.params or ()))
    return {k: v for k, v in out.items() if v is not None}


def _check_regex(match: Any, i: int) -> None:
    if match is None:
        return
    regex.compile_rule(match)  # RE2: linear time; refuses backreferences and lookaround


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as plain YAML/JSON data (gradients as {gradient: [...]})."""
    out: dict[str, Any] = {"method": recipe.method, "models": list(recipe.models)}
    if recipe.base:
        out["base"] = recipe.base
    if recipe.delta is not None:
        out["delta"] = encode_value(recipe.delta)
    if recipe.weights is not None:
        out["weights"] = encode_value(recipe.weights)
    if recipe.parameters:
        out["parameters"] = {k: encode_value(v) for k, v in recipe.parameters}
    if recipe.seed is not None:
        out["seed"] = recipe.seed
    out["rules"] = [{k: encode_value(v) for k, v in _rule_dict(r).items()} for r in recipe.rules]
    out["extrapolate"] = recipe.extrapolate
    if recipe.allow_unmatched:
        out["allow_unmatched"] = True
    if recipe.slices is not None:
        out["slices"] = slices_to_data(recipe.slices)
    if recipe.fishers is not None:
        out["fishers"] = list(recipe.fishers)
    if recipe.tokenizer_tokens:
        out["tokenizer_tokens"] = tokens_to_data(recipe.tokenizer_tokens)
    if recipe.pad_to_multiple_of is not None:
        out["pad_to_multiple_of"] = recipe.pad_to_multiple_of
    for key in ("schedule", "dtype", "tokenizer_from", "chat_template", "layer_range"):
        value = getattr(recipe, key)
        if key == "layer_range" and value is not None:
            value = list(value)
        if value is not None and not (key == "schedule" and value == "wiseft"):
            out[key] = value
    return out

"""Read a mergekit configuration file as it is, into a recipe that merges as mergekit would.

mergekit's schema: `merge_method`, `models` (each `{model: NAME, parameters: {...}}`) or one `slices`
entry whose sources all cover every layer, `base_model`, `parameters`, `dtype`/`out_dtype`,
`tokenizer_source`/`tokenizer`, `chat_template`. How it is interpreted:

- A parameter setting is a value, a list of numbers (a gradient over the layers) or a list of
  `{filter, value}` conditions: the first condition whose filter is a substring of the tensor name (or
  "*", or no filter) applies; when none does, the lookup falls through. A model's own parameters are
  looked up first, then the slice's, then the global `parameters`, then the method's default. Each
  condition becomes one recipe rule (`filter:`, and `model:` for a model's parameters), in that order.
- Gradients are placed as mergekit places them (`schedule: mergekit`, merge/schedule.py): layer L of n at
  L/(n−1); embeddings, final norm and lm_head all at the first value.
- `dtype` is mergekit's compute dtype; here every merge computes in float64, and `out_dtype` (else
  `dtype`) is the output dtype. The base model listed among `models` is the base, not a model.
- A slice's `residual_weight` is accepted and ignored with a warning: mergekit declares it in its schema
  but none of its code reads it.
- mergekit's defaults are kept (linear normalises its weights); parameters mergekit does not use for the
  method are ignored as mergekit ignores them, with a warning; a key mergekit does not know is an error
  naming the closest known key.
"""

from __future__ import annotations

from typing import Any

from wiseft.errors import ConfigError
from wiseft.merge.methods import Method, all_methods, get_method
from wiseft.merge.recipe import unknown_key
from wiseft.merge.schedule import parse_value

TOP_KEYS = (
    "merge_method", "models", "slices", "modules", "base_model", "parameters", "dtype", "out_dtype",
    "tokenizer_source", "tokenizer", "chat_template",
)  # fmt: skip
MODEL_KEYS = ("model", "parameters")
SOURCE_KEYS = ("model", "layer_range", "parameters")
SLICE_KEYS = ("sources", "base_model", "parameters", "residual_weight")
TOKENIZER_KEYS = ("source", "tokens", "pad_to_multiple_of")
LATER = ("ram", "ramplus_tl")
MERGEKIT_DEFAULTS = {"linear": {"normalize": True}}


def detect(data: dict, path: str) -> str:
    """ "mergekit" when the file has `merge_method`, else "wiseft"."""
    if "merge_method" in data and "method" in data:
        raise ConfigError(f"{path}: has both merge_method (mergekit) and method (wiseft); keep one")
    return "mergekit" if "merge_method" in data else "wiseft"


def known_parameters() -> list[str]:
    names = {p.name for m in all_methods() for p in m.params if p.name != "delta"}
    return sorted(names | {"scale"})


def translate(data: dict, path: str) -> tuple[dict, list[str]]:
    """(our recipe as a mapping, warnings) for a mergekit configuration."""
    for key in data:
        if key not in TOP_KEYS:
            raise unknown_key(key, TOP_KEYS, f"{path} (mergekit configuration)")
    name = str(data["merge_method"])
    if name in LATER:
        raise ConfigError(
            f"{path}: merge_method {name} is not supported yet (wiseft merge --list shows the methods)"
        )
    method = get_method(name)
    if data.get("modules"):
        raise ConfigError(f"{path}: modules: is not supported yet; use models: or one full-range slice")
    warnings: list[str] = []
    entries, pieces, slice_base = _entries(data, path)
    for k, piece in enumerate(data.get("slices") or []):
        if piece.get("residual_weight") is not None:
            warnings.append(
                f"slices[{k}].residual_weight: mergekit's schema has this key but its code never reads it "
                "(v0.1.0 to today); ignored, as in mergekit"
            )
    base = data.get("base_model") or slice_base
    base = _reference(base, f"{path}: base_model") if base is not None else None
    if method.name == "passthrough" and pieces is not None:
        entries = _distinct([s for p in pieces for s in p["sources"]])
    models, params = _roles(method, entries, base, path, warnings)
    recipe: dict[str, Any] = {"method": method.name, "models": models, "schedule": "mergekit"}
    if base is not None and method.needs_base is not False:
        recipe["base"] = base
    rules = []
    if pieces is None:
        for i, model_params in enumerate(params):
            rules += _rules(method, model_params, f"{path}: models[{i}].parameters", warnings, model=i)
    else:
        recipe["slices"] = [{"sources": [_source_of(s) for s in piece["sources"]]} for piece in pieces]
        rules += _slice_rules(method, pieces, models, path, warnings)
    rules += _rules(method, data.get("parameters") or {}, f"{path}: parameters", warnings)
    defaults = MERGEKIT_DEFAULTS.get(method.name, {})
    if defaults:
        recipe["parameters"] = dict(defaults)
    recipe["rules"] = rules
    recipe.update(_output(data, path, base))
    if method.name == "karcher" and any(r.get("weights") is not None for r in rules):
        warnings.append("karcher: mergekit ignores per-model weights; wiseft honours them")
    return recipe, warnings


def _entries(data: dict, path: str) -> tuple[list[dict], list[dict] | None, Any]:
    """The model entries ({model, parameters}: `models`, or the sources of the first slice), the slices
    (each {sources, parameters}; None without `slices:`) and the first slice's base_model."""
    models, slices = data.get("models"), data.get("slices")
    if bool(models) == bool(slices):
        raise ConfigError(f"{path}: give exactly one of models: or slices:")
    if models:
        if not isinstance(models, list):
            raise ConfigError(f"{path}: models must be a list of {{model: NAME, parameters: {{...}}}}")
        return [_entry(m, i, MODEL_KEYS, path) for i, m in enumerate(models)], None, None
    if not isinstance(slices, list) or not all(isinstance(p, dict) for p in slices):
        raise ConfigError(f"{path}: slices must be a list of {{sources: [{{model, layer_range}}]}}")
    pieces = [_piece(p, k, path) for k, p in enumerate(slices)]
    return pieces[0]["sources"], pieces, slices[0].get("base_model")


def _piece(raw: dict, k: int, path: str) -> dict:
    for key in raw:
        if key not in SLICE_KEYS:
            raise unknown_key(key, SLICE_KEYS, f"{path}: slices[{k}]")
    residual = raw.get("residual_weight")
    if residual is not None and (isinstance(residual, bool) or not isinstance(residual, (int, float))):
        raise ConfigError(f"{path}: slices[{k}].residual_weight must be a number, got {residual!r}")
    sources = raw.get("sources")
    if not isinstance(sources, list) or not sources:
        raise ConfigError(f"{path}: slices[{k}].sources must be a non-empty list of {{model, layer_range}}")
    entries = [_entry(s, j, SOURCE_KEYS, f"{path}: slices[{k}].sources") for j, s in enumerate(sources)]
    params = raw.get("parameters") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: slices[{k}].parameters must be a mapping of parameter names to values")
    return {"sources": entries, "parameters": params}


def _distinct(entries: list[dict]) -> list[dict]:
    """One entry per model (passthrough names a model in several slices)."""
    seen: dict[str, dict] = {}
    for e in entries:
        seen.setdefault(e["model"], {"model": e["model"]})
    return list(seen.values())


def _source_of(entry: dict) -> dict:
    return {"model": entry["model"], "layer_range": entry.get("layer_range")}


def _slice_rules(method: Method, pieces: list[dict], models: list[str], path: str, warnings: list[str]):
    """mergekit's lookup order within slice k: the source's own parameters, then the slice's."""
    rules: list[dict] = []
    for k, piece in enumerate(pieces):
        for j, src in enumerate(piece["sources"]):
            if src.get("parameters") and src["model"] in models:
                where = f"{path}: slices[{k}].sources[{j}].parameters"
                found = _rules(method, src["parameters"], where, warnings, model=models.index(src["model"]))
                rules += [{**r, "slice": k} for r in found]
    for k, piece in enumerate(pieces):
        found = _rules(method, piece["parameters"], f"{path}: slices[{k}].parameters", warnings)
        rules += [{**r, "slice": k} for r in found]
    return rules


def _entry(raw: Any, i: int, keys: tuple[str, ...], where: str) -> dict:
    if isinstance(raw, str):
        raw = {"model": raw}
    if not isinstance(raw, dict) or "model" not in raw:
        raise ConfigError(f"{where}[{i}]: expected {{model: NAME, parameters: {{...}}}}, got {raw!r}")
    for key in raw:
        if key not in keys:
            raise unknown_key(key, keys, f"{where}[{i}]")
    out = dict(raw)
    out["model"] = _reference(raw["model"], f"{where}[{i}].model")
    if out.get("parameters") is not None and not isinstance(out["parameters"], dict):
        raise ConfigError(f"{where}[{i}].parameters must be a mapping of parameter names to values")
    return out


def _reference(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{where}: expected a model path or Hub name, got {raw!r}")
    if "+" in raw:
        raise ConfigError(
            f"{where}: {raw!r} applies a LoRA (model+lora); merge the LoRA into the model first"
        )
    return raw


def _roles(method: Method, entries: list[dict], base: str | None, path: str, warnings: list[str]):
    """(the recipe's models, each model's parameters), with the base taken out where it is the base."""
    names = [e["model"] for e in entries]
    if method.needs_base is True and base is None:
        raise ConfigError(f"{path}: merge_method {method.name} needs base_model")
    if method.name == "slerp":
        if base is None or base not in names:
            raise ConfigError(f"{path}: slerp needs base_model, one of its two models (t = 0 gives it)")
        entries = sorted(entries, key=lambda e: e["model"] != base)
    elif base is not None and method.needs_base is not False:
        entries = [e for e in entries if e["model"] != base]
    elif base is not None and base not in names:
        warnings.append(
            f"{method.name} takes no base; base_model {base} is merged as one more model, as mergekit does"
        )
        entries = entries + [{"model": base}]
    return [e["model"] for e in entries], [e.get("parameters") or {} for e in entries]


def _rules(
    method: Method, params: dict, where: str, warnings: list[str], model: int | None = None
) -> list[dict]:
    rules = []
    for name, setting in params.items():
        p = method.param(name)
        if name not in known_parameters():
            raise unknown_key(name, known_parameters(), where)
        if p is None or (model is not None and p.scope != "model"):
            level = "a model's" if p is not None else f"{method.name}'s"
            warnings.append(
                f"{where}.{name} is not one of {level} parameters; mergekit ignores it, and so does wiseft"
            )
            continue
        key = "weights" if name == "weight" else name
        for flt, value in _conditions(setting, f"{where}.{name}", p.kind in ("float", "int")):
            rule = {"filter": flt, key: value}
            if model is not None:
                rule["model"] = model
            rules.append({k: v for k, v in rule.items() if v is not None or k == key})
    return rules


def _conditions(setting: Any, where: str, numeric: bool) -> list[tuple[str | None, Any]]:
    """A mergekit setting as [(filter, value)]: a value or gradient applies everywhere."""
    if isinstance(setting, dict):
        setting = [setting]
    if isinstance(setting, list) and setting and all(isinstance(c, dict) for c in setting):
        out = []
        for i, cond in enumerate(setting):
            for key in cond:
                if key not in ("filter", "value"):
                    raise unknown_key(key, ("filter", "value"), f"{where}[{i}]")
            if "value" not in cond:
                raise ConfigError(f"{where}[{i}]: a condition needs value (and optionally filter)")
            flt = cond.get("filter")
            out.append(
                (
                    None if flt in (None, "*") else str(flt),
                    _value(cond["value"], f"{where}[{i}].value", numeric),
                )
            )
        return out
    return [(None, _value(setting, where, numeric))]


def _value(raw: Any, where: str, numeric: bool) -> Any:
    if isinstance(raw, list):
        if not raw or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
            raise ConfigError(f"{where}: a gradient is a non-empty list of numbers, got {raw!r}")
        return {"gradient": list(raw)}
    return parse_value(raw, where, numeric=numeric)


def _output(data: dict, path: str, base: str | None) -> dict:
    out: dict[str, Any] = {}
    dtype = data.get("out_dtype") or data.get("dtype")
    if dtype:
        out["dtype"] = str(dtype)
    source = data.get("tokenizer_source")
    tokenizer = data.get("tokenizer")
    if tokenizer is not None:
        if source is not None:
            raise ConfigError(f"{path}: give tokenizer_source or tokenizer, not both (as mergekit)")
        if not isinstance(tokenizer, dict):
            raise ConfigError(f"{path}: tokenizer must be a mapping {{source: ...}}")
        for key in tokenizer:
            if key not in TOKENIZER_KEYS:
                raise unknown_key(key, TOKENIZER_KEYS, f"{path}: tokenizer")
        if tokenizer.get("tokens"):
            out["tokenizer_tokens"] = tokenizer["tokens"]
        if tokenizer.get("pad_to_multiple_of") is not None:
            out["pad_to_multiple_of"] = tokenizer["pad_to_multiple_of"]
        source = tokenizer.get("source", "union")
    if source == "base":
        if base is None:
            raise ConfigError(f"{path}: tokenizer_source: base needs base_model")
        out["tokenizer_from"] = base
    elif source is not None:
        out["tokenizer_from"] = str(source)
    if data.get("chat_template"):
        out["chat_template"] = _chat_template(str(data["chat_template"]), path)
    return out


def _chat_template(value: str, path: str) -> str:
    if value == "auto" or ("{" in value and len(value) >= 20):
        return value
    raise ConfigError(
        f"{path}: chat_template {value!r} names one of mergekit's bundled templates, which wiseft does not "
        "ship; give the Jinja text itself, or auto (the template most of the inputs have)"
    )

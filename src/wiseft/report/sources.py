"""Where a report's results come from, besides a sweep's results.json.

- `metrics.json` of `wiseft score` / `wiseft eval`: one summary (the `summarize()` dict plus "variant" and
  "grader"), or {"variants": [{"name", "summary"}], "grader"}. Those carry no kind, δ, T or step, so they are
  read from the variant name in the sample-record convention (`delta=0.250,T=1.0`, `step=400`); a name
  without them is a model whose samples came from elsewhere ("imported"), not the base model.
"""

from __future__ import annotations

import re
from typing import Any

from wiseft.errors import ConfigError
from wiseft.results import RunResults

_FIELD = {
    "delta": re.compile(r"(?:^|[,;\s])delta=([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"),
    "temperature": re.compile(r"(?:^|[,;\s])T=(\d+(?:\.\d*)?)"),
    "step": re.compile(r"(?:^|[,;\s-])step[=-]?(\d+)"),
}


def variant_from_name(name: str, summary: dict) -> dict:
    """A results variant from a name like `delta=0.250,T=1.0`: δ, T and step where the name has them."""
    found: dict[str, Any] = {}
    for key, pattern in _FIELD.items():
        m = pattern.search(name)
        if m:
            found[key] = int(m.group(1)) if key == "step" else float(m.group(1))
    if "delta" in found:
        kind = "mix"
    elif "step" in found:
        kind = "checkpoint"
    elif "temperature" in found:
        kind = "temperature"
    else:
        kind = "imported"
    return {
        "name": name,
        "kind": kind,
        "delta": found.get("delta"),
        "temperature": found.get("temperature"),
        "step": found.get("step"),
        "summary": summary,
    }


def is_metrics_json(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    if isinstance(data.get("metrics"), dict) and "variants" not in data:
        return True
    variants = data.get("variants")
    return (
        isinstance(variants, list)
        and bool(variants)
        and all(isinstance(v, dict) and "kind" not in v and "summary" in v for v in variants)
    )


def results_from_metrics(data: dict, source: str) -> RunResults:
    """The results of a `wiseft score` / `wiseft eval` metrics.json."""
    versions = {"grader": data["grader"]} if data.get("grader") else {}
    config = {"source": data["source"]} if data.get("source") else {}
    if "variants" in data:
        variants = []
        for i, v in enumerate(data["variants"]):
            name = v.get("name")
            name = str(name) if name is not None else f"variant-{i}"
            if not isinstance(v.get("summary"), dict):
                raise ConfigError(f"{source}: variants[{i}] ({name}): field 'summary' must be an object")
            variants.append(variant_from_name(name, v["summary"]))
    else:
        summary = {k: v for k, v in data.items() if k not in ("variant", "grader", "source")}
        name = data.get("variant")
        variants = [variant_from_name(str(name) if name is not None else "model", summary)]
    return RunResults.from_json({"config": config, "versions": versions, "variants": variants}, source)

"""Typed results: what an evaluation run produces, and the schema of its `results.json`.

`RunResults.to_json()` *is* the results.json of docs/ARCHITECTURE.md ("Results"), and
`RunResults.from_json(data, source)` reads one back (the report does), checking every field it uses and
naming the field at fault. A variant's per-problem samples ride along in memory (`VariantResult.per_problem`,
for selection and paired claims) but are not part of the JSON.

The same module owns the other output schema, the `metrics.json` of `wiseft eval` / `wiseft score`
(`metrics_json`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wiseft.claims import Claim
from wiseft.errors import ConfigError
from wiseft.records import ProblemSamples

KINDS = ("checkpoint", "mix", "temperature", "base")


@dataclass
class VariantResult:
    """One evaluated variant: what it was (kind, δ, T, training step) and its `metrics.summarize` dict.

    `splits` holds the selection metric on the validation and test splits when a split chose the best
    variant; `per_problem` the graded samples of each problem (in memory only)."""

    name: str
    kind: str
    delta: float | None
    temperature: float | None
    step: int | None
    summary: dict
    splits: dict | None = None
    per_problem: tuple[ProblemSamples, ...] = field(default=(), repr=False, compare=False)
    ablation: dict | None = None  # a layer/module ablation: {"layers", "modules"} it interpolates

    def to_json(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "delta": self.delta, "temperature": self.temperature,
               "step": self.step, "summary": self.summary}  # fmt: skip
        if self.splits is not None:
            out["splits"] = self.splits
        if self.ablation is not None:
            out["ablation"] = self.ablation
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str) -> VariantResult:
        if not isinstance(obj, dict):
            raise ConfigError(f"{where} must be an object, got {type(obj).__name__}")
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: field 'name' must be a non-empty string")
        where = f"{where} ({name})"
        kind = obj.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{where}: field 'kind' is {kind!r}; expected one of {', '.join(KINDS)}")
        summary = obj.get("summary")
        if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
            raise ConfigError(f"{where}: field 'summary' must be a summarize() dict with 'metrics'")
        step = _opt_number(obj.get("step"), f"{where}: field 'step'")
        splits = obj.get("splits")
        return cls(
            name=name,
            kind=kind,
            delta=_opt_number(obj.get("delta"), f"{where}: field 'delta'"),
            temperature=_opt_number(obj.get("temperature"), f"{where}: field 'temperature'"),
            step=None if step is None else int(step),
            summary=summary,
            splits=splits if isinstance(splits, dict) else None,
            ablation=obj.get("ablation") if isinstance(obj.get("ablation"), dict) else None,
        )


@dataclass(frozen=True)
class Selection:
    """The best variant, how it was chosen, and its selection metric: on the validation and held-out test
    splits, or (`value`) on all problems when chosen in-sample."""

    metric: str
    variant: str
    how: str
    validation: dict | None = None
    test: dict | None = None
    value: dict | None = None
    note: str | None = None  # what a reader must know about the choice (e.g. why it is in-sample)

    @property
    def in_sample(self) -> bool:
        return self.test is None

    @classmethod
    def highest(
        cls, variants: Sequence[VariantResult], metric: str, how: str, note: str | None = None
    ) -> Selection:
        """The variant with the highest `metric` on all its problems (an in-sample choice; `how` says
        among which variants and why in-sample)."""
        best = max(variants, key=lambda v: v.summary["metrics"][metric]["value"])
        return cls(metric, best.name, how, value=best.summary["metrics"][metric], note=note)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"metric": self.metric, "variant": self.variant, "how": self.how}
        for key in ("validation", "test", "value", "note"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Selection | None:
        if not isinstance(obj, dict):
            return None
        metric, variant = obj.get("metric"), obj.get("variant")
        if not isinstance(metric, str) or not isinstance(variant, str):
            raise ConfigError(f"{where}: fields 'metric' and 'variant' must be strings")
        parts = {
            k: obj.get(k) if isinstance(obj.get(k), dict) else None for k in ("validation", "test", "value")
        }
        return cls(metric, variant, str(obj.get("how") or ""), **parts)


@dataclass
class RunResults:
    """An evaluation run: its resolved config, the versions that ran it, the task, every variant in
    evaluation order and the best one. Trajectories add `early_step`; the demo adds `base`, `roles`
    (which variants are early, final, the chosen mix, the temperatures), `claims`, `paths`, `timings`,
    `cpu_seconds` and `machine`."""

    config: dict
    versions: dict
    variants: list[VariantResult]
    best: Selection | None = None
    task: dict | None = None
    base: dict | None = None
    roles: dict | None = None
    early_step: int | None = None
    claims: list[Claim] | None = None
    paths: dict | None = None
    timings: dict | None = None
    cpu_seconds: dict | None = None
    machine: dict | None = None
    warnings: list[str] | None = None  # what a reader must know (e.g. thinking blocks that never close)

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"config": self.config, "versions": self.versions}
        if self.task is not None:
            out["task"] = self.task
        out["variants"] = [v.to_json() for v in self.variants]
        out["best"] = self.best.to_json() if self.best is not None else None
        for key in ("base", "roles", "early_step"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.claims is not None:
            out["claims"] = [c.as_dict() for c in self.claims]
        for key in ("paths", "timings", "cpu_seconds", "machine", "warnings"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_json(cls, data: Any, source: str = "results") -> RunResults:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        raw = data.get("variants")
        if not isinstance(raw, list):
            raise ConfigError(
                f"{source}: field 'variants' must be a list of variants (see docs/ARCHITECTURE.md)"
            )
        variants = [VariantResult.from_json(v, f"{source}: variants[{i}]") for i, v in enumerate(raw)]
        names = [v.name for v in variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{source}: variant name(s) {', '.join(dupes)} appear more than once")
        early = data.get("early_step")
        return cls(
            config=_mapping(data, "config"),
            versions=_mapping(data, "versions"),
            variants=variants,
            best=Selection.from_json(data.get("best"), f"{source}: best"),
            task=data.get("task") if isinstance(data.get("task"), dict) else None,
            base=data.get("base") if isinstance(data.get("base"), dict) else None,
            roles=data.get("roles") if isinstance(data.get("roles"), dict) else None,
            early_step=int(early) if _finite(early) else None,
            claims=[Claim.from_dict(c) for c in data.get("claims") or [] if isinstance(c, dict)] or None,
            paths=data.get("paths") if isinstance(data.get("paths"), dict) else None,
            timings=data.get("timings") if isinstance(data.get("timings"), dict) else None,
            cpu_seconds=data.get("cpu_seconds") if isinstance(data.get("cpu_seconds"), dict) else None,
            machine=data.get("machine") if isinstance(data.get("machine"), dict) else None,
            warnings=[str(w) for w in data.get("warnings") or [] if isinstance(w, str)] or None,
        )


def metrics_json(
    summaries: list[tuple[str | None, dict]], grader: str | None, source: str | None, task: dict | None = None
) -> dict:
    """The metrics.json of `wiseft eval` / `wiseft score`, one shape whatever the number of variants:
    {"variants": [{"name", "summary"}, …], "grader", "source"} (and "task" when the run knows it)."""
    body: dict[str, Any] = {"variants": [{"name": n, "summary": s} for n, s in summaries], "grader": grader}
    if source is not None:
        body["source"] = source
    if task is not None:
        body["task"] = task
    return body


def _mapping(data: dict, key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _opt_number(x: Any, where: str) -> float | None:
    if x is None:
        return None
    if not _finite(x):
        raise ConfigError(f"{where} must be a finite number or null, got {x!r}")
    return float(x)

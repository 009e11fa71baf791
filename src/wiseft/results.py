"""Typed results: what an evaluation run produces, and the schema of its `results.json`.

`RunResults.to_json()` *is* the results.json of docs/ARCHITECTURE.md ("Results"), and
`RunResults.from_json(data, source)` reads one back (the report does), checking every field it uses and
naming the field at fault. A variant's per-problem samples ride along in memory (`VariantResult.per_problem`,
for selection and paired claims) but are not part of the JSON.

The same module owns the other output schema, the `metrics.json` of `wiseft eval` / `wiseft score`
(`metrics_json`), and `selection_note`: what a reader must be told when the best variant was not clearly
chosen (a tie, an interval that overlaps an endpoint's, a "best δ" that is an endpoint itself).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wiseft.claims import Claim
from wiseft.errors import ConfigError
from wiseft.metrics import ProblemTable
from wiseft.records import ProblemSamples

# "imported": samples brought in from elsewhere (`wiseft store import`, a metrics.json) whose name says no
# δ, T or step.
KINDS = ("checkpoint", "mix", "temperature", "base", "imported")


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
    # per_problem's metric values, as summarised (in memory only; paired comparisons reuse them)
    table: ProblemTable | None = field(default=None, repr=False, compare=False)
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
    `cpu_seconds` and `machine`; a demo over several seeds adds `replicates` (`claims.replicate_table`)."""

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
    replicates: dict | None = None

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
        for key in ("paths", "timings", "cpu_seconds", "machine", "warnings", "replicates"):
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
            replicates=_replicates(data.get("replicates"), source),
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


def _replicates(obj: Any, source: str) -> dict | None:
    """The replicate table of a demo over several seeds, checked where the report reads it."""
    if obj is None:
        return None
    rows = obj.get("rows") if isinstance(obj, dict) else None
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and isinstance(r.get("held"), dict) for r in rows
    ):
        raise ConfigError(f"{source}: field 'replicates' must hold 'rows', each with a 'held' object")
    return obj


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


# --- how firm is the choice of the best variant? ------------------------------------------------------------
TIE_EPS = 1e-12


@dataclass(frozen=True)
class SelectionNote:
    """What the reader must be told about the best variant: `tie` when the data did not single it out
    (reports mark no variant as chosen then), and the sentences that say why (`text`)."""

    tie: bool
    text: str


def selection_note(results: RunResults) -> str | None:
    """One or more sentences when "the best variant" is weaker than it sounds, else None: every variant
    (or some) ties with it on the selection metric; its 95% interval overlaps the interval of an endpoint
    (δ=0, the final checkpoint; δ=1, the early one); or its δ is 0 or 1, an endpoint itself, not a mix.
    A pure function of the results, for the report and the CLI's closing table."""
    note = check_selection(results)
    return note.text if note is not None else None


def check_selection(results: RunResults) -> SelectionNote | None:
    """`selection_note` with the tie flag (see `SelectionNote`)."""
    best = results.best
    chosen = next((v for v in results.variants if best is not None and v.name == best.variant), None)
    if best is None or chosen is None or _stat(chosen, best, "choice") is None:
        return None
    sentences = []
    tie = _tie_sentence(results, chosen, best)
    if tie:
        sentences.append(tie)
    if chosen.kind == "mix" and chosen.delta in (0.0, 1.0):
        which = "final" if chosen.delta == 0.0 else "early"
        sentences.append(f"The best δ is {chosen.delta:g}: the {which} checkpoint itself, not a mix.")
    elif chosen.kind == "mix" and not tie:
        overlap = _overlap_sentence(results, chosen, best)
        if overlap:
            sentences.append(overlap)
    return SelectionNote(bool(tie), " ".join(sentences)) if sentences else None


def _metric_label(metric: str) -> str:
    return "Pass" + metric[4:] if metric.startswith("pass@") else metric


def _stat(v: VariantResult, best: Selection, use: str) -> dict | None:
    """The variant's selection metric {value, lo?, hi?}: on the split that made the choice (`use`
    "choice": validation) or reports it ("report": test), else on all problems. A variant with no
    validation value was no candidate when a validation split chose (the demo's checkpoints): None."""
    split = {"choice": "validation", "report": "test"}[use]
    if use == "choice" and best.validation is not None and not isinstance(v.splits, dict):
        return None
    if getattr(best, split) is not None and isinstance(v.splits, dict):
        part = v.splits.get(split)
        stat = part.get(best.metric) if isinstance(part, dict) else None
    else:
        stat = v.summary.get("metrics", {}).get(best.metric)
    return stat if isinstance(stat, dict) and _finite(stat.get("value")) else None


def _where(best: Selection, use: str) -> str:
    split = {"choice": "validation", "report": "test"}[use]
    return f"the {split} split" if getattr(best, split) is not None else "all problems"


def _tie_sentence(results: RunResults, chosen: VariantResult, best: Selection) -> str | None:
    candidates = [v for v in results.variants if _stat(v, best, "choice") is not None]
    value = _stat(chosen, best, "choice")["value"]
    tied = [
        v for v in candidates if v is not chosen and abs(_stat(v, best, "choice")["value"] - value) <= TIE_EPS
    ]
    if not tied:
        return None
    on = f"on {_metric_label(best.metric)} ({100 * value:.1f} % on {_where(best, 'choice')})"
    if len(tied) + 1 == len(candidates):
        return (
            f"All {len(candidates)} variants tie {on}: the run singles none out, so none is marked as chosen."
        )
    names = ", ".join(v.name for v in tied[:3]) + (f" and {len(tied) - 3} more" if len(tied) > 3 else "")
    return f"{chosen.name} ties with {names} {on}: the choice among them is arbitrary, so none is marked as chosen."


def _overlap_sentence(results: RunResults, chosen: VariantResult, best: Selection) -> str | None:
    mine = _stat(chosen, best, "report")
    if mine is None or not (_finite(mine.get("lo")) and _finite(mine.get("hi"))):
        return None
    hits = []
    for delta, role in ((0.0, "final"), (1.0, "early")):
        end = endpoint(results, chosen, delta)
        theirs = _stat(end, best, "report") if end is not None else None
        if theirs is None or not (_finite(theirs.get("lo")) and _finite(theirs.get("hi"))):
            continue
        if mine["lo"] <= theirs["hi"] and theirs["lo"] <= mine["hi"]:
            hits.append(f"the {role} checkpoint's (δ={delta:g}, {end.name}: {_interval(theirs)})")
    if not hits:
        return None
    return (
        f"The 95% interval of the best δ={chosen.delta:g} on {_metric_label(best.metric)} "
        f"({_where(best, 'report')}: {_interval(mine)}) overlaps {' and '.join(hits)}: "
        f"this run does not separate the mix from {'that endpoint' if len(hits) == 1 else 'those endpoints'}."
    )


def _interval(stat: dict) -> str:
    return f"{100 * stat['value']:.1f} [{100 * stat['lo']:.1f}, {100 * stat['hi']:.1f}] %"


def endpoint(results: RunResults, mix: VariantResult, delta: float) -> VariantResult | None:
    """The model at δ=0 (the final checkpoint) or δ=1 (the early one) of `mix`'s line, at its temperature:
    a mix sampled at that δ (same step), else the demo's `roles`, else the checkpoint of the step
    (δ=0: the mix's own step; δ=1: `early_step`)."""
    same_t = [v for v in results.variants if v is not mix and v.temperature == mix.temperature]
    for v in same_t:
        if v.kind == "mix" and v.delta == delta and v.step == mix.step:
            return v
    role = (results.roles or {}).get("final" if delta == 0.0 else "early")
    for v in same_t:
        if v.name == role and v.delta is None:
            return v
    step = mix.step if delta == 0.0 else results.early_step
    for v in same_t:
        if step is not None and v.kind == "checkpoint" and v.delta is None and v.step == step:
            return v
    return None

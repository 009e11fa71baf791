"""A read-only view of `results.json` that the plots and tables share.

The results dict (docs/ARCHITECTURE.md, "Sweep and report") is a flat list of variants, each with a
`summarize()` dict. Plots need it grouped differently: the training trajectory (checkpoints by step, raw
and mixed), curves over δ, the temperatures of the final model. This module does that grouping once, checks
the shape on the way in, and names the field at fault when something is missing, so the plotting code can
stay short and assume well-formed input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wiseft.results import RunResults, SelectionNote, check_selection

METRIC_RE = re.compile(r"^(pass|maj|best|wmaj)@(\d+)$")
METRIC_LABEL = {"pass": "Pass", "maj": "maj", "best": "best", "wmaj": "wmaj"}
# In table and plot order; best@k and weighted maj@k (wmaj@k) exist only with verifier scores.
FAMILIES = ("pass", "maj", "best", "wmaj")


@dataclass(frozen=True)
class Stat:
    """One number with its 95% bootstrap interval (lo/hi are None when the summary has no interval)."""

    value: float
    lo: float | None = None
    hi: float | None = None

    @property
    def has_interval(self) -> bool:
        return self.lo is not None and self.hi is not None


def as_stat(obj: Any) -> Stat | None:
    """Read `{"value", "lo", "hi"}` or a bare number; None for missing or non-finite values."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        value = obj.get("value")
        if not _finite(value):
            return None
        lo, hi = obj.get("lo"), obj.get("hi")
        if _finite(lo) and _finite(hi):
            return Stat(float(value), float(lo), float(hi))
        return Stat(float(value))
    if _finite(obj):
        return Stat(float(obj))
    return None


def _with_interval(section: dict, key: str) -> Stat | None:
    """`section[key]` as a Stat, with the interval `section["ci"][key]` when the summary has one."""
    stat = as_stat(section.get(key))
    ci = section.get("ci")
    interval = ci.get(key) if isinstance(ci, dict) else None
    if stat is not None and isinstance(interval, list) and len(interval) == 2:
        if all(_finite(x) for x in interval):
            return Stat(stat.value, float(interval[0]), float(interval[1]))
    return stat


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def metric_label(name: str) -> str:
    """`pass@16` → `Pass@16`, `maj@8` → `maj@8` (the spelling the papers use)."""
    m = METRIC_RE.match(name)
    return f"{METRIC_LABEL[m.group(1)]}@{m.group(2)}" if m else name


@dataclass(frozen=True)
class VariantView:
    name: str
    kind: str
    delta: float | None
    temperature: float | None
    step: int | None
    summary: dict = field(repr=False, compare=False)

    def metric(self, name: str) -> Stat | None:
        return as_stat(self.summary.get("metrics", {}).get(name))

    def ks(self, family: str = "pass") -> list[int]:
        out = []
        for key in self.summary.get("metrics", {}):
            m = METRIC_RE.match(key)
            if m and m.group(1) == family and self.metric(key) is not None:
                out.append(int(m.group(2)))
        return sorted(out)

    def section(self, name: str) -> dict:
        value = self.summary.get(name)
        return value if isinstance(value, dict) else {}

    def bv(self, key: str) -> Stat | None:
        return _with_interval(self.section("bias_variance"), key)

    def bv_at(self, key: str, k: int) -> Stat | None:
        """`bias_variance[key][k]`; JSON turns the int k into a string, so accept both."""
        table = self.section("bias_variance").get(key)
        if not isinstance(table, dict):
            return None
        return as_stat(table.get(str(k), table.get(k)))

    def diversity(self, key: str) -> Stat | None:
        return _with_interval(self.section("diversity"), key)

    def tokens(self, key: str) -> Stat | None:
        return as_stat(self.section("tokens").get(key))

    def rho_hist(self) -> tuple[list[float], list[float]] | None:
        div = self.section("diversity")
        counts, edges = div.get("rho_hist"), div.get("rho_edges")
        if not isinstance(counts, list) or not isinstance(edges, list) or not counts:
            return None
        if len(edges) != len(counts) + 1:
            return None
        return [float(c) for c in counts], [float(e) for e in edges]

    @property
    def short(self) -> str:
        """A compact legend label: `δ=0.25`, `T=1.2`, `step 400`, else the name."""
        if self.kind == "temperature" and self.temperature is not None:
            return f"T={self.temperature:g}"
        if self.kind == "mix" and self.delta is not None:
            return f"δ={self.delta:g}" + (f", step {self.step}" if self.step is not None else "")
        if self.kind == "checkpoint" and self.step is not None:
            return f"step {self.step}"
        return self.name


@dataclass(frozen=True)
class Curve:
    """Variants along one axis (δ, step or temperature) at positions `x`, sorted, with a legend label.

    The position is explicit because an endpoint may be a variant that does not carry the axis value
    itself: the raw final checkpoint is δ=0 of a sweep, the early checkpoint δ=1.
    """

    label: str
    axis: str  # "delta" | "step" | "temperature"
    variants: tuple[VariantView, ...]
    x: tuple[float, ...]

    def xs(self) -> list[float]:
        return list(self.x)

    def points(self) -> list[tuple[float, VariantView]]:
        return list(zip(self.x, self.variants, strict=True))


def _curve(label: str, axis: str, pts: Iterable[tuple[float, VariantView]]) -> Curve:
    pts = sorted(pts, key=lambda p: p[0])
    return Curve(label, axis, tuple(v for _, v in pts), tuple(float(x) for x, _ in pts))


class Results:
    """A `RunResults` (typed results, validated on the way in) plus the groupings the report draws."""

    def __init__(self, results: RunResults | dict, source: str = "results"):
        run = results if isinstance(results, RunResults) else RunResults.from_json(results, source)
        self.run = run
        self.source = source
        self.config = run.config
        self.versions = run.versions
        self.best = run.best
        self.roles = run.roles or {}
        self.early_step = run.early_step
        self.task = run.task or {}
        self.claims = run.claims or []
        self.replicates = run.replicates
        self.variants = [
            VariantView(v.name, v.kind, v.delta, v.temperature, v.step, v.summary) for v in run.variants
        ]
        self.selection: SelectionNote | None = check_selection(run)

    # --- what is available -------------------------------------------------------------------------
    def ks(self, family: str = "pass") -> list[int]:
        return sorted({k for v in self.variants for k in v.ks(family)})

    def has_metric(self, name: str) -> bool:
        return any(v.metric(name) is not None for v in self.variants)

    def metric_names(
        self, ks: Iterable[int] | None = None, *, vote_ks: Iterable[int] | None = None
    ) -> list[str]:
        """The table's metrics, present in the results: Pass@1, then per k Pass@k, maj@k, best@k, wmaj@k.

        `ks` limits every family to those k; `vote_ks` (used when `ks` is None) limits maj@k, best@k and
        wmaj@k only, so the default table has the whole Pass@k curve but not a vote column per k.
        """
        wanted = set(ks) if ks is not None else None
        votes = set(vote_ks) if vote_ks is not None else None
        names = ["pass@1"] if self.has_metric("pass@1") else []
        all_ks = sorted({k for fam in FAMILIES for k in self.ks(fam)})
        for k in all_ks:
            if wanted is not None and k not in wanted:
                continue
            for fam in FAMILIES:
                name = f"{fam}@{k}"
                if fam != "pass" and votes is not None and k not in votes:
                    continue
                if name not in ("pass@1", "maj@1") and self.has_metric(name):  # maj@1 ≡ pass@1
                    names.append(name)
        return names

    @property
    def best_variant(self) -> VariantView | None:
        if not self.best:
            return None
        return next((v for v in self.variants if v.name == self.best.variant), None)

    @property
    def chosen(self) -> VariantView | None:
        """The variant to mark as chosen (★, the highlighted row): the best one, unless it ties."""
        return None if self.selection is not None and self.selection.tie else self.best_variant

    def same_length(self, rel: float = 0.01, least: float = 0.5) -> float | None:
        """The mean completion length when every variant's is the same (within `least` tokens or `rel` of
        it), else None: a length plot would then show noise as if it were a trade-off."""
        means = [s.value for v in self.variants if (s := v.tokens("mean")) is not None]
        if not means:
            return None
        mid = sum(means) / len(means)
        return mid if max(means) - min(means) <= max(least, rel * abs(mid)) else None

    # --- groupings -----------------------------------------------------------------------------------
    def of_kind(self, kind: str) -> list[VariantView]:
        return [v for v in self.variants if v.kind == kind]

    def _named(self, name: Any) -> VariantView | None:
        return next((v for v in self.variants if v.name == name), None) if isinstance(name, str) else None

    def role(self, key: str) -> VariantView | None:
        """The variant the results name as `roles[key]` (the demo: early, final, mix), if any."""
        return self._named(self.roles.get(key))

    def final_model(self, step: int | None, temperature: float | None) -> VariantView | None:
        """The raw final checkpoint at `temperature`: the δ=0 end of a sweep at `step`.

        Found as the checkpoint variant of that step (no δ), or the `roles.final` of the results (demo)."""
        for v in self.variants:
            if v.kind == "checkpoint" and v.delta is None and step is not None and v.step == step:
                if v.temperature == temperature:
                    return v
        v = self._named(self.roles.get("final"))
        if v is not None and v.delta is None and v.temperature == temperature:
            return v
        return None

    def early_model(self, temperature: float | None) -> VariantView | None:
        """The early checkpoint (δ=1 end): `roles.early` (demo) or the checkpoint at `early_step`."""
        v = self._named(self.roles.get("early"))
        if v is None and self.early_step is not None:
            v = next(
                (c for c in self.of_kind("checkpoint") if c.step == self.early_step and c.delta is None
                 and c.temperature == temperature),
                None,
            )  # fmt: skip
        return v if v is not None and v.delta is None and v.temperature == temperature else None

    def raw_trajectories(self) -> list[Curve]:
        """The checkpoints of a training run by step (raw, not mixed), one curve per temperature."""
        groups: dict[Any, list[VariantView]] = {}
        for v in self.of_kind("checkpoint"):
            if v.step is not None and v.delta is None:
                groups.setdefault(v.temperature, []).append(v)
        curves = []
        for temp, vs in sorted(groups.items(), key=lambda kv: _num(kv[0])):
            if len({v.step for v in vs}) < 2:
                continue
            label = "SFT checkpoints (raw)" + (
                f", T={temp:g}" if len(groups) > 1 and temp is not None else ""
            )
            curves.append(_curve(label, "step", ((v.step, v) for v in vs)))
        return curves

    def raw_trajectory(self) -> Curve | None:
        raws = self.raw_trajectories()
        return raws[0] if raws else None

    def mixed_trajectories(self) -> list[Curve]:
        """Mixes over training steps, one curve per (δ, temperature): the WiSE-FT'd trajectory."""
        groups: dict[tuple, list[VariantView]] = {}
        for v in self.of_kind("mix"):
            if v.step is not None and v.delta is not None:
                groups.setdefault((v.delta, v.temperature), []).append(v)
        temps = {key[1] for key in groups}
        curves = []
        for (delta, temp), vs in sorted(groups.items(), key=lambda kv: (kv[0][0], _num(kv[0][1]))):
            if len({v.step for v in vs}) < 2:
                continue
            label = f"mixed δ={delta:g}" + (f", T={temp:g}" if len(temps) > 1 and temp is not None else "")
            curves.append(_curve(label, "step", ((v.step, v) for v in vs)))
        return curves

    def delta_curves(self) -> list[Curve]:
        """Mixes over δ at a fixed step and temperature (a sweep of the mixing coefficient).

        Where the sweep did not sample δ=0 or δ=1 itself, the raw final and early checkpoints (same
        temperature) stand at those ends, as they are the same models.
        """
        groups: dict[tuple, list[VariantView]] = {}
        for v in self.of_kind("mix"):
            if v.delta is not None:
                groups.setdefault((v.step, v.temperature), []).append(v)
        steps = {key[0] for key in groups}
        temps = {key[1] for key in groups}
        curves = []
        for (step, temp), vs in sorted(groups.items(), key=lambda kv: (_num(kv[0][0]), _num(kv[0][1]))):
            by_delta = {}
            for v in sorted(vs, key=lambda v: v.name):
                by_delta.setdefault(v.delta, v)
            if len(by_delta) < 2:
                continue  # one mix per step is a point of a mixed trajectory, not a δ sweep
            if 0.0 not in by_delta and (final := self.final_model(step, temp)) is not None:
                by_delta[0.0] = final
            if 1.0 not in by_delta and (early := self.early_model(temp)) is not None:
                by_delta[1.0] = early
            parts = []
            if len(steps) > 1 and step is not None:
                parts.append(f"step {step}")
            if len(temps) > 1 and temp is not None:
                parts.append(f"T={temp:g}")
            label = "mixes over δ" + (f" ({', '.join(parts)})" if parts else "")
            curves.append(_curve(label, "delta", by_delta.items()))
        return curves

    def temperature_curve(self) -> Curve | None:
        """The final model at several temperatures: the `temperature` variants plus the final checkpoint at
        its own temperature; in a sweep without them, the δ=0 mixes at each temperature."""
        pts = {v.temperature: v for v in self.of_kind("temperature") if v.temperature is not None}
        if pts:
            steps = {v.step for v in pts.values()}
            step = steps.pop() if len(steps) == 1 else None
            finals = [self._named(self.roles.get("final"))]
            finals += [v for v in self.of_kind("checkpoint") if step is not None and v.step == step]
            for v in finals:
                if v is not None and v.delta is None and v.temperature is not None:
                    pts.setdefault(v.temperature, v)
        else:
            zero = [v for v in self.of_kind("mix") if v.delta == 0.0 and v.temperature is not None]
            if len({v.step for v in zero}) == 1:
                pts = {v.temperature: v for v in zero}
        if len(pts) < 2:
            return None
        return _curve("final model at temperature T", "temperature", pts.items())

    def curves(self) -> list[tuple[str, Curve]]:
        """Every curve with its role, in report order: "raw" and "mixed" trajectories over steps,
        "delta" sweeps, the "temperature" curve. A variant may sit on two curves (an endpoint)."""
        out: list[tuple[str, Curve]] = [("raw", c) for c in self.raw_trajectories()]
        out += [("mixed", c) for c in self.mixed_trajectories()]
        out += [("delta", c) for c in self.delta_curves()]
        temp = self.temperature_curve()
        if temp:
            out.append(("temperature", temp))
        return out

    def loose(self) -> list[VariantView]:
        """Variants on no curve (a base model, a lone checkpoint), drawn as single points."""
        on_curve = {v.name for _, c in self.curves() for v in c.variants}
        return [v for v in self.variants if v.name not in on_curve]


def _num(x: Any) -> float:
    return float("-inf") if x is None else float(x)

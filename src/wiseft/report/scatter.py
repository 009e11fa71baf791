"""The report's scatter plots: Pass@1 against Pass@k (the frontier), bias² against variance with the
Jensen bound, and length against accuracy. Points are labelled by their position on a curve (δ, T, step)
with `PointLabels`; legends sit under the figure, outside the data."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from wiseft.report.data import Curve, Results, VariantView
from wiseft.report.labels import PointLabels
from wiseft.report.style import (
    ROLE,
    STAR,
    as_percent,
    axes,
    delta_tag,
    figure,
    percent_axis,
    raw_stat,
    series_color,
    shade,
    shared_legend,
    title,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Points = list[tuple[float | None, VariantView]]


# --- 4. the frontier --------------------------------------------------------------------------------------
def plot_frontier(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Pass@1 against Pass@k: mixes over δ as one curve, temperatures of the final model as another."""
    k = frontier_k(res, headline_ks)
    curves = frontier_curves(res, k) if k is not None else []
    if not curves:
        return None
    fig = figure(1, width=6.0, height=4.6)
    (ax,) = axes(fig, 1)
    labels = PointLabels()
    chosen = res.chosen
    loud = loud_series([(role, curve.variants) for role, curve in curves], chosen)
    for i, (role, curve) in enumerate(curves):
        pts = [(pos, v) for pos, v in curve.points() if v.metric("pass@1") and v.metric(f"pass@{k}")]
        x = np.array([as_percent(v.metric(f"pass@{k}")) for _, v in pts])
        y = np.array([as_percent(v.metric("pass@1")) for _, v in pts])
        color = shade(role, i) if role == "delta" else ROLE[role][0]
        style = {} if loud[i] else QUIET
        ax.plot(
            x[:, 0], y[:, 0], marker=ROLE[role][1], color=color, label=curve.label, clip_on=False, **style
        )
        if loud[i]:
            _error_bars(ax, x, y, color)
            for (pos, v), xi, yi in zip(pts, x[:, 0], y[:, 0], strict=True):
                labels.add(v.name, xi, yi, _tag(role, pos, v), color)
    if chosen is not None and chosen.metric("pass@1") and chosen.metric(f"pass@{k}"):
        at = as_percent(chosen.metric(f"pass@{k}"))[0], as_percent(chosen.metric("pass@1"))[0]
        ax.plot([at[0]], [at[1]], **STAR, label=f"chosen: {_best_tag(chosen, curves)}")
        labels.avoid(*at)
    percent_axis(ax, f"Pass@{k}", axis="x")
    percent_axis(ax, "Pass@1")
    title(ax, f"Pass@1 against Pass@{k}: up and right is better (bars: 95% CI)", 5.4)
    shared_legend(fig, ax)
    labels.place(ax)
    return fig


MANY_SERIES = 4  # from this many curves in one scatter plot, only the highlighted ones are labelled
QUIET = {"linewidth": 0.8, "markersize": 2.5, "alpha": 0.55}  # a curve drawn for context only


def loud_series(
    series: Sequence[tuple[str, Sequence[VariantView]]], chosen: VariantView | None
) -> list[bool]:
    """Which of the (role, variants) curves of a scatter plot are drawn in full (labels, error bars): all
    while they are few; from `MANY_SERIES` on, the raw checkpoints, the temperatures, single variants and
    the mix curve holding the chosen variant (else the last mix curve); the rest thin and unlabelled."""
    if len(series) < MANY_SERIES:
        return [True] * len(series)
    loud = [role in ("raw", "temperature", "loose") or chosen in vs for role, vs in series]
    mixes = [i for i, (role, _) in enumerate(series) if role in ("delta", "mixed")]
    if mixes and not any(loud[i] for i in mixes):
        loud[mixes[-1]] = True
    return loud


def frontier_k(res: Results, headline_ks: Sequence[int]) -> int | None:
    big = [k for k in headline_ks if k > 1 and res.has_metric(f"pass@{k}")]
    return max(big) if big and res.has_metric("pass@1") else None


def frontier_curves(res: Results, k: int) -> list[tuple[str, Curve]]:
    """The δ and temperature curves with at least two points that have Pass@1 and Pass@k."""
    return [
        (r, c) for r, c in res.curves() if r in ("delta", "temperature") and has_two_points(c.variants, k)
    ]


def _error_bars(ax: Axes, x: np.ndarray, y: np.ndarray, color) -> None:
    if np.isfinite(x[:, 1:]).all() and np.isfinite(y[:, 1:]).all():
        ax.errorbar(x[:, 0], y[:, 0], xerr=spread(x), yerr=spread(y), fmt="none", ecolor=color, alpha=0.25,
                    elinewidth=0.8, capsize=0, clip_on=False)  # fmt: skip


def spread(a: np.ndarray) -> list[np.ndarray]:
    """Error-bar lengths below and above each value from (value, lo, hi) rows; never negative, even for a
    hand-edited results file whose value lies outside its interval."""
    return [np.maximum(a[:, 0] - a[:, 1], 0.0), np.maximum(a[:, 2] - a[:, 0], 0.0)]


def _best_tag(best: VariantView, curves: Sequence[tuple[str, Curve]]) -> str:
    """How the chosen variant is named on the plot: by its position on a curve (δ=0.5), else its label."""
    for role, curve in curves:
        for x, v in curve.points():
            if v is best:
                return delta_tag(x) if role == "delta" else _tag(role, x, v)
    return best.short


def has_two_points(vs: Sequence[VariantView], k: int) -> bool:
    return sum(1 for v in vs if v.metric("pass@1") and v.metric(f"pass@{k}")) >= 2


# --- 6. bias² against variance ----------------------------------------------------------------------------
def _series(res: Results, ok: Callable[[VariantView], bool]) -> list[tuple[str, str, Points, int]]:
    """(label, role, [(position, variant)], index within role) for connected scatter plots; variants on
    no curve come last as single points (position None)."""
    out, n_role = [], {}
    for role, curve in res.curves():
        pts = [(x, v) for x, v in curve.points() if ok(v)]
        if pts:
            i = n_role[role] = n_role.get(role, -1) + 1
            out.append((curve.label, role, pts, i))
    loose = [(None, v) for v in res.loose() if ok(v)]
    if loose:
        imported = all(v.kind == "imported" for _, v in loose)
        out.append(("imported variants" if imported else "other variants", "loose", loose, 0))
    return out


def _tag(role: str, x: float | None, v: VariantView) -> str:
    """The point label along a curve: the step, δ or T (its position) that distinguishes it."""
    if x is None:
        return v.short
    tags = {"raw": f"step {x:g}", "mixed": f"step {x:g}", "delta": f"δ={x:g}", "temperature": f"T={x:g}"}
    return tags.get(role, v.short)


def bound_k(res: Results, headline_ks: Sequence[int]) -> int | None:
    """The k of the Jensen-bound panel: the largest headline k > 1 with a bound and 1 − Pass@k."""
    big = [k for k in headline_ks if k > 1 and any(v.bv_at("bound", k) and empirical(v, k)
                                                    for v in res.variants)]  # fmt: skip
    return max(big) if big else None


def plot_bias_variance(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """bias² = (1−E ρ)² against Var ρ per variant, with the Jensen bound on 1−Pass@k.

    1 − Pass@k ≥ (bias² + Var)^{k/2}, so the bound is constant along the lines bias² + Var = c: moving
    toward the origin lowers the bound (WiSE-FT), moving along a line trades one for the other (temperature).
    The second panel checks the bound itself: empirical 1−Pass@k sits on or above the diagonal.
    """
    series = _series(res, lambda v: v.bv("bias2") is not None and v.bv("var") is not None)
    if not series:
        return None
    k = bound_k(res, headline_ks)
    fig = figure(2 if k else 1, width=4.7, height=3.9)
    axs = axes(fig, 2 if k else 1)
    labels = _bias_variance_panel(axs[0], series, res.chosen)
    _mark_final_and_mix(axs[0], res)
    if k:
        _bound_panel(axs[1], series, k)
    shared_legend(fig, axs)
    labels.place(axs[0])
    return fig


def _bias_variance_panel(ax: Axes, series, chosen: VariantView | None) -> PointLabels:
    """bias² against Var[ρ], with iso-bound lines bias² + Var = c across the visible box; the labels are
    placed by the caller once the figure's layout is complete."""
    allv = [v for s in series for _, v in s[2]]
    xlim = _padded([v.bv("var").value for v in allv], top=0.25)  # Var of a value in [0, 1] is at most 1/4
    ylim = _padded([v.bv("bias2").value for v in allv], top=1.0)
    for c in _iso_levels([xlim[0] + ylim[0], xlim[1] + ylim[1]]):
        ax.plot([0, c], [c, 0], color="#9a9a9a", linestyle=":", linewidth=0.9, label="_nolegend_")
        x0, x1 = max(xlim[0], c - ylim[1]), min(xlim[1], c - ylim[0])
        if x1 - x0 > 0.25 * (xlim[1] - xlim[0]):  # a line that crosses the box, not one that clips a corner
            xm = (x0 + x1) / 2
            ax.annotate(f"{c:g}", (xm, c - xm), fontsize=6.5, color="#777777", ha="left", va="bottom")
    labels = PointLabels(fontsize=6.5)
    _scatter_series(
        ax, series, lambda v: v.bv("var").value, lambda v: raw_stat(v.bv("bias2")), labels, chosen
    )
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("Var[ρ] over problems")
    ax.set_ylabel("bias² = (1 − E[ρ])²")
    title(ax, "bias² against variance: lower left is better", 4.2, fontsize=9)
    return labels


def _mark_final_and_mix(ax: Axes, res: Results) -> None:
    """Ring the final model and the chosen mix (the demo's roles; nothing for runs without them) and draw
    the WiSE-FT step between them: toward the origin lowers both; the temperature curve runs across."""
    final, mix = res.role("final"), res.role("mix")
    points = {}
    for tag, v in (("final", final), ("chosen mix", mix)):
        if v is not None and v.bv("var") is not None and v.bv("bias2") is not None:
            points[tag] = (v.bv("var").value, v.bv("bias2").value)
            ax.plot(*points[tag], marker="o", markersize=13, markerfacecolor="none", markeredgewidth=1.4,
                    color="black", linestyle="none", label="_nolegend_")  # fmt: skip
            ax.annotate(
                tag, points[tag], xytext=(9, -11), textcoords="offset points", fontsize=7, weight="bold"
            )
    if len(points) == 2 and points["final"] != points["chosen mix"]:
        ax.annotate("", points["chosen mix"], xytext=points["final"],
                    arrowprops={"arrowstyle": "->", "color": "black", "linewidth": 1.2})  # fmt: skip


def _bound_panel(ax: Axes, series, k: int) -> None:
    """Empirical 1 − Pass@k against the Jensen bound at k: every point on or above the diagonal. A value
    of 0 (every problem solved) stays on the plot: the axes turn symmetric-log, linear near 0."""
    vals = []
    for label, role, members, i in series:
        pts = [(v.bv_at("bound", k), empirical(v, k)) for _, v in members]
        pts = [(b.value, e.value) for b, e in pts if b is not None and e is not None]
        if not pts:
            continue
        b, e = zip(*pts, strict=True)
        vals += [*b, *e]
        ax.plot(b, e, marker=ROLE[role][1] if role in ROLE else "o", linestyle="none", clip_on=False,
                color=series_color(role, i), label=label)  # fmt: skip
    lo, hi, scale = bound_scale(vals)
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.9, linestyle="--", label="bound = empirical")
    if scale == "log":
        ax.set_xscale("log")
        ax.set_yscale("log")
    elif scale == "symlog":
        linthresh = min(v for v in vals if v > 0)
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_yscale("symlog", linthresh=linthresh)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    note = {"log": " (log)", "symlog": " (log, linear near 0)", "linear": ""}[scale]
    ax.set_xlabel(f"Jensen bound (bias² + Var)$^{{{k / 2:g}}}$" + note)
    plugin = any(v.bv_at("one_minus_pass_plugin", k) is not None for _, _, m, _ in series for _, v in m)
    ax.set_ylabel((f"empirical E[(1 − ρ)$^{{{k}}}$]" if plugin else f"empirical 1 − Pass@{k}") + note)
    title(ax, f"The bound at k={k}: every point on or above the diagonal", 4.2, fontsize=9)


def empirical(v: VariantView, k: int):
    """What the Jensen bound bounds: the plug-in E[(1−ρ)^k] when the summary has it (1 − the unbiased
    Pass@k may lie below the bound: it is smaller than the plug-in), else 1 − Pass@k."""
    plugin = v.bv_at("one_minus_pass_plugin", k)
    return plugin if plugin is not None else v.bv_at("one_minus_pass", k)


def bound_scale(vals: Sequence[float]) -> tuple[float, float, str]:
    """(lo, hi, "linear" | "log" | "symlog") for the bound panel: log when the positive values span more
    than a factor 20 (the bound shrinks like c^{k/2}), symlog when a 0 must show beside them."""
    pos = [v for v in vals if v > 0]
    if not pos:
        return 0.0, 1.0, "linear"
    hi = min(1.0, max(pos) * 2)
    if max(pos) / min(pos) <= 20:
        return 0.0, min(1.0, 1.1 * max(pos)), "linear"
    if len(pos) < len(vals):
        return 0.0, hi, "symlog"
    return min(pos) / 2, hi, "log"


def _scatter_series(
    ax: Axes, series, x_of, y_of, labels: PointLabels, chosen: VariantView | None = None
) -> list[tuple[list, np.ndarray, str]]:
    """Connected points per series (loose variants unconnected), every point of a δ or T sweep labelled
    and the ends of the others; among many series only the loud ones (`loud_series`) are labelled and
    returned for error bars. Returns (x, y with interval columns, colour) per loud series."""
    drawn = []
    loud = loud_series([(role, [v for _, v in pts]) for _, role, pts, _ in series], chosen)
    for (label, role, pts, i), full in zip(series, loud, strict=True):
        vs = [v for _, v in pts]
        color = series_color(role, i)
        x = [x_of(v) for v in vs]
        y = np.array([y_of(v) for v in vs], dtype=float).reshape(len(vs), 3)
        marker = ROLE[role][1] if role in ROLE else "o"
        ax.plot(x, y[:, 0], marker=marker, color=color, label=label, linestyle="-" if role != "loose" else "none",
                clip_on=False, **({} if full else QUIET))  # fmt: skip
        if not full:
            continue
        ends = range(len(vs)) if role in ("delta", "temperature", "loose") else (0, len(vs) - 1)
        for j in sorted(set(ends)):
            labels.add(vs[j].name, x[j], y[j, 0], _tag(role, *pts[j]), color)
        drawn.append((x, y, color))
    return drawn


def _padded(
    values: Sequence[float], top: float, pad: float = 0.12, least: float = 0.02
) -> tuple[float, float]:
    """Axis limits around the values within [0, top] (what the quantity can reach), at least `least` wide,
    so a cluster is readable."""
    lo, hi = min(values), max(values)
    span = max(hi - lo, least)
    mid = (lo + hi) / 2
    lo, hi = mid - span * (0.5 + pad), mid + span * (0.5 + pad)
    return max(lo, 0.0), min(hi, top)


def _iso_levels(sums: Sequence[float]) -> list[float]:
    """Three or four round values of bias² + Var spanning the variants, for iso-bound lines."""
    lo, hi = min(sums), max(sums)
    step = 10 ** math.floor(math.log10(max(hi - lo, 1e-3) / 3))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= 4:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    levels = [round(first + i * step, 10) for i in range(6) if first + i * step <= hi + 1e-12]
    return [c for c in levels if c > 0] or [round(hi, 3)]


# --- 8. tokens against accuracy ---------------------------------------------------------------------------
def plot_tokens(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Mean completion tokens against Pass@1: what accuracy costs in length (instruct ↔ thinking mixes).
    Left out when every variant's mean length is the same: there is no trade-off to show."""
    series = _series(res, lambda v: v.tokens("mean") is not None and v.metric("pass@1") is not None)
    if sum(len(s[2]) for s in series) < 2 or res.same_length() is not None:
        return None
    fig = figure(1, width=6.0, height=4.4)
    (ax,) = axes(fig, 1)
    labels = PointLabels()
    drawn = _scatter_series(
        ax,
        series,
        lambda v: v.tokens("mean").value,
        lambda v: as_percent(v.metric("pass@1")),
        labels,
        res.chosen,
    )
    for x, y, color in drawn:
        if np.isfinite(y[:, 1:]).all():
            ax.errorbar(x, y[:, 0], yerr=spread(y), fmt="none", ecolor=color,
                        alpha=0.35, elinewidth=0.9)  # fmt: skip
    # At least ±5% of the mean length wide: lengths that barely move should look flat, not be stretched
    # over the whole axis as if length were the story.
    lo, hi = ax.get_xlim()
    mid = (lo + hi) / 2
    half = max((hi - lo) / 2, 0.05 * abs(mid), 0.5)
    ax.set_xlim(max(mid - half, 0.0), mid + half)
    percent_axis(ax, "Pass@1")
    ax.set_xlabel("mean completion length (tokens)")
    title(ax, "Accuracy against length (bars: 95% CI)", 5.4)
    shared_legend(fig, ax)
    labels.place(ax)
    return fig

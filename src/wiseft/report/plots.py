"""The report's eight plots, one function each.

Every function takes a `Results` view and returns a matplotlib `Figure`, or None when the run holds no
data for that plot (a plot without data is left out of the report, never drawn empty). Figures are built
with `matplotlib.figure.Figure` directly, not pyplot: no global state, no GUI backend, nothing left open;
saving a Figure uses the Agg canvas. Accuracies are drawn in percent, each with its 95% bootstrap interval
as a shaded band (lines) or error bars (scatter). Lines that carry data have a legend label; helper
artists (bands, reference lines without a legend entry) are unlabelled, so tests can count series as the
labelled lines of each axis.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from wiseft.report.data import Curve, Results, VariantView, metric_label
from wiseft.report.labels import PointLabels
from wiseft.report.style import (
    AXIS_LABEL,
    ROLE,
    ROLE_TITLE,
    STYLE,
    as_percent,
    axes,
    figure,
    legend,
    line,
    log2_axis,
    percent_axis,
    ramp,
    raw_stat,
    role_color,
    series_color,
    shade,
    shared_legend,
)

PlotFn = Callable[[Results, Sequence[int], Sequence[int]], "Figure | None"]


def headline_metrics(res: Results, ks: Sequence[int]) -> list[str]:
    """Pass@1, then pass/maj/best at the chosen ks (best only when scores exist), in that order."""
    names = ["pass@1"] if res.has_metric("pass@1") else []
    for fam in ("pass", "maj", "best"):
        for k in ks:
            name = f"{fam}@{k}"
            if name not in names and res.has_metric(name):
                names.append(name)
    return names


# --- 1. Pass@k against k ------------------------------------------------------------------------------
def plot_pass_at_k(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Pass@k against k (log₂), one curve per variant; one panel per role (checkpoints, mixes, T)."""
    if len(curve_ks) < 2:
        return None
    panels: dict[str, list[VariantView]] = {}
    seen: set[str] = set()
    groups = [(role, c.variants) for role, c in res.curves()] + [("loose", tuple(res.loose()))]
    for role, variants in groups:
        for v in variants:
            if v.name in seen or len([k for k in curve_ks if v.metric(f"pass@{k}") is not None]) < 2:
                continue
            seen.add(v.name)
            panels.setdefault(role, []).append(v)
    if not panels:
        return None
    ncols = min(len(panels), 2)  # a 2×2 grid keeps the legends and ticks readable in the HTML
    fig = figure(ncols, math.ceil(len(panels) / ncols), width=4.8, height=3.3)
    axs = axes(fig, len(panels), ncols=ncols, sharey=True)
    for ax, (role, vs) in zip(axs, panels.items(), strict=True):
        for v, color in zip(vs, ramp(role, len(vs)), strict=True):
            kk = [k for k in curve_ks if v.metric(f"pass@{k}") is not None]
            line(ax, kk, [v.metric(f"pass@{k}") for k in kk], color, v.short)
        log2_axis(ax, curve_ks)
        ax.set_title(ROLE_TITLE[role])
        ax.set_xlabel("k (samples per problem, log₂ scale)")
        legend(ax, len(vs))
    for ax in axs[::ncols]:
        percent_axis(ax, "Pass@k")
    fig.suptitle("Pass@k against k (bands: 95% bootstrap intervals)")
    return fig


# --- 2. metrics against δ -------------------------------------------------------------------------------
def plot_metrics_vs_delta(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Each metric against δ, endpoints (δ=0 final, δ=1 early) and the chosen mix marked."""
    curves = res.delta_curves()
    if not curves:
        return None
    names = [
        m for m in headline_metrics(res, headline_ks) if any(v.metric(m) for c in curves for v in c.variants)
    ]
    if not names:
        return None
    ncols = min(len(names), 4)
    fig = figure(ncols, math.ceil(len(names) / ncols), width=3.5, height=2.9)
    axs = axes(fig, len(names), ncols=ncols)
    best = res.best_variant
    for ax, name in zip(axs, names, strict=True):
        for i, curve in enumerate(curves):
            line(ax, curve.xs(), [v.metric(name) for v in curve.variants], shade("delta", i), curve.label)
            _mark_endpoints(ax, curve, name, first=(i == 0))
        best_x = next((x for c in curves for x, v in c.points() if v is best), None)
        if best is not None and best_x is not None and best.metric(name):
            ax.plot(
                [best_x], [as_percent(best.metric(name))[0]], marker="*", markersize=13, color="#f2c200",
                markeredgecolor="black", linestyle="none", label=f"chosen: δ={best_x:g}", zorder=5,
            )  # fmt: skip
        ax.set_title(metric_label(name))
        ax.set_xlabel("δ (0 = final, 1 = early)")
        percent_axis(ax, metric_label(name))
    shared_legend(fig, axs[0])
    fig.suptitle("Metrics against the mixing coefficient δ: θ = δ·θ_early + (1−δ)·θ_final")
    return fig


def _mark_endpoints(ax: Axes, curve: Curve, name: str, first: bool) -> None:
    for x, v in curve.points():
        if x not in (0.0, 1.0) or v.metric(name) is None:
            continue
        is_final = x == 0.0
        ax.plot(
            [x], [as_percent(v.metric(name))[0]], linestyle="none", markersize=9, markerfacecolor="none",
            markeredgewidth=1.6, marker="s" if is_final else "^", color="black",
            label=("δ=0: final checkpoint" if is_final else "δ=1: early checkpoint") if first else "_nolegend_",
        )  # fmt: skip


# --- 3. the training trajectory --------------------------------------------------------------------------
def plot_trajectory(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Pass@1 and Pass@k against the training step, raw checkpoints and WiSE-FT mixed."""
    curves = [(role, c) for role, c in res.curves() if role in ("raw", "mixed")]
    if not curves:
        return None
    names = [n for n in headline_metrics(res, headline_ks) if n.startswith("pass@")]
    names = [n for n in names if any(v.metric(n) for _, c in curves for v in c.variants)]
    if not names:
        return None
    fig = figure(len(names), width=3.9, height=3.1)
    axs = axes(fig, len(names))
    for ax, name in zip(axs, names, strict=True):
        n_role: dict[str, int] = {}
        for role, curve in curves:
            i = n_role[role] = n_role.get(role, -1) + 1
            line(ax, curve.xs(), [v.metric(name) for v in curve.variants], shade(role, i), curve.label,
                  marker=ROLE[role][1])  # fmt: skip
        best = res.best_variant
        on_mixed = any(best in c.variants for role, c in curves if role == "mixed")
        if best is not None and best.kind == "mix" and best.step is not None and not on_mixed:
            stat = best.metric(name)
            if stat is not None:  # the chosen mix of the final step, beside the checkpoint it rescues
                v, lo, hi = as_percent(stat)
                err = [[v - lo], [hi - v]] if stat.has_interval else None
                ax.errorbar([best.step], [v], yerr=err, fmt="*", markersize=13, color="#f2c200",
                            markeredgecolor="black", ecolor="#b08a00", elinewidth=1, capsize=3,
                            label=f"chosen mix {best.short.split(',')[0]}", zorder=5)  # fmt: skip
        ax.set_title(metric_label(name))
        ax.set_xlabel("training step")
        percent_axis(ax, metric_label(name))
    shared_legend(fig, axs[0])
    fig.suptitle("Training trajectory: raw checkpoints and WiSE-FT mixes with the early checkpoint")
    return fig


# --- 4. the frontier --------------------------------------------------------------------------------------
def plot_frontier(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Pass@1 against Pass@k: mixes over δ as one curve, temperatures of the final model as another."""
    big = [k for k in headline_ks if k > 1 and res.has_metric(f"pass@{k}")]
    if not big or not res.has_metric("pass@1"):
        return None
    k = max(big)
    curves = [
        (role, c)
        for role, c in res.curves()
        if role in ("delta", "temperature") and has_two_points(c.variants, k)
    ]
    if not curves:
        return None
    fig = figure(1, width=5.6, height=4.3)
    (ax,) = axes(fig, 1)
    labels = PointLabels()
    for i, (role, curve) in enumerate(curves):
        pts = [(pos, v) for pos, v in curve.points() if v.metric("pass@1") and v.metric(f"pass@{k}")]
        x = np.array([as_percent(v.metric(f"pass@{k}")) for _, v in pts])
        y = np.array([as_percent(v.metric("pass@1")) for _, v in pts])
        color, marker = ROLE[role]
        color = shade(role, i) if role == "delta" else color
        ax.plot(x[:, 0], y[:, 0], marker=marker, color=color, label=curve.label)
        if np.isfinite(x[:, 1:]).all() and np.isfinite(y[:, 1:]).all():
            ax.errorbar(
                x[:, 0], y[:, 0], xerr=[x[:, 0] - x[:, 1], x[:, 2] - x[:, 0]],
                yerr=[y[:, 0] - y[:, 1], y[:, 2] - y[:, 0]], fmt="none", ecolor=color, alpha=0.25,
                elinewidth=0.8, capsize=0,
            )  # fmt: skip
        for (pos, v), xi, yi in zip(pts, x[:, 0], y[:, 0], strict=True):
            labels.add(v.name, xi, yi, _tag(role, pos, v), color)
    best = res.best_variant
    if best is not None and best.metric("pass@1") and best.metric(f"pass@{k}"):
        ax.plot([as_percent(best.metric(f"pass@{k}"))[0]], [as_percent(best.metric("pass@1"))[0]], marker="*",
                markersize=14, color="#f2c200", markeredgecolor="black", linestyle="none",
                label=f"chosen: {_best_tag(best, curves)}", zorder=5)  # fmt: skip
    labels.place(ax)
    ax.set_xlabel(f"Pass@{k} (%)")
    ax.set_ylabel("Pass@1 (%)")
    ax.set_title(f"Pass@1 against Pass@{k}: up and right is better (bars: 95% CI)")
    ax.legend(loc="best")
    return fig


def _best_tag(best: VariantView, curves: Sequence[tuple[str, Curve]]) -> str:
    """How the chosen variant is named on the plot: by its position on a curve (δ=0.5), else its label."""
    for role, curve in curves:
        for x, v in curve.points():
            if v is best:
                return _tag(role, x, v)
    return best.short


def has_two_points(vs: Sequence[VariantView], k: int) -> bool:
    return sum(1 for v in vs if v.metric("pass@1") and v.metric(f"pass@{k}")) >= 2


def variants_once_by_role(res: Results) -> list[tuple[str, VariantView]]:
    """Every variant once with the role of the first curve it sits on ("loose" for none), report order."""
    out, seen = [], set()
    for role, curve in res.curves():
        for v in curve.variants:
            if v.name not in seen:
                seen.add(v.name)
                out.append((role, v))
    return out + [("loose", v) for v in res.loose()]


# --- 5. per-problem Pass@1 histograms ---------------------------------------------------------------------
MAX_HISTS = 24


def plot_rho_hist(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Histogram of per-problem Pass@1 ρ per variant (collapse: mass piles at 0 and 1)."""
    items = [(role, v) for role, v in variants_once_by_role(res) if v.rho_hist() is not None]
    if not items:
        return None
    if len(items) > MAX_HISTS:  # keep the figure readable: an even spread, both ends kept
        idx = sorted({round(i * (len(items) - 1) / (MAX_HISTS - 1)) for i in range(MAX_HISTS)})
        items = [items[i] for i in idx]
    ncols = min(len(items), 6)
    nrows = math.ceil(len(items) / ncols)
    fig = figure(ncols, nrows, width=2.1, height=1.9)
    axs = axes(fig, len(items), ncols=ncols, sharey=True)
    for ax, (role, v) in zip(axs, items, strict=True):
        counts, edges = v.rho_hist()
        total = sum(counts) or 1.0
        frac = [100 * c / total for c in counts]
        ax.bar(edges[:-1], frac, width=np.diff(edges), align="edge", color=role_color(role, v),
               edgecolor="white", linewidth=0.5, label=v.short)  # fmt: skip
        ax.set_xlim(edges[0], edges[-1])
        prefix = {"raw": "SFT", "mixed": "mix", "delta": "mix", "temperature": "final"}.get(role, "")
        ax.set_title(f"{prefix} {v.short}".strip() if v.short != v.name else v.name, fontsize=8)
        ax.grid(axis="x", visible=False)
    for ax in axs[::ncols]:
        ax.set_ylabel("problems (%)")
    for ax in axs[-ncols:]:
        ax.set_xlabel("per-problem Pass@1 ρ")
    fig.suptitle("Per-problem Pass@1 ρ: collapse shows as mass at 0 and 1")
    return fig


# --- 6. bias² against variance ----------------------------------------------------------------------------
Points = list[tuple[float | None, VariantView]]


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
        out.append(("other variants", "loose", loose, 0))
    return out


def _tag(role: str, x: float | None, v: VariantView) -> str:
    """The point label along a curve: the step, δ or T (its position) that distinguishes it."""
    if x is None:
        return v.short
    return {"raw": f"step {x:g}", "mixed": f"step {x:g}", "delta": f"δ={x:g}", "temperature": f"T={x:g}"}.get(
        role, v.short
    )


def plot_bias_variance(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """bias² = (1−E ρ)² against Var ρ per variant, with the Jensen bound on 1−Pass@k.

    1 − Pass@k ≥ (bias² + Var)^{k/2}, so the bound is constant along the lines bias² + Var = c: moving
    toward the origin lowers the bound (WiSE-FT), moving along a line trades one for the other (temperature).
    The second panel checks the bound itself: empirical 1−Pass@k sits on or above the diagonal.
    """
    series = _series(res, lambda v: v.bv("bias2") is not None and v.bv("var") is not None)
    if not series:
        return None
    allv = [v for s in series for _, v in s[2]]
    big = [
        k
        for k in headline_ks
        if k > 1 and any(v.bv_at("bound", k) and v.bv_at("one_minus_pass", k) for v in allv)
    ]
    k = max(big) if big else None
    fig = figure(2 if k else 1, width=4.7, height=3.9)
    axs = axes(fig, 2 if k else 1)
    _bias_variance_panel(axs[0], series)
    _mark_final_and_mix(axs[0], res)
    if k:
        _bound_panel(axs[1], series, k)
    return fig


def _bias_variance_panel(ax: Axes, series) -> None:
    """bias² against Var[ρ], with iso-bound lines bias² + Var = c across the visible box."""
    allv = [v for s in series for _, v in s[2]]
    xlim = _padded([v.bv("var").value for v in allv])
    ylim = _padded([v.bv("bias2").value for v in allv])
    corners = [xlim[0] + ylim[0], xlim[1] + ylim[1]]
    for c in _iso_levels(corners):
        ax.plot([0, c], [c, 0], color="#9a9a9a", linestyle=":", linewidth=0.9, label="_nolegend_")
        x0, x1 = max(xlim[0], c - ylim[1]), min(xlim[1], c - ylim[0])
        if x0 < x1:
            xm = (x0 + x1) / 2
            ax.annotate(f"{c:g}", (xm, c - xm), fontsize=6.5, color="#777777", ha="left", va="bottom")
    labels = PointLabels(fontsize=6.5)
    _scatter_series(ax, series, lambda v: v.bv("var").value, lambda v: raw_stat(v.bv("bias2")), labels)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    labels.place(ax)
    ax.set_xlabel("Var[ρ] over problems")
    ax.set_ylabel("bias² = (1 − E[ρ])²")
    ax.set_title(
        "bias² against variance; lower left is better\n(dotted: bias² + Var = c, the Jensen bound $c^{k/2}$ is equal along each)",
        fontsize=9,
    )
    ax.legend(loc="upper right")


def _mark_final_and_mix(ax: Axes, res: Results) -> None:
    """Ring the final model and the chosen mix (the demo's roles, or the best variant) and draw the
    WiSE-FT step between them: toward the origin lowers both; the temperature curve runs across."""
    final, mix = res.role("final"), res.role("mix") or res.best_variant
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
    """Empirical 1 − Pass@k against the Jensen bound at k: every point on or above the diagonal."""
    vals = []
    for label, role, members, i in series:
        pts = [(v.bv_at("bound", k), v.bv_at("one_minus_pass", k)) for _, v in members]
        pts = [(b.value, e.value) for b, e in pts if b is not None and e is not None and b.value > 0]
        pts = [(b, e) for b, e in pts if e > 0]  # log axes: a variant that solved everything has no point
        if not pts:
            continue
        b, e = zip(*pts, strict=True)
        vals += [*b, *e]
        ax.plot(b, e, marker=ROLE[role][1] if role in ROLE else "o", linestyle="none",
                color=series_color(role, i), label=label)  # fmt: skip
    # Log axes when the values span orders of magnitude (the bound shrinks like c^{k/2}); else linear.
    log = bool(vals) and max(vals) / min(vals) > 20
    if vals:
        lo, hi = (min(vals) / 2, min(1.0, max(vals) * 2)) if log else (0.0, min(1.0, 1.1 * max(vals)))
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.9, linestyle="--", label="bound = empirical")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    scale = " (log)" if log else ""
    ax.set_xlabel(f"Jensen bound (bias² + Var)$^{{{k / 2:g}}}$" + scale)
    ax.set_ylabel(f"empirical 1 − Pass@{k}" + scale)
    ax.set_title(f"The bound at k={k}: every point on or above the diagonal", fontsize=9)
    ax.legend(loc="lower right")


def _scatter_series(ax: Axes, series, x_of, y_of, labels: PointLabels) -> list[tuple[list, np.ndarray, str]]:
    """Connected points per series (loose variants unconnected), every point of a δ or T sweep labelled
    and the ends of the others; returns (variants, y with interval columns, colour) per series."""
    drawn = []
    for label, role, pts, i in series:
        vs = [v for _, v in pts]
        color = series_color(role, i)
        x = [x_of(v) for v in vs]
        y = np.array([y_of(v) for v in vs], dtype=float).reshape(len(vs), 3)
        marker = ROLE[role][1] if role in ROLE else "o"
        ax.plot(
            x, y[:, 0], marker=marker, color=color, label=label, linestyle="-" if role != "loose" else "none"
        )
        ends = range(len(vs)) if role in ("delta", "temperature", "loose") else (0, len(vs) - 1)
        for j in sorted(set(ends)):
            labels.add(vs[j].name, x[j], y[j, 0], _tag(role, *pts[j]), color)
        drawn.append((x, y, color))
    return drawn


def _padded(values: Sequence[float], pad: float = 0.12, least: float = 0.02) -> tuple[float, float]:
    """Axis limits around the values (never below 0), at least `least` wide, so a cluster is readable."""
    lo, hi = min(values), max(values)
    span = max(hi - lo, least)
    mid = (lo + hi) / 2
    lo, hi = mid - span * (0.5 + pad), mid + span * (0.5 + pad)
    return max(lo, 0.0), hi


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


# --- 7. distinct answers ----------------------------------------------------------------------------------
def plot_distinct(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Mean number of distinct final answers per problem against step, δ and temperature."""
    axis_of = {"raw": "step", "mixed": "step", "delta": "delta", "temperature": "temperature"}
    panels: dict[str, list[tuple[str, Curve, int]]] = {}
    n_role: dict[str, int] = {}
    for role, curve in res.curves():
        i = n_role[role] = n_role.get(role, -1) + 1
        if sum(v.diversity("mean_distinct") is not None for v in curve.variants) >= 2:
            panels.setdefault(axis_of[role], []).append((role, curve, i))
    if not panels:
        return None
    fig = figure(len(panels), width=3.7, height=3.0)
    axs = axes(fig, len(panels), sharey=True)
    n = max((int(v.summary.get("n", 0) or 0) for v in res.variants), default=0)
    for ax, (axis, entries) in zip(axs, panels.items(), strict=True):
        for role, curve, i in entries:
            stats = [v.diversity("mean_distinct") for v in curve.variants]
            line(ax, curve.xs(), stats, shade(role, i), curve.label, marker=ROLE[role][1], percent=False)
        ax.set_xlabel(AXIS_LABEL[axis] if axis != "delta" else "δ (0 = final, 1 = early)")
        ax.legend(loc="best")
    axs[0].set_ylabel(f"distinct answers per problem (of n={n})" if n else "distinct answers per problem")
    fig.suptitle("Diversity: distinct final answers among the n samples of a problem")
    return fig


# --- 8. tokens against accuracy ---------------------------------------------------------------------------
def plot_tokens(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Mean completion tokens against Pass@1: what accuracy costs in length (instruct ↔ thinking mixes)."""
    series = _series(res, lambda v: v.tokens("mean") is not None and v.metric("pass@1") is not None)
    if sum(len(s[2]) for s in series) < 2:
        return None
    fig = figure(1, width=5.6, height=4.0)
    (ax,) = axes(fig, 1)
    labels = PointLabels()
    drawn = _scatter_series(
        ax, series, lambda v: v.tokens("mean").value, lambda v: as_percent(v.metric("pass@1")), labels
    )
    for x, y, color in drawn:
        if np.isfinite(y[:, 1:]).all():
            ax.errorbar(x, y[:, 0], yerr=[y[:, 0] - y[:, 1], y[:, 2] - y[:, 0]], fmt="none", ecolor=color,
                        alpha=0.35, elinewidth=0.9)  # fmt: skip
    # At least ±5% of the mean length wide: lengths that barely move (a toy task) should look flat, not
    # be stretched over the whole axis as if length were the story.
    lo, hi = ax.get_xlim()
    mid = (lo + hi) / 2
    half = max((hi - lo) / 2, 0.05 * abs(mid), 0.5)
    ax.set_xlim(mid - half, mid + half)
    labels.place(ax)
    ax.set_xlabel("mean completion length (tokens)")
    ax.set_ylabel("Pass@1 (%)")
    ax.set_title("Accuracy against length (bars: 95% CI)")
    ax.legend(loc="best")
    return fig


# Name (the PNG's file stem), title, caption, function — in report order.
PLOTS: list[tuple[str, str, str, PlotFn]] = [
    ("pass_at_k", "Pass@k against k", "One curve per variant; higher and steeper is better test-time scaling.",
     plot_pass_at_k),
    ("metrics_vs_delta", "Metrics against δ",
     "Each metric over the mixing coefficient; squares and triangles mark the final and early checkpoints.",
     plot_metrics_vs_delta),
    ("trajectory", "Training trajectory",
     "Raw checkpoints against WiSE-FT mixes over training: collapse shows as Pass@k falling while Pass@1 rises.",
     plot_trajectory),
    ("frontier", "Pass@1 against Pass@k",
     "Mixes against temperatures of the final model: up and right is better on both.", plot_frontier),
    ("rho_hist", "Per-problem Pass@1 histograms",
     "Share of problems by per-problem Pass@1 ρ; diversity collapse piles mass at 0 and 1.", plot_rho_hist),
    ("bias_variance", "Bias² against variance",
     "Lower-left is better; the Jensen bound on 1−Pass@k is constant along the dotted lines.",
     plot_bias_variance),
    ("distinct_answers", "Distinct answers",
     "Mean number of distinct final answers among the n samples per problem.", plot_distinct),
    ("tokens_vs_accuracy", "Length against accuracy",
     "Mean completion tokens against Pass@1: where length is the cost.", plot_tokens),
]  # fmt: skip


def make_figures(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> dict[str, Figure]:
    """Every plot that has data, by name, in report order."""
    figs = {}
    with rc_context(STYLE):
        for name, _title, _caption, fn in PLOTS:
            fig = fn(res, headline_ks, curve_ks)
            if fig is not None:
                figs[name] = fig
    return figs


def render_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render to PNG bytes (no timestamps in the metadata, so the same input gives the same bytes)."""
    buf = io.BytesIO()
    with rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()

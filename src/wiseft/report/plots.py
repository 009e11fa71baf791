"""The report's eight plots, one function each, and the registry (`PLOTS`) that orders them.

Every function takes a `Results` view and returns a matplotlib `Figure`, or None when the run holds no
data for that plot (a plot without data is left out of the report, never drawn empty). Figures are built
with `matplotlib.figure.Figure` directly, not pyplot: no global state, no GUI backend, nothing left open;
each has its own Agg canvas. Accuracies are drawn in percent on axes that stay within [0, 100], each with
its 95% bootstrap interval as a shaded band (lines) or error bars (scatter); where a panel holds many
lines they are thin and only the highlighted ones (the chosen variant, the ends) keep a band. Legends sit
outside the data (beside a panel or under the figure), titles are wrapped to their figure. Lines that
carry data have a legend label; helper artists (bands, reference lines without a legend entry) are
unlabelled, so tests can count series as the labelled lines of each axis. The scatter plots (frontier,
bias–variance, length) are in `scatter.py`.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from wiseft.report.data import FAMILIES, Curve, Results, VariantView, metric_label
from wiseft.report.scatter import plot_bias_variance, plot_frontier, plot_tokens
from wiseft.report.style import (
    AXIS_LABEL,
    ROLE,
    ROLE_TITLE,
    STAR,
    STYLE,
    as_percent,
    axes,
    delta_tag,
    emphasis,
    figure,
    legend_right,
    line,
    log2_axis,
    percent_axis,
    ramp,
    role_color,
    shade,
    shared_legend,
    suptitle,
    title,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PlotFn = Callable[[Results, Sequence[int], Sequence[int]], "Figure | None"]


def headline_metrics(res: Results, ks: Sequence[int]) -> list[str]:
    """Pass@1, then pass/maj/best/wmaj at the chosen ks (best and wmaj only when scores exist), in that
    order."""
    names = ["pass@1"] if res.has_metric("pass@1") else []
    for fam in FAMILIES:
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
    panels = pass_at_k_panels(res, curve_ks)
    if not panels:
        return None
    ncols = min(len(panels), 2)  # a 2×2 grid keeps the legends and ticks readable in the HTML
    fig = figure(ncols, math.ceil(len(panels) / ncols), width=5.6, height=3.3)
    axs = axes(fig, len(panels), ncols=ncols, sharey=True)
    for ax, (role, vs) in zip(axs, panels.items(), strict=True):
        keep = _highlighted(res, vs)
        for v, color in zip(vs, ramp(role, len(vs)), strict=True):
            kk = [k for k in curve_ks if v.metric(f"pass@{k}") is not None]
            line(
                ax,
                kk,
                [v.metric(f"pass@{k}") for k in kk],
                color,
                v.short,
                **emphasis(len(vs), v.name in keep),
            )
        log2_axis(ax, curve_ks)
        imported = role == "loose" and all(v.kind == "imported" for v in vs)
        title(ax, "imported variants" if imported else ROLE_TITLE[role], 3.4)
        ax.set_xlabel("k (samples per problem, log₂ scale)")
        legend_right(ax, len(vs))
    for ax in axs[::ncols]:
        percent_axis(ax, "Pass@k")
    suptitle(fig, "Pass@k against k (bands: 95% bootstrap intervals)")
    return fig


def pass_at_k_panels(res: Results, curve_ks: Sequence[int]) -> dict[str, list[VariantView]]:
    """Variants by the role of the first curve they sit on (each once), those with ≥ 2 points of the curve."""
    panels: dict[str, list[VariantView]] = {}
    seen: set[str] = set()
    groups = [(role, c.variants) for role, c in res.curves()] + [("loose", tuple(res.loose()))]
    for role, variants in groups:
        for v in variants:
            if v.name in seen or len([k for k in curve_ks if v.metric(f"pass@{k}") is not None]) < 2:
                continue
            seen.add(v.name)
            panels.setdefault(role, []).append(v)
    return panels


def _highlighted(res: Results, vs: Sequence[VariantView]) -> set[str]:
    """The variants of a panel that keep a band among many: the chosen one and the panel's two ends."""
    names = {vs[0].name, vs[-1].name} if vs else set()
    return names | ({res.chosen.name} if res.chosen is not None else set())


# --- 2. metrics against δ -------------------------------------------------------------------------------
def plot_metrics_vs_delta(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Each metric against δ, endpoints (δ=0 final, δ=1 early) and the chosen mix marked."""
    curves = res.delta_curves()
    names = [
        m for m in headline_metrics(res, headline_ks) if any(v.metric(m) for c in curves for v in c.variants)
    ]
    if not curves or not names:
        return None
    ncols = min(len(names), 4)
    # 3.1 inches a panel: four side by side are scaled down little in the HTML.
    fig = figure(ncols, math.ceil(len(names) / ncols), width=3.1, height=2.9)
    axs = axes(fig, len(names), ncols=ncols)
    chosen = res.chosen
    for ax, name in zip(axs, names, strict=True):
        for i, curve in enumerate(curves):
            look = emphasis(len(curves), chosen in curve.variants, many=3)
            line(
                ax,
                curve.xs(),
                [v.metric(name) for v in curve.variants],
                shade("delta", i),
                curve.label,
                **look,
            )
            _mark_endpoints(ax, curve, name, first=(i == 0), per_step=len(curves) > 1)
        x = next((x for c in curves for x, v in c.points() if v is chosen), None)
        if chosen is not None and x is not None and chosen.metric(name):
            ax.plot([x], [as_percent(chosen.metric(name))[0]], **STAR, label=f"chosen: {delta_tag(x)}")
        title(ax, metric_label(name), 3.0)
        ax.set_xlabel("δ (0 = final, 1 = early)")
        percent_axis(ax, metric_label(name))
    shared_legend(fig, axs[0])
    suptitle(fig, "Metrics against the mixing coefficient δ: θ = δ·θ_early + (1−δ)·θ_final")
    return fig


def _mark_endpoints(ax: Axes, curve: Curve, name: str, first: bool, per_step: bool) -> None:
    final = "δ=0: the checkpoint of that step" if per_step else "δ=0: final checkpoint"
    for x, v in curve.points():
        if x not in (0.0, 1.0) or v.metric(name) is None:
            continue
        is_final = x == 0.0
        ax.plot(
            [x], [as_percent(v.metric(name))[0]], linestyle="none", markersize=9, markerfacecolor="none",
            markeredgewidth=1.6, marker="s" if is_final else "^", color="black", clip_on=False,
            label=(final if is_final else "δ=1: early checkpoint") if first else "_nolegend_",
        )  # fmt: skip


# --- 3. the training trajectory --------------------------------------------------------------------------
def plot_trajectory(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Pass@1 and Pass@k against the training step, raw checkpoints and WiSE-FT mixed."""
    curves = [(role, c) for role, c in res.curves() if role in ("raw", "mixed")]
    names = [n for n in headline_metrics(res, headline_ks) if n.startswith("pass@")]
    names = [n for n in names if any(v.metric(n) for _, c in curves for v in c.variants)]
    if not curves or not names:
        return None
    fig = figure(len(names), width=3.9, height=3.1)
    axs = axes(fig, len(names))
    chosen = res.chosen
    for ax, name in zip(axs, names, strict=True):
        n_role: dict[str, int] = {}
        for role, curve in curves:
            i = n_role[role] = n_role.get(role, -1) + 1
            look = emphasis(len(curves), role == "raw" or chosen in curve.variants, many=3)
            line(ax, curve.xs(), [v.metric(name) for v in curve.variants], shade(role, i), curve.label,
                 marker=ROLE[role][1], **look)  # fmt: skip
        on_mixed = any(chosen in c.variants for role, c in curves if role == "mixed")
        if chosen is not None and chosen.kind == "mix" and chosen.step is not None and not on_mixed:
            _chosen_beside(ax, chosen, name)
        title(ax, metric_label(name), 3.4)
        ax.set_xlabel("training step")
        percent_axis(ax, metric_label(name))
    shared_legend(fig, axs[0])
    suptitle(fig, "Training trajectory: raw checkpoints and WiSE-FT mixes with the early checkpoint")
    return fig


def _chosen_beside(ax: Axes, chosen: VariantView, name: str) -> None:
    """The chosen mix of the final step, beside the checkpoint it rescues, with its interval."""
    stat = chosen.metric(name)
    if stat is None:
        return
    v, lo, hi = as_percent(stat)
    err = [[max(v - lo, 0.0)], [max(hi - v, 0.0)]] if stat.has_interval else None
    ax.errorbar([chosen.step], [v], yerr=err, fmt="*", markersize=13, color="#f2c200", markeredgecolor="black",
                ecolor="#b08a00", elinewidth=1, capsize=3, zorder=5, clip_on=False,
                label=f"chosen mix {delta_tag(chosen.delta) if chosen.delta is not None else chosen.short}")  # fmt: skip


# --- 5. per-problem Pass@1 histograms ---------------------------------------------------------------------
MAX_HISTS = 24
HIST_W = 2.1  # inches per histogram


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
    fig = figure(ncols, nrows, width=HIST_W, height=2.0, min_width=4.6)
    axs = axes(fig, len(items), ncols=ncols, sharey=True)
    for ax, (role, v) in zip(axs, items, strict=True):
        counts, edges = v.rho_hist()
        total = sum(counts) or 1.0
        frac = [100 * c / total for c in counts]
        ax.bar(edges[:-1], frac, width=np.diff(edges), align="edge", color=role_color(role, v),
               edgecolor="white", linewidth=0.5, label=v.short)  # fmt: skip
        ax.set_xlim(edges[0], edges[-1])
        prefix = {"raw": "SFT", "mixed": "mix", "delta": "mix", "temperature": "final"}.get(role, "")
        text = f"{prefix} {v.short}".strip() if v.short != v.name else v.name
        title(ax, text, fig.get_figwidth() / ncols - 0.3, fontsize=8)
        ax.grid(axis="x", visible=False)
    for ax in axs[::ncols]:
        percent_axis(ax, "problems")
    for ax in axs[-ncols:]:
        ax.set_xlabel("per-problem Pass@1 ρ")
    suptitle(fig, "Per-problem Pass@1 ρ: collapse shows as mass at 0 and 1")
    return fig


def variants_once_by_role(res: Results) -> list[tuple[str, VariantView]]:
    """Every variant once with the role of the first curve it sits on ("loose" for none), report order."""
    out, seen = [], set()
    for role, curve in res.curves():
        for v in curve.variants:
            if v.name not in seen:
                seen.add(v.name)
                out.append((role, v))
    return out + [("loose", v) for v in res.loose()]


# --- 7. distinct answers ----------------------------------------------------------------------------------
def plot_distinct(res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> Figure | None:
    """Mean number of distinct final answers per problem against step, δ and temperature."""
    panels = _distinct_panels(res)
    if not panels:
        return None
    fig = figure(len(panels), width=3.7, height=3.0)
    axs = axes(fig, len(panels), sharey=True)
    n = max((int(v.summary.get("n", 0) or 0) for v in res.variants), default=0)
    chosen = res.chosen
    for ax, (axis, entries) in zip(axs, panels.items(), strict=True):
        for role, curve, i in entries:
            stats = [v.diversity("mean_distinct") for v in curve.variants]
            look = emphasis(len(entries), role == "raw" or chosen in curve.variants, many=3)
            line(
                ax,
                curve.xs(),
                stats,
                shade(role, i),
                curve.label,
                marker=ROLE[role][1],
                percent=False,
                **look,
            )
        ax.set_xlabel(AXIS_LABEL[axis] if axis != "delta" else "δ (0 = final, 1 = early)")
    axs[0].set_ylabel("distinct answers per problem" + (f"\n(of n={n} samples)" if n else ""))
    shared_legend(fig, axs)
    suptitle(fig, "Diversity: distinct final answers among the n samples of a problem")
    return fig


def _distinct_panels(res: Results) -> dict[str, list[tuple[str, Curve, int]]]:
    """Curves with ≥ 2 diversity values by the axis they run along (step, δ, temperature)."""
    axis_of = {"raw": "step", "mixed": "step", "delta": "delta", "temperature": "temperature"}
    panels: dict[str, list[tuple[str, Curve, int]]] = {}
    n_role: dict[str, int] = {}
    for role, curve in res.curves():
        i = n_role[role] = n_role.get(role, -1) + 1
        if sum(v.diversity("mean_distinct") is not None for v in curve.variants) >= 2:
            panels.setdefault(axis_of[role], []).append((role, curve, i))
    return panels


# Name (the PNG's file stem), title, caption, function — in report order. The captions are the defaults;
# `captions.caption` words them for the run at hand.
PLOTS: list[tuple[str, str, str, PlotFn]] = [
    ("pass_at_k", "Pass@k against k", "One curve per variant; higher and steeper is better test-time scaling.",
     plot_pass_at_k),
    ("metrics_vs_delta", "Metrics against δ",
     "Each metric over the mixing coefficient; squares and triangles mark the final and early checkpoints.",
     plot_metrics_vs_delta),
    ("trajectory", "Training trajectory",
     "Raw checkpoints against WiSE-FT mixes over training: collapse shows as Pass@k falling while Pass@1 rises.",
     plot_trajectory),
    ("frontier", "Pass@1 against Pass@k", "Pass@1 against Pass@k of each curve: up and right is better on both.",
     plot_frontier),
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


@contextmanager
def quiet(caught: list[str] | None = None) -> Iterator[None]:
    """Keep matplotlib's warnings and log records off the console (the library never prints); what was
    caught is appended to `caught` when given, so tests can require that nothing was."""
    from matplotlib import rc_context

    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("matplotlib")
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as seen, rc_context(STYLE):
            warnings.simplefilter("always")
            yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    if caught is not None:
        caught.extend([f"{w.category.__name__}: {w.message}" for w in seen] + records)


def figure_builders(
    res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int], caught: list[str] | None = None
) -> dict[str, Callable[[], Figure | None]]:
    """Each plot's builder, by name in report order: it returns the figure, or None when the run has no
    data for it (warnings kept off the console, see `quiet`). `report.pngs` builds them on two cores."""

    return {
        name: quietly(functools.partial(fn, res, headline_ks, curve_ks), caught) for name, _t, _c, fn in PLOTS
    }


def quietly(
    build: Callable[[], Figure | None], caught: list[str] | None = None
) -> Callable[[], Figure | None]:
    """`build` run under `quiet` (a figure builder for `report.pngs`)."""

    def quiet_build() -> Figure | None:
        with quiet(caught):
            return build()

    return quiet_build


def make_figures(
    res: Results, headline_ks: Sequence[int], curve_ks: Sequence[int], caught: list[str] | None = None
) -> dict[str, Figure]:
    """Every plot that has data, by name, in report order (warnings kept off the console, see `quiet`)."""
    built = {name: build() for name, build in figure_builders(res, headline_ks, curve_ks, caught).items()}
    return {name: fig for name, fig in built.items() if fig is not None}


def render_png(fig: Figure, dpi: int = 110, caught: list[str] | None = None) -> bytes:
    """Render to PNG bytes (no timestamps in the metadata, so the same input gives the same bytes)."""
    buf = io.BytesIO()
    with quiet(caught):
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()

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

import math
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from wiseft.report.data import Curve, Results, Stat, VariantView, metric_label

STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "lines.markersize": 4.5,
    "legend.frameon": False,
}

# One colour per role, the same in every plot: raw SFT checkpoints blue, WiSE-FT mixes orange (over δ) and
# brown (over training), temperatures of the final model green, anything else grey.
COLORS = {"checkpoint": "#1f5fa8", "mix": "#e8710a", "temperature": "#2a9d4b", "base": "#6b6b6b"}
ROLE = {  # role of a curve → (colour, marker)
    "raw": ("#1f5fa8", "o"),
    "mixed": ("#a33a06", "D"),
    "delta": ("#e8710a", "o"),
    "temperature": ("#2a9d4b", "s"),
}
SHADES = {  # further curves of the same role
    "raw": ["#1f5fa8", "#5b8fd1", "#0b3463"],
    "mixed": ["#a33a06", "#d94f8a", "#6b2503", "#f0a500"],
    "delta": ["#e8710a", "#b3126a", "#f0a500", "#7a2e0b"],
    "temperature": ["#2a9d4b", "#6cc48a", "#145c2b"],
}
ROLE_TITLE = {
    "raw": "SFT checkpoints (raw)",
    "mixed": "WiSE-FT mixes over training",
    "delta": "WiSE-FT mixes over δ",
    "temperature": "final model at temperature T",
    "loose": "other variants",
}
BAND_ALPHA = 0.18
AXIS_LABEL = {
    "delta": "δ (weight of the early checkpoint; 0 = final, 1 = early)",
    "step": "training step",
    "temperature": "sampling temperature T",
}

PlotFn = Callable[[Results, Sequence[int], Sequence[int]], "Figure | None"]


def pct(stat: Stat | None) -> tuple[float, float, float]:
    """A metric as percent (value, lo, hi); NaN where absent so lines break instead of lying."""
    if stat is None:
        return math.nan, math.nan, math.nan
    lo = stat.lo if stat.has_interval else math.nan
    hi = stat.hi if stat.has_interval else math.nan
    return 100 * stat.value, 100 * lo, 100 * hi


def _figure(ncols: int, nrows: int = 1, width: float = 4.2, height: float = 3.2) -> Figure:
    return Figure(figsize=(width * ncols, height * nrows), layout="constrained")


def _axes(fig: Figure, n: int, ncols: int | None = None, sharey: bool = False) -> list[Axes]:
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    axs = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel().tolist()
    for ax in axs[n:]:
        ax.set_visible(False)
    return axs[:n]


def _line(ax: Axes, xs, stats: Sequence[Stat | None], color: str, label: str, marker: str = "o"):
    """A labelled line with its interval band; returns the Line2D."""
    vals = np.array([pct(s) for s in stats], dtype=float).reshape(-1, 3)
    xs = np.asarray(xs, dtype=float)
    (line,) = ax.plot(xs, vals[:, 0], marker=marker, color=color, label=label)
    if np.isfinite(vals[:, 1:]).any():
        ax.fill_between(xs, vals[:, 1], vals[:, 2], color=color, alpha=BAND_ALPHA, linewidth=0)
    return line


def _pct_axis(ax: Axes, label: str) -> None:
    """Label a percent axis and keep it within [0, 100] (plus room for markers), at least 5 points tall."""
    ax.set_ylabel(f"{label} (%)")
    lo, hi = ax.get_ylim()
    lo, hi = max(lo, -2.0), min(hi, 102.0)
    if hi - lo < 5:
        mid = min(max((lo + hi) / 2, 2.5), 97.5)
        lo, hi = mid - 3, mid + 3
    ax.set_ylim(lo, hi)


def _log2_axis(ax: Axes, ks: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(ks)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))


def _legend(ax: Axes, n_entries: int) -> None:
    if n_entries == 0:
        return
    if n_entries > 6:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if n_entries <= 14 else 2)
    else:
        ax.legend(loc="best")


def _shade(role: str, i: int) -> str:
    palette = SHADES.get(role, ["#6b6b6b", "#a0a0a0"])
    return palette[i % len(palette)]


def _ramp(role: str, n: int) -> list:
    """n colours from light to dark in the role's hue, so order (step, δ, T) reads as shade."""
    name = {"raw": "Blues", "mixed": "OrRd", "delta": "Oranges", "temperature": "Greens"}.get(role, "Greys")
    if n == 1:
        return [ROLE.get(role, ("#6b6b6b",))[0]]
    return [colormaps[name](0.4 + 0.55 * i / (n - 1)) for i in range(n)]


def _shared_legend(fig: Figure, ax: Axes) -> None:
    """One legend under the panels (instead of one per panel covering the data)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(handles), 5))


class PointLabels:
    """Text labels beside points, placed after the data so they do not sit on one another.

    Each label tries a few offsets around its point and takes the first whose box (estimated from the
    font size and text length, in points) overlaps no label placed before; a variant on two curves (the
    final checkpoint is δ=0 and T=1) gets one label that names both.
    """

    OFFSETS = ((4, 3), (4, -10), (-4, 3), (-4, -10), (4, 11), (4, -18))

    def __init__(self, fontsize: float = 7):
        self.fontsize = fontsize
        self.items: dict[str, list] = {}

    def add(self, key: str, x: float, y: float, text: str, color) -> None:
        if key in self.items:
            if text not in self.items[key][2].split(" · "):
                self.items[key][2] += f" · {text}"
            return
        self.items[key] = [x, y, text, color]

    def place(self, ax: Axes) -> None:
        ax.autoscale_view()  # the limits the labels will be drawn against
        fig = ax.get_figure()
        to_points = 72.0 / fig.dpi
        placed: list[tuple[float, float, float, float]] = []
        h = self.fontsize * 1.2
        for x, y, text, color in self.items.values():
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            px, py = ax.transData.transform((x, y)) * to_points
            w = 0.6 * self.fontsize * len(text)
            for dx, dy in self.OFFSETS:
                x0 = px + dx if dx > 0 else px + dx - w
                box = (x0, py + dy, x0 + w, py + dy + h)
                if not any(_overlap(box, other) for other in placed):
                    break
            placed.append(box)
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=self.fontsize,
                        color=color, ha="left" if dx > 0 else "right",
                        bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.75})  # fmt: skip


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


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
def plot_pass_at_k(res: Results, ks: Sequence[int], all_ks: Sequence[int]) -> Figure | None:
    """Pass@k against k (log₂), one curve per variant; one panel per role (checkpoints, mixes, T)."""
    if len(all_ks) < 2:
        return None
    panels: dict[str, list[VariantView]] = {}
    seen: set[str] = set()
    groups = [(role, c.variants) for role, c in res.curves()] + [("loose", tuple(res.loose()))]
    for role, variants in groups:
        for v in variants:
            if v.name in seen or len([k for k in all_ks if v.metric(f"pass@{k}") is not None]) < 2:
                continue
            seen.add(v.name)
            panels.setdefault(role, []).append(v)
    if not panels:
        return None
    ncols = min(len(panels), 2)  # a 2×2 grid keeps the legends and ticks readable in the HTML
    fig = _figure(ncols, math.ceil(len(panels) / ncols), width=4.8, height=3.3)
    axs = _axes(fig, len(panels), ncols=ncols, sharey=True)
    for ax, (role, vs) in zip(axs, panels.items(), strict=True):
        for v, color in zip(vs, _ramp(role, len(vs)), strict=True):
            kk = [k for k in all_ks if v.metric(f"pass@{k}") is not None]
            _line(ax, kk, [v.metric(f"pass@{k}") for k in kk], color, v.short)
        _log2_axis(ax, all_ks)
        ax.set_title(ROLE_TITLE[role])
        ax.set_xlabel("k (samples per problem, log₂ scale)")
        _legend(ax, len(vs))
    for ax in axs[::ncols]:
        _pct_axis(ax, "Pass@k")
    fig.suptitle("Pass@k against k (bands: 95% bootstrap intervals)")
    return fig


def _key(x) -> float:
    return -math.inf if x is None else float(x)


# --- 2. metrics against δ -------------------------------------------------------------------------------
def plot_metrics_vs_delta(res: Results, ks: Sequence[int], all_ks: Sequence[int]) -> Figure | None:
    """Each metric against δ, endpoints (δ=0 final, δ=1 early) and the chosen mix marked."""
    curves = res.delta_curves()
    if not curves:
        return None
    names = [m for m in headline_metrics(res, ks) if any(v.metric(m) for c in curves for v in c.variants)]
    if not names:
        return None
    ncols = min(len(names), 4)
    fig = _figure(ncols, math.ceil(len(names) / ncols), width=3.5, height=2.9)
    axs = _axes(fig, len(names), ncols=ncols)
    best = res.best_variant
    for ax, name in zip(axs, names, strict=True):
        for i, curve in enumerate(curves):
            _line(ax, curve.xs(), [v.metric(name) for v in curve.variants], _shade("delta", i), curve.label)
            _mark_endpoints(ax, curve, name, first=(i == 0))
        best_x = next((x for c in curves for x, v in c.points() if v is best), None)
        if best is not None and best_x is not None and best.metric(name):
            ax.plot(
                [best_x], [pct(best.metric(name))[0]], marker="*", markersize=13, color="#f2c200",
                markeredgecolor="black", linestyle="none", label=f"chosen: δ={best_x:g}", zorder=5,
            )  # fmt: skip
        ax.set_title(metric_label(name))
        ax.set_xlabel("δ (0 = final, 1 = early)")
        _pct_axis(ax, metric_label(name))
    _shared_legend(fig, axs[0])
    fig.suptitle("Metrics against the mixing coefficient δ: θ = δ·θ_early + (1−δ)·θ_final")
    return fig


def _mark_endpoints(ax: Axes, curve: Curve, name: str, first: bool) -> None:
    for x, v in curve.points():
        if x not in (0.0, 1.0) or v.metric(name) is None:
            continue
        is_final = x == 0.0
        ax.plot(
            [x], [pct(v.metric(name))[0]], linestyle="none", markersize=9, markerfacecolor="none",
            markeredgewidth=1.6, marker="s" if is_final else "^", color="black",
            label=("δ=0: final checkpoint" if is_final else "δ=1: early checkpoint") if first else "_nolegend_",
        )  # fmt: skip


# --- 3. the training trajectory --------------------------------------------------------------------------
def plot_trajectory(res: Results, ks: Sequence[int], all_ks: Sequence[int]) -> Figure | None:
    """Pass@1 and Pass@k against the training step, raw checkpoints and WiSE-FT mixed."""
    curves = [(role, c) for role, c in res.curves() if role in ("raw", "mixed")]
    if not curves:
        return None
    names = [n for n in headline_metrics(res, ks) if n.startswith("pass@")]
    names = [n for n in names if any(v.metric(n) for _, c in curves for v in c.variants)]
    if not names:
        return None
    fig = _figure(len(names), width=3.9, height=3.1)
    axs = _axes(fig, len(names))
    for ax, name in zip(axs, names, strict=True):
        n_role: dict[str, int] = {}
        for role, curve in curves:
            i = n_role[role] = n_role.get(role, -1) + 1
            _line(ax, curve.xs(), [v.metric(name) for v in curve.variants], _shade(role, i), curve.label,
                  marker=ROLE[role][1])  # fmt: skip
        best = res.best_variant
        on_mixed = any(best in c.variants for role, c in curves if role == "mixed")
        if best is not None and best.kind == "mix" and best.step is not None and not on_mixed:
            stat = best.metric(name)
            if stat is not None:  # the chosen mix of the final step, beside the checkpoint it rescues
                v, lo, hi = pct(stat)
                err = [[v - lo], [hi - v]] if stat.has_interval else None
                ax.errorbar([best.step], [v], yerr=err, fmt="*", markersize=13, color="#f2c200",
                            markeredgecolor="black", ecolor="#b08a00", elinewidth=1, capsize=3,
                            label=f"chosen mix {best.short.split(',')[0]}", zorder=5)  # fmt: skip
        ax.set_title(metric_label(name))
        ax.set_xlabel("training step")
        _pct_axis(ax, metric_label(name))
    _shared_legend(fig, axs[0])
    fig.suptitle("Training trajectory: raw checkpoints and WiSE-FT mixes with the early checkpoint")
    return fig


# --- 4. the frontier --------------------------------------------------------------------------------------
def plot_frontier(res: Results, ks: Sequence[int], all_ks: Sequence[int]) -> Figure | None:
    """Pass@1 against Pass@k: mixes over δ as one curve, temperatures of the final model as another."""
    big = [k for k in ks if k > 1 and res.has_metric(f"pass@{k}")]
    if not big or not res.has_metric("pass@1"):
        return None
    k = max(big)
    curves = [
        (role, c) for role, c in res.curves() if role in ("delta", "temperature") and _both(c.variants, k)
    ]
    if not curves:
        return None
    fig = _figure(1, width=5.6, height=4.3)
    (ax,) = _axes(fig, 1)
    labels = PointLabels()
    for i, (role, curve) in enumerate(curves):
        pts = [(pos, v) for pos, v in curve.points() if v.metric("pass@1") and v.metric(f"pass@{k}")]
        x = np.array([pct(v.metric(f"pass@{k}")) for _, v in pts])
        y = np.array([pct(v.metric("pass@1")) for _, v in pts])
        color, marker = ROLE[role]
        color = _shade(role, i) if role == "delta" else color
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
        ax.plot([pct(best.metric(f"pass@{k}"))[0]], [pct(best.metric("pass@1"))[0]], marker="*",
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


def _both(vs: Sequence[VariantView], k: int) -> bool:
    return sum(1 for v in vs if v.metric("pass@1") and v.metric(f"pass@{k}")) >= 2


# --- 5. per-problem Pass@1 histograms ---------------------------------------------------------------------
MAX_HISTS = 24


def _once(res: Results) -> list[tuple[str, VariantView]]:
    """Every variant once with the role of the first curve it sits on ("loose" for none), report order."""
    out, seen = [], set()
    for role, curve in res.curves():
        for v in curve.variants:
            if v.name not in seen:
                seen.add(v.name)
                out.append((role, v))
    return out + [("loose", v) for v in res.loose()]


def _color(role: str, v: VariantView) -> str:
    return ROLE[role][0] if role in ROLE else COLORS[v.kind]


def plot_rho_hist(res: Results, ks: Sequence[int], all_ks: Sequence[int]) -> Figure | None:
    """Histogram of per-problem Pass@1 ρ per variant (collapse: mass piles at 0 and 1)."""
    items = [(role, v) for role, v in _once(res) if v.rho_hist() is not None]
    if not items:
        return None
    if len(items) > MAX_HISTS:  # keep the figure readable: an even spread, both ends kept
        idx = sorted({round(i * (len(items) - 1) / (MAX_HISTS - 1)) for i in range(MAX_HISTS)})
        items = [items[i] for i in idx]
    ncols = min(len(items), 6)
    nrows = math.ceil(len(items) / ncols)
    fig = _figure(ncols, nrows, width=2.1, height=1.9)
    axs = _axes(fig, len(items), ncols=ncols, sharey=True)
    for ax, (role, v) in zip(axs, items, strict=True):
        counts, edges = v.rho_hist()
        total = sum(counts) or 1.0
        frac = [100 * c / total for c in counts]
        ax.bar(edges[:-1], frac, width=np.diff(edges), align="edge", color=_color(role, v),
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


def _series_color(role: str, i: int) -> str:
    return _shade(role, i) if role in SHADES else COLORS["base"]


def _tag(role: str, x: float | None, v: VariantView) -> str:
    """The point label along a curve: the step, δ or T (its position) that distinguishes it."""
    if x is None:
        return v.short
    return {"raw": f"step {x:g}", "mixed": f"step {x:g}", "delta": f"δ={x:g}", "temperature": f"T={x:g}"}.get(
        role, v.short
    )


def plot_bias_variance(res: Results, ks: Sequence[int], all_ks: Sequence[int]) -> Figure | None:
    """bias² = (1−E ρ)² against Var ρ per variant, with the Jensen bound on 1−Pass@k.

    1 − Pass@k ≥ (bias² + Var)^{k/2}, so the bound is constant along the lines bias² + Var = c: moving
    toward the origin lowers the bound (WiSE-FT), moving along a line trades one for the other (temperature).
    The second panel checks the bound itself: empirical 1−Pass@k sits on or above the diagonal.
    """
    series = _series(res, lambda v: v.bv("bias2") is not None and v.bv("var") is not None)
    if not series:
        return None
    allv = [v for s in series for _, v in s[2]]
    big = [k for k in ks if k > 1 and any(v.bv_at("bound", k) and v.bv_at("one_minus_pass", k) for v in allv)]
    k = max(big) if big else None
    fig = _figure(2 if k else 1, width=4.7, height=3.9)
    axs = _axes(fig, 2 if k else 1)
    ax = axs[0]
    xlim = _padded([v.bv("var").value for v in allv])
    ylim = _padded([v.bv("bias2").value for v in allv])
    corners = [xlim[0] + ylim[0], xlim[1] + ylim[1]]
    for c in _iso_levels(corners):  # iso-bound lines x + y = c across the visible box
        ax.plot([0, c], [c, 0], color="#9a9a9a", linestyle=":", linewidth=0.9, label="_nolegend_")
        x0, x1 = max(xlim[0], c - ylim[1]), min(xlim[1], c - ylim[0])
        if x0 < x1:
            xm = (x0 + x1) / 2
            ax.annotate(f"{c:g}", (xm, c - xm), fontsize=6.5, color="#777777", ha="left", va="bottom")
    labels = PointLabels(fontsize=6.5)
    for label, role, pts, i in series:
        vs = [v for _, v in pts]
        color = _series_color(role, i)
        x = [v.bv("var").value for v in vs]
        y = [v.bv("bias2").value for v in vs]
        marker = ROLE[role][1] if role in ROLE else "o"
        ax.plot(x, y, marker=marker, color=color, label=label, linestyle="-" if role != "loose" else "none")
        ends = range(len(vs)) if role in ("delta", "temperature", "loose") else (0, len(vs) - 1)
        for j in sorted(set(ends)):
            labels.add(vs[j].name, x[j], y[j], _tag(role, *pts[j]), color)
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
    if k:
        ax2 = axs[1]
        vals = []
        for label, role, members, i in series:
            pts = [(v.bv_at("bound", k), v.bv_at("one_minus_pass", k)) for _, v in members]
            pts = [(b.value, e.value) for b, e in pts if b is not None and e is not None and b.value > 0]
            pts = [(b, e) for b, e in pts if e > 0]  # log axes: a variant that solved everything has no point
            if not pts:
                continue
            b, e = zip(*pts, strict=True)
            vals += [*b, *e]
            ax2.plot(b, e, marker=ROLE[role][1] if role in ROLE else "o", linestyle="none",
                     color=_series_color(role, i), label=label)  # fmt: skip
        # Log axes when the values span orders of magnitude (the bound shrinks like c^{k/2}); else linear.
        log = bool(vals) and max(vals) / min(vals) > 20
        if vals:
            lo, hi = (min(vals) / 2, min(1.0, max(vals) * 2)) if log else (0.0, min(1.0, 1.1 * max(vals)))
            ax2.plot(
                [lo, hi], [lo, hi], color="black", linewidth=0.9, linestyle="--", label="bound = empirical"
            )
            if log:
                ax2.set_xscale("log")
                ax2.set_yscale("log")
            ax2.set_xlim(lo, hi)
            ax2.set_ylim(lo, hi)
        scale = " (log)" if log else ""
        ax2.set_xlabel(f"Jensen bound (bias² + Var)$^{{{k / 2:g}}}$" + scale)
        ax2.set_ylabel(f"empirical 1 − Pass@{k}" + scale)
        ax2.set_title(f"The bound at k={k}: every point on or above the diagonal", fontsize=9)
        ax2.legend(loc="lower right")
    return fig


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
def plot_distinct(res: Results, ks: Sequence[int], all_ks: Sequence[int]) -> Figure | None:
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
    fig = _figure(len(panels), width=3.7, height=3.0)
    axs = _axes(fig, len(panels), sharey=True)
    n = max((int(v.summary.get("n", 0) or 0) for v in res.variants), default=0)
    for ax, (axis, entries) in zip(axs, panels.items(), strict=True):
        for role, curve, i in entries:
            label = curve.label
            stats = [v.diversity("mean_distinct") for v in curve.variants]
            vals = np.array([(s.value, s.lo, s.hi) if s and s.has_interval else
                             ((s.value if s else math.nan), math.nan, math.nan) for s in stats], dtype=float)  # fmt: skip
            xs = curve.xs()
            color = _shade(role, i)
            ax.plot(xs, vals[:, 0], marker=ROLE[role][1], color=color, label=label)
            if np.isfinite(vals[:, 1:]).any():
                ax.fill_between(xs, vals[:, 1], vals[:, 2], color=color, alpha=BAND_ALPHA, linewidth=0)
        ax.set_xlabel(AXIS_LABEL[axis] if axis != "delta" else "δ (0 = final, 1 = early)")
        ax.legend(loc="best")
    axs[0].set_ylabel(f"distinct answers per problem (of n={n})" if n else "distinct answers per problem")
    fig.suptitle("Diversity: distinct final answers among the n samples of a problem")
    return fig


# --- 8. tokens against accuracy ---------------------------------------------------------------------------
def plot_tokens(res: Results, ks: Sequence[int], all_ks: Sequence[int]) -> Figure | None:
    """Mean completion tokens against Pass@1: what accuracy costs in length (instruct ↔ thinking mixes)."""
    series = _series(res, lambda v: v.tokens("mean") is not None and v.metric("pass@1") is not None)
    if sum(len(s[2]) for s in series) < 2:
        return None
    fig = _figure(1, width=5.6, height=4.0)
    (ax,) = _axes(fig, 1)
    labels = PointLabels()
    for label, role, pts, i in series:
        vs = [v for _, v in pts]
        color = _series_color(role, i)
        x = [v.tokens("mean").value for v in vs]
        y = np.array([pct(v.metric("pass@1")) for v in vs])
        marker = ROLE[role][1] if role in ROLE else "o"
        ax.plot(
            x, y[:, 0], marker=marker, color=color, label=label, linestyle="-" if role != "loose" else "none"
        )
        if np.isfinite(y[:, 1:]).all():
            ax.errorbar(x, y[:, 0], yerr=[y[:, 0] - y[:, 1], y[:, 2] - y[:, 0]], fmt="none", ecolor=color,
                        alpha=0.35, elinewidth=0.9)  # fmt: skip
        ends = range(len(vs)) if role in ("delta", "temperature", "loose") else (0, len(vs) - 1)
        for j in sorted(set(ends)):
            labels.add(vs[j].name, x[j], y[j, 0], _tag(role, *pts[j]), color)
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


# Name, file stem, caption, function — in report order.
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


def make_figures(res: Results, ks: Sequence[int], all_ks: Sequence[int]) -> dict[str, Figure]:
    """Every plot that has data, by name, in report order."""
    figs = {}
    with rc_context(STYLE):
        for name, _title, _caption, fn in PLOTS:
            fig = fn(res, ks, all_ks)
            if fig is not None:
                figs[name] = fig
    return figs


def render_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render to PNG bytes (no timestamps in the metadata, so the same input gives the same bytes)."""
    import io

    buf = io.BytesIO()
    with rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()

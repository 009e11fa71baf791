"""The report's look: one colour per role in every plot, the shared rc style, and small axis helpers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from wiseft.report.data import Stat, VariantView

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


def as_percent(stat: Stat | None) -> tuple[float, float, float]:
    """A metric as percent (value, lo, hi); NaN where absent so lines break instead of lying."""
    if stat is None:
        return math.nan, math.nan, math.nan
    lo = stat.lo if stat.has_interval else math.nan
    hi = stat.hi if stat.has_interval else math.nan
    return 100 * stat.value, 100 * lo, 100 * hi


def raw_stat(stat: Stat | None) -> tuple[float, float, float]:
    """A statistic as it is (value, lo, hi), NaN where absent."""
    if stat is None:
        return math.nan, math.nan, math.nan
    return stat.value, stat.lo if stat.has_interval else math.nan, stat.hi if stat.has_interval else math.nan


def figure(ncols: int, nrows: int = 1, width: float = 4.2, height: float = 3.2) -> Figure:
    return Figure(figsize=(width * ncols, height * nrows), layout="constrained")


def axes(fig: Figure, n: int, ncols: int | None = None, sharey: bool = False) -> list[Axes]:
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    axs = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel().tolist()
    for ax in axs[n:]:
        ax.set_visible(False)
    return axs[:n]


def line(
    ax: Axes,
    xs,
    stats: Sequence[Stat | None],
    color: str,
    label: str,
    marker: str = "o",
    percent: bool = True,
):
    """A labelled line with its interval band (values in percent unless `percent` is False); the Line2D."""
    vals = np.array([as_percent(s) if percent else raw_stat(s) for s in stats], dtype=float).reshape(-1, 3)
    xs = np.asarray(xs, dtype=float)
    (line,) = ax.plot(xs, vals[:, 0], marker=marker, color=color, label=label)
    if np.isfinite(vals[:, 1:]).any():
        ax.fill_between(xs, vals[:, 1], vals[:, 2], color=color, alpha=BAND_ALPHA, linewidth=0)
    return line


def percent_axis(ax: Axes, label: str) -> None:
    """Label a percent axis and keep it within [0, 100] (plus room for markers), at least 5 points tall."""
    ax.set_ylabel(f"{label} (%)")
    lo, hi = ax.get_ylim()
    lo, hi = max(lo, -2.0), min(hi, 102.0)
    if hi - lo < 5:
        mid = min(max((lo + hi) / 2, 2.5), 97.5)
        lo, hi = mid - 3, mid + 3
    ax.set_ylim(lo, hi)


def log2_axis(ax: Axes, ks: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(ks)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))


def legend(ax: Axes, n_entries: int) -> None:
    if n_entries == 0:
        return
    if n_entries > 6:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if n_entries <= 14 else 2)
    else:
        ax.legend(loc="best")


def shade(role: str, i: int) -> str:
    palette = SHADES.get(role, ["#6b6b6b", "#a0a0a0"])
    return palette[i % len(palette)]


def ramp(role: str, n: int) -> list:
    """n colours from light to dark in the role's hue, so order (step, δ, T) reads as shade."""
    name = {"raw": "Blues", "mixed": "OrRd", "delta": "Oranges", "temperature": "Greens"}.get(role, "Greys")
    if n == 1:
        return [ROLE.get(role, ("#6b6b6b",))[0]]
    return [colormaps[name](0.4 + 0.55 * i / (n - 1)) for i in range(n)]


def shared_legend(fig: Figure, ax: Axes) -> None:
    """One legend under the panels (instead of one per panel covering the data)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(handles), 5))


def series_color(role: str, i: int) -> str:
    return shade(role, i) if role in SHADES else COLORS["base"]


def role_color(role: str, v: VariantView) -> str:
    return ROLE[role][0] if role in ROLE else COLORS[v.kind]

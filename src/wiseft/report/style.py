"""The report's look: one colour per role in every plot, the shared rc style, and small helpers for axes,
titles that fit their figure and legends that sit outside the data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from wiseft.report.data import Stat, VariantView

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
COLORS = {
    "checkpoint": "#1f5fa8",
    "mix": "#e8710a",
    "temperature": "#2a9d4b",
    "base": "#6b6b6b",
    "imported": "#6b6b6b",
}
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
MANY_LINES = 5  # from this many lines in one panel, lines are thin and only highlighted ones get a band
THIN = {"linewidth": 0.9, "markersize": 2.8, "alpha": 0.9}
SUPTITLE_SIZE = 11.0
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


def figure(
    ncols: int, nrows: int = 1, width: float = 4.2, height: float = 3.2, min_width: float = 6.0
) -> Figure:
    """A constrained-layout Figure with its own Agg canvas (no pyplot), at least `min_width` inches wide so
    that a one-panel figure still has room for its title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(width * ncols, min_width), height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def text_width(text: str, fontsize: float) -> float:
    """The width of `text` in inches at `fontsize` points in the default font (from the font's advances,
    as the Agg renderer lays text out; mathtext between $…$ included)."""
    if not text.strip():
        return 0.0
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    ismath = text.count("$") >= 2 and text.count("$") % 2 == 0
    width, _h, _d = text_to_path.get_text_width_height_descent(
        text, FontProperties(size=fontsize), ismath=ismath
    )
    return float(width) / 72


def fit_text(text: str, width: float, fontsize: float, max_lines: int = 2) -> str:
    """`text` wrapped at spaces into lines at most `width` inches wide at `fontsize`; a word wider than a
    line is cut; past `max_lines` the last line ends in an ellipsis."""
    lines: list[str] = []
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and text_width(candidate, fontsize) <= width:
            lines[-1] = candidate
            continue
        while text_width(word, fontsize) > width and len(word) > 1:
            cut = max((i for i in range(1, len(word)) if text_width(word[:i], fontsize) <= width), default=1)
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        while lines[-1] and text_width(lines[-1] + "…", fontsize) > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] += "…"
    return "\n".join(lines)


def suptitle(fig: Figure, text: str) -> None:
    """The figure's title, wrapped to the figure's width so it is never cut at the edges."""
    fig.suptitle(fit_text(text, fig.get_figwidth() - 0.3, SUPTITLE_SIZE, max_lines=3), fontsize=SUPTITLE_SIZE)


def title(ax: Axes, text: str, width: float, fontsize: float = 10.0) -> None:
    """An axes title wrapped to `width` inches (the panel's width), so neighbours' titles never collide."""
    ax.set_title(fit_text(text, width, fontsize), fontsize=fontsize, pad=9)  # clear of a ★ drawn at 100 %


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
    band: bool = True,
    thin: bool = False,
):
    """A labelled line (values in percent unless `percent` is False) with its interval band unless `band`
    is False; `thin` for a line among many. Markers are not clipped, so a point at 0 % shows whole on the
    axis. Returns the Line2D."""
    vals = np.array([as_percent(s) if percent else raw_stat(s) for s in stats], dtype=float).reshape(-1, 3)
    xs = np.asarray(xs, dtype=float)
    style = THIN if thin else {}
    (line,) = ax.plot(xs, vals[:, 0], marker=marker, color=color, label=label, clip_on=False, **style)
    if band and np.isfinite(vals[:, 1:]).any():
        ax.fill_between(xs, vals[:, 1], vals[:, 2], color=color, alpha=BAND_ALPHA, linewidth=0)
    return line


def emphasis(n_lines: int, highlighted: bool, many: int = MANY_LINES) -> dict:
    """`line` keywords for one of `n_lines` lines in a panel: all banded while they are few; from `many`
    lines on, thin lines and a band only for the highlighted ones (the chosen variant, the endpoints)."""
    if n_lines < many:
        return {"band": True, "thin": False}
    return {"band": highlighted, "thin": not highlighted}


def percent_axis(ax: Axes, label: str | None, axis: str = "y") -> None:
    """Label a percent axis and keep it within [0, 100], at least 5 points tall (markers at the limits are
    drawn unclipped, so nothing needs room below 0)."""
    get, put = (ax.get_ylim, ax.set_ylim) if axis == "y" else (ax.get_xlim, ax.set_xlim)
    if label is not None:
        (ax.set_ylabel if axis == "y" else ax.set_xlabel)(f"{label} (%)")
    lo, hi = get()
    lo, hi = max(lo, 0.0), min(hi, 100.0)
    if hi - lo < 5:
        mid = min(max((lo + hi) / 2, 2.5), 97.5)
        lo, hi = mid - 2.5, mid + 2.5
    put(lo, hi)


def log2_axis(ax: Axes, ks: Sequence[int]) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(ks)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))


LEGEND_SIZE = 8.0
LEGEND_LABEL_WIDTH = 1.9  # inches: a longer label (a variant's name) is wrapped


def legend_right(ax: Axes, n_entries: int) -> None:
    """The axes' legend beside it, outside the data (constrained layout makes room); long labels wrapped."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        labels = [fit_text(label, LEGEND_LABEL_WIDTH, LEGEND_SIZE) for label in labels]
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  ncol=1 if len(handles) <= 14 else 2)  # fmt: skip


def shade(role: str, i: int) -> str:
    palette = SHADES.get(role, ["#6b6b6b", "#a0a0a0"])
    return palette[i % len(palette)]


def ramp(role: str, n: int) -> list:
    """n colours from light to dark in the role's hue, so order (step, δ, T) reads as shade."""
    name = {"raw": "Blues", "mixed": "OrRd", "delta": "Oranges", "temperature": "Greens"}.get(role, "Greys")
    if n == 1:
        return [ROLE.get(role, ("#6b6b6b",))[0]]
    from matplotlib import colormaps

    return [colormaps[name](0.4 + 0.55 * i / (n - 1)) for i in range(n)]


def shared_legend(fig: Figure, axs: Axes | Sequence[Axes]) -> None:
    """One legend under the panels, outside the data: the labelled artists of `axs`, each label once, in
    as many columns as fit the figure's width."""
    from matplotlib.axes import Axes

    handles: dict[str, object] = {}
    for ax in [axs] if isinstance(axs, Axes) else axs:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if not handles:
        return
    room = fig.get_figwidth() - 0.9  # the handle and the gaps of one column, inches
    labels = [fit_text(label, min(room, 3.5), LEGEND_SIZE) for label in handles]
    widest = max(text_width(line, LEGEND_SIZE) for label in labels for line in label.split("\n")) + 0.6
    ncol = max(1, min(len(handles), int((fig.get_figwidth() - 0.3) // widest), 5))
    fig.legend(list(handles.values()), labels, loc="outside lower center", ncol=ncol)


def series_color(role: str, i: int) -> str:
    return shade(role, i) if role in SHADES else COLORS["base"]


def role_color(role: str, v: VariantView) -> str:
    return ROLE[role][0] if role in ROLE else COLORS[v.kind]


# The chosen variant's marker, everywhere.
STAR = {"marker": "*", "markersize": 13, "color": "#f2c200", "markeredgecolor": "black", "linestyle": "none",
        "zorder": 5, "clip_on": False}  # fmt: skip


def delta_tag(delta: float) -> str:
    """`δ=0.25`; the ends say what they are: δ=1 is the early checkpoint itself, δ=0 the final one."""
    ends = {0.0: " (the final checkpoint)", 1.0: " (the early checkpoint)"}
    return f"δ={delta:g}" + ends.get(float(delta), "")

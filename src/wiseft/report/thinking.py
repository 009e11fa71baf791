"""The λ-sweep report of an Instruct ↔ Thinking interpolation (issue 16; papers.md §2).

Shown only when the run's variants carry thinking statistics (`summary["thinking"]`).

- λ is the weight of the LAST anchor: a sweep over INSTRUCT THINKING mixes θ = δ·Instruct + (1−δ)·Thinking,
  so λ = 1 − δ (λ = 0 the Instruct model, λ = 1 the Thinking model), the paper's MI-λ.
- **Stage boundaries** are read from Think % alone, by a rule fixed in advance: the switch starts at the
  first λ (in increasing order) whose Think % exceeds 10 % and ends at the first λ whose Think % exceeds
  90 % (`stages`); stage 1 lies below the start, stage 3 from the end on. Either may be absent.
- **Sweet spot** (`sweet_spot`): the variant with the fewest mean tokens whose Pass@1 reaches the lower end
  of the best variant's 95 % interval — the cheapest accuracy not distinguishable from the best.
- **Frontier**: the variants no other variant beats on both Pass@1 (higher) and mean tokens (fewer).
- The table has the paper's columns: Mean@k (= our Pass@1, the mean over the k samples), Pass@k, Vote@k
  (= our maj@k), Token #N (mean tokens per sample, thinking included), Think #R (% of samples whose
  thinking block closed) and the length relative to the reference variant.

`figure(res)` draws the one figure (accuracy, Think % and tokens against λ with the stages marked, and the
accuracy-per-token frontier with the sweet spot); `section(res)` returns the notes and the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wiseft.report.data import Results, Stat, VariantView, as_stat
from wiseft.report.labels import PointLabels
from wiseft.report.render import fmt_num, fmt_pct
from wiseft.report.style import as_percent, axes, figure, line, percent_axis

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SWITCH_START, SWITCH_END = 0.10, 0.90
PLOT = (
    "thinking_lambda",
    "Instruct → Thinking: the λ sweep",
    "Accuracy, Think % and tokens against λ (the weight of the Thinking model; bands: 95% CI), the stage "
    "boundaries (first λ with Think % above 10% and above 90%), and Pass@1 against mean tokens with the "
    "frontier and the sweet spot (fewest tokens within the best Pass@1's interval).",
)
STAGE_COLORS = ("#dbe9f6", "#fde2c8", "#e2f0d9")


@dataclass(frozen=True)
class Stages:
    """The first λ with Think % above 10 % (the switch starts) and above 90 % (it ends), or None."""

    start: float | None
    end: float | None

    def text(self) -> str:
        fmt = lambda x: "never" if x is None else f"λ = {x:g}"  # noqa: E731
        return (f"stage boundaries from Think %: first λ above 10 %: {fmt(self.start)}; "
                f"first λ above 90 %: {fmt(self.end)}")  # fmt: skip


def stages(lams: Sequence[float], think: Sequence[float]) -> Stages:
    """The rule of the module docstring, on Think % as fractions; `lams` in any order."""
    pts = sorted(zip(lams, think, strict=True))
    start = next((x for x, t in pts if t > SWITCH_START), None)
    end = next((x for x, t in pts if t > SWITCH_END), None)
    return Stages(start, end)


def sweet_spot(points: Sequence[tuple[float, Stat]]) -> int | None:
    """Index of the sweet spot among (mean tokens, Pass@1) points: the fewest tokens whose Pass@1 is at least
    the lower end of the best Pass@1's interval (its value when it has none)."""
    if not points:
        return None
    best = max(range(len(points)), key=lambda i: points[i][1].value)
    floor = points[best][1].lo if points[best][1].lo is not None else points[best][1].value
    ok = [i for i, (_, acc) in enumerate(points) if acc.value >= floor]
    return min(ok, key=lambda i: (points[i][0], -points[i][1].value))


def frontier(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (fewer tokens, higher accuracy), by
    tokens."""
    keep = []
    for i, (tok, acc) in enumerate(points):
        beaten = any(t <= tok and a >= acc and (t, a) != (tok, acc) for t, a in points)
        if not beaten:
            keep.append(i)
    return sorted(keep, key=lambda i: points[i][0])


# --- the variants of the λ sweep ------------------------------------------------------------------------
def has_thinking(res: Results) -> bool:
    """Whether any variant wrote a thinking block: every graded run records Think % and thinking tokens,
    and a run whose samples never open one (a plain WiSE-FT sweep, the toy demo) gets no λ section."""
    return any(_thought(v.section("thinking")) for v in res.variants)


def _thought(section: dict) -> bool:
    values = [(section.get(key) or {}).get("value") for key in ("think_frac", "thinking_tokens")]
    return any(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in values)


def sweep(res: Results) -> list[tuple[float, VariantView]]:
    """(λ, variant) of the whole-model mixes at the first temperature that has any, by λ (ablations and
    other temperatures are in the table)."""
    ablated = {v.name for v in res.run.variants if v.ablation}
    mixes = [v for v in res.variants if v.kind == "mix" and v.delta is not None and v.name not in ablated]
    mixes = [v for v in mixes if v.section("thinking")]
    if not mixes:
        return []
    t0 = mixes[0].temperature
    return sorted(((1.0 - v.delta, v) for v in mixes if v.temperature == t0), key=lambda p: p[0])


def _think(v: VariantView) -> Stat | None:
    return as_stat(v.section("thinking").get("think_frac"))


def _big_k(res: Results) -> int | None:
    ks = [k for k in res.ks("pass") if k > 1]
    return max(ks) if ks else None


# --- the figure ----------------------------------------------------------------------------------------
def figure_for(res: Results) -> Figure | None:
    """The λ-sweep figure, or None without at least two λ points that carry thinking statistics."""
    pts = sweep(res)
    if len(pts) < 2:
        return None
    lams = [x for x, _ in pts]
    st = stages(lams, [(_think(v) or Stat(np.nan)).value for _, v in pts])
    fig = figure(2, 2, width=5.0, height=3.4)
    ax_acc, ax_think, ax_tok, ax_front = axes(fig, 4, ncols=2)
    k = _big_k(res)
    for name, color in (("pass@1", "#1f5fa8"), (f"pass@{k}", "#e8710a"), (f"maj@{k}", "#2a9d4b")):
        if k is None and name != "pass@1" or not res.has_metric(name):
            continue
        line(ax_acc, lams, [v.metric(name) for _, v in pts], color, _paper_name(name, k))
    percent_axis(ax_acc, "accuracy")
    ax_acc.legend(loc="best")
    line(ax_think, lams, [_think(v) for _, v in pts], "#7b2d8e", "Think %")
    for level in (SWITCH_START, SWITCH_END):
        ax_think.axhline(100 * level, color="#999999", linestyle=":", linewidth=0.8)
    percent_axis(ax_think, "Think % (thinking block closed)")
    _tokens_panel(ax_tok, pts)
    for ax in (ax_acc, ax_think, ax_tok):
        _mark_stages(ax, lams, st)
        ax.set_xlabel("λ (weight of the Thinking model)")
    _frontier_panel(ax_front, pts)
    fig.suptitle(st.text(), fontsize=9)
    return fig


def _paper_name(metric: str, k: int | None) -> str:
    return {"pass@1": "Pass@1 (Mean@k)", f"pass@{k}": f"Pass@{k}", f"maj@{k}": f"maj@{k} (Vote@{k})"}[metric]


def _tokens_panel(ax: Axes, pts: list[tuple[float, VariantView]]) -> None:
    lams = [x for x, _ in pts]
    total = [_tokens_stat(v) for _, v in pts]
    line(ax, lams, total, "#333333", "all tokens (Token #N)", percent=False)
    for key, color, label in (
        ("thinking_tokens", "#7b2d8e", "thinking"),
        ("answer_tokens", "#2a9d4b", "answer"),
    ):
        stats = [as_stat(v.section("thinking").get(key)) for _, v in pts]
        if any(s is not None for s in stats):
            line(ax, lams, stats, color, label, marker=".", percent=False)
    ax.set_ylabel("mean tokens per sample")
    ax.set_ylim(bottom=0)
    ax.legend(loc="best")


def _tokens_stat(v: VariantView) -> Stat | None:
    tokens = v.section("tokens")
    mean, ci = (
        tokens.get("mean"),
        tokens.get("ci", {}).get("mean") if isinstance(tokens.get("ci"), dict) else None,
    )
    if ci and len(ci) == 2:
        return as_stat({"value": mean, "lo": ci[0], "hi": ci[1]})
    return as_stat(mean)


def _mark_stages(ax: Axes, lams: list[float], st: Stages) -> None:
    """Shade stage 1 (before the switch starts), 2 (the switch) and 3 (from its end), and draw the
    boundaries."""
    lo, hi = min(lams), max(lams)
    if st.start is None:
        segments = [(lo, hi, "stage 1")]
    elif st.end is None:
        segments = [(lo, st.start, "stage 1"), (st.start, hi, "stage 2")]
    else:
        segments = [(lo, st.start, "stage 1"), (st.start, st.end, "stage 2"), (st.end, hi, "stage 3")]
    for (a, b, name), color in zip(segments, STAGE_COLORS, strict=False):
        if b > a:
            ax.axvspan(a, b, color=color, alpha=0.6, linewidth=0, zorder=0)
            ax.text(
                (a + b) / 2, 0.98, name, transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=7
            )
    for b in (st.start, st.end):
        if b is not None:
            ax.axvline(b, color="#555555", linestyle="--", linewidth=0.9)


def _frontier_panel(ax: Axes, pts: list[tuple[float, VariantView]]) -> None:
    usable = [(lam, v) for lam, v in pts if _tokens_stat(v) is not None and v.metric("pass@1") is not None]
    if not usable:
        return
    xy = [(_tokens_stat(v).value, v.metric("pass@1")) for _, v in usable]  # type: ignore[union-attr]
    tok = np.array([x for x, _ in xy])
    acc = np.array([as_percent(a) for _, a in xy])
    ax.errorbar(tok, acc[:, 0], yerr=[acc[:, 0] - acc[:, 1], acc[:, 2] - acc[:, 0]], fmt="o", color="#1f5fa8",
                ecolor="#1f5fa8", alpha=0.8, elinewidth=0.8, label="variants (λ)")  # fmt: skip
    labels = PointLabels()
    for (lam, v), x, y in zip(usable, tok, acc[:, 0], strict=True):
        labels.add(v.name, x, y, f"λ={lam:g}", "#1f5fa8")
    front = frontier([(x, a.value) for x, a in xy])
    ax.plot(tok[front], acc[front, 0], color="#e8710a", linestyle="-", label="frontier")
    spot = sweet_spot(xy)
    if spot is not None:
        ax.plot([tok[spot]], [acc[spot, 0]], marker="*", markersize=14, color="#f2c200", markeredgecolor="black",
                linestyle="none", label=f"sweet spot λ = {usable[spot][0]:g}", zorder=5)  # fmt: skip
    labels.place(ax)
    ax.set_xlabel("mean tokens per sample (Token #N)")
    percent_axis(ax, "Pass@1")
    ax.set_title("accuracy per token", fontsize=9)
    ax.legend(loc="best")


# --- the table and the notes ----------------------------------------------------------------------------
def section(res: Results) -> tuple[list[str], list[str], list[list[str]]] | None:
    """(notes, header, rows) of the thinking section: the stage boundaries, the sweet spot, the reference
    of the length ratios and the run's warnings; one row per variant with thinking statistics."""
    rows_of = [v for v in res.variants if v.section("thinking")]
    if not rows_of:
        return None
    k = _big_k(res)
    ablation = {v.name: v.ablation for v in res.run.variants}
    header = ["variant", "λ", "ablation", "Mean@k = Pass@1 (%)"]
    header += [f"Pass@{k} (%)", f"Vote@{k} = maj@{k} (%)"] if k else []
    header += ["Token #N", "thinking tokens", "answer tokens", "Think #R (%)", "length ×ref"]
    rows = []
    for v in rows_of:
        th = v.section("thinking")
        ratio = as_stat(v.section("tokens").get("length_ratio"))
        abl = ablation.get(v.name) or {}
        row = [v.name, "–" if v.delta is None else f"{1 - v.delta:g}",
               ", ".join(f"{key} {val if not isinstance(val, list) else ':'.join(map(str, val))}"
                         for key, val in abl.items() if val is not None) or "–",
               fmt_pct(v.metric("pass@1"))]  # fmt: skip
        row += [fmt_pct(v.metric(f"pass@{k}")), fmt_pct(v.metric(f"maj@{k}"))] if k else []
        row += [fmt_num(_tokens_stat(v), 1), fmt_num(as_stat(th.get("thinking_tokens")), 1),
                fmt_num(as_stat(th.get("answer_tokens")), 1), fmt_pct(as_stat(th.get("think_frac"))),
                fmt_num(ratio, 2)]  # fmt: skip
        rows.append(row)
    return notes(res), header, rows


def notes(res: Results) -> list[str]:
    out = []
    pts = sweep(res)
    if len(pts) >= 2:
        lams = [x for x, _ in pts]
        out.append(
            stages(lams, [(_think(v) or Stat(np.nan)).value for _, v in pts]).text().capitalize() + "."
        )
        usable = [(lam, v) for lam, v in pts if _tokens_stat(v) is not None and v.metric("pass@1")]
        spot = sweet_spot([(_tokens_stat(v).value, v.metric("pass@1")) for _, v in usable])  # type: ignore[union-attr, misc]
        if spot is not None:
            lam, v = usable[spot]
            out.append(f"Sweet spot: λ = {lam:g} ({v.name}), Pass@1 {fmt_pct(v.metric('pass@1'))} % at "
                       f"{_tokens_stat(v).value:.1f} tokens per sample: the fewest tokens within the best "  # type: ignore[union-attr]
                       "Pass@1's 95% interval.")  # fmt: skip
    refs = {
        r["reference"] for v in res.variants if isinstance(r := v.section("tokens").get("length_ratio"), dict)
    }
    if refs:
        out.append(
            f"Length ×ref: mean tokens relative to {', '.join(sorted(map(str, refs)))} (paired 95% CI)."
        )
    out.append("λ = 1 − δ is the weight of the last anchor (the Thinking model); Mean@k is our Pass@1 and "
               "Vote@k our maj@k.")  # fmt: skip
    out += [f"Warning: {w}" for w in res.run.warnings or []]
    return out

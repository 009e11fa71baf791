"""Captions worded for the run at hand: what the plot shows of this run, and why something is absent.

`PLOTS` holds a default caption per plot; `caption(name, res, headline_ks)` replaces it where the run
changes what is true (no temperatures swept, a tie, a value of 0 on the bound's log axes). `omitted(res)`
says which plots were left out on purpose and why (the report lists them under the plots).
"""

from __future__ import annotations

from collections.abc import Sequence

from wiseft.report.data import Results
from wiseft.report.plots import pass_at_k_panels
from wiseft.report.scatter import MANY_SERIES, bound_k, empirical, frontier_curves, frontier_k
from wiseft.report.style import MANY_LINES


def caption(
    name: str, res: Results, default: str, headline_ks: Sequence[int], curve_ks: Sequence[int]
) -> str:
    """The caption of plot `name` for this run (`default`: the one in `PLOTS`)."""
    words = {
        "pass_at_k": _pass_at_k,
        "metrics_vs_delta": _metrics_vs_delta,
        "frontier": _frontier,
        "bias_variance": _bias_variance,
    }
    fn = words.get(name)
    return fn(res, default, headline_ks, curve_ks) if fn is not None else default


def _pass_at_k(res: Results, default: str, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> str:
    if not any(len(vs) >= MANY_LINES for vs in pass_at_k_panels(res, curve_ks).values()):
        return default
    return (
        f"{default} Where a panel holds {MANY_LINES} or more variants, their lines are thin and only the chosen "
        "variant and the panel's first and last keep their 95% band."
    )


def _chosen_words(res: Results) -> str:
    if res.selection is not None and res.selection.tie:
        return " No ★: the variants tie on the selection metric (see Best variant)."
    return " ★ marks the chosen mix." if res.chosen is not None else ""


def _metrics_vs_delta(res: Results, default: str, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> str:
    return default + _chosen_words(res)


def _frontier(res: Results, default: str, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> str:
    k = frontier_k(res, headline_ks)
    roles = {role for role, _ in frontier_curves(res, k)} if k is not None else set()
    if roles == {"delta", "temperature"}:
        text = (
            f"Mixes over δ against the final model at other temperatures, Pass@1 over Pass@{k}: a mix that "
            "sits up and right of the temperature curve does what no temperature does."
        )
    elif roles == {"delta"}:
        text = (
            f"Mixes over δ, Pass@1 over Pass@{k}: up and right is better on both. No temperatures of the "
            "final model were swept, so there is no temperature curve to compare with."
        )
    else:
        text = f"The final model at several temperatures, Pass@1 over Pass@{k}: temperature trades one for the other."
    if k is not None and len(frontier_curves(res, k)) >= MANY_SERIES:
        text += _QUIET_WORDS
    return text + _chosen_words(res).replace("mix", "variant")


_QUIET_WORDS = (
    " With this many curves only the raw checkpoints, the temperatures and the curve of the chosen variant"
    " are labelled; the others are drawn thin, for context."
)


def _bias_variance(res: Results, default: str, headline_ks: Sequence[int], curve_ks: Sequence[int]) -> str:
    text = (
        "Left: lower-left is better; the Jensen bound on 1−Pass@k, (bias² + Var)^{k/2}, is constant along each "
        "dotted line bias² + Var = c."
    )
    if len(res.curves()) + bool(res.loose()) >= MANY_SERIES:
        text += _QUIET_WORDS
    k = bound_k(res, headline_ks)
    if k is None:
        return text
    text += f" Right: what the bound bounds at k={k}, against the bound; every point lies on or above the diagonal."
    values = [(v.bv_at("bound", k), empirical(v, k)) for v in res.variants]
    if any(b is not None and e is not None and 0.0 in (b.value, e.value) for b, e in values):
        text += (
            " A value of 0 (every problem solved) is drawn at 0: the axes are logarithmic but linear near 0."
        )
    missing = [v.name for v, (b, e) in zip(res.variants, values, strict=True) if b is None or e is None]
    if missing and len(missing) < len(res.variants):
        text += f" No point for {_names(missing)}: the summary has no bound at k={k}."
    return text


def _names(names: Sequence[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def omitted(res: Results, drawn: Sequence[str]) -> list[tuple[str, str]]:
    """(title, reason) for plots left out on purpose although the run has their data."""
    out = []
    length = res.same_length()
    if "tokens_vs_accuracy" not in drawn and length is not None:
        out.append(
            (
                "Length against accuracy",
                f"every variant's mean completion length is the same ({length:.1f} tokens), so there is no "
                "trade-off between length and accuracy to show.",
            )
        )
    return out

"""`nuslerp`: slerp with t = w_2/(w_1 + w_2), over the whole tensor or per row/column, optionally of task
vectors over a base (mergekit's nuslerp).

Vectors v_i are the models, or θ_i − θ_base with a base. `nuslerp_flatten` (default true): one angle per
tensor; false: one per row (vectors along the last dimension), or with `nuslerp_row_wise: true` one per
column (vectors along the first dimension). Norms are clamped to ≥ 1e-7, cos θ = v_1·v_2/(n_1·n_2) clamped
to [−1, 1], and where |sin θ| < 1e-8 the result is the lerp (1−t)·v_1 + t·v_2; otherwise
    sin((1−t)·θ)/sin θ · v_1 + sin(t·θ)/sin θ · v_2      (+ θ_base).
|w_1 + w_2| < 1e-6 gives t = 0.5.
"""

from __future__ import annotations

import math

import torch

from wiseft.merge.methods import Method, Param, TensorContext, register
from wiseft.merge.spherical import ColumnJob, GramJob, RowJob, rows_of

NORM_EPS = 1e-7
COLINEAR_EPS = 1e-8


def interpolation_t(w1: float, w2: float) -> float:
    total = w1 + w2
    return 0.5 if abs(total) < 1e-6 else w2 / total


def flat_coefficients(gram: list[list[float]], t: float) -> tuple[float, float]:
    n1, n2 = max(math.sqrt(gram[0][0]), NORM_EPS), max(math.sqrt(gram[1][1]), NORM_EPS)
    theta = math.acos(min(1.0, max(-1.0, gram[0][1] / (n1 * n2))))
    sin_theta = math.sin(theta)
    if abs(sin_theta) < COLINEAR_EPS:
        return 1 - t, t
    return math.sin((1 - t) * theta) / sin_theta, math.sin(t * theta) / sin_theta


def vector_coefficients(gram: list[list[torch.Tensor]], t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """flat_coefficients for many vectors at once (one entry per row or column)."""
    n1 = gram[0][0].sqrt().clamp(min=NORM_EPS)
    n2 = gram[1][1].sqrt().clamp(min=NORM_EPS)
    theta = torch.acos((gram[0][1] / (n1 * n2)).clamp(-1.0, 1.0))
    sin_theta = torch.sin(theta)
    colinear = sin_theta.abs() < COLINEAR_EPS
    s1 = torch.where(colinear, 1 - t, torch.sin((1 - t) * theta) / sin_theta)
    s2 = torch.where(colinear, t, torch.sin(t * theta) / sin_theta)
    return s1, s2


def _job(ctx: TensorContext, coeffs: tuple[float, ...]):
    w1, w2, flatten, row_wise = coeffs
    t = interpolation_t(w1, w2)
    if flatten or len(ctx.shape) < 2:
        return GramJob(ctx.name, 2, ctx.has_base, lambda gram: flat_coefficients(gram, t))
    if row_wise:
        return ColumnJob(
            ctx.numel // ctx.shape[0], 2, ctx.has_base, lambda gram: vector_coefficients(gram, t)
        )
    return RowJob(rows_of(ctx.shape), ctx.has_base, lambda gram: vector_coefficients(gram, t))


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    t = interpolation_t(coeffs[0], coeffs[1])
    if not extrapolate and not 0.0 <= t <= 1.0:
        return f"t = w_2/(w_1 + w_2) = {t:g} is outside [0, 1]; pass --extrapolate to allow it"
    return None


NUSLERP = register(
    Method(
        name="nuslerp",
        summary="slerp(v_1, v_2; t = w_2/(w_1+w_2)) per tensor, row or column; v_i = θ_i (− θ_base)",
        coefficient="weights",
        needs_base="optional",
        min_models=2,
        max_models=2,
        check=_check,
        params=(
            Param("weight", "model", None, doc="relative weight of each of the two models"),
            Param("nuslerp_flatten", "global", True, kind="bool", doc="one angle per tensor"),
            Param("nuslerp_row_wise", "global", False, kind="bool", doc="without flatten: per column"),
        ),
        job=_job,
        reference="https://github.com/arcee-ai/mergekit/blob/main/docs/merge_methods.md#nuslerp-nuslerp",
    )
)

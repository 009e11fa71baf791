"""`slerp`: spherical interpolation of two models, t per tensor (mergekit's semantics, in float64).

With n_a = |A|, n_b = |B| over the whole tensor (a norm ≤ 1e-8 counts as 1, as mergekit leaves such a
vector unnormalised), cos θ = A·B / (n_a·n_b). When |cos θ| > 0.9995 the vectors are taken as colinear and
the result is the lerp (1−t)·A + t·B; otherwise θ = acos(cos θ) and
    slerp = sin((1−t)·θ)/sin θ · A + sin(t·θ)/sin θ · B     (computed as sin(θ − θ·t), as mergekit).
t = 0 gives A and t = 1 gives B bit for bit. In a mergekit configuration A is `base_model`.
"""

from __future__ import annotations

import math

from wiseft.merge.methods import Method, Param, TensorContext, register
from wiseft.merge.spherical import GramJob

DOT_THRESHOLD = 0.9995
NORM_EPS = 1e-8


def slerp_coefficients(gram: list[list[float]], t: float) -> tuple[float, float]:
    na, nb = math.sqrt(gram[0][0]), math.sqrt(gram[1][1])
    dot = gram[0][1] / ((na if na > NORM_EPS else 1.0) * (nb if nb > NORM_EPS else 1.0))
    if abs(dot) > DOT_THRESHOLD:
        return 1 - t, t
    theta0 = math.acos(dot)
    sin0 = math.sin(theta0)
    theta_t = theta0 * t
    return math.sin(theta0 - theta_t) / sin0, math.sin(theta_t) / sin0


def _job(ctx: TensorContext, coeffs: tuple[float, ...]) -> GramJob:
    (t,) = coeffs
    return GramJob(ctx.name, 2, False, lambda gram: slerp_coefficients(gram, t))


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    (t,) = coeffs
    if not extrapolate and not 0.0 <= t <= 1.0:
        return f"t {t:g} is outside [0, 1]; pass --extrapolate to go beyond the two models"
    return None


SLERP = register(
    Method(
        name="slerp",
        summary="sin((1−t)θ)/sin θ·A + sin(tθ)/sin θ·B, θ = ∠(A, B) per tensor; lerp when colinear",
        coefficient="t",
        needs_base=False,
        min_models=2,
        max_models=2,
        check=_check,
        params=(
            Param("t", "global", None, doc="0 gives the first model (mergekit: base_model), 1 the second"),
        ),
        job=_job,
        reference="https://en.wikipedia.org/wiki/Slerp",
    )
)

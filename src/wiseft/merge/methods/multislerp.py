"""`multislerp`: barycentric interpolation of N models on the hypersphere (mergekit's multislerp).

With v_i the models (or θ_i − θ_base), n_i = |v_i|, u_i = v_i/(n_i + eps) and weights w (divided by their
sum when `normalize_weights`): m = Σ w_i·u_i, m̂ = m/|m|; the tangent T = Σ w_i·(u_i − (u_i·m̂)·m̂) at m̂,
τ = |T| + eps, and the result is (m̂·cos τ + T·sin τ/τ)·Σ w_i·n_i (+ θ_base). Every vector here is a
combination of the v_i, so it is computed from their inner products and written as Σ c_i·v_i. |m| < eps
with two models falls back to w_1·v_1 + w_2·v_2; with more it is an error naming the tensor.
"""

from __future__ import annotations

import math

from wiseft.errors import MergeError
from wiseft.merge.methods import Method, Param, TensorContext, register
from wiseft.merge.methods.linear import check_normalizable, normalized
from wiseft.merge.spherical import GramJob


def quad(gram: list[list[float]], a: list[float], b: list[float]) -> float:
    """a^T G b, added exactly."""
    n = len(a)
    return math.fsum(a[i] * gram[i][j] * b[j] for i in range(n) for j in range(n))


def multislerp_coefficients(gram, weights, normalize: bool, eps: float, tensor: str) -> list[float]:
    n = len(weights)
    w = list(normalized(weights)) if normalize else list(weights)
    norms = [math.sqrt(gram[i][i]) for i in range(n)]
    scale = [1.0 / (norms[i] + eps) for i in range(n)]  # u_i = scale_i·v_i
    mean = [w[i] * scale[i] for i in range(n)]
    mean_norm = math.sqrt(max(quad(gram, mean, mean), 0.0))
    if mean_norm < eps:
        if n == 2:
            return w
        raise MergeError(
            f"tensor {tensor}: the weighted mean of the unit vectors is zero (antipodal models with "
            "balancing weights); multislerp is undefined there; change the weights"
        )
    hat = [c / mean_norm for c in mean]
    dots = [scale[i] * math.fsum(gram[i][j] * hat[j] for j in range(n)) for i in range(n)]
    shift = math.fsum(w[i] * dots[i] for i in range(n))
    tangent = [mean[i] - shift * hat[i] for i in range(n)]
    tau = math.sqrt(max(quad(gram, tangent, tangent), 0.0)) + eps
    average_norm = math.fsum(norms[i] * w[i] for i in range(n))
    cos_tau, sin_ratio = math.cos(tau), math.sin(tau) / tau
    return [(hat[i] * cos_tau + tangent[i] * sin_ratio) * average_norm for i in range(n)]


def _job(ctx: TensorContext, coeffs: tuple[float, ...]) -> GramJob:
    n = ctx.n_models
    weights, normalize, eps = coeffs[:n], bool(coeffs[n]), coeffs[n + 1]
    return GramJob(
        ctx.name,
        n,
        ctx.has_base,
        lambda gram: multislerp_coefficients(gram, weights, normalize, eps, ctx.name),
    )


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    n = len(coeffs) - 2
    weights, normalize, eps = coeffs[:n], coeffs[n], coeffs[n + 1]
    if eps <= 0.0:
        return f"eps {eps:g} must be positive"
    return check_normalizable(weights) if normalize else None


MULTISLERP = register(
    Method(
        name="multislerp",
        summary="(m̂·cos τ + T·sin τ/τ)·Σ w_i|v_i|: spherical barycentre of N models (v_i = θ_i (− θ_base))",
        coefficient="weights",
        needs_base="optional",
        min_models=2,
        max_models=None,
        check=_check,
        params=(
            Param("weight", "model", None, doc="weight of each model"),
            Param("normalize_weights", "global", True, kind="bool", doc="divide the weights by their sum"),
            Param("eps", "global", 1e-8, doc="numerical floor of norms"),
        ),
        job=_job,
        reference="https://goddard.blog/posts/multislerp-wow-what-a-cool-idea",
    )
)

"""`karcher`: the weighted Riemannian (Karcher) mean of the models' directions, times their mean norm.

mergekit's algorithm with the weights honoured (mergekit gives every model 1/N whatever its weight):
α = w/Σw; unit vectors u_i = θ_i/n_i of the models with n_i > tol (α renormalised over them); start at
u = Σ α_i·u_i/|Σ α_i·u_i| (the first unit vector if that norm < tol); then up to `max_iter` times:
T = Σ α_i·θ_i/sin θ_i·(u_i − cos θ_i·u) over the models at angle θ_i = acos(u·u_i) ≥ tol, stop when
|T| < tol, else u ← cos|T|·u + sin|T|·T/|T| (renormalised). Result: (Σ α_i·n_i)·u. Every iterate is a
combination of the θ_i, so it runs on their inner products and the output is Σ c_i·θ_i.
"""

from __future__ import annotations

import math

from wiseft.merge.methods import Method, Param, TensorContext, register
from wiseft.merge.methods.linear import check_normalizable, normalized
from wiseft.merge.methods.multislerp import quad
from wiseft.merge.spherical import GramJob


def karcher_coefficients(gram, weights, max_iter: int, tol: float) -> list[float]:
    n = len(weights)
    alphas = normalized(weights)
    norms = [math.sqrt(gram[i][i]) for i in range(n)]
    valid = [i for i in range(n) if norms[i] > tol]
    if not valid:
        return [0.0] * n
    total = math.fsum(alphas[i] for i in valid)
    a = {i: alphas[i] / total for i in valid}
    u = [a[i] / norms[i] if i in a else 0.0 for i in range(n)]  # u = Σ a_i·θ_i/n_i
    norm_u = math.sqrt(max(quad(gram, u, u), 0.0))
    if norm_u < tol:
        u = [1.0 / norms[i] if i == valid[0] else 0.0 for i in range(n)]
    else:
        u = [c / norm_u for c in u]
    for _ in range(max_iter):
        step = [0.0] * n
        for i in valid:
            dot = min(1.0, max(-1.0, math.fsum(u[j] * gram[j][i] for j in range(n)) / norms[i]))
            theta = math.acos(dot)
            if theta < tol:
                continue
            factor = a[i] * (theta / math.sin(theta))
            step = [
                s + factor * ((1.0 / norms[i] if j == i else 0.0) - dot * u[j]) for j, s in enumerate(step)
            ]
        norm_step = math.sqrt(max(quad(gram, step, step), 0.0))
        if norm_step < tol:
            break
        cos_s, sin_s = math.cos(norm_step), math.sin(norm_step)
        u = [cos_s * u[j] + sin_s * (step[j] / norm_step) for j in range(n)]
        norm_u = math.sqrt(max(quad(gram, u, u), 0.0))
        if norm_u > tol:
            u = [c / norm_u for c in u]
    scale = math.fsum(alphas[i] * norms[i] for i in range(n))
    return [scale * c for c in u]


def _job(ctx: TensorContext, coeffs: tuple[float, ...]) -> GramJob:
    n = ctx.n_models
    weights, max_iter, tol = coeffs[:n], int(coeffs[n]), coeffs[n + 1]
    return GramJob(ctx.name, n, False, lambda gram: karcher_coefficients(gram, weights, max_iter, tol))


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    n = len(coeffs) - 2
    weights, max_iter, tol = coeffs[:n], coeffs[n], coeffs[n + 1]
    if max_iter < 0 or tol <= 0.0:
        return f"max_iter {max_iter:g} must be ≥ 0 and tol {tol:g} positive"
    if any(w < 0.0 for w in weights):
        return f"weights {list(weights)} must not be negative (a Karcher mean weighs directions)"
    return check_normalizable(weights)


KARCHER = register(
    Method(
        name="karcher",
        summary="(Σ α_i|θ_i|)·argmin_u Σ α_i·∠(u, θ_i)²: weighted Riemannian mean of directions, α = w/Σw",
        coefficient="weights",
        needs_base=False,
        min_models=2,
        max_models=None,
        check=_check,
        params=(
            Param("weight", "model", 1.0, doc="weight of each model (mergekit ignores it; honoured here)"),
            Param("max_iter", "global", 10, kind="int", doc="iterations at most"),
            Param("tol", "global", 1e-5, doc="convergence tolerance"),
        ),
        job=_job,
        reference="https://arxiv.org/abs/2603.04972",
    )
)

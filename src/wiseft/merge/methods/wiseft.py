"""`wise-ft`: two anchors, θ(δ) = δ·θ_early + (1−δ)·θ_final (DESIGN §4; δ=0 final, δ=1 early)."""

from __future__ import annotations

from wiseft.merge.methods import Method, Param, register
from wiseft.merge.methods.linear import weighted_sum


def _weights(coeffs: tuple[float, ...]) -> tuple[float, float]:
    # The weights are exactly δ and 1−δ as Python computes them; at δ=0 or δ=1 one weight is 0 (skipped)
    # and the other 1 (a plain copy), so the endpoints return an anchor bit for bit.
    (delta,) = coeffs
    return delta, 1.0 - delta


def _kernel(xs, coeffs, acc, scratch) -> None:
    weighted_sum(xs, _weights(coeffs), acc, scratch)


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    (delta,) = coeffs
    if not extrapolate and not 0.0 <= delta <= 1.0:
        return f"delta {delta:g} is outside [0, 1]; pass --extrapolate to extrapolate beyond the anchors"
    return None


WISEFT = register(
    Method(
        name="wise-ft",
        summary="δ·EARLY + (1−δ)·FINAL (two anchors, EARLY first)",
        coefficient="delta",
        needs_base=False,
        min_models=2,
        max_models=2,
        kernel=_kernel,
        check=_check,
        weights=_weights,
        params=(Param("delta", "global", None, doc="weight of EARLY"),),
        reference="https://arxiv.org/abs/2109.01903",
    )
)

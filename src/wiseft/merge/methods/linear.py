"""`linear`: θ = Σ w_i·θ_i with Σ w_i = 1 (model soups, weighted averages)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from wiseft.merge.methods import Method, register

SUM_TOLERANCE = 1e-6


def weighted_sum(
    xs: Sequence[torch.Tensor], weights: Sequence[float], acc: torch.Tensor, tmp: torch.Tensor
) -> None:
    """acc ← Σ w_i·x_i in float64, left to right in input order, skipping zero weights.

    Each product is one IEEE multiply and each step one IEEE add (no fused multiply-add), so the result is
    exactly what `w_0*x_0 + w_1*x_1 + …` gives on float64 tensors. Starting from the first non-zero term
    (instead of from 0) keeps a weight of exactly 1 bit-exact, signed zeros included.
    """
    first = True
    for x, w in zip(xs, weights, strict=True):
        if w == 0.0:
            continue
        if first:
            acc.copy_(x)
            if w != 1.0:
                acc.mul_(w)
            first = False
        else:
            tmp.copy_(x)
            if w != 1.0:
                tmp.mul_(w)
            acc.add_(tmp)
    if first:
        acc.zero_()


def _kernel(xs, coeffs, acc, tmp, aux) -> None:
    weighted_sum(xs, coeffs, acc, tmp)


def check_weights(weights: tuple[float, ...], extrapolate: bool) -> str | None:
    total = sum(weights)
    if abs(total - 1.0) > SUM_TOLERANCE:
        return f"weights {list(weights)} sum to {total:.9g}, not 1; rescale them so they sum to 1"
    if not extrapolate and any(w < 0.0 or w > 1.0 for w in weights):
        return f"weights {list(weights)} leave [0, 1] (extrapolation); pass --extrapolate to allow it"
    return None


LINEAR = register(
    Method(
        name="linear",
        summary="Σ w_i·θ_i over N models, weights summing to 1 (--weights)",
        coefficient="weights",
        needs_base=False,
        min_models=1,
        max_models=None,
        kernel=_kernel,
        check=check_weights,
    )
)

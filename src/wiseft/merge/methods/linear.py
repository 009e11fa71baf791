"""`linear`: θ = Σ w_i·θ_i with Σ w_i = 1 (model soups, weighted averages)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from wiseft.merge.methods import Method, register

SUM_TOLERANCE = 1e-6


def weighted_sum(xs: Sequence[torch.Tensor], weights: Sequence[float], acc: torch.Tensor, scratch) -> None:
    """acc ← Σ w_i·x_i in float64, skipping zero weights.

    Each product is one IEEE multiply (no fused multiply-add), so with one or two terms the result is
    exactly `w_0*x_0 + w_1*x_1` on float64 tensors; a weight of exactly 1 copies its input bit for bit
    (signed zeros included). Three or more terms are added smallest value first (`canonical_sum`), so the
    result does not depend on the order of the models.
    """
    terms = [(x, w) for x, w in zip(xs, weights, strict=True) if w != 0.0]
    m = acc.numel()
    if not terms:
        acc.zero_()
    elif len(terms) <= 2:
        _product(acc, *terms[0])
        if len(terms) == 2:
            tmp = scratch.tmp[:m]
            _product(tmp, *terms[1])
            acc.add_(tmp)
    else:
        stack = scratch.stack(len(terms), m)
        for row, (x, w) in zip(stack, terms, strict=True):
            _product(row, x, w)
        scratch.canonical_sum(stack, acc)


def _product(dst: torch.Tensor, x: torch.Tensor, w: float) -> None:
    dst.copy_(x)
    if w != 1.0:
        dst.mul_(w)


def _kernel(xs, coeffs, acc, scratch) -> None:
    weighted_sum(xs, coeffs, acc, scratch)


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
        weights=tuple,
    )
)

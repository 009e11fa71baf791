"""`linear`: θ = Σ w_i·θ_i with Σ w_i = 1, or weights divided by their sum (`normalize`; model soups)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from wiseft.merge.methods import Method, Param, register

SUM_TOLERANCE = 1e-6
NORMALIZE_EPS = 1e-8  # |Σ w| below this cannot be normalised


def weighted_sum(xs: Sequence[torch.Tensor], weights: Sequence[float], acc: torch.Tensor, scratch) -> None:
    """acc ← Σ w_i·x_i in float64, skipping zero weights.

    Each product is one IEEE multiply (no fused multiply-add), so with one or two terms the result is
    exactly `w_0*x_0 + w_1*x_1` on float64 tensors; a weight of exactly 1 copies its input bit for bit
    (signed zeros included). Three or more terms are added smallest value first (`canonical_sum`), so the
    result does not depend on the order of the models. `weights` may also hold per-row float64 columns
    (shape [rows, 1]) for inputs viewed as rows.
    """
    terms = [(x, w) for x, w in zip(xs, weights, strict=True) if not _is_zero(w)]
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


def _is_zero(w) -> bool:
    return isinstance(w, float) and w == 0.0


def _product(dst: torch.Tensor, x: torch.Tensor, w) -> None:
    dst.copy_(x)
    if isinstance(w, torch.Tensor):  # per-row [rows, 1] or per-column [1, cols] coefficients
        rows = dst.view(w.shape[0], -1) if w.shape[0] > 1 else dst.view(-1, w.shape[1])
        rows.mul_(w)
    elif w != 1.0:
        dst.mul_(w)


def normalized(weights: Sequence[float]) -> tuple[float, ...]:
    """w_i / Σ w (Σ added exactly, so the order of the models does not matter)."""
    total = math.fsum(weights)
    return tuple(w / total for w in weights)


def _weights(coeffs: tuple[float, ...]) -> tuple[float, ...]:
    *weights, normalize = coeffs
    return normalized(weights) if normalize else tuple(weights)


def _kernel(xs, coeffs, acc, scratch) -> None:
    weighted_sum(xs, _weights(coeffs), acc, scratch)


def check_weights(weights: tuple[float, ...], extrapolate: bool) -> str | None:
    total = sum(weights)
    if abs(total - 1.0) > SUM_TOLERANCE:
        return (
            f"weights {list(weights)} sum to {total:.9g}, not 1; rescale them so they sum to 1 "
            "(or set normalize: true)"
        )
    if not extrapolate and any(w < 0.0 or w > 1.0 for w in weights):
        return f"weights {list(weights)} leave [0, 1] (extrapolation); pass --extrapolate to allow it"
    return None


def check_normalizable(weights: Sequence[float]) -> str | None:
    if abs(math.fsum(weights)) < NORMALIZE_EPS:
        return f"weights {list(weights)} sum to 0, so they cannot be normalised; change them or set normalize: false"
    return None


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    *weights, normalize = coeffs
    if normalize:
        return check_normalizable(weights) or check_weights(normalized(weights), extrapolate)
    return check_weights(tuple(weights), extrapolate)


LINEAR = register(
    Method(
        name="linear",
        summary="Σ w_i·θ_i (weights sum to 1, or normalize: Σ w_i·θ_i / Σ w_i)",
        coefficient="weights",
        needs_base=False,
        min_models=1,
        max_models=None,
        kernel=_kernel,
        check=_check,
        weights=_weights,
        params=(
            Param("weight", "model", None, doc="w_i (default: equal weights)"),
            Param(
                "normalize", "global", False, kind="bool", doc="divide by Σ w_i (mergekit's default: true)"
            ),
        ),
        reference="https://arxiv.org/abs/2203.05482",
    )
)

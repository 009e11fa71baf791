"""`nearswap`: take the model's value where it is already near the base (mergekit's NearSwap).

Per element, with a the base and b the one model:

    w = clamp(t / max(|a − b|, 1e-6), 0, 1),   θ = w·b + (1 − w)·a

so an element moves all the way to b where |a − b| ≤ t, and by t/|a − b| of the way elsewhere. t = 0
gives the base; a t at least max|a − b| (and at least 1e-6) gives the model, bit for bit. Computed in
float64 in this order and rounded once; mergekit computes it in its `dtype`.
"""

from __future__ import annotations

import math

import torch

from wiseft.merge.methods import Method, Param, register

MIN_DISTANCE = 1e-6  # mergekit's clamp of |a − b|


def _kernel(xs, coeffs, acc, scratch) -> None:
    """xs = (base, model); acc ← w·b + (1 − w)·a, t / d a correctly rounded division."""
    if len(xs) != 2:  # the recipe checks it: a base and exactly one model
        raise ValueError(f"nearswap takes a base and one model, got {len(xs)} inputs")
    (t,) = coeffs
    m = acc.numel()
    a, w = scratch.aux[:m], scratch.tmp[:m]
    a.copy_(xs[0])
    acc.copy_(xs[1])
    torch.sub(acc, a, out=w).abs_().clamp_(min=MIN_DISTANCE)
    torch.div(torch.tensor(t, dtype=torch.float64), w, out=w)  # not t * (1/d): that rounds twice
    w.clamp_(0.0, 1.0)
    acc.mul_(w)  # w·b
    w.neg_().add_(1.0).mul_(a)  # (1 − w)·a
    acc.add_(w)


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    (t,) = coeffs
    if not math.isfinite(t) or t < 0.0:
        return f"t {t:g} must be a finite number >= 0 (t = 0 already gives the base everywhere)"
    return None


NEARSWAP = register(
    Method(
        name="nearswap",
        summary="w·b + (1−w)·a, w = clamp(t / max(|a−b|, 1e-6), 0, 1): b where it is within t of the base a",
        coefficient="t",
        needs_base=True,
        min_models=1,
        max_models=1,
        check=_check,
        kernel=_kernel,
        params=(Param("t", "global", None, doc="distance up to which the model's value is taken whole"),),
        reference="https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001",
    )
)

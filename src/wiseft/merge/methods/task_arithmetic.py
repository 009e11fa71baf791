"""`task_arithmetic`: θ = θ_base + Σ c_i·(θ_i − θ_base), c_i = λ·w_i (÷ Σ w with `normalize`)."""

from __future__ import annotations

import math

from wiseft.merge.methods import Method, Param, register
from wiseft.merge.methods.linear import NORMALIZE_EPS


def scales(weights, lam: float, normalize: bool) -> tuple[float, ...]:
    """c_i = λ·w_i/D with D = Σ w (|D| < 1e-8 → 1, as mergekit) when normalising, else 1. λ = 1 and no
    normalisation give c_i = w_i exactly."""
    divisor = math.fsum(weights) if normalize else 1.0
    if abs(divisor) < NORMALIZE_EPS:
        divisor = 1.0
    if lam == 1.0 and divisor == 1.0:
        return tuple(weights)
    return tuple(lam * w / divisor for w in weights)


def base_plus(base64, deltas, coeffs, acc, scratch) -> None:
    """acc ← base + Σ c_i·δ_i in float64 (base and δ_i float64 chunks); zero c_i are skipped.

    With one non-zero c this is `base + c·δ`; with more, the terms (the base among them) are added
    smallest value first (`canonical_sum`), so the order of the models does not matter."""
    m = acc.numel()
    active = [(d, c) for d, c in zip(deltas, coeffs, strict=True) if c != 0.0]
    if len(active) <= 1:
        acc.copy_(base64)
        for d, c in active:
            tmp = scratch.tmp[:m]
            tmp.copy_(d)
            if c != 1.0:
                tmp.mul_(c)
            acc.add_(tmp)
        return
    stack = scratch.stack(len(active) + 1, m)
    stack[0].copy_(base64)
    for row, (d, c) in zip(stack[1:], active, strict=True):
        row.copy_(d)
        if c != 1.0:
            row.mul_(c)
    scratch.canonical_sum(stack, acc)


def _kernel(xs, coeffs, acc, scratch) -> None:
    """xs = (base, model_1, …); acc ← base + Σ c_i·(x_i − base) in float64 (x_i − base is exact in
    float64 for 16-bit inputs of similar magnitude, so a model equal to the base adds exactly 0)."""
    n = len(xs) - 1
    weights, lam, normalize = coeffs[:n], coeffs[n], bool(coeffs[n + 1])
    cs = scales(weights, lam, normalize)
    m = acc.numel()
    base = scratch.aux[:m]
    base.copy_(xs[0])
    active = [(x, c) for x, c in zip(xs[1:], cs, strict=True) if c != 0.0]
    rows = scratch.rows("deltas", max(1, len(active)), m)
    deltas = []
    for row, (x, _) in zip(rows, active, strict=False):
        row.copy_(x)
        row.sub_(base)
        deltas.append(row)
    base_plus(base, deltas, [c for _, c in active], acc, scratch)


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    return None  # any λ is meaningful (negative λ removes a task); Σ w ≈ 0 falls back to no division


TASK_ARITHMETIC = register(
    Method(
        name="task_arithmetic",
        summary="θ_base + λ·Σ w_i·(θ_i − θ_base) [÷ Σ w_i with normalize]",
        coefficient="weights",
        needs_base=True,
        min_models=1,
        max_models=None,
        kernel=_kernel,
        check=_check,
        params=(
            Param("weight", "model", None, doc="w_i, the scale of model i's task vector"),
            Param("lambda", "global", 1.0, doc="scale of the summed task vectors"),
            Param("normalize", "global", False, kind="bool", doc="divide by Σ w_i"),
        ),
        reference="https://arxiv.org/abs/2212.04089",
    )
)

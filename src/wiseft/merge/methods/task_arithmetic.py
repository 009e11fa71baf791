"""`task_arithmetic`: θ = θ_base + Σ λ_i·(θ_i − θ_base) (task vectors added to a base)."""

from __future__ import annotations

from wiseft.merge.methods import Method, register


def _kernel(xs, coeffs, acc, scratch) -> None:
    """xs = (base, model_1, …); acc ← base + Σ λ_i·(x_i − base) in float64.

    x_i − base is exact in float64 for 16/32-bit inputs, so a model equal to the base adds exactly 0.
    With one non-zero λ this is `base + λ·(x − base)`; with more, the terms are added smallest value
    first (`canonical_sum`), so the order of the models does not matter.
    """
    base, models = xs[0], xs[1:]
    m = acc.numel()
    active = [(x, lam) for x, lam in zip(models, coeffs, strict=True) if lam != 0.0]
    if len(active) <= 1:
        acc.copy_(base)
        for x, lam in active:
            tmp = scratch.tmp[:m]
            _task_term(tmp, x, lam, acc)
            acc.add_(tmp)
        return
    stack = scratch.stack(len(active) + 1, m)
    stack[0].copy_(base)
    for row, (x, lam) in zip(stack[1:], active, strict=True):
        _task_term(row, x, lam, stack[0])
    scratch.canonical_sum(stack, acc)


def _task_term(dst, x, lam: float, base64) -> None:
    """dst ← λ·(x − base), with base already in float64."""
    dst.copy_(x)
    dst.sub_(base64)
    if lam != 1.0:
        dst.mul_(lam)


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    return None  # any λ is meaningful (negative λ removes a task)


TASK_ARITHMETIC = register(
    Method(
        name="task_arithmetic",
        summary="θ_base + Σ λ_i·(θ_i − θ_base) (--base, --weights λ_i)",
        coefficient="weights",
        needs_base=True,
        min_models=1,
        max_models=None,
        kernel=_kernel,
        check=_check,
    )
)

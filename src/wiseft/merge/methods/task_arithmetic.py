"""`task_arithmetic`: θ = θ_base + Σ λ_i·(θ_i − θ_base) (task vectors added to a base)."""

from __future__ import annotations

from wiseft.merge.methods import Method, register


def _kernel(xs, coeffs, acc, tmp, aux) -> None:
    """xs = (base, model_1, …); acc ← base + λ_1·(x_1 − base) + …, left to right, in float64.

    x_i − base is exact in float64 for 16/32-bit inputs, so a model equal to the base adds exactly 0.
    """
    base, models = xs[0], xs[1:]
    acc.copy_(base)
    if all(lam == 0.0 for lam in coeffs):
        return
    aux.copy_(base)
    for x, lam in zip(models, coeffs, strict=True):
        if lam == 0.0:
            continue
        tmp.copy_(x)
        tmp.sub_(aux)
        if lam != 1.0:
            tmp.mul_(lam)
        acc.add_(tmp)


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

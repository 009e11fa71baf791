"""`task_arithmetic`: θ = θ_base + Σ c_i·(θ_i − θ_base), c_i = λ·w_i (÷ Σ w with `normalize`)."""

from __future__ import annotations

from wiseft.merge.combine import base_plus, scales
from wiseft.merge.methods import Method, Param, TensorContext, register
from wiseft.merge.taskvectors import TaskVectorJob


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


def _job(ctx: TensorContext, coeffs: tuple[float, ...]):
    """The same sum as `_kernel`, as a (pass-free) job of the task-vector family, so that the compiled
    loop of merge/compiled.py computes it in one pass (the torch kernel sorts three rows per element)."""
    return TaskVectorJob(ctx, TASK_ARITHMETIC.unpack(coeffs, ctx.n_models), None, consensus=False)


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
        job=_job,
        params=(
            Param("weight", "model", None, doc="w_i, the scale of model i's task vector"),
            Param("lambda", "global", 1.0, doc="scale of the summed task vectors"),
            Param("normalize", "global", False, kind="bool", doc="divide by Σ w_i"),
        ),
        reference="https://arxiv.org/abs/2212.04089",
    )
)

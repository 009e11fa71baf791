"""`ties`: TIES-merging (Yadav et al. 2023) as mergekit runs it: trim each task vector to its
int(density·n) largest magnitudes, elect a sign per element from Σ w_i·δ_i, average the agreeing
w_i·δ_i (÷ Σ of their w_i, `normalize` on by default), scale by λ, add to the base. merge/taskvectors.py
has the exact definitions (ties between equal magnitudes: the lower index is kept)."""

from __future__ import annotations

from wiseft.merge.methods import Method, TensorContext, register
from wiseft.merge.taskvectors import TaskVectorJob, check_family, common_params


def family(name, summary, kind, consensus, normalize, rescale, extra=(), reference="") -> Method:
    """Register one method of the task-vector family (ties, dare_*, breadcrumbs*, della*)."""
    params = common_params(normalize, rescale) + tuple(extra)

    def job(ctx: TensorContext, coeffs):
        c = method.unpack(coeffs, ctx.n_models)
        return TaskVectorJob(ctx, c, kind, consensus)

    def check(coeffs, extrapolate):
        n = method.n_models(coeffs)
        values = dict(method.unpack(coeffs, n).items())
        return check_family({**values, "consensus": consensus}, n)

    method = Method(
        name=name,
        summary=summary,
        coefficient="weights",
        needs_base=True,
        min_models=1,
        max_models=None,
        check=check,
        params=params,
        job=job,
        randomized=kind in ("random", "della"),
        reference=reference,
    )
    return register(method)


TIES = family(
    "ties",
    "θ_base + λ·Σ_agree w_i·top_k(δ_i) / Σ_agree w_i: trim to density, elect signs, disjoint mean",
    "magnitude",
    consensus=True,
    normalize=True,
    rescale="none",
    reference="https://arxiv.org/abs/2306.01708",
)

"""`fisher`: diagonal Fisher merging (Matena & Raffel, "Merging Models with Fisher Weighting", 2022).

    θ = Σ_i w_i·F̂_i·θ_i / Σ_i w_i·F̂_i,   F̂_i = max(F_i / n_i, fisher_floor)

F_i is model i's diagonal Fisher (`wiseft fisher MODEL --data FILE -o FISHER`, given per model in the
recipe's `fishers:`), n_i 1, or with `normalize_fishers` the Fisher's global L2 norm (recorded in the
Fisher directory's fisher.json and filled in by the plan as `fisher_norm`). The floor (the paper's 1e-6)
keeps the denominator positive where every Fisher is zero; there the merge is the weighted mean.

The kernel sees the models' chunks followed by the Fishers' (2N inputs). Sums of three or more terms are
added smallest value first, so the result does not depend on the order of the models.
"""

from __future__ import annotations

import math

from wiseft.merge.methods import Method, Param, register

DEFAULT_FLOOR = 1e-6


def _kernel(xs, coeffs, acc, scratch) -> None:
    n = len(xs) // 2
    c = FISHER.unpack(coeffs, n)
    m = acc.numel()
    num = scratch.rows("fisher-num", n, m)
    den = scratch.rows("fisher-den", n, m)
    for i in range(n):
        d = den[i]
        d.copy_(xs[n + i])
        if c.fisher_norm[i] != 1.0:
            d.div_(c.fisher_norm[i])
        d.clamp_(min=c.fisher_floor)
        if c.weight[i] != 1.0:
            d.mul_(c.weight[i])
        num[i].copy_(xs[i]).mul_(d)
    total = scratch.tmp[:m]
    if n <= 2:  # a + b == b + a: no ordering needed
        acc.copy_(num[0])
        total.copy_(den[0])
        if n == 2:
            acc.add_(num[1])
            total.add_(den[1])
    else:
        scratch.canonical_sum(num, acc)
        scratch.canonical_sum(den, total)
    acc.div_(total)


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    n = FISHER.n_models(coeffs)
    c = FISHER.unpack(coeffs, n)
    if not c.fisher_floor > 0.0:
        return f"fisher_floor {c.fisher_floor:g} must be > 0 (where every Fisher is 0 it is the denominator)"
    if any(w < 0.0 for w in c.weight) or not math.fsum(c.weight) > 0.0:
        return f"weights {list(c.weight)} must be >= 0 with a positive sum"
    if any(not v > 0.0 for v in c.fisher_norm):
        return f"fisher_norm {list(c.fisher_norm)} must be > 0"
    return None


FISHER = register(
    Method(
        name="fisher",
        summary="Σ w_i·F̂_i·θ_i / Σ w_i·F̂_i, F̂_i = max(F_i/n_i, floor): diagonal Fisher weighting",
        coefficient="weights",
        needs_base=False,
        min_models=1,
        max_models=None,
        check=_check,
        kernel=_kernel,
        params=(
            Param("weight", "model", 1.0, doc="w_i, the paper's λ_i"),
            Param("fisher_floor", "global", DEFAULT_FLOOR, doc="lower bound of each (normalised) Fisher"),
            Param(
                "normalize_fishers",
                "global",
                False,
                kind="bool",
                doc="divide each Fisher by its global L2 norm (from its fisher.json)",
            ),
            Param("fisher_norm", "model", 1.0, doc="n_i; set from fisher.json when normalize_fishers"),
        ),
        reference="https://arxiv.org/abs/2111.09832",
    )
)

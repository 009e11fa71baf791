"""`model_stock`: θ = t·mean(θ_i) + (1 − t)·θ_base with t from the angle between the task vectors.

For N ≥ 2 models with task vectors δ_i = θ_i − θ_base: cos_ij = δ_i·δ_j / max(|δ_i|·|δ_j|, 1e-6) clamped
to [−1, 1], cos = the mean over the pairs i < j (added smallest first), t = N·cos/(1 + (N−1)·cos)
(Model Stock, Jang et al. 2024; mergekit's pairwise average for N > 2). `filter_wise: true` computes t per
row (vectors along the last dimension; a 1-D tensor is one row). mean(θ_i) = (Σ θ_i)/N. A denominator
1 + (N−1)·cos = 0 (task vectors in opposite directions) leaves t undefined: an error naming the tensor.
"""

from __future__ import annotations

import math

import torch

from wiseft.errors import MergeError
from wiseft.merge import compiled, tensorwise
from wiseft.merge.methods import Method, Param, TensorContext, register
from wiseft.merge.methods.linear import weighted_sum
from wiseft.merge.spherical import observe_gram, rows_of
from wiseft.merge.tensorwise import Gram, Job, as_float64, row_gram, task_vectors

NORM_FLOOR = 1e-6


def interpolation(gram: list[list[float]], tensor: str) -> float:
    n = len(gram)
    cosines = []
    for i in range(n):
        for j in range(i + 1, n):
            product = max(math.sqrt(gram[i][i]) * math.sqrt(gram[j][j]), NORM_FLOOR)
            cosines.append(min(1.0, max(-1.0, gram[i][j] / product)))
    cos = 0.0
    for c in sorted(cosines):
        cos += c
    cos /= len(cosines)
    denominator = 1 + (n - 1) * cos
    if denominator == 0.0:
        raise MergeError(
            f"tensor {tensor}: the task vectors point in opposite directions, so model_stock's t is undefined"
        )
    return n * cos / denominator


def row_interpolation(gram: list[list[torch.Tensor]], tensor: str) -> torch.Tensor:
    n = len(gram)
    cosines = []
    for i in range(n):
        for j in range(i + 1, n):
            product = (gram[i][i].sqrt() * gram[j][j].sqrt()).clamp(min=NORM_FLOOR)
            cosines.append((gram[i][j] / product).clamp(-1.0, 1.0))
    ordered = torch.stack(cosines).sort(dim=0).values
    cos = ordered[0].clone()
    for row in ordered[1:]:
        cos += row
    cos /= len(cosines)
    denominator = 1 + (n - 1) * cos
    if bool((denominator == 0.0).any()):
        raise MergeError(
            f"tensor {tensor}: in a row the task vectors point in opposite directions, so t is undefined"
        )
    return n * cos / denominator


def stock(xs, t, acc, scratch) -> None:
    """acc ← t·mean(x_i) + (1 − t)·base; xs = (base, models…); t a float or per-row [rows, 1]."""
    m = acc.numel()
    n = len(xs) - 1
    mean = scratch.aux[:m]
    weighted_sum(xs[1:], [1.0] * n, mean, scratch)
    mean /= n
    weighted_sum([mean, xs[0]], [t, 1 - t], acc, scratch)


class StockJob(Job):
    @property
    def granularity(self) -> int:
        return tensorwise.REDUCE_BLOCK

    def __init__(self, ctx: TensorContext):
        self.name = ctx.name
        self.gram = Gram(ctx.n_models)
        self.cache_key = ("gram", True)
        self.matrix = None
        self.t = 0.0

    def needs_observation(self) -> bool:
        return True

    def observe(self, xs, start, scratch) -> None:
        if compiled.supports(xs):
            observe_gram(self.gram, xs, True)
            return
        self.gram.add(task_vectors(xs, scratch)[1], scratch.tmp[: xs[0].numel()])

    def compute_out(self, xs, start, out, scratch) -> bool:
        if not compiled.supports(xs, out.dtype):
            return False
        compiled.elementwise("stock", xs, out, float(self.t))
        return True

    def end_pass(self) -> bool:
        self.use_stats(self.gram.matrix())
        return False

    def stats(self):
        return self.matrix

    def use_stats(self, stats) -> None:
        self.matrix = stats
        self.t = interpolation(stats, self.name)

    def compute(self, xs, start, acc, scratch) -> None:
        stock(xs, self.t, acc, scratch)


class RowStockJob(Job):
    def __init__(self, ctx: TensorContext):
        self.name = ctx.name
        self.granularity = self.cols = rows_of(ctx.shape)

    def compute(self, xs, start, acc, scratch) -> None:
        m = acc.numel()
        _, deltas = task_vectors(xs, scratch)
        t = row_interpolation(row_gram(deltas, self.cols, scratch.tmp[:m]), self.name).view(-1, 1)
        inputs = as_float64(xs, scratch)
        stock(inputs, t, acc, scratch)


def _job(ctx: TensorContext, coeffs: tuple[float, ...]):
    (filter_wise,) = coeffs
    return RowStockJob(ctx) if filter_wise else StockJob(ctx)


MODEL_STOCK = register(
    Method(
        name="model_stock",
        summary="t·mean(θ_i) + (1−t)·θ_base, t = N·cos/(1+(N−1)·cos), cos = mean ∠(δ_i, δ_j) per tensor or row",
        coefficient="filter_wise",
        needs_base=True,
        min_models=2,
        max_models=None,
        check=lambda coeffs, extrapolate: None,
        params=(Param("filter_wise", "global", False, kind="bool", doc="one t per row"),),
        job=_job,
        reference="https://arxiv.org/abs/2403.19522",
    )
)

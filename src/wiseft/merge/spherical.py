"""Jobs whose output is a linear combination Σ c_i·v_i (+ base) with c from inner products of the inputs.

slerp, nuslerp, multislerp, karcher and model_stock only need the inner products G_ij = v_i·v_j of their
vectors (the models, or their task vectors v_i = θ_i − θ_base): every norm, angle and iterate they compute
lies in the span of the inputs. So one observation pass accumulates the Gram matrix (`tensorwise.Gram`,
exact-order block sums), the method turns it into coefficients with plain float64 arithmetic, and the
output pass is an elementwise weighted sum, rounded once. Row-wise variants compute a Gram matrix per row
inside the output pass (no observation pass); column-wise ones accumulate per-column sums row after row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from wiseft.merge import compiled, tensorwise
from wiseft.merge.methods.linear import weighted_sum
from wiseft.merge.tensorwise import Gram, Job, as_float64, row_gram, task_vectors

Coefficients = Callable[[list[list[float]]], Sequence[float]]
RowCoefficients = Callable[[list[list[torch.Tensor]]], Sequence[torch.Tensor]]


def combine(xs, coeffs, acc, scratch, over_base: bool) -> None:
    """acc ← Σ c_i·v_i, + base when `over_base` (v_i = x_i − base, base = xs[0]); c_i floats or
    float64 tensors shaped to broadcast over rows ([rows, 1]) or columns ([1, cols])."""
    if not over_base:
        weighted_sum(xs, coeffs, acc, scratch)
        return
    base, deltas = task_vectors(xs, scratch)
    weighted_sum(deltas, coeffs, acc, scratch)
    acc.add_(base)


class GramJob(Job):
    """Flat: one observation pass for the Gram matrix, then Σ c_i·v_i (+ base)."""

    @property
    def granularity(self) -> int:
        return tensorwise.REDUCE_BLOCK

    def __init__(self, name: str, n: int, over_base: bool, coefficients: Coefficients):
        self.name = name
        self.over_base = over_base
        self.gram = Gram(n)
        self.fn = coefficients
        self.cache_key = ("gram", over_base)
        self.matrix: list[list[float]] | None = None
        self.coeffs: Sequence[float] = ()

    def needs_observation(self) -> bool:
        return True

    def observe(self, xs, start, scratch) -> None:
        if compiled.supports(xs):
            observe_gram(self.gram, xs, self.over_base)
            return
        vs = task_vectors(xs, scratch)[1] if self.over_base else as_float64(xs, scratch)
        self.gram.add(vs, scratch.tmp[: xs[0].numel()])

    def end_pass(self) -> bool:
        self.use_stats(self.gram.matrix())
        return False

    def compute_out(self, xs, start, out, scratch) -> bool:
        if not compiled.supports(xs, out.dtype):
            return False
        coeffs = np.array(self.coeffs, dtype=np.float64)
        compiled.elementwise("combine", xs, out, coeffs, self.over_base)
        return True

    def stats(self) -> list[list[float]] | None:
        return self.matrix

    def use_stats(self, stats) -> None:
        self.matrix = stats
        self.coeffs = tuple(self.fn(stats))

    def compute(self, xs, start, acc, scratch) -> None:
        combine(xs, self.coeffs, acc, scratch, self.over_base)


class RowJob(Job):
    """Row-wise (vectors along the last dimension): per-row Gram matrices and coefficients, computed
    in the output pass itself."""

    def __init__(self, cols: int, over_base: bool, coefficients: RowCoefficients):
        self.granularity = cols
        self.cols = cols
        self.over_base = over_base
        self.fn = coefficients

    def compute(self, xs, start, acc, scratch) -> None:
        m = xs[0].numel()
        base, vs = task_vectors(xs, scratch) if self.over_base else (None, as_float64(xs, scratch))
        gram = row_gram(vs, self.cols, scratch.tmp[:m])
        weighted_sum(vs, [c.view(-1, 1) for c in self.fn(gram)], acc, scratch)
        if base is not None:
            acc.add_(base)


class ColumnJob(Job):
    """Column-wise (vectors along the first dimension of a [rows, cols] view): per-column inner products
    accumulated row after row (a sequential sum, so it does not depend on the chunking), then the output."""

    def __init__(self, cols: int, n: int, over_base: bool, coefficients: RowCoefficients):
        self.granularity = cols
        self.cols = cols
        self.over_base = over_base
        self.fn = coefficients
        self.sums = {(i, j): torch.zeros(cols, dtype=torch.float64) for i in range(n) for j in range(i, n)}
        self.cache_key = ("columns", over_base)
        self.coeffs: list[torch.Tensor] = []

    def needs_observation(self) -> bool:
        return True

    def observe(self, xs, start, scratch) -> None:
        m = xs[0].numel()
        vs = task_vectors(xs, scratch)[1] if self.over_base else as_float64(xs, scratch)
        tmp = scratch.tmp[:m]
        for (i, j), total in self.sums.items():
            torch.mul(vs[i], vs[j], out=tmp)
            rows = torch.cat([total.view(1, -1), tmp.view(-1, self.cols)])
            total.copy_(torch.cumsum(rows, dim=0)[-1])

    def end_pass(self) -> bool:
        self.use_stats(self.sums)
        return False

    def stats(self):
        return self.sums

    def use_stats(self, stats) -> None:
        n = max(j for _, j in stats) + 1
        gram = [[stats[(min(i, j), max(i, j))] for j in range(n)] for i in range(n)]
        self.coeffs = [c.view(1, -1) for c in self.fn(gram)]

    def compute(self, xs, start, acc, scratch) -> None:
        combine(xs, self.coeffs, acc, scratch, self.over_base)


def observe_gram(gram: Gram, xs, over_base: bool) -> None:
    """Gram.add with the compiled loop (the same block sums, bit for bit), in parts side by side."""
    block = tensorwise.REDUCE_BLOCK
    m = xs[0].numel()
    sums = np.empty((-(-m // block), len(gram.sums)))
    arrays = compiled.arrays(xs)

    def part(lo: int, hi: int) -> None:  # parts start on block boundaries: whole blocks' sums
        compiled.kernel("gram")(
            tuple(a[lo:hi] for a in arrays), over_base, block, sums[lo // block : -(-hi // block)]
        )

    compiled.run_parts(part, compiled.spans(m, align=block))
    for p, total in enumerate(gram.sums.values()):
        total.extend(sums[:, p])


def rows_of(shape: tuple[int, ...]) -> int:
    """Length of the vectors along the last dimension (a 1-D tensor is one vector)."""
    return shape[-1] if shape else 1

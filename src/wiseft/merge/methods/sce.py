"""`sce` (FuseChat's Select, Calculate, Erase) over task vectors δ_i = θ_i − θ_base (mergekit's sce).

Select: with `select_topk` τ < 1, keep only the k = int(τ·#{positions with non-zero variance}) positions
of largest variance of the δ_i across the models (population variance; ties: the lower index first);
τ ≤ 0 keeps none. Calculate: model weights ω_i = mean(δ_i²) over the tensor, divided by their sum (equal
when that sum < 1e-6). Erase: TIES sign election on Σ δ_i (unweighted). Result:
θ_base + Σ ω_i·a_i·δ_i / max(Σ ω_i·a_i, 1e-6), a_i = 1 where δ_i has the elected sign.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from wiseft.merge import compiled, tensorwise
from wiseft.merge.combine import sum_rows
from wiseft.merge.methods import Method, Param, TensorContext, register
from wiseft.merge.select import Keep, Selector
from wiseft.merge.tensorwise import BlockSums, Job, task_vectors

WEIGHT_EPS = 1e-6


def variance(deltas, scratch, out: torch.Tensor) -> torch.Tensor:
    """out ← Σ (δ_i − mean)²/N per element, mean = Σ δ_i/N (sums smallest first for N ≥ 3)."""
    n, m = len(deltas), out.numel()
    rows = scratch.rows("deviation", n, m)
    mean = scratch.rows("mean", 1, m)[0]
    for row, d in zip(rows, deltas, strict=True):
        row.copy_(d)
    sum_rows(rows, mean, scratch)
    mean.div_(n)
    for row in rows:
        row.sub_(mean)
        row.mul_(row)
    sum_rows(rows, out, scratch)
    return out.div_(n)


class SceJob(Job):
    @property
    def granularity(self) -> int:
        return tensorwise.REDUCE_BLOCK

    def __init__(self, ctx: TensorContext, topk: float):
        self.ctx, self.topk = ctx, topk
        self.selector = Selector() if 0.0 < topk < 1.0 else None
        self.first = 0 if topk >= 1.0 else ctx.numel  # ≤ 0: nothing kept
        self.stage = "select" if self.selector is not None else "norm"
        self.sums = [BlockSums() for _ in range(ctx.n_models)]
        self.omega: list[float] = []
        self.keep: Keep | None = None
        self._seen = np.zeros(1, dtype=np.int64)  # tie ranks counted in the compiled loops' pass

    def needs_observation(self) -> bool:
        return True

    def observe(self, xs, start, scratch) -> None:
        if compiled.supports(xs):
            self._observe_compiled(xs, start, scratch)
            return
        _, deltas = task_vectors(xs, scratch)
        m = xs[0].numel()
        if self.stage == "select":
            self.selector.observe(variance(deltas, scratch, scratch.aux[:m]).view(torch.int64))
            return
        self._start_keep(start)
        self._select(deltas, scratch)
        for d, sums in zip(deltas, self.sums, strict=True):
            sums.add(torch.mul(d, d, out=scratch.tmp[:m]))

    def end_pass(self) -> bool:
        if self.stage == "select":
            if self.selector.position is None:
                nonzero = self.ctx.numel - self.selector.zeros
                self.first = self.ctx.numel - int(nonzero * self.topk)
                self.selector.set_position(self.first)
            if self.first > 0 and self.first < self.ctx.numel and self.selector.end_pass():
                return True
            self.stage = "norm"
            return True
        squares = [s.total() / self.ctx.numel for s in self.sums]
        total = math.fsum(squares)
        n = len(squares)
        self.omega = [1.0 / n] * n if abs(total) < WEIGHT_EPS else [w / total for w in squares]
        return False

    def _start_keep(self, start: int) -> None:
        if start == 0:
            low = (
                self.selector.result
                if self.selector is not None and 0 < self.first < self.ctx.numel
                else None
            )
            self.keep = Keep(self.first, self.ctx.numel, low, None)

    def _select(self, deltas, scratch) -> None:
        """Zero the task vectors outside the selected positions (in place)."""
        if self.first <= 0:
            return
        m = deltas[0].numel()
        if self.first >= self.ctx.numel:
            for d in deltas:
                d.zero_()
            return
        keys = variance(deltas, scratch, scratch.aux[:m]).view(torch.int64)
        keep = scratch.rows("keep", 1, m, torch.bool)[0]
        self.keep.mask(keys, keep)
        for d in deltas:
            d.masked_fill_(~keep, 0.0)

    def observe_step(self, xs, step: int) -> int:
        if compiled.supports(xs) and self.stage == "norm":
            # the block sums need no scratch (the variance keys do)
            return tensorwise.long_step(self, xs, step)
        return step

    def compute_step(self, xs, out, step: int) -> int:
        return tensorwise.long_step(self, xs, step) if compiled.supports(xs, out.dtype) else step

    # --- the compiled loops (merge/_kernels.py, sce_*): the same float64 operations in one pass --------
    def _selection(self) -> tuple[int, int, int, int, int]:
        """(select, low, tie, a, b) for the loops: select 0 keeps all, 1 none, 2 by the threshold."""
        if self.first <= 0:
            return 0, 0, -1, 0, 0
        if self.first >= self.ctx.numel:
            return 1, 0, -1, 0, 0
        ((tie, (a, b)),) = self.keep.ties.items()
        return 2, self.keep.low.value, tie, a, b

    def _in_parts(self, arrays, parts, call) -> None:
        """call(lo, hi, seen) for each part side by side, tie ranks continuing across parts as for TIES
        (compiled.run_parts_in_order), so any cut gives the same bits."""
        select, _, tie, a, b = self._selection()

        def count(lo: int, hi: int, seen) -> None:
            seen += compiled.kernel("sce_tie_count")(arrays, tie, lo, hi)

        compiled.run_parts_in_order(call, parts, self._seen, count if select == 2 and b > a else None)

    def _observe_compiled(self, xs, start, scratch) -> None:
        arrays, m = compiled.arrays(xs), xs[0].numel()
        if self.stage == "select":
            keys = scratch.aux[:m].view(torch.int64)
            target = keys.numpy()
            compiled.run_parts(
                lambda lo, hi: compiled.kernel("sce_keys")(arrays, target, lo, hi), compiled.spans(m)
            )
            self.selector.observe_array(keys)
            return
        self._start_keep(start)
        if start == 0:
            self._seen[:] = 0
        block = tensorwise.REDUCE_BLOCK
        sums = np.empty((len(self.sums), -(-m // block)))
        select, low, tie, a, b = self._selection()

        def part(lo: int, hi: int, seen) -> None:  # parts start on block boundaries: whole blocks' sums
            compiled.kernel("sce_sums")(arrays, select, low, tie, a, b, seen, block, sums, lo, hi)

        self._in_parts(arrays, compiled.spans(m, align=block), part)
        for row, block_sums in zip(sums, self.sums, strict=True):
            block_sums.extend(row)

    def compute_out(self, xs, start, out, scratch) -> bool:
        if not compiled.supports(xs, out.dtype):
            return False
        self._start_keep(start)
        if start == 0:
            self._seen[:] = 0
        arrays, target = compiled.arrays(xs), compiled.out_array(out)
        omega = np.array(self.omega, dtype=np.float64)
        select, low, tie, a, b = self._selection()

        def part(lo: int, hi: int, seen) -> None:  # element-wise, so any cut gives the same bits
            compiled.kernel("sce_out")(
                arrays, select, low, tie, a, b, seen, omega, WEIGHT_EPS, target, lo, hi
            )

        self._in_parts(arrays, compiled.spans(xs[0].numel()), part)
        return True

    def compute(self, xs, start, acc, scratch) -> None:
        self._start_keep(start)
        base, deltas = task_vectors(xs, scratch)
        self._select(deltas, scratch)
        m = acc.numel()
        total = scratch.rows("elected", 1, m)[0]
        stack = scratch.rows("weighted", len(deltas), m)
        for row, d in zip(stack, deltas, strict=True):
            row.copy_(d)
        sum_rows(stack, total, scratch)
        positive = total >= 0
        chosen = scratch.rows("chosen", len(deltas), m)
        weights = scratch.rows("divisor", len(deltas), m)
        for i, (d, w) in enumerate(zip(deltas, self.omega, strict=True)):
            agree = torch.where(positive, d > 0, d < 0)
            weights[i].fill_(w).masked_fill_(agree.logical_not(), 0.0)
            torch.mul(d, weights[i], out=chosen[i])
        sum_rows(chosen, total, scratch)
        divisor = scratch.rows("sum", 1, m)[0]
        sum_rows(weights, divisor, scratch)
        total.div_(divisor.clamp_(min=WEIGHT_EPS))
        torch.add(base, total, out=acc)


def _job(ctx: TensorContext, coeffs: tuple[float, ...]) -> SceJob:
    topk, _int8 = coeffs
    return SceJob(ctx, topk)


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    topk = coeffs[0]
    if not math.isfinite(topk):
        return f"select_topk {topk} must be a number in [0, 1]"
    return None


SCE = register(
    Method(
        name="sce",
        summary="θ_base + Σ ω_i·a_i·δ_i / Σ ω_i·a_i: top-variance positions, ω_i ∝ mean δ_i², elected signs",
        coefficient="select_topk",
        needs_base=True,
        min_models=1,
        max_models=None,
        check=_check,
        params=(
            Param("select_topk", "global", 1.0, doc="fraction of positions kept by variance across models"),
            Param("int8_mask", "global", False, kind="bool", doc="accepted for mergekit; no effect"),
        ),
        job=_job,
        reference="https://arxiv.org/abs/2408.07990",
    )
)

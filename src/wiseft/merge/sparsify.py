"""Sparsification of task vectors: which entries of each δ_i = θ_i − θ_base the task-vector family keeps
(magnitude, outliers, random, della), as the state of one model's sparsifier across a tensor's passes
(`Sparsifier`), the arrays the compiled loop reads (`KeepArrays`) and DELLA's keep probabilities. The
exact definitions are in merge/taskvectors.py's docstring; merge/combine.py adds the kept entries up.
"""

from __future__ import annotations

import numpy as np
import torch

from wiseft.merge import compiled
from wiseft.merge.select import Keep, Selector, keep_range


class Sparsifier:
    """One task vector's sparsification state across the passes."""

    def __init__(self, index: int, kind: str, density: float, numel: int, gamma: float = 0.0):
        self.index, self.kind, self.density = index, kind, density
        self.selectors: list[Selector | None] = [None, None]
        self.first, self.last = 0, numel
        self.stage = "dense" if density >= 1.0 else "ready"
        if self.stage == "dense" or kind not in ("magnitude", "outliers"):
            return
        if kind == "magnitude":
            self.first = numel - int(density * numel)
        else:
            target, top = int(density * numel), int(gamma * numel)
            bottom = numel - target - top
            if bottom < 0:
                top, bottom = top + bottom, 0
            self.first, self.last = keep_range(numel, bottom, numel - top)
        if self.first >= self.last:
            self.stage = "none"
            return
        if self.first > 0:
            self.selectors[0] = Selector(self.first)
        if self.last < numel:
            self.selectors[1] = Selector(self.last - 1)
        self.stage = "select" if self.active_selectors() else "ready"

    def active_selectors(self) -> list[Selector]:
        return [s for s in self.selectors if s is not None]

    def keep(self) -> Keep:
        low, high = (s.result if s is not None else None for s in self.selectors)
        return Keep(self.first, self.last, low, high)


class KeepArrays:
    """Every model's keep decision as arrays for the compiled loop: kind codes, densities, thresholds,
    tie ranges (value, a, b) and tie counters (fresh for each pass), l1 factors. `only`: the models that
    take part in this pass (others count as dense)."""

    def __init__(self, models: list[Sparsifier], only: list[int] | None = None, factors=None):
        n = len(models)
        self.kinds = np.full(n, compiled.DENSE, dtype=np.int64)
        self.density = np.array([m.density for m in models], dtype=np.float64)
        self.has_low, self.has_high = np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_)
        self.low, self.high = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        self.ties = np.zeros((n, 2, 3), dtype=np.int64)
        self.seen = np.zeros((n, 2), dtype=np.int64)
        self.factors = np.array(factors if factors is not None else [1.0] * n, dtype=np.float64)
        codes = {
            "magnitude": compiled.THRESHOLD,
            "outliers": compiled.THRESHOLD,
            "random": compiled.RANDOM,
            "della": compiled.DELLA,
        }
        for m in models:
            if only is not None and m.index not in only:
                continue
            if m.stage == "dense" or m.kind == "none":
                continue
            if m.stage == "none":
                self.kinds[m.index] = compiled.ZERO
                continue
            self.kinds[m.index] = codes[m.kind]
            if m.kind in ("magnitude", "outliers"):
                self._thresholds(m)

    def in_order(self) -> bool:
        """Whether the ranks of tied magnitudes are counted (`seen`, in index order): then each part of a
        span cut for compiled.run_parts starts from the ties before it (taskvectors.in_parts)."""
        return bool((self.ties[:, :, 2] > self.ties[:, :, 1]).any())

    def _thresholds(self, m: Sparsifier) -> None:
        keep = m.keep()
        j = m.index
        if keep.low is not None:
            self.has_low[j], self.low[j] = True, keep.low.value
        if keep.high is not None:
            self.has_high[j], self.high[j] = True, keep.high.value
        for e, (value, (a, b)) in enumerate(keep.ties.items()):
            self.ties[j, e] = (value, a, b)


def della_probabilities_compiled(
    arrays: tuple, j: int, cols: int, density: float, epsilon: float, out
) -> None:
    """della_probabilities of δ_j = x_j − base straight from the inputs (compiled.arrays, base first) into
    the float64 tensor `out`, whole rows in parts side by side (`_kernels.row_ranks_of`): the same bits
    without a float64 copy of δ_j."""
    x, base, target = arrays[j + 1], arrays[0], out.numpy()
    kernel = compiled.kernel("row_ranks_of")

    def part(lo: int, hi: int) -> None:
        kernel(x[lo:hi], base[lo:hi], cols, float(density), float(epsilon), target[lo:hi])

    compiled.run_parts(part, _row_spans(target.shape[0], cols))


def _row_spans(m: int, cols: int) -> list[tuple[int, int]]:
    """Parts of whole rows for DELLA's per-row ranks."""
    return compiled.spans(m, align=cols, min_part=max(cols, compiled.MIN_PART))


def della_probabilities(delta, cols: int, density: float, epsilon: float, scratch) -> torch.Tensor:
    """DELLA's keep probability of each element of whole rows: (density − ε) + rank/(c−1)·2·ε, rank by |δ|
    ascending within the row, the lower index ranking higher among equal magnitudes. The compiled loop
    (`_kernels.row_ranks`, where available) does the same operations row by row."""
    m_len = delta.numel()
    if compiled.available() and delta.dtype == torch.float64 and delta.device.type == "cpu":
        out = scratch.rows("probability", 1, m_len)[0]
        kernel = compiled.kernel("row_ranks")
        values, target = delta.contiguous().numpy(), out.numpy()

        def part(lo: int, hi: int) -> None:  # whole rows, each ranked on its own
            kernel(values[lo:hi], cols, float(density), float(epsilon), target[lo:hi])

        compiled.run_parts(part, _row_spans(m_len, cols))
        return out
    magnitude = torch.abs(delta).view(-1, cols).flip(1)  # flipped: a stable sort puts lower indices last
    order = torch.sort(magnitude, dim=1, stable=True).indices
    rows = order.shape[0]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, (cols - 1) - order, torch.arange(cols).expand(rows, cols))
    out = scratch.rows("probability", 1, m_len)[0].view(rows, cols)
    out.copy_(ranks)
    if cols > 1:
        out.div_(cols - 1)
    out.mul_(2).mul_(epsilon).add_(density - epsilon)
    return out.view(-1)

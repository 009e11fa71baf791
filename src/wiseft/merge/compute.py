"""The one place where merged values are computed and rounded; shared by `wiseft merge` and WeightSpace.

Why float64: the contract is that every output element equals the float64 reference
(`δ*early.double() + (1-δ)*final.double()`, rounded with `.to(dtype)`). With bfloat16 inputs, exact
midpoints between two bfloat16 numbers are common (≈0.2% of elements at δ=0.3), and float32 arithmetic
resolves them by its own rounding error, so a float32 kernel disagrees with the reference there. The
kernels therefore run in float64 on chunk-sized buffers, which keeps them cache-resident and cheap next to
the file I/O; rounding happens exactly once, in `combine_into`, with torch's own conversion.

Why sorted sums: float64 addition is not associative, so Σ w_i·θ_i over three or more terms would depend
on the order the models are listed in. When more than two terms are added, they are added in ascending
order of value, element by element (`canonical_sum`), which makes merges exactly permutation-invariant.
Two terms need nothing: a + b == b + a in IEEE arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from wiseft.merge.methods import Method

CHUNK = 1 << 18  # elements per kernel call: 2 MiB per float64 buffer, cache-friendly


class Scratch:
    """Reusable float64 buffers of `size` elements on `device`: acc, tmp, aux, and (grown on first use)
    a k×size stack for sums of more than two terms. Nothing is allocated once they exist."""

    def __init__(self, size: int = CHUNK, device: str | torch.device = "cpu"):
        self.size = size
        self.device = device
        self.acc = torch.empty(size, dtype=torch.float64, device=device)
        self.tmp = torch.empty(size, dtype=torch.float64, device=device)
        self.aux = torch.empty(size, dtype=torch.float64, device=device)
        self._stack = torch.empty(0, dtype=torch.float64, device=device)
        self._sorted = torch.empty(0, dtype=torch.float64, device=device)
        self._index = torch.empty(0, dtype=torch.int64, device=device)

    def stack(self, k: int, m: int) -> torch.Tensor:
        """A contiguous k×m float64 buffer (m ≤ size) for the terms of a canonical sum."""
        if self._stack.numel() < k * self.size:
            self._stack = torch.empty(k * self.size, dtype=torch.float64, device=self.device)
            self._sorted = torch.empty(k * self.size, dtype=torch.float64, device=self.device)
            self._index = torch.empty(k * self.size, dtype=torch.int64, device=self.device)
        return self._stack[: k * m].view(k, m)

    def canonical_sum(self, terms: torch.Tensor, acc: torch.Tensor) -> None:
        """acc ← the sum of the k rows of `terms` (a `stack` view), added smallest value first."""
        k, m = terms.shape
        values = self._sorted[: k * m].view(k, m)
        torch.sort(terms, dim=0, out=(values, self._index[: k * m].view(k, m)))
        acc.copy_(values[0])
        for j in range(1, k):
            acc.add_(values[j])

    @property
    def nbytes(self) -> int:
        return 3 * 8 * self.size + 2 * 8 * self._stack.numel()


def combine_into(
    out: torch.Tensor,
    xs: Sequence[torch.Tensor],
    method: Method,
    coeffs: tuple[float, ...],
    scratch: Scratch,
) -> None:
    """out ← round(method(xs, coeffs)), chunk by chunk; `out` and every x are flat and equally long.

    `out` may be any floating dtype (bf16, fp16, fp32, fp64) and may be a model parameter's storage:
    nothing is allocated here.
    """
    n = out.numel()
    step = scratch.size
    for start in range(0, n, step):
        end = min(start + step, n)
        acc = scratch.acc[: end - start]
        method.kernel([x[start:end] for x in xs], coeffs, acc, scratch)
        out[start:end].copy_(acc)


def all_finite(x: torch.Tensor) -> bool:
    """min and max propagate nan and show ±inf: one cheap reduction instead of `isfinite(x).all()`,
    which materialises a bool tensor and is 40× slower on bfloat16."""
    if x.numel() == 0:
        return True
    lo, hi = torch.aminmax(x)
    return math.isfinite(float(lo)) and math.isfinite(float(hi))

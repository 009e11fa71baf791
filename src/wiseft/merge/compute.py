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
    """Reusable float64 buffers of `size` elements on `device`: acc, tmp, aux, named k×size row buffers
    (`rows`, grown on first use; `stack` is the one canonical sums use). Nothing is allocated once they
    exist. `ensure(size)` grows them for a per-tensor job whose rows are longer than `size`."""

    def __init__(self, size: int = CHUNK, device: str | torch.device = "cpu"):
        self.size = size
        self.device = device
        self.acc = torch.empty(size, dtype=torch.float64, device=device)
        self.tmp = torch.empty(size, dtype=torch.float64, device=device)
        self.aux = torch.empty(size, dtype=torch.float64, device=device)
        self._rows: dict[str, torch.Tensor] = {}
        self._sorted = torch.empty(0, dtype=torch.float64, device=device)
        self._index = torch.empty(0, dtype=torch.int64, device=device)

    def ensure(self, size: int) -> None:
        if size > self.size:
            self.__init__(size, self.device)

    def rows(self, name: str, k: int, m: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """A contiguous k×m buffer (m ≤ size) kept under `name`; another name is another buffer."""
        buf = self._rows.get(name)
        if buf is None or buf.numel() < k * self.size or buf.dtype != dtype:
            buf = torch.empty(k * self.size, dtype=dtype, device=self.device)
            self._rows[name] = buf
        return buf[: k * m].view(k, m)

    def stack(self, k: int, m: int) -> torch.Tensor:
        """A contiguous k×m float64 buffer (m ≤ size) for the terms of a canonical sum."""
        return self.rows("stack", k, m)

    def canonical_sum(self, terms: torch.Tensor, acc: torch.Tensor) -> None:
        """acc ← the sum of the k rows of `terms` (k×m), added smallest value first."""
        k, m = terms.shape
        if self._sorted.numel() < k * m:
            self._sorted = torch.empty(k * max(m, self.size), dtype=torch.float64, device=self.device)
            self._index = torch.empty(k * max(m, self.size), dtype=torch.int64, device=self.device)
        values = self._sorted[: k * m].view(k, m)
        torch.sort(terms, dim=0, out=(values, self._index[: k * m].view(k, m)))
        acc.copy_(values[0])
        for j in range(1, k):
            acc.add_(values[j])

    @property
    def nbytes(self) -> int:
        held = sum(b.numel() * b.element_size() for b in self._rows.values())
        return 3 * 8 * self.size + held + 16 * self._sorted.numel()


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


# --- the float32 shortcut for two-term mixes with few-bit weights ------------------------------------
#
# A sweep's usual grid (δ = 0, 1/8, …, 1; the demo's 1/4, 1/2, 3/4) has weights with few significant bits.
# When each product w·x is exact in float32 (x has p significant bits, w has q, and p + q ≤ 24, or w is a
# power of two; no product underflows to a subnormal), the float64 reference rounds the exact sum p0 + p1
# of two float32 numbers twice (to float64, then to float32), and double rounding through a format of at
# least 2·24 + 2 bits is innocuous for one addition (Figueroa 1995): the result is the correctly rounded
# float32 sum, which is exactly what one float32 addition (fused or not) computes. So a float32 output can
# be computed in float32 (1.3-1.5x a plain lerp pass against 2.1-2.4x for the float64 kernel) with the same
# bits as the float64 kernel (tested against it, including products near the underflow limit). WeightSpace
# uses this when the compiled kernel of merge/fused.py is unavailable; any other case takes the float64 one.

SIGNIFICANT_BITS = {torch.bfloat16: 8, torch.float16: 11, torch.float32: 24}
# 1 MiB of float32 per chunk: measured, 256 KiB and 64 KiB chunks pay more in per-op overhead than they
# win in cache (3.6x the lerp floor at 256 KiB, 1.3-1.5x at 1 MiB).
FLOAT32_CHUNK = 1 << 18
FLOAT32_MIN_NORMAL = 2.0**-126
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def significant_bits(w: float) -> int:
    """Bits of the significand of `w` (0 for 0.0): 0.75 -> 2, 0.125 -> 1, 0.3 -> 53."""
    if w == 0.0 or not math.isfinite(w):
        return 0
    numerator, _ = abs(w).as_integer_ratio()
    return (numerator >> ((numerator & -numerator).bit_length() - 1)).bit_length()


def exact_in_float32(
    weights: Sequence[float], dtypes: Sequence[torch.dtype], ranges: Sequence[tuple[float, float]]
) -> bool:
    """Whether Σ w_i·x_i computed in float32 (at most two non-zero terms) equals the float64 reference
    rounded to float32 for every element. `ranges[i]` is (smallest non-zero |x_i|, largest |x_i|)."""
    terms = [(w, d, r) for w, d, r in zip(weights, dtypes, ranges, strict=True) if w != 0.0]
    if len(terms) > 2:
        return False
    for w, dtype, (smallest, largest) in terms:
        p = SIGNIFICANT_BITS.get(dtype)
        q = significant_bits(w)
        if p is None or not (q == 1 or p + q <= 24):
            return False
        if smallest and smallest * abs(w) < FLOAT32_MIN_NORMAL:  # the product would be subnormal
            return False
        if largest * abs(w) >= FLOAT32_MAX or not FLOAT32_MIN_NORMAL <= abs(w) < FLOAT32_MAX:
            return False
    return True


def combine_float32(out: torch.Tensor, xs: Sequence[torch.Tensor], weights: Sequence[float]) -> None:
    """out (float32) ← Σ w_i·x_i in float32, chunk by chunk so each chunk of `out` is still in cache for
    the second term. Only valid where `exact_in_float32` says so."""
    terms = [(x, w) for x, w in zip(xs, weights, strict=True) if w != 0.0]
    n = out.numel()
    for start in range(0, n, FLOAT32_CHUNK):
        end = min(start + FLOAT32_CHUNK, n)
        dst = out[start:end]
        if not terms:
            dst.zero_()
            continue
        x, w = terms[0]
        dst.copy_(x[start:end])
        if w != 1.0:
            dst.mul_(w)
        if len(terms) == 2:
            x, w = terms[1]
            dst.add_(x[start:end], alpha=w)


def magnitude_range(x: torch.Tensor) -> tuple[float, float]:
    """(smallest non-zero |x|, largest |x|) of a finite tensor; (0, 0) when all zero."""
    if x.numel() == 0:
        return 0.0, 0.0
    smallest, largest = math.inf, 0.0
    for start in range(0, x.numel(), 1 << 20):
        a = x[start : start + (1 << 20)].abs()
        largest = max(largest, float(a.max()))
        nonzero = a[a != 0]
        if nonzero.numel():
            smallest = min(smallest, float(nonzero.min()))
    return (0.0 if smallest == math.inf else smallest), largest

"""The one place where merged values are computed and rounded; shared by `wiseft merge` and WeightSpace.

Why float64: the contract is that every output element equals the float64 reference
(`δ*early.double() + (1-δ)*final.double()`, rounded with `.to(dtype)`). With bfloat16 inputs, exact
midpoints between two bfloat16 numbers are common (≈0.2% of elements at δ=0.3), and float32 arithmetic
resolves them by its own rounding error, so a float32 kernel disagrees with the reference there. The
kernels therefore run in float64 on chunk-sized buffers, which keeps them cache-resident and cheap next to
the file I/O; rounding happens exactly once, in `combine_into`, with torch's own conversion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from wiseft.merge.methods import Method

CHUNK = 1 << 18  # elements per kernel call: 2 MiB per float64 buffer, cache-friendly


class Scratch:
    """Three reusable float64 buffers (acc, tmp, aux) of `size` elements on `device`."""

    def __init__(self, size: int = CHUNK, device: str | torch.device = "cpu"):
        self.size = size
        self.acc = torch.empty(size, dtype=torch.float64, device=device)
        self.tmp = torch.empty(size, dtype=torch.float64, device=device)
        self.aux = torch.empty(size, dtype=torch.float64, device=device)

    @property
    def nbytes(self) -> int:
        return 3 * 8 * self.size


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
        m = end - start
        acc, tmp, aux = scratch.acc[:m], scratch.tmp[:m], scratch.aux[:m]
        method.kernel([x[start:end] for x in xs], coeffs, acc, tmp, aux)
        out[start:end].copy_(acc)

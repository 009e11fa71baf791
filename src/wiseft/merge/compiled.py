"""Compiled (numba) loops for the per-tensor jobs, with the bits of their torch versions.

The torch versions of the jobs (merge/spherical.py, merge/taskvectors.py) are the definition; they take a
dozen passes over each chunk. These loops do the same float64 arithmetic in one pass per element, in the
same order: inputs widened exactly to float64, task vectors x − base, products and sums rounded as torch
rounds them (no fused multiply-add: numba compiles without fast-math), three or more terms added smallest
first, block sums added left to right from 0.0, and the result rounded as torch's `.to(dtype)` rounds
(bfloat16 through float32, as c10::BFloat16 does). Tests compare the two paths bit for bit.

Inputs of one dtype among bfloat16 and float32 and outputs in bfloat16 or float32 are compiled; anything
else, a machine without numba, or WISEFT_NO_FUSED=1 takes the torch path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

_K = None
# per-model kinds of the task-vector kernel
DENSE, ZERO, THRESHOLD, RANDOM, DELLA, KEPT = range(6)  # KEPT: keep decisions stored by an earlier pass
RESCALE_CODES = {"none": 0, "l1": 1, "inverse": 2}


def _build():
    """The compiled loops (merge/_kernels.py), or None without numba or with WISEFT_NO_FUSED=1."""
    global _K
    if _K is not None:
        return _K or None
    if os.environ.get("WISEFT_NO_FUSED"):
        _K = False
        return None
    try:
        from wiseft.merge import _kernels
    except ImportError:
        _K = False
        return None
    _K = {
        name: getattr(_kernels, name)
        for name in (
            "gram",
            "combine",
            "stock",
            "observe_keys",
            "task_vectors",
            "l1_sums",
            "mt_uniform",
            "row_ranks",
        )
    }
    return _K


def available() -> bool:
    return _build() is not None


def supports(xs: Sequence[torch.Tensor], out_dtype: torch.dtype | None = None) -> bool:
    """Whether the compiled loops take these CPU inputs (one dtype: bfloat16 or float32) and output."""
    if not xs or not available():
        return False
    dtypes = {x.dtype for x in xs}
    if len(dtypes) != 1 or not dtypes <= {torch.bfloat16, torch.float32} or xs[0].device.type != "cpu":
        return False
    return out_dtype is None or out_dtype in (torch.bfloat16, torch.float32)


def arrays(xs: Sequence[torch.Tensor]) -> tuple:
    return tuple(x.view(torch.int16).numpy() if x.dtype == torch.bfloat16 else x.numpy() for x in xs)


def out_array(out: torch.Tensor):
    return out.view(torch.int16).numpy() if out.dtype == torch.bfloat16 else out.numpy()


def kernel(name: str):
    return _build()[name]

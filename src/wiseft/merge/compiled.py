"""Compiled (numba) loops for the per-tensor jobs, with the bits of their torch versions.

The torch versions of the jobs (merge/spherical.py, merge/taskvectors.py) are the definition; they take a
dozen passes over each chunk. These loops do the same float64 arithmetic in one pass per element, in the
same order: inputs widened exactly to float64, task vectors x − base, products and sums rounded as torch
rounds them (no fused multiply-add: numba compiles without fast-math), three or more terms added smallest
first, block sums added left to right from 0.0, and the result rounded as torch's `.to(dtype)` rounds
(bfloat16 through float32, as c10::BFloat16 does). Tests compare the two paths bit for bit.

Inputs of one dtype among bfloat16 and float32 and outputs in bfloat16 or float32 are compiled; anything
else, a machine without numba, or WISEFT_NO_FUSED=1 takes the torch path.

The loops release the GIL, and a long span is cut into parts that run side by side (`spans`, `run_parts`):
the element-wise loops may be cut anywhere, the block sums on block boundaries, DELLA's ranks on whole rows,
RNG draws on RNG blocks, selection passes into per-part bins and gathers, and tie ranks continue from the
ties counted before each part (taskvectors.in_parts), so a cut never changes a bit (tests cut in three).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

_K = None
_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (the pid that made it: a forked child makes its own)
# A compiled loop over a span is cut into parts that run side by side (the loops release the GIL) when the
# span has at least MIN_PART elements per part; MAX_PARTS bounds the threads (a merge also keeps a reader
# and a writer thread busy). Cutting never changes a value: the parts are element-wise, or aligned to the
# blocks whose sums the loops return (bench/RESULTS.md has the measurements).
MIN_PART = 1 << 16
MAX_PARTS = 4
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
            "observe_key_array",
            "tie_counts",
            "task_vectors",
            "l1_sums",
            "mt_uniform",
            "row_ranks",
            "row_ranks_of",
            "sce_keys",
            "sce_tie_count",
            "sce_sums",
            "sce_out",
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


def parts_wanted() -> int:
    """How many parts a long span is cut into: the CPUs this process may run on, at most MAX_PARTS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_PARTS, cpus))


def spans(m: int, align: int = 1, min_part: int | None = None) -> list[tuple[int, int]]:
    """[0, m) cut into up to `parts_wanted()` consecutive spans of at least `min_part` (MIN_PART)
    elements each, every start a multiple of `align`; [(0, m)] when it is too short to cut."""
    min_part = MIN_PART if min_part is None else min_part
    parts = min(parts_wanted(), max(1, m // max(1, min_part)))
    if parts <= 1:
        return [(0, m)]
    unit = -(-m // parts)
    unit = -(-unit // align) * align
    cuts = [(lo, min(lo + unit, m)) for lo in range(0, m, unit)]
    if len(cuts) > 1 and cuts[-1][1] - cuts[-1][0] < min_part:  # a short tail joins the part before it
        cuts[-2:] = [(cuts[-2][0], m)]
    return cuts


def elementwise(name: str, xs: Sequence[torch.Tensor], out: torch.Tensor, *args) -> None:
    """Kernel `name`(inputs, *args, output), an element-wise loop, over the whole of `out` in parts side by
    side (any cut gives the same bits)."""
    inputs, target = arrays(xs), out_array(out)

    def part(lo: int, hi: int) -> None:
        kernel(name)(tuple(a[lo:hi] for a in inputs), *args, target[lo:hi])

    run_parts(part, spans(out.numel()))


def run_parts_in_order(call, parts: list[tuple[int, int]], seen, count=None) -> None:
    """call(lo, hi, seen at lo) for each part side by side, for loops that count tie ranks in index order
    in the array `seen`: each part starts from the ties counted before it (`count(lo, hi, seen)` adds
    those of [lo, hi) to seen in place, a cheap pass over all parts but the last), and `seen` ends where
    the last part's count ends, as after one loop over the whole span. count None: no ties to order."""
    if len(parts) == 1 or count is None:
        run_parts(lambda lo, hi: call(lo, hi, seen), parts)
        return
    starts = [seen.copy()]
    for lo, hi in parts[:-1]:
        starts.append(starts[-1].copy())
        count(lo, hi, starts[-1])
    first = {lo: k for k, (lo, _) in enumerate(parts)}
    run_parts(lambda lo, hi: call(lo, hi, starts[first[lo]]), parts)
    seen[:] = starts[-1]


def run_parts(call: Callable[[int, int], None], parts: list[tuple[int, int]]) -> None:
    """call(lo, hi) for each part, side by side: the first on this thread, the others on a small pool.
    Every part has finished when this returns or raises (the parts write into shared buffers)."""
    global _POOL
    if len(parts) == 1:
        call(*parts[0])
        return
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(MAX_PARTS - 1, thread_name_prefix="wiseft-kernel"))
    futures = [_POOL[1].submit(call, lo, hi) for lo, hi in parts[1:]]
    try:
        call(*parts[0])
    finally:
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error

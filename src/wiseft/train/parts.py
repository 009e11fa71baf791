"""Fixed parts of a batch run side by side on CPU, one core each, so results do not depend on threads.

A CPU matrix product split over several intra-op threads sums in an order that depends on the thread
count, so the same step on 1 and 2 threads gives different bits. Here the batch is cut into parts that
depend only on the data, each part runs with one intra-op thread (parts run in parallel in a pool of
Python threads; torch releases the GIL inside ops), and the parts' results are combined in part order.
The same pattern as `sft._MicroBatches`, for any function of a part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class PartPool:
    """`map(fn, parts)` → results in part order. On CPU up to `threads` parts at once, one core each."""

    def __init__(self, parts: int, threads: int, cpu: bool):
        self.cpu = cpu
        workers = min(parts, threads) if cpu else 1
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None

    @contextlib.contextmanager
    def one_thread(self) -> Iterator[None]:
        """On CPU, run the block with one intra-op thread (every sum in a fixed order)."""
        import torch

        if not self.cpu:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def map(self, fn: Callable[[Any], Any], parts: Sequence[Any]) -> list[Any]:
        with self.one_thread():
            if self.pool is None or len(parts) < 2:
                return [fn(p) for p in parts]
            return list(self.pool.map(fn, parts))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


def split_rows(n: int, parts: int) -> list[range]:
    """Rows 0..n-1 cut into `parts` contiguous ranges of near-equal size (the first ones larger),
    empty ranges left out; a function of (n, parts) only."""
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        size = base + (1 if i < extra else 0)
        if size:
            out.append(range(start, start + size))
        start += size
    return out


def length_parts(lengths: list[int], parts: int) -> list[list[int]]:
    """Split rows of these token `lengths` into at most `parts` micro-batches: rows sorted by length (ties
    in row order), cut into runs whose padded size (rows x the run's longest row) is as even as it can be,
    shortest run first. A function of the lengths alone, so the step is the same for any thread count;
    every row is in exactly one part, and no part is empty."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sizes = [max(1, lengths[i]) for i in order]

    def cuts(cap: int) -> list[int] | None:  # fewest runs from the longest end, each padded <= cap
        bounds, end = [], len(sizes)
        while end > 0:
            if len(bounds) == parts:
                return None
            start = end - 1
            while start > 0 and (end - start + 1) * sizes[end - 1] <= cap:
                start -= 1
            bounds.append(start)
            end = start
        return bounds[::-1]

    lo, hi = sizes[-1], len(sizes) * sizes[-1]  # the longest row alone .. everything in one part
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if cuts(mid) is not None else (mid + 1, hi)
    starts = cuts(lo) or [0]
    ends = starts[1:] + [len(order)]
    return [order[a:b] for a, b in zip(starts, ends, strict=True)]

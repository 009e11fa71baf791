"""Per-tensor jobs: methods that need a whole tensor (norms, angles, top-k, ranks) in bounded memory.

A `Job` sees its tensor in chunks, in order: zero or more observation passes (`observe`, then `end_pass`,
which says whether another pass is needed), then one output pass (`compute`, float64 values into `acc`,
rounded once by the caller). Chunk starts are multiples of `granularity` (whole rows for row-wise
methods, `REDUCE_BLOCK` for methods that sum over the whole tensor); that is what makes every result
independent of the chunk size, so `wiseft merge` (reading from disk in I/O chunks) and `WeightSpace`
(inputs in memory) produce the same bits.

Reductions over a tensor (`BlockSums`) are sums of fixed blocks of `REDUCE_BLOCK` elements aligned to the
tensor start, each added left to right from 0.0 (torch's cumsum, or the compiled loops of merge/compiled.py:
the same bits), and the block sums added exactly (`math.fsum`): the result depends neither on the chunking
nor on the order chunks were seen in, nor on threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

REDUCE_BLOCK = 1 << 14
# Elements per call of a compiled loop that needs no scratch (Job.observe_step): long enough that cutting
# it into parts pays, short enough that the parts' own buffers stay small when a whole in-memory tensor
# (WeightSpace) is the span: a selection part may gather every key of its part.
LONG_STEP = 1 << 22


class Job:
    """A per-tensor computation (see the module docstring). Subclasses override what they need."""

    granularity = 1
    # Hashable: two jobs of one tensor with the same key compute the same statistics (WeightSpace reuses
    # them across variants, e.g. a slerp t grid reuses the norms and the dot product). None: never reuse.
    cache_key: object = None

    def needs_observation(self) -> bool:
        return False

    def observe_step(self, xs: Sequence[torch.Tensor], step: int) -> int:
        """Elements per `observe` call in this pass over the span xs: `step` (what the scratch buffers
        hold), or more where the pass needs no scratch (a compiled selection pass takes up to LONG_STEP:
        fewer calls, and parts long enough for both cores)."""
        return step

    def compute_step(self, xs: Sequence[torch.Tensor], out: torch.Tensor, step: int) -> int:
        """Elements per output call over the span xs, as `observe_step`: more than `step` only where
        `compute_out` takes the call without scratch."""
        return step

    def observe(self, xs: Sequence[torch.Tensor], start: int, scratch) -> None:
        pass

    def end_pass(self) -> bool:
        """Called after each observation pass; True when another observation pass is needed."""
        return False

    def compute(self, xs: Sequence[torch.Tensor], start: int, acc: torch.Tensor, scratch) -> None:
        raise NotImplementedError

    def compute_out(self, xs: Sequence[torch.Tensor], start: int, out: torch.Tensor, scratch) -> bool:
        """Write the rounded output straight into `out` (a compiled loop); False: use `compute`."""
        return False

    def stats(self) -> object:
        """What the observation passes found (for reuse by a job with the same cache_key)."""
        return None

    def use_stats(self, stats: object) -> None:
        """Take the statistics of an earlier job with the same cache_key; no observation pass follows."""


def long_step(job: Job, xs: Sequence[torch.Tensor], step: int) -> int:
    """The step of `job`'s loop that needs no scratch over the span xs: up to LONG_STEP elements at once,
    in whole granules (the starts of later calls stay multiples of the job's granularity)."""
    return max(step, min(xs[0].numel(), step_for(job, LONG_STEP)))


def step_for(job: Job, preferred: int) -> int:
    """Elements per kernel call for `job`: `preferred` rounded down to whole granules (at least one)."""
    g = max(1, job.granularity)
    return max(g, preferred // g * g)


def observe_span(job: Job, xs: Sequence[torch.Tensor], start: int, step: int, scratch) -> None:
    """One observation pass over the span xs (starting at element `start`), in calls of `step` elements
    (or as many as the job takes at once, `Job.observe_step`)."""
    n = xs[0].numel()
    step = job.observe_step(xs, step)
    for offset in range(0, n, step):
        end = min(offset + step, n)
        job.observe([x[offset:end] for x in xs], start + offset, scratch)


def compute_span(
    out: torch.Tensor, xs: Sequence[torch.Tensor], job: Job, start: int, step: int, scratch
) -> None:
    """out ← round(job's output) over the span xs starting at element `start`."""
    n = out.numel()
    step = job.compute_step(xs, out, step)
    for offset in range(0, n, step):
        end = min(offset + step, n)
        chunk = [x[offset:end] for x in xs]
        if job.compute_out(chunk, start + offset, out[offset:end], scratch):
            continue
        acc = scratch.acc[: end - offset]
        job.compute(chunk, start + offset, acc, scratch)
        out[offset:end].copy_(acc)


def run_job(
    out: torch.Tensor, xs: Sequence[torch.Tensor], job: Job, scratch, cache: dict | None = None
) -> None:
    """All passes of `job` over whole in-memory flat inputs `xs`, rounded into `out` (WeightSpace, tests).

    `cache` (optional) maps cache keys to statistics: a hit skips the observation passes."""
    step = step_for(job, scratch.size)
    scratch.ensure(step)
    key = job.cache_key
    if cache is not None and key is not None and key in cache:
        job.use_stats(cache[key])
    elif job.needs_observation():
        while True:
            observe_span(job, xs, 0, step, scratch)
            if not job.end_pass():
                break
        if cache is not None and key is not None:
            cache[key] = job.stats()
    compute_span(out, xs, job, 0, step, scratch)


class BlockSums:
    """Σ of per-element float64 values over a tensor, independent of chunking (module docstring)."""

    def __init__(self) -> None:
        self.parts: list[float] = []

    def add(self, values: torch.Tensor) -> None:
        """`values` start at a multiple of REDUCE_BLOCK; only a tensor's last chunk may end mid-block."""
        n = values.numel()
        full = n // REDUCE_BLOCK * REDUCE_BLOCK
        if full:
            self.parts.extend(values[:full].view(-1, REDUCE_BLOCK).cumsum(dim=1)[:, -1].tolist())
        if n > full:
            self.parts.append(float(values[full:].cumsum(dim=0)[-1]))

    def extend(self, sums) -> None:
        """Block sums computed elsewhere (the compiled kernels), in block order."""
        self.parts.extend(float(v) for v in sums)

    def total(self) -> float:
        return math.fsum(self.parts)


class Gram:
    """G[i][j] = Σ v_i·v_j over a tensor for N float64 vectors, from BlockSums of the products."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sums = {(i, j): BlockSums() for i in range(n) for j in range(i, n)}

    def add(self, vs: Sequence[torch.Tensor], tmp: torch.Tensor) -> None:
        for (i, j), sums in self.sums.items():
            torch.mul(vs[i], vs[j], out=tmp)
            sums.add(tmp)

    def matrix(self) -> list[list[float]]:
        g = [[0.0] * self.n for _ in range(self.n)]
        for (i, j), sums in self.sums.items():
            g[i][j] = g[j][i] = sums.total()
        return g


def row_gram(vs: Sequence[torch.Tensor], cols: int, tmp: torch.Tensor) -> list[list[torch.Tensor]]:
    """Per-row Gram matrices of N chunks viewed as rows of `cols` elements: G[i][j] is a float64 vector
    with one entry per row (each row summed by itself, so the result does not depend on the chunking)."""
    n = len(vs)
    g: list[list[torch.Tensor]] = [[None] * n for _ in range(n)]  # type: ignore[list-item]
    for i in range(n):
        for j in range(i, n):
            torch.mul(vs[i], vs[j], out=tmp)
            g[i][j] = g[j][i] = tmp.view(-1, cols).sum(dim=1)
    return g


def to_float64(x: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    dst.copy_(x)
    return dst


def task_vectors(xs: Sequence[torch.Tensor], scratch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(base, [x_i − base]) in float64 for a chunk whose inputs are (base, model_1, …), in the scratch
    rows named "inputs"."""
    rows = scratch.rows("inputs", len(xs), xs[0].numel())
    base = to_float64(xs[0], rows[0])
    deltas = []
    for x, row in zip(xs[1:], rows[1:], strict=True):
        row.copy_(x)
        row.sub_(base)
        deltas.append(row)
    return base, deltas


def as_float64(xs: Sequence[torch.Tensor], scratch) -> list[torch.Tensor]:
    """The chunk's inputs in float64, in the scratch rows named "inputs"."""
    rows = scratch.rows("inputs", len(xs), xs[0].numel())
    return [to_float64(x, row) for x, row in zip(xs, rows, strict=True)]

"""Exact order statistics of a tensor's magnitudes in a few streaming passes, with bounded memory.

Top-k trimming (TIES), outlier removal (breadcrumbs) and variance selection (SCE) keep the elements whose
rank lies in a range. Sorting a 233M-element embedding in float64 would need gigabytes; instead a
`Selector` finds the value at one rank by radix refinement over the keys' bits. Keys are the int64 bit
patterns of non-negative float64 values (|δ|, a variance), which order exactly like the values.

- A histogram pass counts keys per bin (first pass: bins of the top 17 bits, i.e. the exponent and 5
  mantissa bits, 32 bins per power of two);
- the bin holding the wanted rank is kept; when it holds at most `cap` keys, the next pass gathers them
  and sorts them (exact); otherwise the next pass histograms inside that bin, with finer bins.

Usually two passes: one histogram, one gather of ~1% of the keys. Memory: the bins (64k int64) and at
most `cap` gathered keys per selector.

The order of elements: by value, and among equal values the lower flat index ranks HIGHER (so keeping the
top k of equal magnitudes keeps the first ones, like a stable descending sort). `Keep` turns the values at
two ranks into the keep decision for each element, counting ties in index order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from wiseft.merge import compiled

FIRST_SHIFT = 47  # 63-bit keys >> 47: 16 bits of bin (11 exponent bits, 5 mantissa bits)
BINS_LOG2 = 16
MAX_KEY = (1 << 63) - 1
TOTAL_CAP = 1 << 23  # gathered keys over all selectors of a job: 64 MiB
MIN_CAP = 1 << 16


@dataclass(frozen=True)
class Rank:
    """The value at a rank, and how many elements are below it / equal to it."""

    value: int  # the key
    less: int
    equal: int


class Selector:
    """Finds the key at ascending rank `position` (0-based) of a stream of int64 keys (module docstring).

    `position` may be given after the first pass (`set_position`), e.g. when it depends on how many keys
    are non-zero, which the first pass counts (`zeros`)."""

    def __init__(self, position: int | None = None, cap: int = 1 << 21):
        self.position = position
        self.cap = cap
        self.lo, self.hi, self.shift = 0, MAX_KEY, FIRST_SHIFT
        self.mode = "hist"
        self.result: Rank | None = None
        self.zeros = 0  # keys equal to 0, counted in the first pass
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []  # per-part bins and gather buffers (_spare)
        self._first = True
        self._reset_pass()

    def _reset_pass(self, expected: int = 0) -> None:
        self._below = 0
        self._counts: torch.Tensor | None = None  # allocated on first use: a job is cheap to create
        # one buffer of the known size: many small long-lived tensors would fragment the heap
        # (+1: the compiled gather writes every key at the fill position and advances only for keys inside)
        self._gathered = torch.empty(expected + 1 if self.mode == "gather" else 0, dtype=torch.int64)
        self._filled = 0

    def _count(self, bins: torch.Tensor) -> None:
        counts = torch.bincount(bins, minlength=1 << BINS_LOG2)
        self._counts = counts if self._counts is None else self._counts.add_(counts)

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def in_first_pass(self) -> bool:
        return not self.done and self._first

    def set_position(self, position: int) -> None:
        self.position = position

    def observe(self, keys: torch.Tensor) -> None:
        if self.done:
            return
        if self._first:
            self.zeros += int((keys == 0).sum())
            self._count(keys >> FIRST_SHIFT)
            return
        inside = (keys >= self.lo) & (keys <= self.hi)
        self._below += int((keys < self.lo).sum())
        chosen = keys[inside]
        if self.mode == "gather":
            self._gathered[self._filled : self._filled + chosen.numel()] = chosen
            self._filled += chosen.numel()
        else:
            self._count((chosen - self.lo) >> self.shift)

    @property
    def _kernel_mode(self) -> int:
        """The compiled loops' mode for this pass: 0 the first histogram, 1 a finer one, 2 the gather."""
        return 0 if self._first else (1 if self.mode == "hist" else 2)

    def observe_array(self, keys: torch.Tensor) -> None:
        """observe(keys) for a contiguous CPU int64 tensor, in one compiled loop when numba is there
        (`_kernels.observe_key_array`: no temporary tensors), else on the torch path."""
        if self.done:
            return
        if not (compiled.available() and keys.device.type == "cpu" and keys.is_contiguous()):
            self.observe(keys)
            return
        if self._counts is None:
            self._counts = torch.zeros(1 << BINS_LOG2, dtype=torch.int64)
        mode = self._kernel_mode
        below, filled, zeros = compiled.kernel("observe_key_array")(
            keys.numpy(), mode, self.lo, self.hi, self.shift, self._counts.numpy(), self._gathered.numpy(),
            self._filled,
        )  # fmt: skip
        self._add(below, filled - self._filled, zeros)

    def observe_compiled(self, arrays: tuple, model: int) -> None:
        """observe() for the |x_model − base| keys of a chunk (arrays: base first), compiled."""
        if self.done:
            return
        if self._counts is None:
            self._counts = torch.zeros(1 << BINS_LOG2, dtype=torch.int64)
        mode = self._kernel_mode
        x, base, kernel = arrays[model + 1], arrays[0], compiled.kernel("observe_keys")
        parts = compiled.spans(x.shape[0])
        if len(parts) == 1:
            below, filled, zeros = kernel(x, base, mode, self.lo, self.hi, self.shift, self._counts.numpy(),
                                          self._gathered.numpy(), self._filled)  # fmt: skip
            self._add(below, filled - self._filled, zeros)
            return
        # Parts side by side (compiled.run_parts): the first counts and gathers in place, the others into
        # their own bins and buffers; counts add up and gathered keys are sorted at the end, so nothing
        # depends on the cut.
        spare = self._spare(len(parts) - 1, max(hi - lo for lo, hi in parts[1:]))
        index = {lo: k for k, (lo, _) in enumerate(parts)}
        found = {}

        def part(lo: int, hi: int) -> None:
            k = index[lo]
            if k == 0:
                counts, gathered, at = self._counts.numpy(), self._gathered.numpy(), self._filled
            else:
                (counts, gathered), at = spare[k - 1], 0
                if mode != 2:
                    counts[:] = 0
            found[k] = kernel(x[lo:hi], base[lo:hi], mode, self.lo, self.hi, self.shift, counts, gathered, at)

        compiled.run_parts(part, parts)
        below, filled, zeros = found[0]
        self._add(below, filled - self._filled, zeros)
        for k in range(1, len(parts)):
            below, filled, zeros = found[k]
            counts, gathered = spare[k - 1]
            at = self._filled
            self._add(below, filled, zeros)  # (checks the room before the copy)
            if mode == 2:
                self._gathered.numpy()[at : at + filled] = gathered[:filled]
            else:
                self._counts.numpy()[:] += counts

    def _spare(self, n: int, size: int) -> list:
        """Per-part bins and gather buffers (numpy, reused across chunks: the hot path allocates nothing)."""
        held = self._parts
        if len(held) < n or held[0][1].shape[0] < size:
            held = [
                (np.zeros(1 << BINS_LOG2, dtype=np.int64), np.empty(size, dtype=np.int64)) for _ in range(n)
            ]
            self._parts = held
        return held

    def _add(self, below: int, filled: int, zeros: int) -> None:
        if filled and self._filled + filled > self._gathered.numel() - 1:  # cannot happen: counts are exact
            raise RuntimeError("selection gathered more keys than its bin held")
        self._below += below
        self._filled += filled
        self.zeros += zeros

    def end_pass(self) -> bool:
        """Narrow down after a pass; True when another pass is needed."""
        if self.done:
            return False
        if self.mode == "gather":
            self._finish_gather()
            return False
        counts = self._counts if self._counts is not None else torch.zeros(1 << BINS_LOG2, dtype=torch.int64)
        cumulative = torch.cumsum(counts, 0)
        wanted = self.position - self._below
        j = int(torch.searchsorted(cumulative, torch.tensor([wanted]), right=True)[0])
        before = int(cumulative[j - 1]) if j else 0
        inside = int(counts[j])
        self.lo = self.lo + (j << self.shift)
        self.hi = min(self.hi, self.lo + (1 << self.shift) - 1)
        self._below += before
        self._first = False
        if self.lo == self.hi:
            self.result = Rank(self.lo, self._below, inside)
            return False
        if inside <= self.cap:
            self.mode = "gather"
        else:
            width = self.hi - self.lo
            self.shift = max(0, width.bit_length() - BINS_LOG2)
        self._reset_pass(inside)
        return True

    def _finish_gather(self) -> None:
        keys = torch.sort(self._gathered[: self._filled]).values
        value = int(keys[self.position - self._below])
        less = self._below + int(torch.searchsorted(keys, torch.tensor([value]))[0])
        equal = int(torch.searchsorted(keys, torch.tensor([value]), right=True)[0]) - (less - self._below)
        self.result = Rank(value, less, equal)
        self._gathered = torch.empty(0, dtype=torch.int64)


def observe_all_compiled(selectors: list[Selector], arrays: tuple, model: int) -> None:
    """observe_compiled for each of one model's selectors; those in their first pass count the same
    histogram of the same keys, so only the first of them counts it (`share_first_pass` copies it)."""
    first = [s for s in selectors if s.in_first_pass]
    for s in selectors:
        if s not in first[1:]:
            s.observe_compiled(arrays, model)


def share_first_pass(selectors: list[Selector]) -> None:
    """Before their end_pass: selectors in their first pass take the bins and zeros of the first of them
    (observe_all_compiled; on the torch path they are equal already)."""
    first = [s for s in selectors if s.in_first_pass]
    for s in first[1:]:
        s._counts = None if first[0]._counts is None else first[0]._counts.clone()
        s.zeros = first[0].zeros


class Keep:
    """Which elements have ascending rank in [first, last) (module docstring), chunk by chunk in order.

    `low`/`high` are the Ranks at positions `first` and `last − 1` (None when that side keeps all)."""

    def __init__(self, first: int, last: int, low: Rank | None, high: Rank | None):
        self.first, self.last = first, last
        self.low, self.high = low, high
        self.ties: dict[int, tuple[int, int]] = {}  # value -> allowed tie-rank range [a, b)
        for rank in (low, high):
            if rank is None:
                continue
            # the equal elements take positions [less, less + equal), the lowest index at the top
            a = max(0, rank.less + rank.equal - last)
            b = min(rank.equal, rank.less + rank.equal - first)
            lo, hi = self.ties.get(rank.value, (0, rank.equal))
            self.ties[rank.value] = (max(lo, a), min(hi, b))
        self.seen = dict.fromkeys(self.ties, 0)

    def mask(self, keys: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out (bool) ← whether each key of this chunk (the next in index order) is kept."""
        if self.low is not None:
            torch.gt(keys, self.low.value, out=out)
        else:
            out.fill_(True)
        if self.high is not None:
            out &= keys < self.high.value
        for value, (a, b) in self.ties.items():
            equal = keys == value
            count = int(equal.sum())
            if not count:
                continue
            seen = self.seen[value]
            self.seen[value] = seen + count
            if b <= seen or a >= seen + count:
                continue
            rank = torch.cumsum(equal, 0) - 1 + seen  # tie-rank of each equal element (where equal)
            out |= equal & (rank >= a) & (rank < b)
        return out


def keep_range(n: int, first: int, last: int) -> tuple[int, int]:
    """Clamp a rank range to [0, n]."""
    return max(0, min(first, n)), max(0, min(last, n))

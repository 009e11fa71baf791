"""Greedy batching of length-sorted items, shared by the sampler's and the verifiers' batch plans."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def greedy_batches(lengths: Sequence[int], fits: Callable[[int, int], bool]) -> list[list[int]]:
    """Consecutive batches of the positions 0..N−1 of `lengths` (sorted longest first, so a batch's first
    item is its widest). A position joins the current batch while `fits(rows, width)` holds for the batch
    with it (`rows` its size then, `width` the length of its first item); one that fits no batch runs
    alone."""
    batches: list[list[int]] = []
    current: list[int] = []
    for j, length in enumerate(lengths):
        width = lengths[current[0]] if current else length
        if current and not fits(len(current) + 1, width):
            batches.append(current)
            current = []
        current.append(j)
    if current:
        batches.append(current)
    return batches

"""Random numbers for randomised merges (DARE, DELLA) that do not depend on order, chunking or threads.

The uniform number of element e of tensor T for model i (0-based, in the recipe's model order) is drawn
from its block b = e // RNG_BLOCK: a CPU `torch.Generator` seeded with the first 8 bytes (little endian)
of sha256("wiseft-rng/{seed}/{T}/{i}/{b}") draws `RNG_BLOCK` float32 numbers (`torch.rand`), and element e
takes number e − b·RNG_BLOCK. Every block is drawn whole, so the values do not depend on how the tensor is
cut into chunks, which chunk is computed first, or on which device the merge runs (always drawn on CPU).
Where the compiled loops are available (merge/compiled.py) the same numbers come from a compiled copy of
torch's MT19937 and its float32 conversion (`_kernels.mt_uniform`), without a generator object per block;
tests compare the two bit for bit.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from wiseft.merge import compiled

RNG_BLOCK = 1 << 16


def block_seed(seed: int, tensor: str, model: int, block: int) -> int:
    digest = hashlib.sha256(f"wiseft-rng/{seed}/{tensor}/{model}/{block}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def uniform(
    seed: int, tensor: str, model: int, start: int, n: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Float64 copies of the uniform numbers of elements [start, start + n) (module docstring)."""
    out = torch.empty(n, dtype=torch.float64) if out is None else out[:n]
    first, last = start // RNG_BLOCK, (start + n - 1) // RNG_BLOCK
    if compiled.available() and out.is_contiguous() and out.device.type == "cpu":
        draw, target = compiled.kernel("mt_uniform"), out.numpy()
        seeds = [np.uint64(block_seed(seed, tensor, model, b)) for b in range(first, last + 1)]

        def part(a: int, b: int) -> None:  # blocks are drawn independently: any cut gives the same numbers
            for block in range(first + a, first + b):
                lo = max(start, block * RNG_BLOCK)
                hi = min(start + n, (block + 1) * RNG_BLOCK)
                draw(seeds[block - first], lo - block * RNG_BLOCK, target[lo - start : hi - start])

        compiled.run_parts(part, compiled.spans(len(seeds), min_part=2))
        return out
    generator = torch.Generator(device="cpu")
    for block in range(first, last + 1):
        generator.manual_seed(block_seed(seed, tensor, model, block))
        values = torch.rand(RNG_BLOCK, generator=generator)
        lo = max(start, block * RNG_BLOCK)
        hi = min(start + n, (block + 1) * RNG_BLOCK)
        out[lo - start : hi - start].copy_(values[lo - block * RNG_BLOCK : hi - block * RNG_BLOCK])
    return out

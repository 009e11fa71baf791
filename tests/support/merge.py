"""Tiny checkpoints for the merge/checkpoint tests (the `models` fixture builds each once per session)
and the float64 references the merge tests compare against."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from wiseft.testing import save_tiny_model


class ModelFactory:
    """`get(arch, seed, dtype, tied, sharded)` builds a tiny HF directory once and returns its path."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[tuple, Path] = {}

    def get(self, arch="llama", seed=0, dtype=torch.bfloat16, tied=False, sharded=False, **kwargs) -> Path:
        key = (arch, seed, dtype, tied, sharded, tuple(sorted(kwargs.items())))
        if key not in self._cache:
            name = f"{arch}-s{seed}-{str(dtype).split('.')[-1]}-{'tied' if tied else 'untied'}" + (
                "-sharded" if sharded else ""
            )
            name += "".join(f"-{k}{v}" for k, v in sorted(kwargs.items()))
            self._cache[key] = save_tiny_model(
                self.root / name,
                arch=arch,
                seed=seed,
                dtype=dtype,
                tied=tied,
                shard_size="12KB" if sharded else None,
                **kwargs,
            )
        return self._cache[key]


def load_dir(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a model directory, read with the safetensors library (independent of wiseft)."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.exists()
        else ["model.safetensors"]
    )
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(path / f)))
    return out


def reference(weights: list[float], tensors: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """Σ w_i·t_i in float64, rounded once to `dtype` (the numerics contract); zero weights drop out."""
    return float64_sum([w * t.double() for w, t in zip(weights, tensors, strict=True) if w != 0]).to(dtype)


def float64_sum(terms: list[torch.Tensor]) -> torch.Tensor:
    """Two terms: a + b. More: added smallest value first per element (the documented canonical order)."""
    if len(terms) <= 2:
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]
    ordered = torch.stack(terms).sort(dim=0).values
    acc = ordered[0]
    for row in ordered[1:]:
        acc = acc + row
    return acc


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (distinguishes -0.0 from 0.0 and compares NaN payloads)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    size = a.element_size()
    as_int = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[size]
    return torch.equal(a.contiguous().view(as_int), b.contiguous().view(as_int))

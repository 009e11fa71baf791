"""Content hashes of model weights: what identifies a checkpoint's weights, not its files.

Each tensor gets its own digest, xxh3-128 over its name, dtype, shape and raw bytes (`TensorDigest`,
fed as the bytes stream past, in pieces of any size). A model's hash (`ContentHash`) is xxh3-128 over the
sorted "name digest" lines of all its tensors, so it depends on the weights alone: not on how they are
split into shards, the order of tensors in a file, the header's metadata or padding. Two checkpoints of
one training run (same names and shapes, other values) get different hashes; the same weights written by
`wiseft merge` and by `save_pretrained` get the same one.

`content_hash(model)` reads every tensor once, in file order, through one reused buffer; the merge driver
feeds the same digests from the bytes it streams anyway. `model_fingerprint(model)` (what the sample store
keys a variant's samples by) is the content hash together with config.json, which also changes what a
model samples.

xxh3-128 (the `xxhash` package, pinned) is not cryptographic: it identifies weights, it does not defend
against someone who crafts a collision. Its speed is why it is used: the bench (`bench/content_hash.py`)
compares it with reading the bytes alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from wiseft.checkpoints.checkpoint import Checkpoint
from wiseft.checkpoints.safetensors_format import TensorInfo
from wiseft.errors import CheckpointError

ALGORITHM = "xxh3_128"
READ_BLOCK = 16 << 20  # bytes read and hashed at a time


def _xxh3():
    import xxhash

    return xxhash.xxh3_128()


class TensorDigest:
    """The digest of one tensor, fed its bytes in order (`update`) as they are read or written."""

    def __init__(self, name: str, dtype: str, shape: Iterable[int]) -> None:
        self._h = _xxh3()
        self._h.update(f"{name}\0{dtype}\0{','.join(map(str, shape))}\0".encode())

    def update(self, data) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


class ContentHash:
    """A model's content hash from its tensors' digests, given in any order."""

    def __init__(self) -> None:
        self.digests: dict[str, str] = {}

    def add(self, name: str, digest: str) -> None:
        if name in self.digests:
            raise CheckpointError(f"tensor {name!r} hashed twice")
        self.digests[name] = digest

    def hexdigest(self) -> str:
        h = _xxh3()
        for name in sorted(self.digests):
            h.update(f"{name} {self.digests[name]}\n".encode())
        return h.hexdigest()


def tensor_digest(ckpt: Checkpoint, info: TensorInfo, buf: memoryview) -> str:
    """The digest of tensor `info` of `ckpt`, read through `buf` (a reused byte buffer)."""
    digest = TensorDigest(info.name, info.dtype, info.shape)
    for start in range(0, info.nbytes, len(buf)):
        piece = buf[: min(len(buf), info.nbytes - start)]
        ckpt.read_into(info, piece, start)
        digest.update(piece)
    return digest.hexdigest()


def content_hash(model: str | os.PathLike | Checkpoint, block: int = READ_BLOCK) -> str:
    """The content hash of a model directory (or an open `Checkpoint`): every tensor read once."""
    ckpt = model if isinstance(model, Checkpoint) else Checkpoint.open(model)
    buf = memoryview(bytearray(max(1, min(block, max((t.nbytes for t in ckpt.tensors.values()), default=1)))))
    total = ContentHash()
    try:
        for info in ckpt.tensors.values():  # file order: sequential reads
            total.add(info.name, tensor_digest(ckpt, info, buf))
    finally:
        if not isinstance(model, Checkpoint):
            ckpt.close()
    return total.hexdigest()


def model_fingerprint(path: str | os.PathLike) -> str:
    """What identifies a model's samples: its weights' content hash and its config.json (parsed and
    written back in one canonical form, so whitespace and key order do not count)."""
    ckpt = Checkpoint.open(path)
    try:
        weights = content_hash(ckpt)
    finally:
        ckpt.close()
    return fingerprint(weights, ckpt.config)


def fingerprint(weights: str, config: dict) -> str:
    """The model fingerprint of weights with content hash `weights` and the parsed config.json `config`."""
    h = _xxh3()
    h.update(weights.encode())
    h.update(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()

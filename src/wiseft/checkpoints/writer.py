"""Sharded safetensors output whose headers are computed before any data is written.

The caller fixes the list of output tensors (name, dtype, shape) and the shard size up front; the writer
splits them into shards, writes each shard's header, and then accepts the tensor bytes as a stream, in
that order, in pieces of any size (`write`). Nothing is buffered beyond the caller's piece, so a shard is
never held in memory. `close()` checks that every byte arrived and writes the index when sharded.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from wiseft.checkpoints.safetensors_format import build_header
from wiseft.errors import ConfigError, OutputError

DEFAULT_SHARD_SIZE = 5 * 10**9
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}


def parse_size(text: str | int) -> int:
    """'5GB' -> 5e9, '500MiB' -> 500·2**20, 1234 -> 1234 (the convention of save_pretrained)."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", str(text).upper())
        if not m:
            raise ConfigError(f"--shard-size {text!r} is not a size; write e.g. 5GB, 500MB or 2GiB")
        value = int(float(m.group(1)) * _UNITS[m.group(2) or ""])
    if value <= 0:
        raise ConfigError(f"--shard-size must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class Shard:
    filename: str
    names: tuple[str, ...]
    header: bytes
    lengths: tuple[int, ...]

    @property
    def data_bytes(self) -> int:
        return sum(self.lengths)


def plan_shards(
    entries: list[tuple[str, str, tuple[int, ...]]], shard_size: int, metadata: dict[str, str] | None = None
) -> list[Shard]:
    """Split `entries` (in order) into shards of at most `shard_size` data bytes (a bigger tensor gets
    a shard of its own), named like transformers names them."""
    groups: list[list[tuple[str, str, tuple[int, ...]]]] = [[]]
    size = 0
    for entry in entries:
        _, lengths = build_header([entry])
        if groups[-1] and size + lengths[0] > shard_size:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += lengths[0]
    n = len(groups)
    shards = []
    for i, group in enumerate(groups):
        filename = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        header, lengths = build_header(group, metadata)
        shards.append(Shard(filename, tuple(e[0] for e in group), header, tuple(lengths)))
    return shards


class ShardWriter:
    """Stream tensor bytes into pre-planned shards inside `directory` (a temporary directory)."""

    def __init__(self, directory: Path, shards: list[Shard]):
        self.directory = Path(directory)
        self.shards = shards
        self._shard = -1
        self._fd: int | None = None
        self._left = 0  # data bytes still expected in the open shard
        self.bytes_written = 0
        self._next_shard()

    def _next_shard(self) -> None:
        if self._fd is not None:
            self._close_fd()
        self._shard += 1
        if self._shard >= len(self.shards):
            return
        shard = self.shards[self._shard]
        path = self.directory / shard.filename
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._write_all(shard.header)
        self._left = shard.data_bytes
        if self._left == 0:
            self._next_shard()

    def write(self, data: memoryview | bytes) -> None:
        """Append the next `len(data)` bytes of the tensor stream (may span shard boundaries)."""
        view = memoryview(data).cast("B")
        while len(view):
            if self._fd is None:
                raise OutputError("internal error: more tensor bytes than the planned shards hold")
            take = min(self._left, len(view))
            self._write_all(view[:take])
            self.bytes_written += take
            self._left -= take
            view = view[take:]
            if self._left == 0:
                self._next_shard()

    def _write_all(self, view: memoryview | bytes) -> None:
        view = memoryview(view)
        while len(view):
            n = os.write(self._fd, view)
            view = view[n:]

    def _close_fd(self, sync: bool = True) -> None:
        fd, self._fd = self._fd, None
        try:
            if sync:  # a finished shard goes to disk while the next one is written
                os.fsync(fd)
        finally:
            os.close(fd)

    def close(self, index_metadata: dict | None = None) -> None:
        """Check completeness; write `model.safetensors.index.json` when there is more than one shard."""
        if self._fd is not None or self._shard < len(self.shards):
            raise OutputError("internal error: the tensor stream ended before every shard was complete")
        if len(self.shards) > 1:
            weight_map = {name: s.filename for s in self.shards for name in s.names}
            index = {
                "metadata": {"total_size": sum(s.data_bytes for s in self.shards), **(index_metadata or {})},
                "weight_map": weight_map,
            }
            (self.directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

    def abort(self) -> None:
        if self._fd is not None:
            self._close_fd(sync=False)

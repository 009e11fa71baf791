"""Sharded safetensors output whose headers are computed before any data is written.

The caller fixes the list of output tensors (name, dtype, shape) and the shard size up front; the writer
splits them into shards, writes each shard's header, and then accepts the tensor bytes as a stream, in
that order, in pieces of any size (`write`). Nothing is buffered beyond one staging block, so a shard is
never held in memory. `close()` checks that every byte arrived and writes the index when sharded.

Shards are written with direct I/O (O_DIRECT, Linux) where the file system takes it: the bytes go from one
page-aligned staging buffer to the disk without passing through the page cache. On the project's VM a
buffered write of a 3.1 GB shard cost 2.6-7.3 s of kernel CPU (page-cache pages are fresh memory there),
a direct one 0.4-0.5 s at 1.4-1.5 GB/s (`dd`, docs/ARCHITECTURE.md), which the merge's other threads
need. A shard's tail is written as a whole padded block and the file truncated to its size. Where the file
system refuses O_DIRECT (tmpfs, some network file systems: EINVAL on open or on the first write) the writer
falls back to ordinary buffered writes, with the same bytes; `direct=False` asks for them.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path

from wiseft.checkpoints.safetensors_format import build_header
from wiseft.errors import ConfigError, OutputError

DEFAULT_SHARD_SIZE = 5 * 10**9
# Direct I/O: offsets, lengths and the buffer address in multiples of ALIGN (covers 512-byte and 4 KiB
# logical blocks); STAGE bytes per write (a multiple of ALIGN; one buffer per writer, reused).
ALIGN = 4096
STAGE = 8 << 20
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
    """Stream tensor bytes into pre-planned shards inside `directory` (a temporary directory).

    `direct`: write with O_DIRECT where the file system allows it (module docstring); `self.direct` says
    whether the writes go that way now (False once the file system refused it)."""

    def __init__(self, directory: Path, shards: list[Shard], direct: bool = True):
        self.directory = Path(directory)
        self.shards = shards
        self._shard = -1
        self._fd: int | None = None
        self._left = 0  # data bytes still expected in the open shard
        self.bytes_written = 0
        self.direct = direct and hasattr(os, "O_DIRECT")
        self._stage = mmap.mmap(-1, STAGE)  # page-aligned, so its start is ALIGN-aligned
        self._view = memoryview(self._stage)
        self._staged = 0  # bytes in the staging buffer (direct writes only)
        self._next_shard()

    def _next_shard(self) -> None:
        if self._fd is not None:
            self._close_fd()
        self._shard += 1
        if self._shard >= len(self.shards):
            return
        shard = self.shards[self._shard]
        path = self.directory / shard.filename
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        self._fd = None
        if self.direct:
            try:
                self._fd = os.open(path, flags | os.O_DIRECT, 0o644)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.direct = False  # the file system refuses O_DIRECT
        if self._fd is None:
            self._fd = os.open(path, flags, 0o644)
        self._put(memoryview(shard.header))
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
            self._put(view[:take])
            self.bytes_written += take
            self._left -= take
            view = view[take:]
            if self._left == 0:
                self._next_shard()

    def _put(self, view: memoryview) -> None:
        """Hand `view` to the open shard: buffered, straight to the file; direct, through the staging
        buffer, written out each time it fills."""
        if not self.direct:
            self._flush()  # what was staged before a fallback goes first
            self._write_all(view)
            return
        while len(view):
            take = min(STAGE - self._staged, len(view))
            self._view[self._staged : self._staged + take] = view[:take]
            self._staged += take
            view = view[take:]
            if self._staged == STAGE:
                self._flush()

    def _flush(self, nbytes: int | None = None) -> None:
        """Write the first `nbytes` (default: all) of the staging buffer and empty it."""
        self._write_all(self._view[: self._staged if nbytes is None else nbytes])
        self._staged = 0

    def _write_all(self, view: memoryview) -> None:
        while len(view):
            try:
                n = os.write(self._fd, view)
            except OSError as exc:
                if not (self.direct and exc.errno == errno.EINVAL):
                    raise
                self._buffered()  # the file system took the open but not the write
                continue
            view = view[n:]

    def _buffered(self) -> None:
        import fcntl

        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        self.direct = False

    def _close_fd(self, sync: bool = True) -> None:
        fd = self._fd
        try:
            if sync:
                staged = self._staged
                if staged and self.direct:  # the tail as whole blocks, then cut back to the shard's size
                    padded = -(-staged // ALIGN) * ALIGN
                    self._view[staged:padded] = bytes(padded - staged)
                    self._flush(padded)
                    os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR) - (padded - staged))
                else:
                    self._flush()
                os.fsync(fd)  # a finished shard goes to disk while the next one is written
        finally:
            self._fd = None
            self._staged = 0
            os.close(fd)

    def close(self, index_metadata: dict | None = None) -> None:
        """Check completeness; write `model.safetensors.index.json` when there is more than one shard."""
        if self._fd is not None or self._shard < len(self.shards):
            raise OutputError("internal error: the tensor stream ended before every shard was complete")
        self._release()
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
        self._release()

    def _release(self) -> None:
        # Dropped, not closed: an exception's traceback may still hold a slice of it; the mapping goes
        # with the last reference.
        self._view = self._stage = None

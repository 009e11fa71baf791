"""The safetensors file format, read and written by hand.

A safetensors file is: 8 bytes (little-endian u64) giving the header length N, N bytes of JSON, then the
raw tensor bytes. The JSON maps each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}`
(offsets relative to the first data byte) plus an optional `"__metadata__"` map of strings.

We parse the header ourselves so that every command can check names, shapes, dtypes and file sizes
(truncation, corruption, hostile offsets) without reading a single tensor byte, and so that the writer
can compute every header before streaming the data. `read_header` is the one reader; it enforces the
invariants of the reference implementation (huggingface/safetensors), and a few more:

- N ≤ 100,000,000 (the reference limit) and 8 + N ≤ the file size;
- the header is UTF-8 JSON, an object, repeats no key and nests at most 3 levels;
- `__metadata__`, when present and not null, maps strings to strings;
- every entry has a known dtype, a shape of at most 64 integers ≥ 0 and two integer data_offsets ≥ 0,
  with end − begin = dtype size × prod(shape);
- sorted by offsets, the entries tile the data region exactly: the first begins at 0, each begins where
  the previous ended (no overlap, no hole), and the last ends at the end of the file (no trailing bytes).

Any violation raises one CheckpointError naming the file (and the tensor).
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wiseft.errors import CheckpointError
from wiseft.jsonl import depth, loads

# safetensors dtype string -> (torch dtype, bytes per element)
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
TORCH_TO_ST = {v: k for k, v in DTYPES.items()}
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
MAX_HEADER = 100_000_000  # bytes of header JSON: the reference implementation's limit
MAX_RANK = 64  # dimensions of one tensor
MAX_HEADER_DEPTH = 3  # object -> tensor entry -> shape list


def itemsize(st_dtype: str) -> int:
    return torch.empty((), dtype=DTYPES[st_dtype]).element_size()


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: its file, absolute byte offset and length, dtype and shape."""

    name: str
    file: Path
    dtype: str  # safetensors spelling: "BF16", "F32", ...
    shape: tuple[int, ...]
    offset: int  # absolute offset of the first byte in `file`
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES


def read_header(path: str | os.PathLike) -> tuple[dict[str, TensorInfo], dict[str, str], int]:
    """Parse and validate the header of one safetensors file (reads the header only, never tensor data).

    Returns (tensors by name, `__metadata__`, header length in bytes including the 8-byte prefix).
    Raises CheckpointError naming the file (and tensor) when any invariant of the module docstring fails.
    """
    path = Path(path)
    raw, size = _read_header_bytes(path)
    header = _parse(raw, path)
    metadata = _metadata(header.pop("__metadata__", None), path)
    data_start = 8 + len(raw)
    entries = [_entry(name, spec, path) for name, spec in header.items()]
    _check_tiling(entries, size - data_start, path)
    tensors = {
        name: TensorInfo(name, path, dtype, shape, data_start + begin, end - begin)
        for name, dtype, shape, begin, end in entries
    }
    return tensors, metadata, data_start


def _read_header_bytes(path: Path) -> tuple[bytes, int]:
    """The JSON bytes of the header and the file size; the length prefix is checked against both limits."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise CheckpointError(
                    f"{path} is not a safetensors file ({size} bytes, shorter than the 8-byte header "
                    "length); re-download or re-save it"
                )
            (n,) = struct.unpack("<Q", prefix)
            if n > MAX_HEADER:
                raise CheckpointError(
                    f"{path} is corrupt or truncated: its header claims {n} bytes, more than the format's limit of "
                    f"{MAX_HEADER}; re-download or re-save it"
                )
            if 8 + n > size:
                raise CheckpointError(
                    f"{path} is corrupt or truncated: its header claims {n} bytes but the file has "
                    f"{size}; re-download or re-save it"
                )
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(raw) != n:
        raise CheckpointError(f"{path} changed while its header was read; try again")
    return raw, size


def _parse(raw: bytes, path: Path) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"{path} is corrupt: its header is not UTF-8 ({exc.reason} at byte {8 + exc.start}); "
            "re-download or re-save it"
        ) from None
    header = loads(
        text, f"{path} is corrupt: header", CheckpointError, max_depth=MAX_HEADER_DEPTH, parse_int=_header_int
    )
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is corrupt: its header is not a JSON object")
    return header


def _metadata(raw: Any, path: Path) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise CheckpointError(
            f"{path} is corrupt: its __metadata__ must map strings to strings; re-save the file"
        )
    return dict(raw)


def _entry(name: str, spec: Any, path: Path) -> tuple[str, str, tuple[int, ...], int, int]:
    """(name, dtype, shape, begin, end) of one header entry, each field checked for type and range."""
    where = f"{path} is corrupt: the header entry of tensor {name[:200]!r}"
    if not isinstance(spec, dict) or not {"dtype", "shape", "data_offsets"} <= spec.keys():
        raise CheckpointError(f"{where} needs dtype, shape and data_offsets; re-download or re-save it")
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not isinstance(dtype, str):
        raise CheckpointError(f"{where} has a dtype that is not a string")
    if dtype not in DTYPES:
        raise CheckpointError(
            f"{path}: tensor {name[:200]!r} has dtype {dtype[:40]!r}, which wiseft does not support "
            f"(supported: {', '.join(DTYPES)})"
        )
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_is_count(s) for s in shape):
        raise CheckpointError(
            f"{where} has shape {_short(shape)}; a shape is a list of at most {MAX_RANK} integers ≥ 0"
        )
    if not _fits(shape, itemsize(dtype)):
        raise CheckpointError(f"{where} has shape {_short(shape)}, whose byte size overflows 64 bits")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(x) for x in offsets):
        raise CheckpointError(
            f"{where} has data_offsets {_short(offsets)}; expected [begin, end], integers ≥ 0"
        )
    return name, dtype, tuple(shape), offsets[0], offsets[1]


def _check_tiling(entries: list[tuple], data_len: int, path: Path) -> None:
    """The entries, sorted by offsets, must cover [0, data_len) exactly: no hole, no overlap, no overhang,
    and each one exactly dtype size × prod(shape) bytes long."""
    expected = 0
    for name, dtype, shape, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        label = f"tensor {name[:200]!r} ({dtype} {list(shape)})"
        need = math.prod(shape) * itemsize(dtype)
        if end < begin or end - begin != need:
            raise CheckpointError(
                f"{path} is corrupt: {label} needs {need} bytes but its data_offsets "
                f"{[begin, end]} span {end - begin}; re-download or re-save it"
            )
        if begin != expected:
            what = "overlaps the tensor before it" if begin < expected else "leaves a gap before it"
            raise CheckpointError(
                f"{path} is corrupt: {label} starts at data byte {begin}, which {what} (expected "
                f"{expected}); tensors must tile the data exactly; re-download or re-save it"
            )
        expected = end
    if expected > data_len:
        raise CheckpointError(
            f"{path} is truncated: its header needs {expected} data bytes but the file has {data_len}; "
            "re-download or re-save it"
        )
    if expected < data_len:
        raise CheckpointError(
            f"{path} is corrupt: {data_len - expected} bytes after the last tensor belong to no tensor; "
            "re-download or re-save it"
        )


def _header_int(text: str) -> int:
    """JSON integers of a header: a minus sign (even "-0", which the reference reads as a float) gives -1,
    which every check refuses."""
    return -1 if text.startswith("-") else int(text)


def _fits(shape: list[int], size: int) -> bool:
    """Whether every partial product of the shape, times the dtype size, stays below 2**63 (the reference
    reader refuses a header whose size computation overflows, even when a later dimension is 0)."""
    total = size
    for dim in shape:
        total *= dim
        if total >= 2**63:
            return False
    return True


def _is_count(x: Any) -> bool:
    return type(x) is int and x >= 0


def _short(value: Any) -> str:
    text = json.dumps(value) if depth(value) < 8 else "(deeply nested)"
    return text if len(text) <= 60 else text[:57] + "..."


def build_header(
    entries: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str] | None = None
) -> tuple[bytes, list[int]]:
    """Header bytes (8-byte length prefix included) for tensors laid out back to back in `entries` order.

    Returns (header bytes, per-tensor data lengths). The JSON is padded with spaces to a multiple of 8
    bytes, as the reference writer does, so the data stays aligned.
    """
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    lengths = []
    for name, dtype, shape in entries:
        numel = 1
        for s in shape:
            numel *= s
        nbytes = numel * itemsize(dtype)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        lengths.append(nbytes)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, lengths

"""The safetensors file format, read and written by hand.

A safetensors file is: 8 bytes (little-endian u64) giving the header length N, N bytes of JSON, then the
raw tensor bytes. The JSON maps each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}`
(offsets relative to the first data byte) plus an optional `"__metadata__"` map of strings.

We parse the header ourselves so that the merge pre-flight can check names, shapes, dtypes and file
sizes (truncation, corruption) without reading a single tensor byte, and so that the writer can compute
every header before streaming the data.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from wiseft.errors import CheckpointError

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
MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


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
    """Parse and validate the header of one safetensors file.

    Returns (tensors by name, `__metadata__`, header length in bytes including the 8-byte prefix).
    Raises CheckpointError naming the file when the header is malformed, a tensor's byte range does not
    match its dtype and shape, or the file is shorter than its header says (truncated download).
    """
    path = Path(path)
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
            if n > MAX_HEADER or 8 + n > size:
                raise CheckpointError(
                    f"{path} is corrupt or truncated: its header claims {n} bytes but the file has "
                    f"{size}; re-download or re-save it"
                )
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt: its header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is corrupt: its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + n
    tensors: dict[str, TensorInfo] = {}
    end_max = 0
    for name, spec in header.items():
        try:
            dtype = spec["dtype"]
            shape = tuple(int(s) for s in spec["shape"])
            begin, end = (int(x) for x in spec["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{path} is corrupt: the header entry of tensor {name!r} is malformed"
            ) from exc
        if dtype not in DTYPES:
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {dtype}, which wiseft does not support "
                f"(supported: {', '.join(DTYPES)})"
            )
        numel = 1
        for s in shape:
            numel *= s
        if end < begin or end - begin != numel * itemsize(dtype):
            raise CheckpointError(
                f"{path} is corrupt: tensor {name!r} ({dtype} {list(shape)}) needs {numel * itemsize(dtype)} "
                f"bytes but its data_offsets {[begin, end]} span {end - begin}"
            )
        end_max = max(end_max, end)
        tensors[name] = TensorInfo(name, path, dtype, shape, data_start + begin, end - begin)
    if data_start + end_max > size:
        raise CheckpointError(
            f"{path} is truncated: its header needs {data_start + end_max} bytes but the file has {size}; "
            "re-download or re-save it"
        )
    return tensors, {str(k): str(v) for k, v in metadata.items()}, data_start


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

"""Seeded mutation fuzzing of the two readers of untrusted bytes: the safetensors header reader and the
JSONL reader. Every mutant (bit flips, truncations, splices, length-field changes, JSON edits of valid
files) must either read as a valid file or raise the project's typed error in one line: never another
exception type, never a hang. A safetensors file we accept must also be accepted by the reference library,
and its tensors must tile the data region exactly."""

import contextlib
import json
import math
import os
import random
import signal
import struct

import pytest
import safetensors
import torch
from safetensors.torch import save_file

from wiseft.checkpoints import read_header
from wiseft.checkpoints.safetensors_format import build_header, itemsize
from wiseft.errors import CheckpointError, GradingError, TaskError
from wiseft.jsonl import MAX_DEPTH, depth, iter_objects
from wiseft.records import read_records

MUTANTS = 4000  # per reader
HANG_SECONDS = 20  # one read taking this long is a hang (a normal read takes well under a millisecond)


@contextlib.contextmanager
def no_hang(what: str):
    def alarm(*_):
        raise TimeoutError(f"reader hung on {what}")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def put(path, data: bytes) -> None:
    """Overwrite `path` with `data` (pwrite + ftruncate: opening with O_TRUNC costs ~1 ms on some disks)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------- byte mutations


def flip_bits(rng, data: bytes, hot: int) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(min(hot, len(out))) if rng.random() < 0.8 else rng.randrange(len(out))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def set_byte(rng, data: bytes, hot: int) -> bytes:
    out = bytearray(data)
    out[rng.randrange(min(hot, len(out)))] = rng.choice(
        [0, 0x22, 0x2C, 0x2D, 0x30, 0x5B, 0x5D, 0x7B, 0x7D, 0xFF]
    )
    return bytes(out)


def truncate(rng, data: bytes, hot: int) -> bytes:
    return data[: rng.randrange(len(data))]


def splice(rng, data: bytes, hot: int) -> bytes:
    i, j = sorted(rng.randrange(len(data) + 1) for _ in range(2))
    k = rng.randrange(len(data) + 1)
    chunk = data[i:j]
    if rng.random() < 0.5:  # insert a copy of a chunk elsewhere
        return data[:k] + chunk + data[k:]
    return data[:k] + chunk + data[k + len(chunk) :]  # overwrite


def append(rng, data: bytes, hot: int) -> bytes:
    return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))


BYTE_MUTATIONS = [flip_bits, set_byte, truncate, splice, append]


# ------------------------------------------------------------------------------------ safetensors


def base_files(tmp_path) -> list[bytes]:
    """Valid files from the reference writer and from ours (metadata, zero-size, several dtypes)."""
    g = torch.Generator().manual_seed(0)
    sets = [
        {"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g).to(torch.bfloat16)},
        {
            "e": torch.zeros(0, 3),
            "i": torch.arange(5),
            "m": torch.tensor([True, False]),
            "h": torch.ones(2).half(),
        },
        {"only": torch.randn(2, 2, 2, generator=g).double()},
    ]
    files = []
    for n, tensors in enumerate(sets):
        path = tmp_path / f"base-{n}.safetensors"
        save_file(tensors, str(path), metadata={"format": "pt", "n": str(n)} if n != 1 else None)
        files.append(path.read_bytes())
    header, lengths = build_header(
        [("a.weight", "F32", (2, 3)), ("b", "I8", (5,)), ("c", "BF16", (1,))], {"k": "v"}
    )
    files.append(header + bytes(sum(lengths)))
    return files


def split(data: bytes) -> tuple[int, dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return n, json.loads(data[8 : 8 + n]), data[8 + n :]


def random_json(rng, level: int = 0):
    kind = rng.randrange(9)
    if kind == 0:
        return rng.randint(-(2**70), 2**70)
    if kind == 1:
        return rng.random() * 100
    if kind == 2:
        return rng.choice(["F32", "F8_E4M3", "", "x" * 50, "\u00e9", None, True])
    if kind == 3 and level < 3:
        return [random_json(rng, level + 1) for _ in range(rng.randint(0, 3))]
    if kind == 4 and level < 3:
        return {str(rng.randint(0, 9)): random_json(rng, level + 1) for _ in range(rng.randint(0, 3))}
    return rng.randint(0, 64)


def well_formed(spec) -> bool:
    return (
        isinstance(spec, dict)
        and isinstance(spec.get("shape"), list)
        and isinstance(spec.get("data_offsets"), list)
        and len(spec["data_offsets"]) == 2
        and all(isinstance(x, int) for x in spec["data_offsets"])
    )


def edit_header(rng, data: bytes, hot: int) -> bytes:
    """A structural edit of a valid header, re-serialised with a consistent length prefix."""
    try:
        _, header, body = split(data)
    except (ValueError, struct.error):  # an earlier mutation broke it: mutate bytes instead
        return flip_bits(rng, data, hot)
    if not isinstance(header, dict) or not [k for k in header if k != "__metadata__"]:
        return flip_bits(rng, data, hot)
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    spec = header[name]
    if not all(well_formed(header[n]) for n in names):
        return flip_bits(rng, data, hot)
    op = rng.randrange(10)
    if op == 0:  # move an offset
        spec["data_offsets"][rng.randrange(2)] += rng.choice([-8, -4, -2, -1, 1, 2, 4, 8])
    elif op == 1:  # point at another tensor's bytes (the silent corruption)
        spec["data_offsets"] = list(header[rng.choice(names)]["data_offsets"])
    elif op == 2:  # change a dimension, or the rank
        shape = spec["shape"]
        if shape and rng.random() < 0.6:
            shape[rng.randrange(len(shape))] = rng.choice([0, 1, 2, 3, -1, 2**64, 7])
        else:
            shape.append(rng.choice([1, 2]))
    elif op == 3:
        spec["dtype"] = rng.choice(["F32", "F16", "BF16", "F64", "I8", "U8", "BOOL", "U16", "f32", "I64"])
    elif op == 4:
        del spec[rng.choice(["dtype", "shape", "data_offsets"])]
    elif op == 5:
        header[name + ".copy"] = json.loads(json.dumps(spec))
    elif op == 6:
        spec[rng.choice(["dtype", "shape", "data_offsets", "extra"])] = random_json(rng)
    elif op == 7:
        header["__metadata__"] = random_json(rng)
    elif op == 8:  # swap two tensors' offsets
        other = header[rng.choice(names)]
        spec["data_offsets"], other["data_offsets"] = other["data_offsets"], spec["data_offsets"]
    else:
        header[name] = random_json(rng)
    raw = json.dumps(header).encode()
    if rng.random() < 0.5:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def edit_length(rng, data: bytes, hot: int) -> bytes:
    n = struct.unpack("<Q", data[:8])[0]
    new = rng.choice([n + rng.randint(-16, 16), rng.randrange(2**64), len(data), 0, n * 2, 100_000_001])
    return struct.pack("<Q", max(0, min(new, 2**64 - 1))) + data[8:]


def tiles_exactly(infos: dict, start: int, size: int) -> bool:
    spans = sorted(((i.offset, i.offset + i.nbytes, i) for i in infos.values()), key=lambda s: s[:2])
    pos = start
    for begin, end, info in spans:
        if begin != pos or end - begin != math.prod(info.shape) * itemsize(info.dtype):
            return False
        pos = end
    return pos == size


def test_fuzz_safetensors_header_reader(tmp_path):
    rng = random.Random(20240611)
    bases = base_files(tmp_path)
    mutators = BYTE_MUTATIONS + [edit_header, edit_header, edit_length]
    path = tmp_path / "m.safetensors"
    outcomes = {"accepted": 0, "refused": 0}
    for case in range(MUTANTS):
        base = rng.choice(bases)
        data = base
        steps = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            mutate = rng.choice(mutators)
            steps.append(mutate.__name__)
            if len(data) < 9 and mutate not in (append, splice):
                continue
            hot = 8 + struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else len(data)
            data = mutate(rng, data, max(1, min(hot, len(data)))) if data else data
        put(path, data)
        what = f"case {case} ({'+'.join(steps)}): {data[:120]!r}"
        try:
            with no_hang(what):
                infos, _, start = read_header(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), what
            outcomes["refused"] += 1
            continue
        assert tiles_exactly(infos, start, len(data)), what
        safetensors.deserialize(data)  # the reference reader accepts whatever we accept
        outcomes["accepted"] += 1
    assert outcomes["accepted"] >= 100 and outcomes["refused"] >= 1000, outcomes


# ------------------------------------------------------------------------------------------ JSONL

RECORDS = [
    {"problem_id": "p0", "sample_idx": 0, "completion": "So the answer is \\boxed{42}.", "n_tokens": 9},
    {
        "problem_id": "p0",
        "sample_idx": 1,
        "completion": "π ≈ 3.14 — 答え \\boxed{\\frac{1}{2}}",
        "score": 0.5,
    },
    {"problem_id": "p1", "sample_idx": 0, "completion": "#### 7", "finish_reason": "stop", "variant": "v"},
    {"problem_id": "p1", "sample_idx": 1, "completion": "", "meta": {"a": [1, 2, {"b": None}], "c": True}},
]


def jsonl_base() -> bytes:
    return "".join(json.dumps(r, ensure_ascii=bool(i % 2)) + "\n" for i, r in enumerate(RECORDS)).encode()


def edit_line(rng, data: bytes, hot: int) -> bytes:
    """Replace one value of one line by hostile JSON text (deep nesting, NaN, huge numbers, surrogates,
    repeated keys, wrong types)."""
    lines = data.split(b"\n")
    i = rng.randrange(len(lines))
    value = rng.choice(
        [
            b"[" * rng.choice([63, 64, 65, 5000]) + b"]" * rng.choice([63, 64, 65, 5000]),
            b'{"a":' * 70 + b"1" + b"}" * 70,
            b"NaN",
            b"-Infinity",
            b"9" * 5000,
            b'"\\ud800"',
            b'"\\ud83d\\ude00"',
            b"1e999",
            b'"x", "problem_id": "dup"',
            b"null",
            json.dumps(random_json(rng)).encode(),
        ]
    )
    key = rng.choice([b'"completion": ', b'"sample_idx": ', b'"problem_id": ', b'"extra": '])
    lines[i] = b"{" + key + value + b"}" if rng.random() < 0.5 else lines[i].replace(b"0", value, 1)
    return b"\n".join(lines)


def edit_bytes(rng, data: bytes, hot: int) -> bytes:
    pos = rng.randrange(len(data) + 1)
    junk = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\r\n", b"\n\n", b"\x00", "\ufeff".encode()])
    return data[:pos] + junk + data[pos:]


def check_jsonl(path, data: bytes, what: str) -> str:
    try:
        with no_hang(what):
            rows = [row for _, row in iter_objects(path, TaskError)]
    except TaskError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc), what
        return "refused"
    for row in rows:
        assert isinstance(row, dict) and depth(row) <= MAX_DEPTH, what
        assert json.loads(json.dumps(row, ensure_ascii=False).encode("utf-8")) == row, what
    try:
        with no_hang(what):
            read_records(path)
    except GradingError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc), what
    return "accepted"


def test_fuzz_jsonl_reader(tmp_path):
    rng = random.Random(7)
    base = jsonl_base()
    mutators = BYTE_MUTATIONS + [edit_line, edit_line, edit_bytes]
    path = tmp_path / "samples.jsonl"
    outcomes = {"accepted": 0, "refused": 0}
    for case in range(MUTANTS):
        data = base
        steps = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            mutate = rng.choice(mutators)
            steps.append(mutate.__name__)
            data = mutate(rng, data, len(data)) if data else append(rng, data, 1)
        put(path, data)
        outcomes[check_jsonl(path, data, f"case {case} ({'+'.join(steps)}): {data[:160]!r}")] += 1
    assert outcomes["accepted"] >= 100 and outcomes["refused"] >= 1000, outcomes


@pytest.mark.parametrize("text", [b"[" * 200_000, b'{"a":' * 100_000, b"[" * 64 + b"]" * 64 + b"\n"])
def test_deep_nesting_is_one_typed_error(tmp_path, text):
    path = tmp_path / "deep.jsonl"
    path.write_bytes(text)
    with pytest.raises(TaskError, match=r"deep.jsonl:1: (JSON nested deeper than 64|expected a JSON object)"):
        list(iter_objects(path, TaskError))

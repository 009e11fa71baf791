"""Hostile checkpoints: every broken or malicious header, index and config gives one CheckpointError line
that names the file, and nothing is written. The valid cases beside them show the checks are not too strict."""

import json
import os
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from wiseft.checkpoints import Checkpoint, read_header, validate_model_dir
from wiseft.cli import main
from wiseft.errors import CheckpointError
from wiseft.testing import save_tiny_model


def entry(dtype="F32", shape=(8,), begin=0, end=32):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}


GOOD = {"embed_tokens.weight": entry(begin=0, end=32), "lm_head.weight": entry(begin=32, end=64)}


def st_bytes(header, data_len: int = 64, prefix: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(raw) if prefix is None else prefix
    return struct.pack("<Q", n) + raw + bytes(range(256)) * (data_len // 256) + bytes(data_len % 256)


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.lstat().st_size for p in sorted(root.rglob("*"))}


def assert_refused(call, path: Path, pattern: str, root: Path):
    before = snapshot(root)
    with pytest.raises(CheckpointError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    assert pattern in msg, msg
    assert snapshot(root) == before


with_meta = {"__metadata__": {"format": "pt"}, **GOOD}
HEADERS = [
    # (id, header (object or raw bytes), data bytes, message fragment)
    ("embed-points-at-lm-head", {**GOOD, "embed_tokens.weight": entry(begin=32, end=64)}, 64, "leaves a gap"),
    ("overlap", {**GOOD, "mid": entry(begin=16, end=48), "lm_head.weight": entry(begin=48, end=80)}, 80,
     "overlaps the tensor before it"),
    ("hole", {**GOOD, "lm_head.weight": entry(begin=40, end=72)}, 72, "leaves a gap"),
    ("does-not-start-at-0", {"a": entry(begin=8, end=40)}, 40, "leaves a gap"),
    ("trailing-bytes", GOOD, 72, "8 bytes after the last tensor belong to no tensor"),
    ("truncated-data", GOOD, 60, "is truncated"),
    ("length-not-shape", {**GOOD, "lm_head.weight": entry(begin=32, end=48)}, 48, "needs 32 bytes"),
    ("end-before-begin", {"a": entry(shape=(0,), begin=8, end=0)}, 8, "needs 0 bytes"),
    ("unknown-dtype", {"a": entry(dtype="F8_E4M3", shape=(32,))}, 32, "does not support"),
    ("dtype-not-string", {"a": {**entry(), "dtype": 4}}, 32, "dtype that is not a string"),
    ("negative-dim", {"a": entry(shape=(-8,))}, 32, "a shape is a list"),
    ("float-dim", {"a": entry(shape=(8.0,))}, 32, "a shape is a list"),
    ("string-dim", {"a": entry(shape=("8",))}, 32, "a shape is a list"),
    ("bool-dim", {"a": entry(shape=(True,), end=4)}, 4, "a shape is a list"),
    ("rank-65", {"a": entry(shape=(1,) * 65, end=4)}, 4, "at most 64 integers"),
    ("shape-not-list", {"a": {**entry(), "shape": 8}}, 32, "a shape is a list"),
    ("offsets-three", {"a": {**entry(), "data_offsets": [0, 16, 32]}}, 32, "expected [begin, end]"),
    ("offsets-negative", {"a": entry(begin=-32, end=0)}, 32, "expected [begin, end]"),
    ("offsets-float", {"a": entry(begin=0.0, end=32)}, 32, "expected [begin, end]"),
    ("missing-field", {"a": {"dtype": "F32", "shape": [8]}}, 32, "needs dtype, shape and data_offsets"),
    ("entry-not-object", {"a": 5}, 0, "needs dtype, shape and data_offsets"),
    ("metadata-number", {"__metadata__": {"format": 1}, **GOOD}, 64, "__metadata__ must map strings"),
    ("metadata-list", {"__metadata__": ["pt"], **GOOD}, 64, "__metadata__ must map strings"),
    ("header-array", b"[]", 0, "not a JSON object"),
    ("header-not-utf8", b'{"\xff": 1}', 0, "not UTF-8"),
    ("header-not-json", b'{"a": ', 0, "not valid JSON"),
    ("duplicate-name", b'{"a": ' + json.dumps(entry()).encode() + b', "a": '
     + json.dumps(entry(begin=32, end=64)).encode() + b"}", 64, "appears twice"),
    ("nested-100k", b"[" * 100_000 + b"]" * 100_000, 0, "nested deeper than"),
    ("nested-objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 0, "nested deeper than"),
    ("nested-shape", {"a": {**entry(), "shape": [[8]]}}, 32, "nested deeper than 3"),
    ("huge-integer", b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}', 4,
     "not valid JSON"),
    ("nan-dim", b'{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}', 4, "NaN is not a JSON value"),
    ("minus-zero-dim", b'{"a": {"dtype": "F32", "shape": [-0], "data_offsets": [0, 0]}}', 0, "a shape is a list"),
    ("overflowing-shape", {"a": entry(shape=(2**40, 2**40, 0), end=0)}, 0, "overflows 64 bits"),
    ("lone-surrogate", b'{"a\\ud800": ' + json.dumps(entry()).encode() + b"}", 32, "lone UTF-16 surrogate"),
]  # fmt: skip


@pytest.mark.parametrize("header,data_len,pattern", [c[1:] for c in HEADERS], ids=[c[0] for c in HEADERS])
def test_hostile_headers_are_refused(tmp_path, header, data_len, pattern):
    path = tmp_path / "model.safetensors"
    path.write_bytes(st_bytes(header, data_len))
    assert_refused(lambda: read_header(path), path, pattern, tmp_path)


PREFIXES = [
    ("shorter-than-8", b"\x01\x02", "shorter than the 8-byte header length"),
    ("length-past-limit", struct.pack("<Q", 100_000_001) + b"{}", "limit of 100000000"),
    ("length-past-file", struct.pack("<Q", 4096) + b"{}      ", "claims 4096 bytes but the file has 16"),
    ("length-2^64-1", b"\xff" * 8 + b"{}", "corrupt or truncated"),
]


@pytest.mark.parametrize("raw,pattern", [c[1:] for c in PREFIXES], ids=[c[0] for c in PREFIXES])
def test_hostile_length_prefixes_are_refused(tmp_path, raw, pattern):
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw)
    assert_refused(lambda: read_header(path), path, pattern, tmp_path)


def test_valid_edge_cases_are_read(tmp_path):
    """Zero-size tensors, tensors listed out of offset order, null metadata, the reference writer."""
    path = tmp_path / "x.safetensors"
    header = {"__metadata__": None, "b": entry(begin=32, end=64), "empty": entry(shape=(0, 4), begin=32, end=32),
              "a": entry(begin=0, end=32), "e2": entry(shape=(3, 0), begin=64, end=64)}  # fmt: skip
    path.write_bytes(st_bytes(header, 64))
    infos, meta, start = read_header(path)
    assert meta == {} and {n: (i.offset - start, i.nbytes) for n, i in infos.items()} == {
        "a": (0, 32), "b": (32, 32), "empty": (32, 0), "e2": (64, 0)}  # fmt: skip
    save_file({"w": torch.ones(3, 5), "z": torch.zeros(0)}, str(path), metadata={"k": "v"})
    assert read_header(path)[1] == {"k": "v"}


# ------------------------------------------------------------------------------ model directories


@pytest.fixture
def sharded(tmp_path):
    """A two-shard model directory (config.json, index, shards) built by hand."""
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    for i, name in enumerate(("a", "b")):
        (root / f"s{i}.safetensors").write_bytes(st_bytes({name: entry()}, 32))
    write_index(root, {"a": "s0.safetensors", "b": "s1.safetensors"})
    return root


def write_index(root: Path, weight_map) -> Path:
    path = root / "model.safetensors.index.json"
    path.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


INDEX_ENTRIES = [
    ("absolute", "/etc/passwd"),
    ("dotdot", "../../../../etc/passwd"),
    ("dotdot-inside", "sub/../../outside/x.safetensors"),
    ("dotdot-suffix", "../s0.safetensors"),
    ("backslash", "..\\..\\x.safetensors"),
    ("windows-drive", "C:x.safetensors"),
    ("not-safetensors", "config.json"),
    ("empty", ""),
    ("nul", "s0.safetensors\x00"),
]


@pytest.mark.parametrize("fname", [c[1] for c in INDEX_ENTRIES], ids=[c[0] for c in INDEX_ENTRIES])
def test_index_entries_outside_the_model_are_refused_before_opening(sharded, fname, monkeypatch):
    index = write_index(sharded, {"a": "s0.safetensors", "b": fname})
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    assert_refused(lambda: Checkpoint.open(sharded), index, "a shard must be a relative path", sharded.parent)
    assert not any("passwd" in f or "outside" in f for f in opened)


def test_symlinked_shards_are_allowed_but_not_symlinked_directories(sharded, tmp_path):
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    os.replace(sharded / "s1.safetensors", blobs / "sha")
    (sharded / "s1.safetensors").symlink_to("../blobs/sha")  # the Hub cache layout
    assert validate_model_dir(sharded) == sharded.resolve()
    (sharded / "sub").symlink_to(blobs)
    os.replace(blobs / "sha", blobs / "s1.safetensors")
    index = write_index(sharded, {"a": "s0.safetensors", "b": "sub/s1.safetensors"})
    assert_refused(lambda: Checkpoint.open(sharded), index, "resolves outside", tmp_path)


BAD_SIDE_FILES = [
    # (id, file name, content, fragment)
    ("index-weight-map-list", "model.safetensors.index.json", b'{"weight_map": ["s0.safetensors"]}',
     "needs a non-empty weight_map object"),
    ("index-weight-map-empty", "model.safetensors.index.json", b'{"weight_map": {}}', "non-empty weight_map"),
    ("index-not-object", "model.safetensors.index.json", b"[1, 2]", "non-empty weight_map"),
    ("index-file-number", "model.safetensors.index.json", b'{"weight_map": {"a": 3}}', "must name a file"),
    ("index-nested", "model.safetensors.index.json", b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),
    ("index-duplicate", "model.safetensors.index.json",
     b'{"weight_map": {"a": "s0.safetensors", "a": "s1.safetensors"}}', "appears twice"),
    ("config-nested", "config.json", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested deeper than"),
    ("config-list", "config.json", b"[]", "must hold a JSON object"),
    ("config-not-json", "config.json", b"{model_type: llama}", "not valid JSON"),
]  # fmt: skip


@pytest.mark.parametrize(
    "name,content,pattern", [c[1:] for c in BAD_SIDE_FILES], ids=[c[0] for c in BAD_SIDE_FILES]
)
def test_hostile_config_and_index_files_are_refused(sharded, name, content, pattern):
    (sharded / name).write_bytes(content)
    assert_refused(lambda: validate_model_dir(sharded), sharded / name, pattern, sharded.parent)


def test_oversized_side_file_is_refused_unread(sharded):
    path = sharded / "config.json"
    with open(path, "r+b") as fh:
        fh.truncate(65 * 1024**2)  # sparse: nothing is actually written to disk
    assert_refused(lambda: validate_model_dir(sharded), path, "more than the 64 MiB", sharded.parent)


def test_every_shard_of_a_model_directory_is_checked(sharded):
    path = sharded / "s1.safetensors"
    path.write_bytes(st_bytes({"b": entry(begin=0, end=32)}, 40))
    assert_refused(lambda: validate_model_dir(sharded), path, "belong to no tensor", sharded.parent)


def test_merge_refuses_overlapping_offsets_and_writes_nothing(tmp_path, capsys):
    """The issue's silent corruption: embed_tokens pointing at lm_head's bytes merged without complaint."""
    a, b = tmp_path / "a", tmp_path / "b"
    save_tiny_model(a, seed=0)
    save_tiny_model(b, seed=1)
    path = b / "model.safetensors"
    infos, _, start = read_header(path)
    raw = path.read_bytes()
    header = json.loads(raw[8:start])
    embed, head = header["model.embed_tokens.weight"], header["lm_head.weight"]
    assert embed["shape"] == head["shape"]
    embed["data_offsets"] = head["data_offsets"]
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + raw[start:])
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["merge", str(a), str(b), "--weights", "0.5,0.5", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "tile the data exactly" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]

"""Checkpoint I/O: hand-parsed headers, lazy reads, the streaming sharded writer, sizes, Hub names."""

import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from wiseft.checkpoints import Checkpoint, ShardWriter, parse_size, plan_shards, read_header
from wiseft.checkpoints.hub import looks_like_hub_name
from wiseft.checkpoints.safetensors_format import TORCH_TO_ST
from wiseft.errors import CheckpointError, ConfigError


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(7, 5, generator=g).to(torch.bfloat16),
        "b.bias": torch.randn(11, generator=g),
        "c.ids": torch.arange(6, dtype=torch.int64),
        "d.mask": torch.tensor([True, False, True]),
        "e.half": torch.randn(2, 3, generator=g).to(torch.float16),
        "f.empty": torch.zeros(0, 4),
    }


def test_read_header_matches_the_reference_writer(tmp_path):
    tensors = _tensors()
    path = tmp_path / "x.safetensors"
    save_file(tensors, str(path), metadata={"k": "v"})
    infos, meta, data_start = read_header(path)
    assert meta == {"k": "v"}
    assert set(infos) == set(tensors)
    raw = path.read_bytes()
    assert data_start == 8 + struct.unpack("<Q", raw[:8])[0]
    for name, t in tensors.items():
        info = infos[name]
        assert info.shape == tuple(t.shape) and info.dtype == TORCH_TO_ST[t.dtype]
        if info.nbytes:
            got = torch.frombuffer(bytearray(raw[info.offset : info.offset + info.nbytes]), dtype=torch.uint8)
            assert torch.equal(got.view(t.dtype).reshape(t.shape), t)


def test_truncated_and_garbage_files_are_rejected(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file(_tensors(), str(path))
    raw = path.read_bytes()
    path.write_bytes(raw[:-1])
    with pytest.raises(CheckpointError, match="is truncated"):
        read_header(path)
    path.write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_header(path)
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_header(path)
    path.write_bytes(struct.pack("<Q", 4) + b"[1,2")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_header(path)


def test_writer_streams_arbitrary_pieces_into_shards(tmp_path):
    tensors = _tensors()
    entries = [(n, TORCH_TO_ST[t.dtype], tuple(t.shape)) for n, t in tensors.items()]
    shards = plan_shards(entries, shard_size=80, metadata={"format": "pt", "who": "test"})
    assert len(shards) > 2
    assert all(s.data_bytes <= 80 or len(s.names) == 1 for s in shards)
    writer = ShardWriter(tmp_path, shards)
    stream = b"".join(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() for t in tensors.values())
    for i in range(0, len(stream), 13):  # pieces that do not line up with tensors or shards
        writer.write(stream[i : i + 13])
    writer.close()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tensors)
    assert index["metadata"]["total_size"] == len(stream)
    loaded = {}
    for f in sorted(set(index["weight_map"].values())):
        loaded.update(load_file(str(tmp_path / f)))
    for name, t in tensors.items():
        assert torch.equal(loaded[name], t), name


def _big_stream(tmp_path, monkeypatch, direct: bool, name: str):
    """Shards of a few staging blocks (STAGE made small) with sizes that are not multiples of ALIGN,
    written in pieces of 1,000 bytes; returns (writer, {file name: bytes})."""
    import wiseft.checkpoints.writer as writer_module

    monkeypatch.setattr(writer_module, "STAGE", 2 * writer_module.ALIGN)
    g = torch.Generator().manual_seed(1)
    tensors = {f"t{i}": torch.randn(n, generator=g) for i, n in enumerate((3001, 5, 7000, 2048))}
    entries = [(n, "F32", tuple(t.shape)) for n, t in tensors.items()]
    directory = tmp_path / name
    directory.mkdir()
    writer = ShardWriter(directory, plan_shards(entries, 20_000, {"format": "pt"}), direct=direct)
    stream = b"".join(t.numpy().tobytes() for t in tensors.values())
    for i in range(0, len(stream), 1000):
        writer.write(stream[i : i + 1000])
    writer.close()
    files = {p.name: p.read_bytes() for p in sorted(directory.glob("*.safetensors"))}
    loaded = {}
    for f in files:
        loaded.update(load_file(str(directory / f)))
    assert all(torch.equal(loaded[n], t) for n, t in tensors.items())
    return writer, files


def _direct_io_works(path) -> bool:
    import os

    if not hasattr(os, "O_DIRECT"):
        return False
    try:
        fd = os.open(path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(fd)
    return True


def test_writer_direct_and_buffered_write_the_same_bytes(tmp_path, monkeypatch):
    direct, a = _big_stream(tmp_path, monkeypatch, True, "direct")
    buffered, b = _big_stream(tmp_path, monkeypatch, False, "buffered")
    assert len(a) > 1 and a == b and not buffered.direct
    assert direct.direct == _direct_io_works(tmp_path)  # O_DIRECT used wherever the file system takes it


def test_writer_falls_back_when_the_file_system_refuses_direct_io(tmp_path, monkeypatch):
    import errno
    import os

    import wiseft.checkpoints.writer as writer_module

    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this platform")
    real_open, real_write = os.open, os.write

    def refuse_open(path, flags, mode=0o777):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    _, want = _big_stream(tmp_path, monkeypatch, False, "want")
    monkeypatch.setattr(writer_module.os, "open", refuse_open)
    w, got = _big_stream(tmp_path, monkeypatch, True, "open-refused")
    assert got == want and not w.direct
    monkeypatch.setattr(writer_module.os, "open", real_open)
    if not _direct_io_works(tmp_path):
        return  # the second case needs a file system that takes the open
    calls = [0]

    def refuse_first_write(fd, data):  # the open is taken, the first direct write is not
        calls[0] += 1
        if calls[0] == 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(writer_module.os, "write", refuse_first_write)
    w, got = _big_stream(tmp_path, monkeypatch, True, "write-refused")
    assert got == want and not w.direct and calls[0] > 1


def test_writer_refuses_an_incomplete_stream(tmp_path):
    shards = plan_shards([("a", "F32", (4,))], shard_size=10**9)
    writer = ShardWriter(tmp_path, shards)
    writer.write(b"\0" * 8)
    with pytest.raises(Exception, match="ended before every shard was complete"):
        writer.close()
    writer.abort()


def test_checkpoint_reads_lazily_into_a_buffer(tmp_path):
    tensors = _tensors()
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["X"], "vocab_size": 3}))
    save_file(tensors, str(tmp_path / "model.safetensors"))
    ck = Checkpoint.open(tmp_path)
    assert ck.architecture == "X" and ck.vocab_size == 3 and ck.tied_embeddings  # no lm_head stored
    for name, t in tensors.items():
        assert torch.equal(ck.load(name), t)
    info = ck.tensors["b.bias"]
    buf = bytearray(8)
    ck.read_into(info, memoryview(buf), start=4)
    assert torch.equal(torch.frombuffer(buf, dtype=torch.float32), tensors["b.bias"][1:3])
    ck.close()


def test_sharded_index_must_agree_with_the_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    save_file({"a": torch.zeros(2)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.zeros(2)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(
        CheckpointError,
        match="lists tensor 'b' in model-00001-of-00002.safetensors, but that file does not contain it",
    ):
        Checkpoint.open(tmp_path)
    index["weight_map"]["b"] = "model-00003-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model-00003-of-00002.safetensors, which is missing"):
        Checkpoint.open(tmp_path)


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size("2GiB") == 2 * 2**30
    assert parse_size("1.5gb") == 1_500_000_000
    assert parse_size(123) == 123
    with pytest.raises(ConfigError, match="is not a size"):
        parse_size("lots")


def test_hub_name_detection():
    assert looks_like_hub_name("Qwen/Qwen2.5-0.5B")
    assert not looks_like_hub_name("./local/dir")
    assert not looks_like_hub_name("/abs/path")
    assert not looks_like_hub_name("a/b/c")


def test_hub_name_is_fetched_with_safe_patterns(tmp_path, monkeypatch):
    import huggingface_hub

    from wiseft.checkpoints import resolve

    (tmp_path / "snap").mkdir()
    save_file({"a": torch.zeros(2)}, str(tmp_path / "snap" / "model.safetensors"))
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path / "snap")

    from wiseft.checkpoints import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert resolve("some-org/some-model") == tmp_path / "snap"
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)  # offline: only the local cache is asked
    assert resolve("some-org/some-model") == tmp_path / "snap"
    (repo_id, kwargs), (_, offline_kwargs) = calls
    assert kwargs["local_files_only"] is False and offline_kwargs["local_files_only"] is True
    assert repo_id == "some-org/some-model"
    assert "*.safetensors" in kwargs["allow_patterns"]
    assert not any("bin" in p or "pt" == p.rsplit(".", 1)[-1] for p in kwargs["allow_patterns"])

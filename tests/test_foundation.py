"""The skeleton: atomic outputs, frozen configs, the CLI's error contract."""

import dataclasses
import os
import platform
import subprocess
import sys

import pytest

from wiseft import atomic, config
from wiseft.cli import main
from wiseft.errors import ConfigError, OutputError


def test_atomic_dir_renames_only_when_complete(tmp_path):
    out = tmp_path / "out"
    with atomic.atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("x")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_flushes_every_file_before_the_rename(tmp_path, monkeypatch):
    """The rename that publishes a directory must not expose data still only in the page cache."""
    synced = []
    real_fsync = os.fsync

    def record(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((path, (tmp_path / "out").exists()))
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", record)
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "a.bin").write_bytes(b"x" * 10)
        (tmp / "sub" / "b.bin").write_bytes(b"y")
    files = {os.path.basename(p) for p, _ in synced}
    assert {"a.bin", "b.bin"} <= files
    assert all(not published for p, published in synced if p.endswith(".bin"))


def test_shard_writer_flushes_each_shard(tmp_path, monkeypatch):
    from wiseft.checkpoints import ShardWriter, plan_shards

    shards = plan_shards([("a", "F32", (4,)), ("b", "F32", (4,))], shard_size=16)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd)
    )
    writer = ShardWriter(tmp_path, shards)
    writer.write(bytes(32))
    writer.close()
    assert sorted(os.path.basename(p) for p in synced) == sorted(s.filename for s in shards)


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        with atomic.atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("x")
            raise OSError(28, "disk full")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_existing_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("old")
    with pytest.raises(OutputError, match="already exists.*--force"):
        with atomic.atomic_dir(out):
            pass
    with atomic.atomic_dir(out, force=True) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new"]


def test_stale_temp_of_dead_process_is_cleaned(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    stale = tmp_path / f".out{atomic.TMP_TAG}{proc.pid}"
    stale.mkdir()
    (stale / "half.safetensors").write_bytes(b"\0" * 10)
    live = tmp_path / f".out{atomic.TMP_TAG}{os.getpid() + 10**7}"  # no such pid either
    with atomic.atomic_dir(tmp_path / "out"):
        pass
    assert not stale.exists() and not live.exists()


def test_atomic_write_text_replaces_whole_file(tmp_path):
    p = tmp_path / "f.json"
    atomic.write_json(p, {"a": 1})
    atomic.write_json(p, {"b": 2})
    assert p.read_text().strip().startswith("{") and '"b": 2' in p.read_text()
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]


@dataclasses.dataclass(frozen=True)
class Inner:
    x: float = 1.0


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "a"
    ks: tuple[int, ...] = (1,)
    inner: Inner = Inner()


def test_config_yaml_then_flags(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: b\nks: [1, 2]\ninner: {x: 3}\n")
    cfg = config.load(Outer, p, {"name": "c", "ks": None})
    assert cfg == Outer(name="c", ks=(1, 2), inner=Inner(x=3.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "d"  # type: ignore[misc]
    config.write_resolved(tmp_path, cfg)
    assert "wiseft_version" in (tmp_path / "config.yaml").read_text()


def test_config_unknown_key_names_file_and_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("nmae: b\n")
    with pytest.raises(ConfigError, match=r"c.yaml.*unknown key\(s\) nmae"):
        config.load(Outer, p)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(Outer, tmp_path / "missing.yaml")


def test_cli_help_and_version(capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "wiseft" in capsys.readouterr().out


def test_the_version_is_one_literal_that_the_installed_metadata_agrees_with():
    """`wiseft.__version__` is written once; pyproject reads it (no importlib.metadata at start-up)."""
    import importlib.metadata

    import wiseft

    assert wiseft.__version__ == importlib.metadata.version("wiseft")
    probe = "import sys, wiseft; print('importlib.metadata' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_allocator_tuning_respects_the_users_malloc_settings():
    code = "from wiseft.memory import tune_allocator; print(tune_allocator())"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "WISEFT_NO_MALLOC"))}
    run = lambda extra: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert run({}) == ("True" if platform.libc_ver()[0] == "glibc" else "False")
    assert run({"MALLOC_TOP_PAD_": "0"}) == "False"
    assert run({"WISEFT_NO_MALLOC_TUNING": "1"}) == "False"


MAPPED = """
import ctypes, sys
from wiseft.memory import tune_allocator
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
tune_allocator(heap_only=sys.argv[1] == "1")
before = libc.mallinfo2().hblkhd
block = libc.malloc(256 << 20)  # above the largest mmap threshold glibc allows (32 MiB)
print(libc.mallinfo2().hblkhd - before >= 256 << 20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
@pytest.mark.parametrize(("heap_only", "mapped"), [("0", "True"), ("1", "False")])
def test_heap_only_serves_large_blocks_from_the_heap(heap_only, mapped):
    """The vLLM worker's setting: a block above the mmap threshold comes from the heap, whose pages a
    freed block keeps, instead of a fresh mapping (page faults on every switch)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "WISEFT_NO_MALLOC"))}
    out = subprocess.run(
        [sys.executable, "-c", MAPPED, heap_only], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == mapped


def test_progress_lines_only_when_not_a_terminal():
    import io

    from rich.console import Console

    from wiseft.cli.progress import LogLines

    piped = Console(file=io.StringIO(), force_terminal=False)
    lines = LogLines(piped)
    for done in range(0, 101):
        lines.update("s", "sampling x", done, 100)
    out = piped.file.getvalue().splitlines()
    assert out == [f"sampling x: {d}/100" for d in (0, 25, 50, 75, 100)]
    tty = Console(file=io.StringIO(), force_terminal=True)
    LogLines(tty).update("s", "sampling x", 1, 2)
    assert tty.file.getvalue() == ""


def test_progress_lines_keep_a_heartbeat_between_quarters():
    """A stage whose total is only a ceiling (pretraining stops at its gate long before 2,400 steps) still
    prints a line every `heartbeat` seconds, and no more often than that within one quarter."""
    import io

    from rich.console import Console

    from wiseft.cli.progress import LogLines

    piped, now = Console(file=io.StringIO(), force_terminal=False), [0.0]
    lines = LogLines(piped, heartbeat=30.0, clock=lambda: now[0])
    for step in range(1, 501):  # 0.2 s a step, all inside the first quarter of 2,400
        now[0] = step * 0.2
        lines.update("pretrain", "pretrain", step, 2400)
    out = piped.file.getvalue().splitlines()
    assert out == [f"pretrain: {s}/2400" for s in (1, 151, 301, 451)]

"""Leftovers of killed writers: a SIGKILLed writer's hidden temporary directory is cleaned by any later
run that writes into the same directory; a live writer's is never touched; an output moved aside by a
writer that died mid-replace comes back."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wiseft import atomic
from wiseft.atomic import OLD_TAG, TMP_TAG, atomic_dir, atomic_write_text, clean_stale_temps

SRC = str(Path(__file__).resolve().parents[1] / "src")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def leftover(parent: Path, name: str, tag: str, pid: int) -> Path:
    path = parent / f".{name}{tag}{pid}"
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"half written")
    return path


def test_a_sigkilled_writers_temp_is_cleaned_by_a_run_writing_another_output(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal
        from wiseft.atomic import atomic_dir
        with atomic_dir({str(tmp_path / "merged-a")!r}) as tmp:
            (tmp / "model.safetensors").write_bytes(b"x" * 1000)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": SRC})
    assert done.returncode == -signal.SIGKILL
    [stale] = tmp_path.iterdir()
    assert stale.name.startswith(f".merged-a{TMP_TAG}")
    with atomic_dir(tmp_path / "merged-b") as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged-b"]


def test_a_live_writers_temp_is_kept(tmp_path, live_pid):
    live = leftover(tmp_path, "merged-a", TMP_TAG, live_pid)
    dead = leftover(tmp_path, "merged-c", TMP_TAG, dead_pid())
    with atomic_dir(tmp_path / "merged-b") as tmp:
        (tmp / "x").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "merged-b"])
    assert (live / "model.safetensors").read_bytes() == b"half written"
    assert not dead.exists()


def test_a_file_write_cleans_its_directory_once_per_process(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_CLEANED", set())
    first = leftover(tmp_path, "results.json", TMP_TAG, dead_pid())
    atomic_write_text(tmp_path / "other.json", "{}")
    assert not first.exists()
    second = leftover(tmp_path, "results.json", TMP_TAG, dead_pid())
    atomic_write_text(tmp_path / "other.json", "{}")  # already scanned by this process: not again
    assert second.exists()


def test_an_output_moved_aside_by_a_dead_writer_comes_back(tmp_path):
    pid = dead_pid()
    old = leftover(tmp_path, "merged", OLD_TAG, pid)
    leftover(tmp_path, "merged", TMP_TAG, pid)
    assert len(clean_stale_temps(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
    assert (tmp_path / "merged" / "model.safetensors").read_bytes() == b"half written"
    assert not old.exists()
    again = leftover(tmp_path, "merged", OLD_TAG, pid)  # the output exists: the old copy goes
    clean_stale_temps(tmp_path)
    assert not again.exists() and (tmp_path / "merged").is_dir()


@pytest.mark.parametrize(
    "name",
    [f"merged{TMP_TAG}1234567", f".merged{TMP_TAG}abc", f".merged{TMP_TAG}0", f".merged{TMP_TAG}99999999999",
     f".{TMP_TAG}12", ".merged.wiseft-tmp-"],
    ids=["no-dot", "not-a-pid", "pid-0", "pid-too-large", "no-name", "no-pid"],
)  # fmt: skip
def test_entries_that_are_not_leftovers_are_left_alone(tmp_path, name):
    (tmp_path / name).mkdir()
    assert clean_stale_temps(tmp_path) == []
    assert (tmp_path / name).is_dir()


def test_own_temp_is_never_cleaned(tmp_path):
    mine = leftover(tmp_path, "x", TMP_TAG, os.getpid())
    assert clean_stale_temps(tmp_path) == [] and mine.exists()

"""Outputs appear whole or not at all.

Directories are built in a temporary sibling (`.NAME.wiseft-tmp-PID`), every file in them fsynced, and
renamed into place only when complete; files are written to a temporary sibling, fsynced and
`os.replace`d. A replaced output directory is first moved aside to `.NAME.wiseft-old-PID`.

Leftovers of a killed writer (its PID no longer alive) are cleaned by the next run that writes anything
into the same directory: every `atomic_dir` scans its parent, and the first atomic file write of a process
into a directory scans that directory. A `.wiseft-tmp-` entry is removed; a `.wiseft-old-` entry (the
writer died between moving the old output aside and moving the new one in) is moved back to NAME when NAME
is missing, and removed otherwise. Entries of live writers are never touched (a reused PID keeps a stale
entry until that process ends). The PID test is local: directories shared between machines are not
supported.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wiseft.errors import OutputError

TMP_TAG = ".wiseft-tmp-"
OLD_TAG = ".wiseft-old-"
_LEFTOVER = re.compile(r"\.(.+)\.wiseft-(tmp|old)-([0-9]{1,10})")
_CLEANED: set[tuple[int, str]] = set()  # (pid, directory) already scanned by an atomic file write


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_sibling(path: Path) -> Path:
    return path.parent / f".{path.name}{TMP_TAG}{os.getpid()}"


def clean_stale_temps(directory: Path) -> list[Path]:
    """Remove (or restore, see the module docstring) the leftovers of dead writers in `directory`;
    return what was removed or restored."""
    found = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return found
    for entry in entries:
        m = _LEFTOVER.fullmatch(entry.name)
        if m is None or not 0 < int(m[3]) < 2**31 or _pid_alive(int(m[3])):
            continue
        target = entry.parent / m[1]
        try:
            if m[2] == "old" and not os.path.lexists(target):
                os.replace(entry, target)  # the new output never arrived: the old one comes back
            elif entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        found.append(entry)
    return found


def _clean_once(directory: Path) -> None:
    """`clean_stale_temps` for the first atomic write of this process into `directory`."""
    key = (os.getpid(), str(Path(directory).resolve()))
    if key not in _CLEANED:
        _CLEANED.add(key)
        clean_stale_temps(directory)


def check_output_dir(out: Path, force: bool, flag: str = "-o/--output") -> None:
    """Fail early (before any work) when `out` cannot be written."""
    if out.exists() and not force:
        raise OutputError(f"output {out} already exists; choose another {flag} or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a directory; remove it or choose another {flag}")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write into {parent} (permission denied); choose another {flag}")


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, force: bool = False, flag: str = "-o/--output") -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes `out` when the block finishes without error."""
    out = Path(out)
    check_output_dir(out, force, flag)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out.parent)
    tmp = temp_sibling(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if out.exists():
            old = out.parent / f".{out.name}{OLD_TAG}{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        _fsync(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under `root` to disk (files first), so that the rename that
    publishes `root` never exposes a file whose data is still only in the page cache."""
    dirs = []
    for dirpath, _, filenames in os.walk(root):
        dirs.append(Path(dirpath))
        for name in filenames:
            _fsync(Path(dirpath) / name)
    for d in reversed(dirs):
        _fsync(d)


def _fsync(path: Path) -> None:
    """fsync a file or a directory; best effort (some filesystems refuse directory fsync)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `path` whole or not at all; an unwritable place is an OutputError naming it."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _clean_once(path.parent)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another -o/--output") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


@contextlib.contextmanager
def output_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Create `out` (and its parents) for a run that writes into it as it goes (a sample store); when the
    block fails and the directory was created here and is still empty, it is removed again, so a refused
    run leaves nothing behind."""
    out = Path(out)
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        for path in created:  # innermost first
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
        raise

"""Hostile JSONL and JSON: every broken line gives one typed error naming the file and line, through each
reader that uses `wiseft.jsonl` (task data, sample records, training data), and nothing is written."""

from pathlib import Path

import pytest

from wiseft import jsonl
from wiseft.errors import GradingError, TaskError, TrainError
from wiseft.records import read_records
from wiseft.tasks import get_task
from wiseft.train.data import read_jsonl_pairs

GOOD = b'{"problem_id": "p", "sample_idx": 0, "completion": "x", "question": "q", "answer": "1", "prompt": "a"}\n'

CASES = [
    # (id, bytes after one good line, fragment; the bad line is line 2)
    ("not-json", b"{problem_id: 1}\n", "not valid JSON"),
    ("truncated", b'{"problem_id": "p", "sampl', "not valid JSON"),
    ("array", b"[1, 2]\n", "expected a JSON object per line, got list"),
    ("string", b'"text"\n', "expected a JSON object per line, got str"),
    ("not-utf8", b'{"completion": "\xff\xfe"}\n', "not UTF-8 text"),
    ("utf8-surrogate-bytes", b'{"completion": "\xed\xa0\x80"}\n', "not UTF-8 text"),
    ("lone-surrogate-escape", b'{"completion": "\\ud800"}\n', "lone UTF-16 surrogate"),
    ("nested-100k", b"[" * 100_000 + b"]" * 100_000 + b"\n", "JSON nested deeper than 64 levels"),
    ("nested-objects", b'{"a":' * 30_000 + b"1" + b"}" * 30_000 + b"\n", "JSON nested deeper than 64 levels"),
    ("nested-65", b'{"a":' + b"[" * 64 + b"]" * 64 + b"}\n", "JSON nested deeper than 64 levels"),
    ("duplicate-key", b'{"completion": "a", "completion": "b"}\n', "key 'completion' appears twice"),
    ("huge-integer", b'{"sample_idx": ' + b"9" * 5000 + b"}\n", "not valid JSON"),
    ("nan", b'{"score": NaN}\n', "NaN is not a JSON value"),
    ("infinity", b'{"score": -Infinity}\n', "-Infinity is not a JSON value"),
    ("two-objects", b'{"a": 1} {"b": 2}\n', "not valid JSON (Extra data"),
]  # fmt: skip

READERS = [
    ("task", lambda p: get_task("jsonl", data=str(p)), TaskError),
    ("records", read_records, GradingError),
    ("training", read_jsonl_pairs, TrainError),
]


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("reader,error", [r[1:] for r in READERS], ids=[r[0] for r in READERS])
@pytest.mark.parametrize("tail,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_lines_are_one_error_naming_file_and_line(tmp_path, reader, error, tail, pattern):
    path = tmp_path / "data.jsonl"
    path.write_bytes(GOOD + tail)
    before = snapshot(tmp_path)
    with pytest.raises(error) as info:
        reader(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}:2: "), msg
    assert pattern in msg, msg
    assert snapshot(tmp_path) == before


def test_overlong_line_is_refused_before_it_is_held(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 1024)
    path = tmp_path / "data.jsonl"
    path.write_bytes(GOOD + b'{"completion": "' + b"x" * 5000 + b'"}\n')
    with pytest.raises(TaskError, match=r"data.jsonl:2: line longer than 0 MiB"):
        list(jsonl.iter_objects(path, TaskError))


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.mkdir()], ids=["missing", "directory"])
def test_unreadable_files_are_one_error(tmp_path, make):
    path = tmp_path / "data.jsonl"
    make(path)
    with pytest.raises(TaskError, match=f"cannot read {path}"):
        list(jsonl.iter_objects(path, TaskError))


def test_lenient_where_json_allows(tmp_path):
    """Blank lines, CRLF line ends, paired surrogate escapes and depth exactly 64 are all fine."""
    path = tmp_path / "data.jsonl"
    deep = b'{"a":' + b"[" * 63 + b"]" * 63 + b"}"
    path.write_bytes(GOOD.replace(b"\n", b"\r\n") + b"\n  \n" + b'{"e": "\\ud83d\\ude00"}\n' + deep)
    rows = [row for _, row in jsonl.iter_objects(path, TaskError)]
    assert [r.get("e") for r in rows] == [None, "\U0001f600", None]
    assert jsonl.depth(rows[2]) == 64


@pytest.mark.parametrize(
    "value,expected", [(1, 0), ([], 1), ({"a": [1, {"b": []}]}, 4), ([[[]], []], 3), ({"a": "[[["}, 1)]
)
def test_depth(value, expected):
    assert jsonl.depth(value) == expected

"""The sample store: round trips, resume bookkeeping, locking, versions, disk full, JSONL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from wiseft.errors import GradingError, StoreError
from wiseft.records import read_records
from wiseft.records import to_problem_samples as records_problem_samples
from wiseft.store import SampleStore


def _samples(pids, n, tag=""):
    return [
        {"problem_id": p, "sample_idx": i, "completion": f"{tag}{p}-{i}", "n_tokens": i + 1,
         "finish_reason": "length" if i == n - 1 else "stop"}
        for p in pids
        for i in range(n)
    ]  # fmt: skip


def _grades(records):
    out = []
    for r in records:
        i = r["sample_idx"]
        g = dict(r, answer=str(i % 2), extraction="rule", verdict="correct" if i % 2 == 0 else "incorrect",
                 correct=i % 2 == 0, answer_class=i % 2, grader="g==1", reason=None)  # fmt: skip
        out.append(g)
    return out


def _variant(store, name="v", temperature=1.0):
    return store.variant(name, "mix", "toy", {"m": "abc"}, {"max_new_tokens": 8}, recipe={"delta": 0.5},
                         temperature=temperature, seed=0)  # fmt: skip


def test_samples_missing_grades_and_metrics_inputs(tmp_path):
    with SampleStore(tmp_path / "s.db") as store:
        v = _variant(store)
        assert _variant(store).id == v.id  # same settings → same variant
        assert _variant(store, temperature=0.7).id != v.id
        assert store.missing(v, ["a", "b", "c"], 4) == ["a", "b", "c"]
        assert store.add_samples(v, _samples(["a", "b"], 4)) == 8
        assert store.add_samples(v, _samples(["a"], 4, tag="again")) == 0  # no duplicate, first kept
        assert store.missing(v, ["a", "b", "c"], 4) == ["c"]
        assert store.missing(v, ["a", "b", "c"], 6) == ["a", "b", "c"]
        recs = store.records(v, ["b", "a"], 4)
        assert [(r["problem_id"], r["sample_idx"]) for r in recs][:2] == [("b", 0), ("b", 1)]
        assert recs[-1]["completion"] == "a-3"
        assert store.ungraded_problems(v, ["a", "b"], 4, "g==1") == ["a", "b"]
        with pytest.raises(StoreError, match="is not graded yet"):
            store.problem_samples(v, ["a", "b"], 4)
        graded = _grades(recs)
        store.add_grades(v, graded)
        assert store.ungraded_problems(v, ["a", "b"], 4, "g==1") == []
        assert store.ungraded_problems(v, ["a", "b"], 4, "g==2") == ["a", "b"]  # a new grader regrades
        ours = store.problem_samples(v, ["a", "b"], 4)
        # The independent path: graded records → ProblemSamples in the grading package.
        ref = records_problem_samples(
            [g for g in graded if g["problem_id"] == "a"]
        ) + records_problem_samples([g for g in graded if g["problem_id"] == "b"])
        ref = [ref[1], ref[0]] if ref[0].problem_id != "a" else ref
        by_id = {p.problem_id: p for p in ours}
        for r in ref:
            got = by_id[r.problem_id]
            assert np.array_equal(got.correct, r.correct)
            assert np.array_equal(got.classes, r.classes)
            assert np.array_equal(got.n_tokens, r.n_tokens)
            assert np.array_equal(got.truncated, r.truncated)
        with pytest.raises(StoreError, match="no samples for problem"):
            store.problem_samples(v, ["a", "zz"], 4)


def test_second_writer_gets_a_clear_error(tmp_path):
    path = tmp_path / "s.db"
    store = SampleStore(path)
    with pytest.raises(StoreError) as err:
        SampleStore(path)
    assert str(path) in str(err.value) and "in use by another wiseft process" in str(err.value)
    # A reader may look while the writer holds it.
    _variant(store)
    with SampleStore(path, writer=False) as reader:
        assert [v.name for v in reader.variants()] == ["v"]
    store.close()
    SampleStore(path).close()


def test_lock_held_by_another_process(tmp_path):
    path = tmp_path / "s.db"
    code = (
        "import sys, time; from wiseft.store import SampleStore; s = SampleStore(sys.argv[1]); "
        "print('ready', flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match=f"in use by another wiseft process \\(pid {proc.pid}\\)"):
            SampleStore(path)
    finally:
        proc.kill()
        proc.wait()
    # The OS drops the lock of a killed process: no stale lock.
    time.sleep(0.05)
    SampleStore(path).close()


def test_incompatible_or_foreign_store_is_rejected(tmp_path):
    path = tmp_path / "s.db"
    SampleStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError) as err:
        SampleStore(path)
    assert f"sample store {path} has schema version 99" in str(err.value)
    assert "Use a new --store path" in str(err.value)

    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a wiseft sample store"):
        SampleStore(other)

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a readable SQLite database"):
        SampleStore(junk)
    assert junk.read_bytes() == b"this is not sqlite at all" * 100  # untouched


def test_disk_full_during_commit_loses_nothing_committed(tmp_path):
    path = tmp_path / "s.db"
    with SampleStore(path) as store:
        v = _variant(store)
        store.add_samples(v, _samples(["a", "b"], 4))
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's own "disk full" (SQLITE_FULL)
        big = [dict(r, completion="x" * 5000) for r in _samples([f"p{i}" for i in range(50)], 4)]
        with pytest.raises(StoreError) as err:
            store.add_samples(v, big)
        assert "disk full during commit" in str(err.value) and str(path) in str(err.value)
        assert "everything committed before is safe" in str(err.value)
    with SampleStore(path) as store:
        v = _variant(store)
        assert store.missing(v, ["a", "b"], 4) == []
        assert store.missing(v, ["p0", "p49"], 1) == ["p0", "p49"]  # nothing of the failed batch
        assert len(store.records(v)) == 8


def test_export_import_round_trip(tmp_path):
    with SampleStore(tmp_path / "a.db") as store:
        v = _variant(store)
        store.add_samples(v, _samples(["a", "b"], 3))
        store.add_grades(v, _grades(store.records(v, ["a"], 3)))  # b stays ungraded
        assert store.export_jsonl(tmp_path / "out.jsonl") == 6
        exported = store.records(v)
    back = read_records(tmp_path / "out.jsonl")  # the schema of `wiseft grade`
    assert back == exported
    with SampleStore(tmp_path / "b.db") as other:
        assert other.import_jsonl(tmp_path / "out.jsonl", "toy") == {"v": 6}
        w = other.find_variant("v")
        assert other.records(w) == exported
        assert other.import_jsonl(tmp_path / "out.jsonl", "toy") == {"v": 0}  # no duplicates
        with pytest.raises(StoreError, match="has no variant 'nope'"):
            other.find_variant("nope")


def test_os_error_during_a_transaction_is_a_store_error(tmp_path):
    """ENOSPC from the OS (not only SQLite's own SQLITE_FULL) rolls the batch back with the same message."""
    with SampleStore(tmp_path / "s.db") as store:
        v = _variant(store)
        store.add_samples(v, _samples(["a"], 2))
        with pytest.raises(StoreError, match="disk full during commit"):
            with store.transaction() as db:
                db.execute(
                    "INSERT INTO samples(variant_id, problem_id, sample_idx, completion) VALUES (?, 'b', 0, 'x')",
                    (v.id,),
                )
                raise OSError(28, "No space left on device")
        assert store.missing(v, ["a", "b"], 2) == ["b"]
        assert len(store.records(v)) == 2


def _record_path(store, v, ids, n, verifier=None):
    """problem_samples as it was built before the column path: records, then the records module."""
    return records_problem_samples(store.records(v, ids, n, verifier=verifier), f"sample store {store.path}")


def _same_arrays(got, want):
    assert [p.problem_id for p in got] == [p.problem_id for p in want]
    for g, w in zip(got, want, strict=True):
        for name in (
            "correct",
            "classes",
            "scores",
            "n_tokens",
            "truncated",
            "think_closed",
            "thinking_tokens",
        ):
            a, b = getattr(g, name), getattr(w, name)
            assert (a is None) == (b is None), name
            if a is not None:
                assert a.dtype == b.dtype and np.array_equal(a, b), name


@pytest.mark.parametrize("drop", [None, "n_tokens", "finish_reason", "think_closed"])
def test_problem_samples_reads_columns_into_the_arrays_of_the_record_path(tmp_path, drop):
    """The store builds ProblemSamples from columns; they equal those of records → to_problem_samples,
    whatever optional field is missing on one sample, in the asked problem order and with n."""
    with SampleStore(tmp_path / "s.db") as store:
        v = _variant(store)
        recs = _samples(["a", "b", "c"], 5)
        for i, r in enumerate(recs):
            r["think_closed"], r["thinking_tokens"] = i % 3 == 0, i
        if drop:
            recs[4].pop(drop)
        store.add_samples(v, recs)
        store.add_grades(v, _grades(store.records(v)))
        for ids, n in ((["c", "a", "b"], 4), (["b"], 5), (None, None), (None, 3)):
            _same_arrays(store.problem_samples(v, ids, n), _record_path(store, v, ids, n))
        wide = [f"p{i}" for i in range(950)] + ["b", "a"]  # past the SQL variable limit: filtered in Python
        with pytest.raises(StoreError, match="no samples for problem\\(s\\) p0, p1"):
            store.problem_samples(v, wide, 4)
        assert store.problem_samples(v, [], 4) == []


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("answer_class", "'x'", "fields 'correct' (bool) and 'answer_class' (int) have the wrong type"),
        ("n_tokens", "2.5", "field 'n_tokens' must be int, got float"),
        ("score", "'high'", "field 'score' must be float, got str"),
        ("completion", "x'00ff'", "field 'completion' must be str, got bytes"),
        ("thinking_tokens", "'many'", "field 'thinking_tokens' must be int, got str"),
        ("sample_idx", "'one'", "field 'sample_idx' must be int, got str"),
    ],
)
def test_a_tampered_store_is_refused_as_the_record_path_refuses_it(tmp_path, column, value, message):
    """A store is an input: a value of the wrong type (written around wiseft) is refused with the record
    path's message, naming the store and the record, never read as a number."""
    path = tmp_path / "s.db"
    with SampleStore(path) as store:
        v = _variant(store)
        recs = _samples(["a", "b"], 3)
        for r in recs:
            r["think_closed"], r["thinking_tokens"] = True, 1
        store.add_samples(v, recs)
        store.add_grades(v, _grades(store.records(v)))
    db = sqlite3.connect(path)
    table = "grades" if column == "answer_class" else "samples"
    db.execute("PRAGMA ignore_check_constraints=ON")
    db.execute(f"UPDATE {table} SET {column}={value} WHERE problem_id='b' AND sample_idx=1")
    if column == "sample_idx":  # the grade follows its sample
        db.execute(f"UPDATE grades SET sample_idx={value} WHERE problem_id='b' AND sample_idx=1")
    db.commit()
    db.close()
    with SampleStore(path) as store:
        for read in (
            lambda: store.problem_samples(v.id, ["a", "b"]),
            lambda: _record_path(store, v.id, ["a", "b"], None),
        ):
            with pytest.raises(GradingError) as err:
                read()
            assert str(err.value) == f"sample store {path} record 5: {message}" or (
                column == "sample_idx" and str(err.value) == f"sample store {path} record 6: {message}"
            ), str(err.value)

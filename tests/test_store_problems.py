"""Problems in the sample store: prompt, gold and meta on exported records, the import of those fields,
and stores written before `problems.meta` existed."""

import json
import sqlite3

import pytest

from wiseft.cli import main
from wiseft.errors import StoreError
from wiseft.records import check_record, read_records
from wiseft.store import ProblemRow, SampleStore


def _store(path, problems=(("p1", "7", "Q: 3+4?", {"subject": "Algebra", "level": 2}),)):
    """A store with one variant of two samples on p1 (one graded) and p1's problem row."""
    with SampleStore(path) as store:
        v = store.variant("a", "checkpoint", "toy", {"m": "x"}, {"n": 2})
        store.add_problems("toy", problems)
        store.add_samples(v, [{"problem_id": "p1", "sample_idx": i, "completion": f"c{i}", "n_tokens": 3,
                               "finish_reason": "stop"} for i in range(2)])  # fmt: skip
        store.add_grades(v, [{"problem_id": "p1", "sample_idx": 0, "answer": "7", "extraction": "boxed",
                              "verdict": "correct", "correct": True, "answer_class": 0, "grader": "g"}])  # fmt: skip
    return path


def test_records_with_problem_add_prompt_gold_and_meta_and_the_default_is_unchanged(tmp_path):
    path = _store(tmp_path / "s.db")
    with SampleStore(path, writer=False) as store:
        plain = store.records(1)
        joined = store.records(1, with_problem=True)
        graded = store.records(1, graded=True, with_problem=True)
        assert store.problems("toy") == [ProblemRow("p1", "7", "Q: 3+4?", {"subject": "Algebra", "level": 2})]
    assert all(set(r) & {"prompt", "gold", "meta"} == set() for r in plain)
    assert [{k: v for k, v in r.items() if k not in ("prompt", "gold", "meta")} for r in joined] == plain
    for r in joined:
        assert (r["prompt"], r["gold"], r["meta"]) == ("Q: 3+4?", "7", {"subject": "Algebra", "level": 2})
        check_record(r, "joined")
    assert [r["sample_idx"] for r in graded] == [0] and graded[0]["gold"] == "7"


@pytest.mark.parametrize(
    "first, second, stored",
    [
        (("p1", None, None), ("p1", "7", "Q", {"level": 1}), ("7", "Q", {"level": 1})),  # gaps filled
        (("p1", "7", "Q", {"level": 1}), ("p1", "8", "R", {"level": 2}), ("7", "Q", {"level": 1})),  # kept
        (("p1", "7", "Q"), ("p1", None, None, None), ("7", "Q", None)),  # three-tuples as before
    ],
)
def test_add_problems_keeps_known_values_and_fills_unknown_ones(tmp_path, first, second, stored):
    with SampleStore(tmp_path / "s.db") as store:
        store.add_problems("toy", [first])
        store.add_problems("toy", [second])
        row = store.problems("toy")[0]
    assert (row.gold, row.prompt, row.meta) == stored


def test_export_writes_prompt_and_gold_and_import_reads_them_back(tmp_path, capsys):
    path = _store(tmp_path / "s.db")
    out = tmp_path / "out.jsonl"
    assert main(["store", "export", str(path), "-o", str(out)]) == 0
    recs = read_records(out)
    assert [(r["prompt"], r["gold"], r["meta"]["subject"]) for r in recs] == [("Q: 3+4?", "7", "Algebra")] * 2
    again = tmp_path / "again.db"
    assert main(["store", "import", str(again), str(out), "--task", "toy"]) == 0
    with SampleStore(again, writer=False) as store:
        assert store.problems("toy") == [ProblemRow("p1", "7", "Q: 3+4?", {"subject": "Algebra", "level": 2})]
        back = store.records(store.find_variant("a"), with_problem=True)
    assert back == recs  # samples, grades and problem fields all round-trip


def test_import_refuses_two_golds_for_one_problem_and_writes_nothing(tmp_path, cli):
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps({"problem_id": "p1", "sample_idx": i, "completion": "x", "gold": g}) + "\n"
                               for i, g in enumerate(["7", "8"])))  # fmt: skip
    code, err = cli(["store", "import", tmp_path / "new.db", samples, "--task", "toy"])
    assert code == 2 and err.count("\n") == 1
    assert f"{samples}: problem 'p1' has two gold answers ('7' and '8')" in err
    assert not (tmp_path / "new.db").exists()


@pytest.mark.parametrize("field, value", [("prompt", 3), ("gold", 7), ("meta", "subject")])
def test_problem_fields_have_types(field, value):
    with pytest.raises(Exception, match=f"field '{field}' must be"):
        check_record({"problem_id": "p", "sample_idx": 0, "completion": "", field: value}, "line 1")


def _drop_meta_column(path):
    """Make the store look like one written before `problems.meta` (schema version 1 as first released)."""
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE problems DROP COLUMN meta")
    db.commit()
    db.close()


def test_a_store_without_the_meta_column_is_read_as_is_and_upgraded_by_a_writer(tmp_path):
    path = _store(tmp_path / "old.db", problems=(("p1", "7", "Q"),))
    _drop_meta_column(path)
    with SampleStore(path, writer=False) as store:  # read-only: no change to the file
        assert store.problems("toy") == [ProblemRow("p1", "7", "Q", None)]
        assert store.records(1, with_problem=True)[0]["gold"] == "7"
    columns = lambda: [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(problems)")]  # noqa: E731
    assert "meta" not in columns()
    with SampleStore(path) as store:  # a writer adds the column
        store.add_problems("toy", [("p1", None, None, {"level": 3})])
        assert store.problems("toy") == [ProblemRow("p1", "7", "Q", {"level": 3})]
    assert "meta" in columns()
    # what an older wiseft writes (its column list has no meta) still works on the upgraded store
    db = sqlite3.connect(path)
    db.execute(
        "INSERT OR IGNORE INTO problems(task, problem_id, gold, prompt) VALUES ('toy', 'p2', '1', 'R')"
    )
    db.commit()
    db.close()
    with SampleStore(path, writer=False) as store:
        assert [p.problem_id for p in store.problems("toy")] == ["p1", "p2"]


def test_damaged_meta_is_a_one_line_store_error(tmp_path):
    path = _store(tmp_path / "s.db")
    db = sqlite3.connect(path)
    db.execute("UPDATE problems SET meta='[1, 2]'")
    db.commit()
    db.close()
    with SampleStore(path, writer=False) as store, pytest.raises(StoreError, match="meta of problem 'p1'"):
        store.records(1, with_problem=True)

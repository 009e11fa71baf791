"""A sample store as the source of `wiseft grade` / `wiseft score`, and `wiseft store info|export|import`."""

import json

import pytest
from support.grading import DATA
from test_grading_cli import write_samples

from wiseft.cli import main
from wiseft.store import SampleStore, is_store


@pytest.fixture
def store_with_samples(tmp_path):
    """Two variants of the same 12 MATH-500 samples imported into a store, ungraded."""
    samples = tmp_path / "samples.jsonl"
    write_samples(samples, variants=("a", "b"))
    store = tmp_path / "samples.db"
    assert main(["store", "import", str(store), str(samples), "--task", "math500"]) == 0
    return store, samples


def test_import_info_and_export_round_trip(store_with_samples, tmp_path, capsys):
    store, samples = store_with_samples
    assert is_store(store) and not is_store(samples) and not is_store(tmp_path)
    assert main(["store", "info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "a" in out and "b" in out and "24" not in out  # 12 samples per variant, none graded yet
    exported = tmp_path / "out.jsonl"
    assert main(["store", "export", str(store), "-o", str(exported), "--variant", "b"]) == 0
    recs = [json.loads(line) for line in exported.read_text().splitlines()]
    original = [json.loads(line) for line in samples.read_text().splitlines() if '"b"' in line]
    key = lambda r: (r["problem_id"], r["sample_idx"])  # noqa: E731
    assert sorted(recs, key=key) == sorted(original, key=key)
    # importing the same file again adds nothing (no duplicates)
    assert main(["store", "import", str(store), str(samples), "--task", "math500"]) == 0
    assert "0 new sample records" in capsys.readouterr().out


def test_grade_and_score_a_store(store_with_samples, tmp_path):
    store, samples = store_with_samples
    # the variants know their task; --data says where its problems are
    assert main(["grade", str(store), "--data", str(DATA), "--workers", "1"]) == 0
    graded_jsonl = tmp_path / "graded.jsonl"
    assert main(["grade", str(samples), "--task", "math500", "--data", str(DATA), "--workers", "1",
                 "-o", str(graded_jsonl)]) == 0  # fmt: skip
    with SampleStore(store, writer=False) as db:
        rows = db.summary()
        from_store = {(r["variant"], r["problem_id"], r["sample_idx"]): r for v in db.variants()
                      for r in db.records(v, graded=True)}  # fmt: skip
    assert [(r["samples"], r["graded"]) for r in rows] == [(12, 12), (12, 12)]
    for rec in (json.loads(line) for line in graded_jsonl.read_text().splitlines()):
        stored = from_store[(rec["variant"], rec["problem_id"], rec["sample_idx"])]
        assert {k: stored[k] for k in ("answer", "verdict", "correct", "answer_class", "grader")} == {
            k: rec[k] for k in ("answer", "verdict", "correct", "answer_class", "grader")
        }
    m_store, m_jsonl = tmp_path / "m1.json", tmp_path / "m2.json"
    assert main(["score", str(store), "--k", "1,2,4", "-o", str(m_store), "--n-boot", "100"]) == 0
    assert main(["score", str(graded_jsonl), "--k", "1,2,4", "-o", str(m_jsonl), "--n-boot", "100"]) == 0
    a, b = json.loads(m_store.read_text()), json.loads(m_jsonl.read_text())
    assert [v["name"] for v in a["variants"]] == ["a", "b"]
    assert [v["summary"]["metrics"] for v in a["variants"]] == [
        v["summary"]["metrics"] for v in b["variants"]
    ]


def test_store_errors_name_the_problem(store_with_samples, tmp_path, capsys):
    store, _ = store_with_samples
    assert main(["score", str(store), "--k", "1"]) == 2
    assert "holds no graded samples; run `wiseft grade` on it first" in capsys.readouterr().err
    assert main(["grade", str(store), "-o", str(tmp_path / "x.jsonl")]) == 2
    assert "-o/--output does not apply to a sample store" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()
    assert main(["store", "info", str(tmp_path / "missing.db")]) == 2
    assert "does not exist" in capsys.readouterr().err
    out = tmp_path / "exists.jsonl"
    out.write_text("keep")
    assert main(["store", "export", str(store), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep"
    assert main(["store", "export", str(store), "-o", str(tmp_path / "y.jsonl"), "--variant", "zzz"]) == 2
    assert "has no variant 'zzz'" in capsys.readouterr().err
    assert not (tmp_path / "y.jsonl").exists()
    samples = tmp_path / "s.jsonl"
    write_samples(samples)
    assert main(["grade", str(samples), "--data", str(DATA)]) == 2
    assert "--task is required when grading a JSONL file" in capsys.readouterr().err


def test_store_read_accessors(store_with_samples, tmp_path):
    store, _ = store_with_samples
    with SampleStore(store) as db:
        assert db.latest_run() is None and db.graders() == []  # imported samples: no run, no grades
        run_id = db.begin_run("sweep", {"n": 4, "task": "math500"})
        db.end_run(run_id)
        run = db.latest_run()
    assert (
        run["command"] == "sweep" and run["config"] == {"n": 4, "task": "math500"} and run["wiseft_version"]
    )
    assert main(["grade", str(store), "--data", str(DATA), "--workers", "1"]) == 0
    with SampleStore(store, writer=False) as db:
        assert db.graders() == ["math-verify==0.9.0"]


def test_grading_an_empty_store_is_a_one_line_error(tmp_path, cli):
    store = tmp_path / "empty.db"
    SampleStore(store).close()
    code, err = cli(["grade", store])
    assert code == 2 and f"sample store {store} holds no samples to grade" in err
    assert "Traceback" not in err


def test_grading_a_store_of_two_tasks_reports_every_grader(tmp_path, cli):
    """Variants of a MATH-500 import and of a toy import are graded each with its own task and grader;
    the summary counts every sample and names both graders."""
    samples = tmp_path / "math.jsonl"
    write_samples(samples, variants=("m",))
    toy = tmp_path / "toy.jsonl"
    toy.write_text("".join(json.dumps({"problem_id": f"toy-5-test-{i:04d}", "sample_idx": 0, "completion": "81$",
                                       "variant": "t"}) + "\n" for i in range(3)))  # fmt: skip
    store = tmp_path / "two.db"
    assert cli(["store", "import", store, samples, "--task", "math500"])[0] == 0
    assert cli(["store", "import", store, toy, "--task", "toy"])[0] == 0
    code, err = cli(["grade", store, "--data", DATA, "--workers", "1"])
    out = cli.out
    assert code == 0, err
    assert "graded 15 samples" in out and "int-exact" in out and "math-verify==" in out
    with SampleStore(store, writer=False) as db:
        assert [(r["task"], r["samples"], r["graded"]) for r in db.summary()] == [
            ("math500", 12, 12),
            ("toy", 3, 3),
        ]

"""`wiseft grade` and `wiseft score` end to end, and every input they reject (nothing written then)."""

import json

import pytest
from support.grading import DATA

from wiseft.cli import main
from wiseft.metrics import summarize
from wiseft.records import to_problem_samples as problem_samples

ANSWERS = {  # problem index in MATH-500 → answers of the samples (None: no answer)
    0: ["\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})", "(3, \\pi)", None],
    1: ["p - q", "q - p", "p-q", "p - q"],
    2: ["\\frac{14}{3}", "4.67", "14/3", "5"],
}


def write_samples(path, variants=(None,)):
    from wiseft.tasks import get_task

    task = get_task("math500", data=DATA)
    lines = []
    for variant in variants:
        for idx, answers in ANSWERS.items():
            for j, a in enumerate(answers):
                rec = {
                    "problem_id": task.problems[idx].id,
                    "sample_idx": j,
                    "completion": f"Work... so $\\boxed{{{a}}}$." if a else "I give up",
                    "n_tokens": 20 + j,
                    "finish_reason": "stop" if a else "length",
                }
                if variant is not None:
                    rec["variant"] = variant
                lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")
    return task


def test_grade_then_score(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    write_samples(samples)
    assert main(["grade", str(samples), "--task", "math500", "--data", str(DATA), "--workers", "1"]) == 0
    graded_path = tmp_path / "samples.graded.jsonl"
    graded = [json.loads(line) for line in graded_path.read_text().splitlines()]
    assert len(graded) == 12
    assert [g["verdict"] for g in graded[:4]] == ["correct", "correct", "incorrect", "no_answer"]
    assert [g["answer_class"] for g in graded[:4]] == [0, 0, 1, -1]
    assert [g["correct"] for g in graded[4:8]] == [True, False, True, True]
    assert [g["answer_class"] for g in graded[8:]] == [0, 1, 0, 2]  # 4.67 is not 14/3
    assert all(g["grader"] == "math-verify==0.9.0" for g in graded)
    assert graded[0]["extraction"] == "boxed" and graded[3]["answer"] is None
    assert "graded 12 samples" in capsys.readouterr().out

    out = tmp_path / "m.json"
    assert main(["score", str(graded_path), "--k", "1,2,4", "-o", str(out), "--n-boot", "200"]) == 0
    body = json.loads(out.read_text())
    expected = summarize(problem_samples(graded), [1, 2, 4], seed=0, n_boot=200)
    assert body["grader"] == "math-verify==0.9.0" and len(body["variants"]) == 1
    summary = body["variants"][0]["summary"]
    assert summary["metrics"] == json.loads(json.dumps(expected["metrics"]))
    assert summary["n_problems"] == 3 and summary["n"] == 4
    assert summary["metrics"]["pass@1"]["value"] == pytest.approx((2 / 4 + 3 / 4 + 2 / 4) / 3)
    assert set(summary["bias_variance"]["bound"]) == {"1", "2", "4"}
    printed = capsys.readouterr().out
    assert "pass@k" in printed and "maj@k" in printed and "[" in printed


def test_grade_refuses_existing_output_and_leaves_it(tmp_path, capsys):
    samples = tmp_path / "s.jsonl"
    write_samples(samples)
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    rc = main(["grade", str(samples), "--task", "math500", "--data", str(DATA), "-o", str(out)])
    assert rc == 2
    assert "already exists; choose another -o/--output or pass --force" in capsys.readouterr().err
    assert out.read_text() == "old\n"
    assert main(["grade", str(samples), "--task", "math500", "--data", str(DATA), "-o", str(samples)]) == 2
    assert "is the samples file itself" in capsys.readouterr().err


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda recs: recs[0].update(problem_id="nope"), "problem id(s) 'nope' are not in task math500"),
        (lambda recs: recs[1].pop("sample_idx"), "missing field 'sample_idx'"),
        (lambda recs: recs.append(dict(recs[0])), "appears twice"),
    ],
)
def test_grade_rejects_bad_samples_and_writes_nothing(tmp_path, capsys, edit, message):
    samples = tmp_path / "s.jsonl"
    write_samples(samples)
    recs = [json.loads(line) for line in samples.read_text().splitlines()]
    edit(recs)
    samples.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["grade", str(samples), "--task", "math500", "--data", str(DATA)]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl"]


def test_grade_unknown_task_and_missing_file(tmp_path, capsys):
    samples = tmp_path / "s.jsonl"
    write_samples(samples)
    assert main(["grade", str(samples), "--task", "mmlu", "--data", str(DATA)]) == 2
    assert "unknown task 'mmlu' (--task)" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "none.jsonl"), "--task", "math500", "--data", str(DATA)]) == 2
    assert "none.jsonl does not exist" in capsys.readouterr().err


@pytest.fixture(scope="module")
def graded_file(tmp_path_factory):
    samples = tmp_path_factory.mktemp("graded") / "s.jsonl"
    write_samples(samples, variants=("delta=0.0", "delta=0.5"))
    assert main(["grade", str(samples), "--task", "math500", "--data", str(DATA), "--workers", "1"]) == 0
    return samples.parent / "s.graded.jsonl"


def test_score_several_variants(graded_file, capsys):
    out = graded_file.parent / "metrics.json"
    assert main(["score", str(graded_file), "--k", "2,1", "--n-boot", "50"]) == 0
    body = json.loads(out.read_text())
    out.unlink()
    assert [v["name"] for v in body["variants"]] == ["delta=0.0", "delta=0.5"]
    assert body["variants"][0]["summary"]["metrics"] == body["variants"][1]["summary"]["metrics"]
    assert "metrics by variant" in capsys.readouterr().out
    one = graded_file.parent / "one.json"
    assert main(["score", str(graded_file), "--variant", "delta=0.5", "-o", str(one), "--n-boot", "50"]) == 0
    assert [v["name"] for v in json.loads(one.read_text())["variants"]] == ["delta=0.5"]  # one shape always


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--k", "1,16"], "k=16 is larger than n=4 samples"),
        (["--k", "one,two"], "--k must be positive integers such as 1,4,16"),
        (["--k", "0"], "--k must be positive integers such as 1,4,16"),
        (["--variant", "delta=9"], "--variant 'delta=9' is not in the file"),
        (["--n-boot", "0"], "n_boot must be at least 1, got 0 (--n-boot)"),
    ],
)
def test_score_rejects_bad_flags_and_writes_nothing(graded_file, capsys, flags, message):
    assert main(["score", str(graded_file), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (graded_file.parent / "metrics.json").exists()


def test_score_needs_a_graded_file(tmp_path, capsys):
    samples = tmp_path / "s.jsonl"
    write_samples(samples)
    assert main(["score", str(samples), "--k", "1"]) == 2
    assert (
        "missing field 'verdict'; is this a graded file? run `wiseft grade` first" in capsys.readouterr().err
    )
    assert not (tmp_path / "metrics.json").exists()


def test_grade_jsonl_task_with_field_options(tmp_path, capsys):
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"uid": "q1", "prompt": "2+2?", "target": "4"}) + "\n")
    samples = tmp_path / "s.jsonl"
    samples.write_text(
        "".join(
            json.dumps({"problem_id": "q1", "sample_idx": i, "completion": f"\\boxed{{{a}}}"}) + "\n"
            for i, a in enumerate(["4", "4.0", "5"])
        )
    )
    flags = ["--task-option", "question_field=prompt", "--task-option", "answer_field=target"]
    args = [
        "grade",
        str(samples),
        "--task",
        "jsonl",
        "--data",
        str(data),
        *flags,
        "--task-option",
        "id_field=uid",
    ]
    assert main(args) == 0
    graded = [json.loads(line) for line in (tmp_path / "s.graded.jsonl").read_text().splitlines()]
    assert [g["correct"] for g in graded] == [True, True, False]
    assert main([*args[:6], "--task-option", "oops", "-o", str(tmp_path / "x.jsonl")]) == 2
    assert "--task-option must look like KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()

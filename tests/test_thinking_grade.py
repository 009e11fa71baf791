"""Thinking-aware grading of samples drawn elsewhere (`wiseft grade`, issue 16): answers are read after the
thinking block as `wiseft eval` reads them, each sample records whether it closed one, and `wiseft score`
reports Think % from that (no thinking token counts without a tokenizer)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wiseft.cli import main
from wiseft.grading import Grader
from wiseft.grading.apply import grade_records
from wiseft.metrics import thinking_stats
from wiseft.records import ProblemSamples, to_problem_samples
from wiseft.store import SampleStore
from wiseft.tasks import get_task

DATA = [{"id": "q1", "question": "2+3?", "answer": "5"}, {"id": "q2", "question": "1+1?", "answer": "2"}]
# (problem, completion, answer read after the tag, closed, answer read from the whole text)
SAMPLES = [
    ("q1", "<think>first guess \\boxed{3}, no wait</think>\n\nThe answer is 5.", "5", True, "3"),
    ("q1", "<think>so \\boxed{5}?</think>The answer: \\boxed{3}", "3", True, "3"),
    ("q1", "<think>so 2+3 = \\boxed{5}, and then", "5", False, "5"),  # never closed: the whole text
    (
        "q2",
        "1+1 is \\boxed{7}</think>\n\\boxed{2}</think>so \\boxed{9}",
        "9",
        True,
        "9",
    ),  # the last tag counts
    ("q2", "\\boxed{2}", "2", False, "2"),
    ("q2", "<think>a <think>b</think> c</think>\\boxed{2}", "2", True, "2"),  # nested-looking
]
OPTIONS = ["--task", "jsonl", "--task-option", "grader=int", "--task-option", "last_number=true"]


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in DATA))
    samples = tmp_path / "samples.jsonl"
    idx = {"q1": 0, "q2": 0}
    lines = []
    for pid, text, *_ in SAMPLES:
        lines.append(json.dumps({"problem_id": pid, "sample_idx": idx[pid], "completion": text}))
        idx[pid] += 1
    samples.write_text("\n".join(lines) + "\n")
    return data, samples


def _grade(files, tmp_path, flags) -> list[dict]:
    data, samples = files
    out = tmp_path / "graded.jsonl"
    assert main(["grade", str(samples), *OPTIONS, "--data", str(data), "-o", str(out), *flags]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_grade_reads_the_answer_after_the_thinking_block_by_default(files, tmp_path):
    graded = _grade(files, tmp_path, [])
    assert [g["answer"] for g in graded] == [s[2] for s in SAMPLES]
    assert [g["think_closed"] for g in graded] == [s[3] for s in SAMPLES]
    assert [g["correct"] for g in graded] == [True, False, True, False, True, True]


def test_an_empty_thinking_tag_grades_the_whole_text_and_records_nothing(files, tmp_path):
    graded = _grade(files, tmp_path, ["--thinking-tag", ""])
    assert [g["answer"] for g in graded] == [s[4] for s in SAMPLES]
    assert not any("think_closed" in g for g in graded)


def test_another_familys_tag(files, tmp_path):
    data, samples = files
    text = samples.read_text().replace("</think>", "◁/think▷").replace("<think>", "◁think▷")
    samples.write_text(text)
    graded = _grade(files, tmp_path, ["--thinking-tag", "◁/think▷", "--thinking-open-tag", "◁think▷"])
    assert [g["answer"] for g in graded] == [s[2] for s in SAMPLES]
    assert [g["think_closed"] for g in graded] == [s[3] for s in SAMPLES]
    assert [g["answer"] for g in _grade(files, tmp_path, ["--force"])] == [
        s[4] for s in SAMPLES
    ]  # tag absent


def test_score_reports_think_percent_without_token_counts(files, tmp_path, capsys):
    _grade(files, tmp_path, [])
    out = tmp_path / "metrics.json"
    assert (
        main(["score", str(tmp_path / "graded.jsonl"), "--k", "1,3", "-o", str(out), "--n-boot", "200"]) == 0
    )
    (variant,) = json.loads(out.read_text())["variants"]
    assert variant["summary"]["thinking"] == {"think_frac": {"value": 2 / 3, "lo": 2 / 3, "hi": 2 / 3}}


def test_think_percent_needs_every_sample_to_say_whether_it_closed():
    def problem(closed, tokens):
        return ProblemSamples(correct=[True, False], classes=[0, 1], n_tokens=[10, 20], think_closed=closed,
                              thinking_tokens=tokens)  # fmt: skip

    both = thinking_stats([problem([True, False], [6, 0]), problem([True, True], [4, 8])], n_boot=100)
    assert set(both) == {"think_frac", "thinking_tokens", "answer_tokens"}
    assert both["think_frac"]["value"] == 0.75 and both["thinking_tokens"]["value"] == 4.5
    alone = thinking_stats([problem([True, False], None), problem([True, True], None)], n_boot=100)
    assert alone == {"think_frac": {"value": 0.75, "lo": pytest.approx(0.5), "hi": 1.0}}
    assert thinking_stats([problem([True, False], None), problem(None, None)], n_boot=100) is None
    graded = [{"problem_id": "p", "sample_idx": i, "completion": "x", "correct": True, "answer_class": 0,
               "verdict": "correct", "think_closed": closed} for i, closed in enumerate([True, False])]  # fmt: skip
    (p,) = to_problem_samples(graded)
    assert np.array_equal(p.think_closed, [True, False]) and p.thinking_tokens is None


def test_a_record_that_already_says_whether_it_closed_keeps_it(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in DATA))
    task = get_task("jsonl", data=data, grader="int")
    records = [{"problem_id": "q2", "sample_idx": 0, "completion": "x</think>\\boxed{2}", "think_closed": False},
               {"problem_id": "q2", "sample_idx": 1, "completion": "x</think>\\boxed{2}"}]  # fmt: skip
    with Grader("int", thinking=("</think>", "<think>")) as grader:
        graded = grade_records(records, task, grader)
    assert [g["think_closed"] for g in graded] == [False, True]
    with Grader("int") as grader:
        assert "think_closed" not in grade_records(records[1:], task, grader)[0]


def test_grading_a_store_keeps_whether_each_sample_closed_its_thinking(files, tmp_path):
    """Samples imported into a store without think_closed learn it when the store is graded, so Think %
    is reported from the store as from the JSONL (a value the sampler recorded is never overwritten)."""

    data, samples = files
    store = tmp_path / "s.db"
    assert main(["store", "import", str(store), str(samples), "--task", "jsonl"]) == 0
    assert main(["grade", str(store), *OPTIONS, "--data", str(data)]) == 0
    with SampleStore(store, writer=False) as s:
        (variant,) = s.variants()
        records = s.records(variant)
    assert [r["think_closed"] for r in records] == [closed for *_, closed, _ in SAMPLES]
    out = tmp_path / "metrics.json"
    assert main(["score", str(store), "--k", "1,3", "-o", str(out), "--n-boot", "200"]) == 0
    (result,) = json.loads(out.read_text())["variants"]
    assert result["summary"]["thinking"]["think_frac"]["value"] == pytest.approx(2 / 3)


def _store_with_lengths(tmp_path):
    """Two imported variants of the same problems: `long` writes twice the tokens of `short`."""

    lines = []
    for variant, scale in (("short", 1), ("long", 2)):
        for pid, gold in (("a", "3"), ("b", "7"), ("c", "9")):
            for i in range(4):
                lines.append(json.dumps({
                    "problem_id": pid, "sample_idx": i, "completion": f"<think>x</think>\\boxed{{{gold}}}",
                    "n_tokens": scale * (3 + i), "variant": variant, "gold": gold, "answer": gold,
                    "extraction": "boxed", "verdict": "correct", "correct": True, "answer_class": 0,
                }))  # fmt: skip
    path = tmp_path / "lengths.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with SampleStore(tmp_path / "s.db") as store:
        store.import_jsonl(path, task="jsonl")
    return tmp_path / "s.db"


def test_a_report_from_a_store_gives_lengths_relative_to_a_named_variant(tmp_path):
    store = _store_with_lengths(tmp_path)
    out = tmp_path / "report"
    assert main(["report", str(store), "-o", str(out), "--length-reference", "short"]) == 0
    variants = {v["name"]: v for v in json.loads((out / "results.json").read_text())["variants"]}
    ratio = variants["long"]["summary"]["tokens"]["length_ratio"]
    assert ratio["reference"] == "short" and ratio["value"] == pytest.approx(2.0)
    assert variants["short"]["summary"]["tokens"]["length_ratio"]["value"] == pytest.approx(1.0)


def test_a_length_reference_without_token_counts_is_refused(tmp_path, capsys):
    store = _store_with_lengths(tmp_path)
    with SampleStore(store) as s:
        s.db.execute("UPDATE samples SET n_tokens = NULL")
    assert main(["report", str(store), "-o", str(tmp_path / "out"), "--length-reference", "short"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no token counts" in err and len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "source, message", [("store", "no graded variant of that name"), ("results", "sample store")]
)
def test_a_bad_length_reference_is_one_line_naming_the_flag(tmp_path, capsys, source, message):
    store = _store_with_lengths(tmp_path)
    target = store
    if source == "results":
        assert main(["report", str(store), "-o", str(tmp_path / "first")]) == 0
        target = tmp_path / "first" / "results.json"
    assert main(["report", str(target), "-o", str(tmp_path / "out"), "--length-reference", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--length-reference" in err and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()

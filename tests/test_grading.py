"""Answer extraction, verification, the cache, answer classes, pathological inputs and sample records."""

import json

import numpy as np
import pytest
from support.grading import PAIRS

from wiseft.errors import ConfigError, GradingError
from wiseft.grading import Grader, extract_answer, last_boxed, normalise
from wiseft.grading.apply import grade_records
from wiseft.records import by_variant, read_records
from wiseft.records import to_problem_samples as problem_samples
from wiseft.tasks import Problem, Task


@pytest.fixture(scope="module")
def grader():
    with Grader(kind="math", workers=2, timeout=5.0) as g:
        yield g


# ------------------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "text,last_number,expected",
    [
        ("so the result is \\boxed{\\frac{1}{2}}.", False, ("\\frac{1}{2}", "boxed")),
        ("\\boxed{\\frac{a}{b^{2}}} done", False, ("\\frac{a}{b^{2}}", "boxed")),  # nested braces
        ("\\boxed{\\{1, 2\\}}", False, ("\\{1, 2\\}", "boxed")),  # escaped braces are not groups
        ("first \\boxed{3}, then \\boxed{4}", False, ("4", "boxed")),  # the last box wins
        ("\\fbox{7}", False, ("7", "boxed")),
        ("\\boxed 5.", False, ("5", "boxed")),
        (
            "\\boxed{3} and then \\boxed{4",
            False,
            ("3", "boxed"),
        ),  # an unclosed box (cut by the limit) is skipped
        ("\\boxed{}", False, None),  # an empty box is no answer
        ("18 - 3 = 15\n#### 1,234\n", False, ("1,234", "hash")),
        ("#### Step 2: add\nthen 5", False, None),  # a markdown heading is not an answer line
        ("#### Step 2\n#### $-7.5", False, ("-7.5", "hash")),
        ("So the answer is 42. Done.", False, ("42", "answer_is")),
        ("The final answer is $\\frac{1}{2}$.", False, ("\\frac{1}{2}", "answer_is")),
        ("Final Answer: 7", False, ("7", "answer_is")),
        ("we get 3 and then 4 apples", True, ("4", "last_number")),
        ("we get 3 and then 4 apples", False, None),
        ("1,000 and 2,500,", True, ("2,500", "last_number")),
        ("", True, None),
        ("no digits at all", True, None),
    ],
)
def test_extraction_rules(text, last_number, expected):
    assert extract_answer(text, last_number=last_number) == expected


def test_extraction_of_huge_completion_is_linear():
    text = "x" * 100_000 + "\\boxed{" + "{" * 1000 + "1" + "}" * 1000 + "}"
    assert last_boxed(text).startswith("{")
    assert extract_answer("(" * 100_000, last_number=True) is None
    assert last_boxed("\\boxed{3}" + "\\boxed{" * 20_000) == "3"  # many unclosed boxes: one pass, not n²


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("  $\\frac{1}{2}$. ", "\\frac{1}{2}"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\left( 3, \\pi \\right)", "(3,\\pi)"),
        ("1,234,567", "1234567"),
        ("1\\!,\\!000", "1000"),
        ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
        ("\\pi r", "\\pi r"),  # a space between two letters separates tokens: kept
        ("(1, 2)", "(1,2)"),  # a tuple's comma is not a thousands separator
        ("\\$1,000", "1000"),  # currency sign
        ("\\leftarrow", "\\leftarrow"),  # only the sizing commands \\left and \\right go
    ],
)
def test_normalise_is_cosmetic(raw, expected):
    assert normalise(raw) == expected


# ----------------------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("gold,answer,equivalent", PAIRS, ids=[f"{g}|{a}" for g, a, _ in PAIRS])
def test_hand_written_pairs(grader, gold, answer, equivalent):
    [grade] = grader.grade([(gold, f"Thus \\boxed{{{answer}}}.")], task="pairs")
    assert grade.verdict == ("correct" if equivalent else "incorrect")
    assert grade.correct is equivalent
    assert grade.extraction == "boxed"


def test_pathological_answers_time_out_and_the_grader_recovers():
    with Grader(kind="math", workers=1, timeout=2.0) as g:
        grades = g.grade(
            [
                ("9", "\\boxed{9^{9^{9^{9^9}}}}"),  # a power tower: the verifier would never finish
                ("1", "\\boxed{" + "1+" * 50_000 + "1}"),  # a 100 kB answer
                ("1", "y" * 100_000),  # a 100 kB completion with no answer
                ("5", "\\boxed{5}"),
            ],
            task="patho",
            problem_ids=["a", "b", "c", "d"],
        )
        assert [x.verdict for x in grades] == ["timeout", "timeout", "no_answer", "correct"]
        assert "within 2 s" in grades[0].reason and "longer than" in grades[1].reason
        assert grades[2].reason.startswith("no final answer")
        assert g.pool.restarts == 1  # the stuck worker was killed and replaced
        # The replacement works.
        assert g.grade([("\\frac{1}{2}", "\\boxed{0.5}")], task="patho")[0].correct


def test_a_worker_that_died_is_replaced():
    with Grader(kind="math", workers=1) as g:
        assert g.grade([("\\sqrt{4}", "\\boxed{2}")], task="dead")[0].correct
        g.pool._workers[0].process.kill()  # dies while idle, between two batches
        g.pool._workers[0].process.wait()
        assert g.grade([("\\sqrt{9}", "\\boxed{3}")], task="dead")[0].correct
        assert g.pool.restarts == 1


def test_model_text_never_reaches_eval(grader, tmp_path):
    marker = tmp_path / "pwned"
    evil = f"__import__('os').system('touch {marker}')"
    grades = grader.grade([("1", f"\\boxed{{{evil}}}"), ("1", f"The answer is {evil}")], task="evil")
    assert [x.correct for x in grades] == [False, False]
    assert not marker.exists()


# -------------------------------------------------------------------------------------- cache and calls


def test_each_distinct_pair_is_verified_once():
    with Grader(kind="math", workers=1) as g:
        answers = ["\\sqrt{8}", "2\\sqrt{2}", "\\sqrt{8}", "3", "\\frac{4}{2}", "\\sqrt{8}"] * 10
        items = [("2\\sqrt{2}", f"\\boxed{{{a}}}") for a in answers]
        first = g.grade(items, task="t", problem_ids=["p"] * len(items))
        calls = g.stats.verifier_calls
        assert g.stats.distinct_pairs == 4  # \sqrt{8}, 2\sqrt{2}, 3, \frac{4}{2}
        # \sqrt{8}, 3 and \frac{4}{2} against the gold; "2\sqrt{2}" is the gold itself, and the class
        # comparison of the two wrong answers (3 vs 4/2) is exact arithmetic.
        assert calls == 3
        again = g.grade(items, task="t", problem_ids=["p"] * len(items))
        assert g.stats.verifier_calls == calls  # all from the cache
        assert [x.verdict for x in again] == [x.verdict for x in first]
        assert [x.correct for x in first[:6]] == [True, True, True, False, False, True]


def test_answer_classes_use_the_verifier(grader):
    gold = "\\frac{1}{2}"
    answers = ["0.5", "\\frac{1}{2}", "\\sqrt{8}", None, "2\\sqrt{2}", "\\frac{1}{3}", "\\frac{2}{6}", "7"]
    items = [(gold, f"\\boxed{{{a}}}" if a else "no idea") for a in answers]
    grades = grader.grade(items, task="classes", problem_ids=["p"] * len(items))
    assert [x.answer_class for x in grades] == [0, 0, 1, -1, 1, 2, 2, 3]
    assert [x.correct for x in grades] == [True, True, False, False, False, False, False, False]
    assert grader.classify(answers) == [0, 0, 1, -1, 1, 2, 2, 3]
    assert grader.classify(answers, gold="$\\dfrac{1}{2}$") == [0, 0, 1, -1, 1, 2, 2, 3]
    assert grader.verify(" \\frac{1}{2} ", ["$0.5$", "\\frac13"]) == ["correct", "incorrect"]


def test_classes_are_per_problem(grader):
    grades = grader.grade(
        [("1", "\\boxed{1}"), ("2", "\\boxed{1}"), ("1", "\\boxed{2}")], task="t", problem_ids=["a", "b", "a"]
    )
    assert [x.answer_class for x in grades] == [0, 0, 1]


def test_int_grader_needs_no_workers():
    with Grader(kind="int") as g:
        grades = g.grade(
            [
                ("18", "\\boxed{018}"),
                ("18", "\\boxed{18.0}"),
                ("18", "\\boxed{1,8}"),
                ("18", "\\boxed{abc}"),
                ("18", "x"),
            ],
            task="toy",
            problem_ids=["p"] * 5,
        )
        assert g.pool is None and g.name == "int-exact"
        assert [x.verdict for x in grades] == ["correct", "correct", "correct", "incorrect", "no_answer"]
        assert [x.answer_class for x in grades] == [0, 0, 0, 1, -1]


def test_task_extract_hook_overrides_generic_rules():
    def reversed_digits(text):
        tail = text.rsplit("=", 1)[-1].strip().rstrip("$")
        return (tail[::-1], "toy") if tail.isdigit() else None

    task = Task("toy", [Problem("0", "q", "123")], grader_kind="int", extract_answer=reversed_digits)
    with Grader(kind="int") as g:
        grades = g.grade([("123", "12,=321$"), ("123", "\\boxed{123}")], task=task, problem_ids=["0", "0"])
    assert (grades[0].answer, grades[0].extraction, grades[0].correct) == ("123", "toy", True)
    assert grades[1].verdict == "no_answer"


def test_grader_rejects_bad_arguments():
    with pytest.raises(GradingError, match="grader kind must be one of math, int, ifeval"):
        Grader(kind="regex")
    with pytest.raises(ConfigError, match="--workers must be at least 1"):
        Grader(workers=0)
    with pytest.raises(ConfigError, match="--timeout must be positive"):
        Grader(timeout=0)
    with Grader(kind="int") as g, pytest.raises(GradingError, match="2 items but 1 problem ids"):
        g.grade([("1", "1"), ("2", "2")], problem_ids=["a"])


# ------------------------------------------------------------------------------------------ records


def small_task():
    return Task("mini", [Problem("a", "1+1?", "2"), Problem("b", "half?", "\\frac{1}{2}")])


def make_records():
    out = []
    for variant in ("delta=0.0", "delta=0.5"):
        for pid, answers in (("a", ["2", "3", "2.0", None]), ("b", ["0.5", "1/2", "\\frac{1}{3}", "x"])):
            for i, a in enumerate(answers):
                out.append(
                    {
                        "problem_id": pid,
                        "sample_idx": i,
                        "completion": f"\\boxed{{{a}}}" if a else "hmm",
                        "n_tokens": 10 + i,
                        "finish_reason": "length" if a is None else "stop",
                        "variant": variant,
                        "score": float(i),
                    }
                )
    return out


def test_grade_records_adds_schema_fields_and_feeds_metrics():
    with Grader(kind="math", workers=1) as g:
        graded = grade_records(make_records(), small_task(), g)
    assert len(graded) == 16
    first = graded[0]
    assert set(first) >= {"answer", "extraction", "verdict", "correct", "answer_class", "grader"}
    assert first["grader"] == "math-verify==0.9.0"
    groups = by_variant(graded)
    assert list(groups) == ["delta=0.0", "delta=0.5"]
    ps = problem_samples(groups["delta=0.0"])
    assert [p.problem_id for p in ps] == ["a", "b"]
    assert ps[0].correct.tolist() == [True, False, True, False]
    assert ps[0].classes.tolist() == [0, 1, 0, -1]
    assert ps[1].correct.tolist() == [True, True, False, False]
    assert ps[0].truncated.tolist() == [False, False, False, True]
    assert np.array_equal(ps[1].scores, [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(GradingError, match="hold 2 variants"):
        problem_samples(graded)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda r: r.pop("completion"), "missing field 'completion'"),
        (lambda r: r.update(sample_idx="0"), "field 'sample_idx' must be int"),
        (lambda r: r.update(finish_reason="eos"), "'finish_reason' must be 'stop' or 'length'"),
        (lambda r: r.update(problem_id="zzz"), "problem id\\(s\\) 'zzz' are not in task mini"),
    ],
)
def test_grade_records_rejects_bad_records(mutate, match):
    records = make_records()
    mutate(records[3])
    with Grader(kind="int") as g, pytest.raises(GradingError, match=match):
        grade_records(records, small_task(), g)


def test_duplicate_samples_are_rejected(tmp_path):
    path = tmp_path / "s.jsonl"
    rec = {"problem_id": "a", "sample_idx": 0, "completion": "x"}
    path.write_text(json.dumps(rec) + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(GradingError, match="sample 0 of problem 'a' appears twice"):
        read_records(path)
    path.write_text("{not json\n")
    with pytest.raises(GradingError, match=r"s.jsonl:1: not valid JSON"):
        read_records(path)

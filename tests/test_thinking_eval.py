"""Thinking models through the evaluation: answers read after the thinking block, Think % and the thinking
and answer tokens stored per sample and summarised with intervals."""

from __future__ import annotations

import numpy as np
import pytest
from support.sampling import tiny_model_dir

from wiseft.evaluate.config import ModelEvalConfig
from wiseft.evaluate.runners import run_eval
from wiseft.grading import Grader
from wiseft.metrics import summarize, thinking_stats
from wiseft.records import ProblemSamples, read_records
from wiseft.sampling.fake import ScriptedSampler


@pytest.mark.parametrize(
    "completion, correct",
    [
        ("<think>maybe 7? no</think>The answer is 12.", True),  # the 7 inside the thinking is not read
        ("<think>it is 12</think>The answer is 7.", False),  # nor is a right number inside it
        ("The answer is 12.", True),  # no block: the whole text
        ("<think>12 12 12, never closed", False),  # unclosed: the whole text, which states no answer
    ],
)
def test_a_math_grader_reads_the_answer_after_the_thinking_block(completion, correct):
    with Grader("int", thinking=("</think>", "<think>")) as g:
        (grade,) = g.grade([("12", completion)])
    assert grade.correct is correct


def test_without_thinking_tags_the_whole_text_is_read():
    with Grader("int") as g:
        (grade,) = g.grade([("7", "<think>The answer is 7.\n</think>\nno answer here")])
    assert grade.correct  # the only answer is inside the block, and the whole text is read


def _problems(closed, thinking, total):
    return [
        ProblemSamples(correct=[True, False], classes=[0, 1], n_tokens=t, think_closed=c, thinking_tokens=k)
        for c, k, t in zip(closed, thinking, total, strict=True)
    ]


def test_thinking_stats_are_sample_means_with_intervals():
    problems = _problems([[1, 0], [1, 1], [0, 0]], [[10, 0], [20, 30], [0, 0]], [[15, 5], [25, 40], [8, 8]])
    s = thinking_stats(problems, n_boot=200)
    assert s["think_frac"]["value"] == pytest.approx(3 / 6)
    assert s["thinking_tokens"]["value"] == pytest.approx(60 / 6)
    assert s["answer_tokens"]["value"] == pytest.approx((5 + 5 + 5 + 10 + 8 + 8) / 6)
    for m in s.values():
        assert m["lo"] <= m["value"] <= m["hi"]
    summary = summarize(problems, [1, 2], n_boot=50)
    assert summary["thinking"]["think_frac"]["value"] == pytest.approx(0.5)
    assert summary["tokens"]["acc_per_1k"] == pytest.approx(1000 * 0.5 / np.mean([15, 5, 25, 40, 8, 8]))
    lo, hi = summary["tokens"]["ci"]["mean"]
    assert lo <= summary["tokens"]["mean"] <= hi
    assert thinking_stats([ProblemSamples(correct=[True], classes=[0])]) is None


def test_eval_stores_the_thinking_counts_and_reports_think_percent(tmp_path):
    model = tiny_model_dir(tmp_path, "m")
    cfg = ModelEvalConfig(model=str(model), task="toy", limit=3, n=2, k=(1, 2), max_new_tokens=40, n_boot=20,
                          device="cpu")  # fmt: skip
    # Sample 0 thinks and answers right after its block; sample 1 answers wrong without thinking.
    script = ScriptedSampler(lambda prompt, i, params: "<think>81,172</think>0$" if i == 0 else "1$")
    results = run_eval(cfg, tmp_path / "out", sampler_factory=lambda m, t: script)
    thinking = results.variants[0].summary["thinking"]
    assert thinking["think_frac"]["value"] == pytest.approx(0.5)
    records = read_records(tmp_path / "out" / "samples.jsonl", graded=True)
    first = [r for r in records if r["sample_idx"] == 0]
    assert all(r["think_closed"] and r["thinking_tokens"] > 0 for r in first)
    assert all(r["answer"] == "0" for r in first)  # read after the block, not from the running sums
    assert all(not r["think_closed"] and r["thinking_tokens"] == 0 for r in records if r["sample_idx"] == 1)

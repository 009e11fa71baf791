"""The λ-sweep report (issue 16), built from synthetic results: stage boundaries from Think %, the sweet
spot and frontier, the figure's panels and the paper's table; absent when a run has no thinking stats."""

from __future__ import annotations

import json

import pytest

from wiseft.report import build
from wiseft.report.data import Results, Stat
from wiseft.report.thinking import figure_for, frontier, section, stages, sweet_spot
from wiseft.results import RunResults, VariantResult


@pytest.mark.parametrize(
    "lams, think, start, end",
    [
        ([0, 0.25, 0.5, 0.75, 1], [0, 0.05, 0.5, 0.95, 1], 0.5, 0.75),
        ([1, 0.5, 0], [1, 0.5, 0], 0.5, 1),  # any order
        ([0, 0.5, 1], [0, 0.1, 0.9], 1, None),  # "above": exactly 10 % / 90 % do not count
        ([0, 0.5, 1], [0, 0.2, 0.3], 0.5, None),
        ([0, 0.5, 1], [0.95, 1, 1], 0, 0),  # thinking from the start
        ([0, 0.5, 1], [0.5, 0.05, 0.95], 0, 1),  # the first λ, not the last crossing
    ],
)
def test_stage_boundaries_are_the_first_lambda_above_10_and_90_percent(lams, think, start, end):
    st = stages(lams, think)
    assert (st.start, st.end) == (start, end)


def test_sweet_spot_is_the_fewest_tokens_within_the_best_interval():
    pts = [(4.0, Stat(0.30, 0.25, 0.35)), (12.0, Stat(0.80, 0.76, 0.84)), (15.0, Stat(0.82, 0.78, 0.86)),
           (20.0, Stat(0.83, 0.79, 0.87))]  # fmt: skip
    assert sweet_spot(pts) == 1  # 0.80 ≥ 0.79, the best's lower end, at 12 tokens
    assert sweet_spot([(3.0, Stat(0.5)), (2.0, Stat(0.4))]) == 0  # no interval: the best value itself
    assert sweet_spot([]) is None
    assert frontier([(4, 0.3), (12, 0.8), (15, 0.7), (20, 0.83), (12, 0.5)]) == [0, 1, 3]


def _summary(p1, pk, maj, think, tokens, thinking_tokens):
    def stat(v, w=0.03):
        return {"value": v, "lo": max(v - w, 0), "hi": min(v + w, 1) if v <= 1 else v + w}

    return {
        "n_problems": 50, "n": 8, "metrics": {"pass@1": stat(p1), "pass@8": stat(pk), "maj@8": stat(maj)},
        "tokens": {"mean": tokens, "median": tokens, "ci": {"mean": [tokens - 1, tokens + 1]},
                   "length_ratio": {"reference": "delta=0.000,T=0.6", "value": tokens / 15, "lo": 0.9 * tokens / 15,
                                    "hi": 1.1 * tokens / 15}},
        "thinking": {"think_frac": stat(think, 0.02), "thinking_tokens": stat(thinking_tokens, 1),
                     "answer_tokens": stat(tokens - thinking_tokens, 1)},
    }  # fmt: skip


ROWS = [  # λ, Pass@1, Pass@8, maj@8, Think %, tokens, thinking tokens: the paper's three stages in miniature
    (0.0, 0.30, 0.60, 0.35, 0.00, 4.0, 0.0),
    (0.2, 0.32, 0.66, 0.36, 0.00, 6.0, 0.0),
    (0.4, 0.45, 0.80, 0.50, 0.30, 9.0, 3.0),
    (0.6, 0.80, 0.92, 0.84, 0.96, 13.0, 9.0),
    (0.8, 0.84, 0.93, 0.86, 1.00, 14.0, 10.0),
    (1.0, 0.85, 0.93, 0.86, 1.00, 15.0, 11.0),
]


def synthetic(thinking: bool = True) -> RunResults:
    variants = []
    for lam, *row in ROWS:
        summary = _summary(*row)
        if not thinking:
            del summary["thinking"]
        variants.append(VariantResult(f"delta={1 - lam:.3f},T=0.6", "mix", 1 - lam, 0.6, None, summary))
    variants.append(
        VariantResult(
            "layers=12:36,delta=0.200,T=0.6",
            "mix",
            0.2,
            0.6,
            None,
            _summary(0.7, 0.9, 0.75, 1.0, 12, 8),
            ablation={"layers": [12, 36], "modules": None},
        )  # fmt: skip
    )
    if not thinking:
        del variants[-1].summary["thinking"]
    return RunResults(config={"k": [1, 8]}, versions={}, variants=variants, task={"name": "toy"},
                      warnings=["variant x: 3 of 8 samples open a thinking block"])  # fmt: skip


def test_the_figure_has_the_four_panels_and_marks_the_stages():
    fig = figure_for(Results(synthetic()))
    acc, think, tok, front = fig.axes
    assert [ln.get_label() for ln in acc.get_lines() if not ln.get_label().startswith("_")] == [
        "Pass@1 (Mean@k)", "Pass@8", "maj@8 (Vote@8)"
    ]  # fmt: skip
    boundaries = sorted({ln.get_xdata()[0] for ln in think.get_lines() if ln.get_linestyle() == "--"})
    assert boundaries == [pytest.approx(0.4), pytest.approx(0.6)]
    assert "first λ above 10 %: λ = 0.4" in fig._suptitle.get_text()
    labels = [ln.get_label() for ln in front.get_lines()]
    assert "sweet spot λ = 0.8" in labels and "frontier" in labels
    assert {ln.get_label() for ln in tok.get_lines()} >= {"all tokens (Token #N)", "thinking", "answer"}


def test_the_table_has_the_papers_columns_and_every_thinking_variant():
    notes, header, rows = section(Results(synthetic()))
    assert header[:6] == [
        "variant",
        "λ",
        "ablation",
        "Mean@k = Pass@1 (%)",
        "Pass@8 (%)",
        "Vote@8 = maj@8 (%)",
    ]
    assert header[-2:] == ["Think #R (%)", "length ×ref"]
    assert len(rows) == 7 and rows[3][1] == "0.6" and rows[3][-2] == "96.0 [94.0, 98.0]"
    assert rows[-1][2] == "layers 12:36"
    assert any(n.startswith("Stage boundaries from think %") for n in notes)
    assert any("Sweet spot: λ = 0.8" in n for n in notes)
    assert notes[-1] == "Warning: variant x: 3 of 8 samples open a thinking block"


def test_the_report_shows_the_section_only_for_thinking_runs(tmp_path):
    out = build(synthetic(), tmp_path / "r")
    md = (out / "report.md").read_text()
    assert (out / "thinking_lambda.png").is_file() and "## Instruct ↔ Thinking" in md
    assert "Vote@8 = maj@8" in md and "Instruct ↔ Thinking" in (out / "report.html").read_text()
    plain = build(synthetic(thinking=False), tmp_path / "p")
    assert (
        not (plain / "thinking_lambda.png").exists()
        and "Instruct ↔ Thinking" not in (plain / "report.md").read_text()
    )


def test_a_run_whose_samples_never_think_gets_no_thinking_section(tmp_path):
    """Every graded run records Think % and thinking tokens (0 where no sample opens a block): a plain
    WiSE-FT sweep, like the toy demo's, must not be drawn as an Instruct → Thinking λ sweep."""

    def never_thinking():
        res = synthetic()
        for v in res.variants:
            v.summary["thinking"] = {k: {"value": 0.0, "lo": 0.0, "hi": 0.0} for k in v.summary["thinking"]}
        return res

    out = build(never_thinking(), tmp_path / "r")
    assert not (out / "thinking_lambda.png").exists() and "Thinking" not in (out / "report.md").read_text()
    for key in ("think_frac", "thinking_tokens"):  # a closed block, or thinking tokens of a block cut short
        res = never_thinking()
        res.variants[-2].summary["thinking"][key] = {"value": 0.25, "lo": 0.1, "hi": 0.4}
        assert (build(res, tmp_path / key) / "thinking_lambda.png").is_file()


def test_wiseft_report_names_what_the_thinking_figure_shows(tmp_path, cli):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(synthetic().to_json()))
    code, err = cli(["report", path, "-o", tmp_path / "r"])
    assert code == 0, err
    row = next(line for line in cli.out.splitlines() if "thinking_lambda.png" in line and "KiB" in line)
    assert "Instruct → Thinking: the λ sweep" in row

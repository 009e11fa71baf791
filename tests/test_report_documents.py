"""report.md and report.html as documents: untrusted names stay text, the variants table never scrolls
sideways, a store-built report says what made the store, the "best δ" is qualified when it should be, and
captions say what this run shows (no temperature talk when none were swept)."""

from __future__ import annotations

import re

import pytest
from support.report import (
    make_all_zero_results,
    make_demo_like_results,
    make_imported_store,
    make_results,
    make_store,
    make_summary,
    parsed_html,
    variant,
)

from wiseft import report
from wiseft.report.captions import caption
from wiseft.report.data import Results
from wiseft.report.render import html_doc, markdown, md_code, md_text, tables

DPI = 30


def outside_code(md: str) -> str:
    """The Markdown without its fenced blocks and inline code spans (where `<` is literal text anyway)."""
    md = re.sub(r"^(`{3,})[^\n]*\n.*?^\1$", "", md, flags=re.S | re.M)
    return re.sub(r"(?<!`)(`+)(?!`)(.*?)(?<!`)\1(?!`)", "", md)  # a run of N backticks closes a run of N


# --- untrusted text stays text (issue 11) -------------------------------------------------------------------
EVIL = '<script>alert("x")</script> [click](javascript:alert(1)) | *bold* `tick`'


def evil_results() -> dict:
    res = {"variants": [variant(EVIL, "mix", make_summary(0.5, 1.0, seed=1), 0.5),
                        variant("delta=0.000,T=1", "mix", make_summary(0.4, 1.0, seed=2), 0.0)],
           "best": {"metric": "pass@1", "variant": EVIL, "how": f"because {EVIL}"},
           "task": {"name": EVIL}, "config": {"note": EVIL, "fence": "```"},
           "claims": [{"key": "a", "statement": EVIL, "held": True, "evidence": EVIL}]}  # fmt: skip
    return res


def test_markdown_escapes_names_sentences_and_source(tmp_path):
    out = report.build(evil_results(), tmp_path / "r", dpi=DPI, source=f"run/{EVIL}")
    md = (out / "report.md").read_text(encoding="utf-8")
    prose = outside_code(md)
    assert "<script" not in prose and "</script" not in prose
    assert "](javascript" not in prose  # no link or image can form (in code it is literal text)
    assert "&lt;script>" in md
    cells, rows = None, 0
    for ln in md.splitlines():  # every row has its table's number of cells: a "|" in a name adds none
        if ln.startswith("|---"):
            cells = ln.count("|")
        elif ln.startswith("| ") and "script" in ln:
            assert len(re.findall(r"(?<!\\)\|", ln)) == cells
            rows += 1
    assert rows == 3
    # The config block's fence is longer than the backticks inside it.
    fence = re.search(r"^(`{3,})yaml$", md, re.M).group(1)
    assert len(fence) >= 4 and md.count(fence) == 2
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize(
    "text, want",
    [
        ("delta=0.250,T=1", "delta=0.250,T=1"),  # ordinary names are untouched
        ("56.7 [44.8, 70.9]", "56.7 [44.8, 70.9]"),  # intervals keep their brackets
        ("<b>x</b>", "&lt;b>x&lt;/b>"),
        ("k >= 8 & &lt;", "k >= 8 &amp; &amp;lt;"),
        ("a|b", "a\\|b"),
        ("my_model*v2", "my\\_model\\*v2"),
        ("[x](y)", "[x]\\(y)"),
        ("two\nlines", "two lines"),
    ],
)
def test_md_text_table(text, want):
    assert md_text(text) == want


@pytest.mark.parametrize(
    "text, want", [("a", "`a`"), ("a`b", "``a`b``"), ("`a", "`` `a ``"), ("a|b", "`a\\|b`")]
)
def test_md_code_table(text, want):
    assert md_code(text) == want


# --- the variants table ----------------------------------------------------------------------------------------
def test_tables_headline_first_the_rest_folded():
    res = Results(make_results(trajectory=False, temperatures=False))
    first, more, extra = tables(res, res.metric_names(vote_ks=[16]))
    assert first.header == [
        "variant",
        "kind",
        "δ",
        "T",
        "Pass@1 (%)",
        "Pass@16 (%)",
        "maj@16 (%)",
        "best@16 (%)",
    ]
    assert more.header == ["variant", "Pass@2 (%)", "Pass@4 (%)", "Pass@8 (%)"]
    assert extra.header[0] == "variant" and "bias²" in extra.header
    assert all(len(t.rows) == len(res.variants) for t in (first, more, extra))
    html = html_doc(res, [], res.metric_names(vote_ks=[16]))
    p = parsed_html(html)
    assert [t for t, _ in p.tags].count("details") == 2 and [t for t, _ in p.tags].count("table") == 4
    assert html.index("<details>") > html.index("best@16 (%)")  # the headline table comes first, open


def test_columns_that_say_nothing_are_left_out():
    """step of a sweep (always –), problems and n when every variant has the same (the meta line says them)."""
    res = Results(make_results(trajectory=False, temperatures=False))
    assert "step" not in tables(res, ["pass@1"])[0].header and "n" not in tables(res, ["pass@1"])[0].header
    data = make_results(trajectory=False, temperatures=False)
    data["variants"][0]["summary"]["n"] = 8
    assert "n" in tables(Results(data), ["pass@1"])[0].header


# --- reports built from a sample store -------------------------------------------------------------------------
def test_store_report_shows_the_run_config_and_the_command(tmp_path):
    make_store(tmp_path / "s.db")
    out = report.build(report.load_results(tmp_path / "s.db"), tmp_path / "r", dpi=DPI, source="s.db")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "no config" not in md
    assert "Made by wiseft sweep (wiseft " in md
    assert "1 variant(s) imported with wiseft store import" in md  # the store's imported variant
    assert "delta: [0.0, 0.5, 1.0]" in md  # the run's resolved config


def test_imported_store_says_where_its_variants_came_from(tmp_path):
    jsonl = make_imported_store(tmp_path / "imp.db")
    res = report.load_results(tmp_path / "imp.db")
    assert [(v.name, v.kind) for v in res.variants] == [
        ("vllm-qwen-7b", "imported"),
        ("vllm-qwen-7b-sft", "imported"),
    ]
    assert res.config["command"] == "store import"
    assert {i["from"] for i in res.config["imported"]} == {str(jsonl.resolve())}
    out = report.build(res, tmp_path / "r", dpi=DPI, source="imp.db")
    text = "".join(parsed_html((out / "report.html").read_text(encoding="utf-8")).text)
    assert "2 variant(s) imported with wiseft store import from " + str(jsonl.resolve()) in text
    assert "no config" not in text and "base" not in re.findall(r"<td>(\w+)</td>", text)
    pass_at_k = report.figures(res)["pass_at_k"].axes[0]
    assert pass_at_k.get_title() == "imported variants"


# --- the best δ, qualified ----------------------------------------------------------------------------------
def test_a_tie_marks_nothing_as_chosen(tmp_path):
    res = make_all_zero_results()
    figs = report.figures(res)
    for name in ("metrics_vs_delta", "frontier"):
        labels = [ln.get_label() for ax in figs[name].axes for ln in ax.get_lines()]
        assert not any(lb.startswith("chosen") for lb in labels), name
    out = report.build(res, tmp_path / "r", dpi=DPI)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'class="chosen"' not in html
    assert "All 5 variants tie on Pass@1 (0.0 % on all problems)" in html
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "- Note: All 5 variants tie" in md and "No ★: the variants tie" in md


def test_best_delta_of_one_is_the_early_checkpoint(tmp_path):
    res = {"variants": [variant(f"delta={d:.3f},T=1", "mix", make_summary(0.3 + 0.3 * d, 1.0, seed=i), d)
                        for i, d in enumerate((0.0, 0.5, 1.0))],
           "best": {"metric": "pass@1", "variant": "delta=1.000,T=1", "how": "highest"}}  # fmt: skip
    res["variants"][2]["summary"]["metrics"]["pass@1"].update(value=0.9, lo=0.85, hi=0.95)
    ax = report.figures(res)["metrics_vs_delta"].axes[0]
    assert "chosen: δ=1 (the early checkpoint)" in [ln.get_label() for ln in ax.get_lines()]
    md = (report.build(res, tmp_path / "r", dpi=DPI) / "report.md").read_text(encoding="utf-8")
    assert "Chosen: delta=1.000,T=1 (the early checkpoint itself, δ=1, T=1)" in md
    assert "The best δ is 1: the early checkpoint itself, not a mix." in md


def test_overlap_with_an_endpoint_is_said_in_the_report():
    view = Results(make_demo_like_results())
    text = "".join(parsed_html(html_doc(view, [], view.metric_names())).text)
    assert "Note: The 95% interval of the best δ=0.5 on Pass@1" in text and "overlaps" in text
    assert "Note:" in markdown(view, [], view.metric_names())


# --- captions say what this run shows ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, has, lacks",
    [
        (
            dict(trajectory=False, temperatures=False),
            "No temperatures of the final model were swept",
            "a mix that",
        ),
        (dict(trajectory=False), "against the final model at other temperatures", "No temperatures"),
    ],
)
def test_frontier_caption_mentions_temperatures_only_when_swept(kwargs, has, lacks):
    res = Results(make_results(**kwargs))
    text = caption("frontier", res, "default", [16], [1, 2, 4, 8, 16])
    assert has in text and lacks not in text


def test_bias_variance_caption_says_why_a_zero_looks_as_it_does():
    data = make_results(trajectory=False, temperatures=False)
    res = Results(data)
    assert "drawn at 0" not in caption("bias_variance", res, "", [16], [16])
    data["variants"][0]["summary"]["bias_variance"]["one_minus_pass_plugin"]["16"] = 0.0
    assert "A value of 0 (every problem solved) is drawn at 0" in caption(
        "bias_variance", Results(data), "", [16], [16]
    )

"""The report: every plot from results dicts (figure objects checked, not only files), the
self-contained HTML, plots left out when there is no data, bad input, the CLI."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from support.report import (
    DELTAS,
    STEPS,
    TEMPS,
    HtmlCollect,
    drop,
    make_demo_like_results,
    make_results,
    make_store,
    make_summary,
)

from wiseft import report
from wiseft.cli import main
from wiseft.errors import ConfigError, OutputError, StoreError

ALL_PLOTS = {
    "pass_at_k",
    "metrics_vs_delta",
    "trajectory",
    "frontier",
    "rho_hist",
    "bias_variance",
    "distinct_answers",
    "tokens_vs_accuracy",
}
DPI = 40  # small images keep the tests fast; the plots are the same


def series(ax) -> list[str]:
    """Labels of the data lines of an axis (helper artists are unlabelled, '_…')."""
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


def bands(ax) -> int:
    return sum(isinstance(c, PolyCollection) for c in ax.collections)


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


@pytest.fixture(scope="module")
def full():
    return make_results()


@pytest.fixture(scope="module")
def figs(full):
    return report.figures(full)


@pytest.fixture(scope="module")
def built(full, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "report"
    return report.build(full, out, dpi=DPI)


# --- each plot holds the expected series ---------------------------------------------------------------------
def test_all_eight_plots_present_for_a_full_run(figs):
    assert list(figs) == [name for name, *_ in report.PLOTS]
    assert set(figs) == ALL_PLOTS


def test_pass_at_k_one_curve_per_variant_per_panel_with_bands(figs):
    axs = visible_axes(figs["pass_at_k"])
    assert [ax.get_title() for ax in axs] == [
        "SFT checkpoints (raw)",
        "WiSE-FT mixes over training",
        "WiSE-FT mixes over δ",
        "final model at temperature T",
    ]
    counts = [len(series(ax)) for ax in axs]
    assert counts == [len(STEPS), len(STEPS), len(DELTAS), len(TEMPS)]
    # Five or more lines: thin, and a band only for the chosen variant and the panel's ends; fewer: all.
    assert [bands(ax) for ax in axs] == [2, 2, 3, len(TEMPS)]
    widths = [ln.get_linewidth() for ln in axs[2].get_lines()]
    assert sorted(widths) == [0.9, 0.9, 1.6, 1.6, 1.6]
    assert axs[0].get_xscale() == "log"
    assert [round(x) for x in axs[0].get_lines()[0].get_xdata()] == [1, 2, 4, 8, 16]
    assert series(axs[3]) == [f"T={t:g}" for t in TEMPS]
    assert axs[0].get_ylabel() == "Pass@k (%)"


def test_metrics_vs_delta_panels_endpoints_and_choice(figs):
    axs = visible_axes(figs["metrics_vs_delta"])
    assert [ax.get_title() for ax in axs] == ["Pass@1", "Pass@16", "maj@16", "best@16"]
    for ax in axs:
        assert series(ax) == [
            "mixes over δ",
            "δ=0: final checkpoint",
            "δ=1: early checkpoint",
            "chosen: δ=0.5",
        ]
        assert bands(ax) == 1
        curve = ax.get_lines()[0]
        assert list(curve.get_xdata()) == list(DELTAS)
        assert ax.get_ylabel().endswith("(%)")


def test_metric_values_are_drawn_in_percent(full, figs):
    ax = visible_axes(figs["metrics_vs_delta"])[0]
    want = [
        100 * v["summary"]["metrics"]["pass@1"]["value"]
        for v in full["variants"]
        if v["kind"] == "mix" and v["step"] is None
    ]
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx(want)


def test_trajectory_raw_and_mixed(figs):
    axs = visible_axes(figs["trajectory"])
    assert [ax.get_title() for ax in axs] == ["Pass@1", "Pass@16"]
    for ax in axs:
        assert series(ax) == ["SFT checkpoints (raw)", "mixed δ=0.5"]
        assert bands(ax) == 2
        assert list(ax.get_lines()[0].get_xdata()) == list(STEPS)


def test_frontier_mixes_and_temperatures(figs):
    (ax,) = visible_axes(figs["frontier"])
    assert series(ax) == ["mixes over δ", "final model at temperature T", "chosen: δ=0.5"]
    assert ax.get_xlabel() == "Pass@16 (%)" and ax.get_ylabel() == "Pass@1 (%)"
    assert len(ax.get_lines()[0].get_xdata()) == len(DELTAS)
    assert len(ax.get_lines()[1].get_xdata()) == len(TEMPS)


def test_rho_histograms_one_panel_per_variant(full, figs):
    axs = visible_axes(figs["rho_hist"])
    assert len(axs) == len(full["variants"])
    for ax in axs:
        assert len(ax.patches) == 10  # ten bins of ρ
        assert sum(p.get_height() for p in ax.patches) == pytest.approx(100.0)


def test_bias_variance_with_jensen_bound(figs, full):
    left, right = visible_axes(figs["bias_variance"])
    expected = ["SFT checkpoints (raw)", "mixed δ=0.5", "mixes over δ", "final model at temperature T"]
    assert series(left) == expected
    assert series(right) == expected + ["bound = empirical"]
    dotted = [ln for ln in left.get_lines() if ln.get_label().startswith("_") and ln.get_linestyle() == ":"]
    assert dotted  # iso-bound lines
    assert right.get_xscale() == "log" and "16" in right.get_title()
    # What the bound bounds is drawn: the plug-in E[(1 − ρ)^k], on or above the diagonal for every variant.
    points = [(x, y) for line in right.get_lines()[:-1] for x, y in zip(*line.get_data(), strict=True)]
    assert len(points) == len(full["variants"]) and "E[(1 − ρ)" in right.get_ylabel()
    assert all(y >= x for x, y in points)


@pytest.mark.parametrize(
    "vals, want",
    [
        ([0.2, 0.3, 0.5], (0.0, 0.55, "linear")),  # within a factor 20: linear from 0
        ([1e-6, 0.01, 0.3], (5e-7, 0.6, "log")),  # decades apart: log
        ([0.0, 1e-6, 0.3], (0.0, 0.6, "symlog")),  # decades apart and a 0 (every problem solved): symlog
        ([0.0, 0.0], (0.0, 1.0, "linear")),  # only zeros: still a panel, with the points at 0
        ([1.0, 1.0], (0.0, 1.0, "linear")),  # a task nobody solves: everything at 1
    ],
)
def test_bound_panel_scale_keeps_every_point(vals, want):
    from wiseft.report.scatter import bound_scale

    assert bound_scale(vals) == pytest.approx(want)


def test_bound_panel_draws_a_zero_on_symlog_axes():
    """1 − Pass@k = 0 for a variant that solved every problem: drawn at 0, not dropped (the panel was
    empty when every point had a 0)."""
    res = make_results(trajectory=False, temperatures=False)
    for i, v in enumerate(res["variants"]):
        bv = v["summary"]["bias_variance"]
        bv["one_minus_pass_plugin"] = {kk: (0.0 if i < 2 else 0.3) for kk in bv["bound"]}
        bv["bound"] = {kk: (0.0 if i < 2 else 10.0 ** -(i + 2)) for kk in bv["bound"]}
    right = visible_axes(report.figures(res)["bias_variance"])[1]
    assert right.get_xscale() == "symlog"
    points = [(x, y) for line in right.get_lines()[:-1] for x, y in zip(*line.get_data(), strict=True)]
    assert len(points) == len(res["variants"]) and points.count((0.0, 0.0)) == 2


def test_distinct_answers_against_step_delta_temperature(figs):
    axs = visible_axes(figs["distinct_answers"])
    assert [ax.get_xlabel().split(" ")[0] for ax in axs] == ["training", "δ", "sampling"]
    assert [len(series(ax)) for ax in axs] == [2, 1, 1]
    assert "of n=16" in axs[0].get_ylabel()


def test_tokens_against_accuracy(figs):
    (ax,) = visible_axes(figs["tokens_vs_accuracy"])
    assert series(ax) == [
        "SFT checkpoints (raw)",
        "mixed δ=0.5",
        "mixes over δ",
        "final model at temperature T",
    ]
    assert ax.get_xlabel() == "mean completion length (tokens)"


def test_chosen_ks_pick_the_panels():
    figs = report.figures(make_results(), ks=[1, 4])
    titles = [ax.get_title() for ax in visible_axes(figs["metrics_vs_delta"])]
    assert titles == ["Pass@1", "Pass@4", "maj@4", "best@4"]
    line = visible_axes(figs["pass_at_k"])[0].get_lines()[0]
    assert [round(x) for x in line.get_xdata()] == [1, 4]


# --- how the variants of real runs are put on curves ----------------------------------------------------------
def test_demo_shape_endpoints_and_temperatures_come_from_the_checkpoints():
    """The demo samples δ strictly inside (0, 1); the raw final (δ=0) and early (δ=1, `roles.early`)
    checkpoints are those ends, and the final checkpoint at T=1 joins its temperatures."""
    from wiseft.report.data import Results

    res = Results(make_demo_like_results())
    (curve,) = res.delta_curves()
    assert curve.xs() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [v.name for v in curve.variants][0] == "step=300,T=1"
    assert [v.name for v in curve.variants][-1] == "step=75,T=1"
    temp = res.temperature_curve()
    assert temp.xs() == [0.7, 1.0, 1.3, 1.6]
    assert temp.variants[1].name == "step=300,T=1"
    assert [v.name for v in res.loose()] == ["base,T=1"]
    figs = report.figures(make_demo_like_results())
    ax = visible_axes(figs["metrics_vs_delta"])[0]
    assert series(ax) == ["mixes over δ", "δ=0: final checkpoint", "δ=1: early checkpoint", "chosen: δ=0.5"]
    (fr,) = visible_axes(figs["frontier"])
    assert [len(ln.get_xdata()) for ln in fr.get_lines()[:2]] == [5, 4]
    assert [ax.get_title() for ax in visible_axes(figs["pass_at_k"])][-1] == "other variants"
    traj = visible_axes(figs["trajectory"])[1]
    assert traj.get_legend_handles_labels()[1] == ["SFT checkpoints (raw)", "chosen mix δ=0.5"]


def test_claims_split_scores_and_task_are_in_the_documents():
    res = make_demo_like_results()
    res["best"]["validation"] = {"value": 0.8, "lo": 0.7, "hi": 0.9}
    res["best"]["test"] = {"value": 0.75, "lo": 0.6, "hi": 0.85}
    from wiseft.report.data import Results
    from wiseft.report.render import html_doc, markdown

    view = Results(res)  # the documents without the plots: rendering them is tested elsewhere
    parser = HtmlCollect()
    parser.feed(html_doc(view, [], view.metric_names()))
    text = "".join(parser.text)
    assert "HELD: Pass@1 rose while Pass@k fell over SFT — pass@1 +0.10 [+0.05, +0.15]" in text
    assert "DID NOT HOLD: the best mix recovered Pass@k" in text
    assert "Pass@1 on the validation split: 80.0 [70.0, 90.0] %" in text
    assert "Pass@1 on the test split: 75.0 [60.0, 85.0] %" in text
    assert "task toy · 40 problems · n = 16 samples per problem · 11 variants" in text
    md = markdown(view, [], view.metric_names())
    assert "- DID NOT HOLD: the best mix recovered Pass@k" in md


def test_sweep_over_delta_and_temperature():
    """A sweep of δ × T with no step: one δ curve per temperature, and the δ=0 mixes are the final model
    at each temperature."""
    from wiseft.report.data import Results

    res = make_results(trajectory=False, sweep=False, temperatures=False)
    for t in (0.7, 1.0, 1.3):
        for d in (0.0, 0.5, 1.0):
            res["variants"].append({"name": f"delta={d:.3f},T={t:g}", "kind": "mix", "delta": d, "temperature": t,
                                    "step": None, "summary": make_summary(0.5, 1.0, seed=int(10 * t + d))})  # fmt: skip
    view = Results(res)
    assert [c.label for c in view.delta_curves()] == [f"mixes over δ (T={t:g})" for t in (0.7, 1.0, 1.3)]
    temp = view.temperature_curve()
    assert temp.xs() == [0.7, 1.0, 1.3] and all(v.delta == 0.0 for v in temp.variants)
    figs = report.figures(res)
    assert len(series(visible_axes(figs["frontier"])[0])) == 4  # three δ curves and the temperatures


def test_trajectory_at_two_temperatures_gives_one_raw_curve_each():
    from wiseft.report.data import Results

    res = make_results(sweep=False, temperatures=False)
    extra = [
        dict(v, name=v["name"] + ",T=0.7", temperature=0.7)
        for v in res["variants"]
        if v["kind"] == "checkpoint"
    ]
    res["variants"] += extra
    raws = Results(res).raw_trajectories()
    assert [c.label for c in raws] == ["SFT checkpoints (raw), T=0.7", "SFT checkpoints (raw), T=1"]
    assert all(c.xs() == list(STEPS) for c in raws)


def test_point_labels_do_not_stack_and_shared_points_get_one_label():
    from matplotlib.figure import Figure

    from wiseft.report.labels import PointLabels

    ax = Figure(figsize=(4, 3)).subplots()
    ax.plot([0, 1], [0, 1])
    labels = PointLabels()
    labels.add("a", 0.5, 0.5, "δ=0", "k")
    labels.add("a", 0.5, 0.5, "T=1", "k")  # the same variant on a second curve
    labels.add("b", 0.5, 0.5, "δ=0.25", "k")  # another variant at the same spot: one label for both
    labels.add("c", 0.51, 0.5, "δ=0.5", "k")  # close by: its own label, not on top of the first
    labels.add("d", 0.5, 0.51, "δ=0.75", "k")
    labels.place(ax)
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["δ=0 · T=1 · δ=0.25", "δ=0.5", "δ=0.75"]
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert all(ax.bbox.x0 <= b.x0 and b.x1 <= ax.bbox.x1 for b in boxes)  # inside the axes


def test_point_labels_stay_inside_the_axes_at_the_edges():
    from matplotlib.figure import Figure

    from wiseft.report.labels import PointLabels

    ax = Figure(figsize=(4, 3)).subplots()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    labels = PointLabels()
    for key, x, y in (("tr", 1, 1), ("br", 1, 0), ("tl", 0, 1), ("bl", 0, 0)):
        labels.add(key, x, y, f"a long label at {key}", "k")
    labels.place(ax)
    renderer = ax.figure.canvas.get_renderer()
    for t in ax.texts:
        b = t.get_window_extent(renderer)
        assert ax.bbox.x0 <= b.x0 and b.x1 <= ax.bbox.x1 and ax.bbox.y0 <= b.y0 and b.y1 <= ax.bbox.y1, (
            t.get_text()
        )


def test_percent_axes_stay_within_0_and_100(tmp_path):
    res = make_results(trajectory=False, temperatures=False)
    for v in res["variants"]:  # a task nobody solves: every metric 0
        for m in v["summary"]["metrics"].values():
            m.update(value=0.0, lo=0.0, hi=0.0)
    figs = report.figures(res)
    for ax in visible_axes(figs["metrics_vs_delta"]) + visible_axes(figs["pass_at_k"]):
        lo, hi = ax.get_ylim()
        assert lo == 0.0 and hi == 5.0  # no negative percent; 5 points tall
        assert not any(ln.get_clip_on() for ln in ax.get_lines())  # points at 0 % are drawn whole
    (frontier,) = visible_axes(figs["frontier"])
    assert frontier.get_xlim() == (0.0, 5.0) and frontier.get_ylim() == (0.0, 5.0)


# --- plots without data are left out ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, absent",
    [
        (dict(trajectory=False), {"trajectory"}),
        (dict(sweep=False, temperatures=False), {"metrics_vs_delta", "frontier"}),
        (dict(trajectory=False, sweep=False), {"trajectory", "metrics_vs_delta"}),
        (dict(tokens=False), {"tokens_vs_accuracy"}),
        (dict(ks=(1,)), {"pass_at_k", "frontier"}),
    ],
)
def test_plots_without_data_are_absent(kwargs, absent):
    figs = report.figures(make_results(**kwargs))
    assert set(figs) == ALL_PLOTS - absent


def test_sections_missing_from_summaries_drop_their_plots():
    res = drop(drop(drop(make_results(), "bias_variance"), "diversity"), "tokens")
    figs = report.figures(res)
    assert set(figs) == ALL_PLOTS - {"bias_variance", "rho_hist", "distinct_answers", "tokens_vs_accuracy"}


def test_no_scores_no_best_panel():
    figs = report.figures(make_results(scores=False))
    titles = [ax.get_title() for ax in visible_axes(figs["metrics_vs_delta"])]
    assert titles == ["Pass@1", "Pass@16", "maj@16"]


def test_a_lone_variant_gets_only_what_it_can_show(tmp_path):
    one = make_results(trajectory=False, sweep=False, temperatures=True)
    one["variants"] = one["variants"][:1]
    figs = report.figures(one)
    assert set(figs) == {"pass_at_k", "rho_hist", "bias_variance"}
    (ax,) = visible_axes(figs["pass_at_k"])
    assert ax.get_title() == "other variants" and len(series(ax)) == 1
    out = report.build(one, tmp_path / "r", dpi=DPI)
    assert sorted(p.name for p in out.glob("*.png")) == ["bias_variance.png", "pass_at_k.png", "rho_hist.png"]


def test_summaries_from_metrics_summarize_draw_the_same_plots():
    figs = report.figures(make_results(real_summaries=True))
    assert set(figs) == ALL_PLOTS
    axs = visible_axes(figs["pass_at_k"])
    assert [len(series(ax)) for ax in axs] == [len(STEPS), len(STEPS), len(DELTAS), len(TEMPS)]
    titles = [ax.get_title() for ax in visible_axes(figs["metrics_vs_delta"])]
    assert titles == ["Pass@1", "Pass@16", "maj@16", "best@16", "wmaj@16"]  # real summaries with scores


def test_empty_results_give_a_report_without_plots(tmp_path):
    out = report.build({"variants": []}, tmp_path / "r", dpi=DPI)
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md", "results.json"]
    assert "No plot has data" in (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("seed", range(6))
def test_any_subset_of_variants_and_sections_draws_without_error(seed):
    """Random subsets of the variants, with sections, metrics and fields knocked out: every plot either
    draws something or is left out (None) — never a crash, never an empty figure."""
    rng = np.random.default_rng(seed)
    res = make_results(real_summaries=bool(seed % 2))
    keep = rng.random(len(res["variants"])) < 0.4
    res["variants"] = [v for v, k in zip(res["variants"], keep, strict=True) if k]
    for v in res["variants"]:
        s = v["summary"]
        for section in ("bias_variance", "diversity", "tokens"):
            if rng.random() < 0.2:
                s.pop(section, None)
        for name in list(s["metrics"]):
            if rng.random() < 0.15:
                del s["metrics"][name]
        if "tokens" in s and rng.random() < 0.3:
            s["tokens"] = {"mean": None, "median": None, "truncated_frac": None}
        for key in ("step", "delta", "temperature"):
            if rng.random() < 0.1:
                v[key] = None
    for name, fig in report.figures(res).items():
        drawn = [ax for ax in visible_axes(fig) if series(ax) or ax.patches]
        assert drawn, name


# --- the written report -------------------------------------------------------------------------------------


def test_build_writes_report_files_and_every_png(built):
    names = sorted(p.name for p in built.iterdir())
    assert names == sorted([f"{p}.png" for p in ALL_PLOTS] + ["report.md", "report.html", "results.json"])
    for png in built.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in built.parent.iterdir()] == ["report"]  # no temporary left beside it


def test_html_is_self_contained_and_embeds_every_plot(built):
    text = (built / "report.html").read_text(encoding="utf-8")
    parser = HtmlCollect()
    parser.feed(text)
    parser.close()
    tags = [t for t, _ in parser.tags]
    assert "link" not in tags and "script" not in tags and "iframe" not in tags
    for _tag, attrs in parser.tags:
        for key in ("src", "href", "srcset", "data"):
            value = attrs.get(key)
            assert value is None or value.startswith("data:"), (key, value[:60])
    assert not re.search(r"url\(|@import|https?://", text.split("<body>")[0])  # CSS fetches nothing
    imgs = [attrs["src"] for tag, attrs in parser.tags if tag == "img"]
    assert len(imgs) == len(ALL_PLOTS)
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in imgs}
    assert embedded == {p.read_bytes() for p in built.glob("*.png")}


def test_html_holds_table_best_versions_and_config(built, full):
    parser = HtmlCollect()
    parser.feed((built / "report.html").read_text(encoding="utf-8"))
    text = "".join(parser.text)
    for v in full["variants"]:
        assert v["name"] in text
    rows = [t for t, _ in parser.tags if t == "tr"]
    assert len(rows) >= len(full["variants"]) + 1
    assert "Chosen: delta=0.500,T=1.0" in text
    assert "highest Pass@1 on the validation split" in text
    assert "math-verify==0.9.0" in text and "torch" in text
    assert "run/checkpoint-800" in text  # the resolved config
    chosen = [a for t, a in parser.tags if t == "tr" and a.get("class") == "chosen"]
    assert len(chosen) == 3  # its row in each of the three tables
    # The interval of every metric is in the table: value [lo, hi] in percent.
    p1 = full["variants"][0]["summary"]["metrics"]["pass@1"]
    assert f"{100 * p1['value']:.1f} [{100 * p1['lo']:.1f}, {100 * p1['hi']:.1f}]" in text


def test_markdown_links_every_png_and_has_the_table(built, full):
    md = (built / "report.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([a-z_]+\.png)\)", md))
    assert linked == {p.name for p in built.glob("*.png")}
    table_rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    # Three tables (headline; the other k; diversity, bias–variance and length), a row per variant each.
    assert len(table_rows) == 3 * (len(full["variants"]) + 1)
    assert not re.search(r"maj@1\b", md)  # identical to Pass@1 by definition, not repeated
    headers = [
        [c.strip() for c in row.strip("| ").split(" | ")] for row in table_rows[:: len(full["variants"]) + 1]
    ]
    assert headers[0] == ["variant", "kind", "step", "δ", "T", "Pass@1 (%)", "Pass@16 (%)", "maj@16 (%)",
                          "best@16 (%)"]  # fmt: skip
    assert headers[1] == ["variant", "Pass@2 (%)", "Pass@4 (%)", "Pass@8 (%)"]
    assert headers[2] == ["variant", "distinct answers", "bias²", "Var ρ", "mean tokens", "truncated (%)"]


def test_chosen_ks_pick_the_table_columns():
    from wiseft.report.data import Results

    view = Results(make_results(trajectory=False))
    assert view.metric_names([1, 4]) == ["pass@1", "pass@4", "maj@4", "best@4"]
    assert view.metric_names(vote_ks=[8]) == [
        "pass@1",
        "pass@2",
        "pass@4",
        "pass@8",
        "maj@8",
        "best@8",
        "pass@16",
    ]


def lone() -> dict:
    """One variant: the cheapest results that still give plots (for tests of the writing itself)."""
    res = make_results(trajectory=False, sweep=False, temperatures=True)
    res["variants"] = res["variants"][:1]
    return res


def test_same_results_give_the_same_bytes(tmp_path):
    res = lone()
    one = report.build(res, tmp_path / "one", dpi=DPI)
    two = report.build(res, tmp_path / "two", dpi=DPI)
    for name in ("report.html", "report.md", "pass_at_k.png", "rho_hist.png", "bias_variance.png"):
        assert (one / name).read_bytes() == (two / name).read_bytes()


def test_report_dir_roundtrips_through_load_results(built, full):
    assert report.load_results(built).to_json() == json.loads(json.dumps(full))
    assert report.load_results(built / "results.json").to_json()["best"] == full["best"]


# --- metrics.json of wiseft score / eval ---------------------------------------------------------------------
def test_metrics_json_of_one_model(tmp_path):
    summary = make_summary(0.5, 1.0, seed=3)
    (tmp_path / "metrics.json").write_text(
        json.dumps({"variant": None, "grader": "math-verify==0.9.0", **summary})
    )
    res = report.load_results(tmp_path).to_json()
    assert [(v["name"], v["kind"]) for v in res["variants"]] == [("model", "imported")]
    assert res["variants"][0]["summary"]["metrics"] == summary["metrics"]
    assert res["versions"] == {"grader": "math-verify==0.9.0"}
    assert set(report.figures(res)) == {"pass_at_k", "rho_hist", "bias_variance"}


def test_metrics_json_of_several_variants_reads_delta_t_step_from_names(tmp_path):
    names = ["delta=0.000,T=1.0", "delta=0.500,T=1.0", "delta=1.000,T=1.0", "T=0.7", "step=400", "base"]
    body = {
        "variants": [{"name": n, "summary": make_summary(0.5, 1.0, seed=i)} for i, n in enumerate(names)],
        "grader": "int",
    }
    path = tmp_path / "m.json"
    path.write_text(json.dumps(body))
    res = report.load_results(path).to_json()
    got = [(v["kind"], v["delta"], v["temperature"], v["step"]) for v in res["variants"]]
    assert got == [
        ("mix", 0.0, 1.0, None),
        ("mix", 0.5, 1.0, None),
        ("mix", 1.0, 1.0, None),
        ("temperature", None, 0.7, None),
        ("checkpoint", None, None, 400),
        ("imported", None, None, None),  # nothing in the name says what it is: not "the base model"
    ]
    figs = report.figures(res)
    assert [ax.get_title() for ax in visible_axes(figs["metrics_vs_delta"])][:2] == ["Pass@1", "Pass@16"]


# --- a sample store --------------------------------------------------------------------------------------------
def test_store_variants_are_summarised_into_results(tmp_path):
    from wiseft.metrics import summarize
    from wiseft.store import SampleStore

    make_store(tmp_path / "samples.db")
    res = report.load_results(tmp_path / "samples.db").to_json()
    got = [(v["name"], v["kind"], v["delta"], v["temperature"], v["step"]) for v in res["variants"]]
    assert got == [
        ("delta=0.000,T=1", "mix", 0.0, 1.0, None),
        ("delta=0.500,T=1", "mix", 0.5, 1.0, None),
        ("delta=1.000,T=1", "mix", 1.0, 1.0, None),
        ("final,T=1.5", "temperature", None, 1.5, None),
        ("delta=0.250,T=1", "mix", 0.25, 1.0, None),  # imported: δ and T read from its name
    ]
    with SampleStore(tmp_path / "samples.db", writer=False) as store:
        want = summarize(store.problem_samples(store.find_variant("delta=0.500,T=1")), [1, 2, 4, 8])
    assert res["variants"][1]["summary"]["metrics"] == want["metrics"]
    assert res["versions"]["grader"] == "int"
    assert res["config"]["command"] == "sweep" and res["config"]["delta"] == [0.0, 0.5, 1.0]
    pass8 = {
        v["name"]: v["summary"]["metrics"]["pass@8"]["value"] for v in res["variants"] if v["kind"] == "mix"
    }
    assert res["best"]["variant"] == max(pass8, key=pass8.get) and "in-sample" in res["best"]["how"]
    # The same store through a run directory that holds only samples.db, and through the CLI.
    assert report.load_results(tmp_path).to_json()["variants"] == res["variants"]
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "samples.db"), "-o", str(out), "--k", "1,8"]) == 0
    figs = report.figures(res)
    first = visible_axes(figs["metrics_vs_delta"])[0]
    assert list(first.get_lines()[0].get_xdata()) == [0.0, 0.25, 0.5, 1.0]
    assert {"pass_at_k", "metrics_vs_delta", "frontier", "rho_hist", "bias_variance"} <= set(figs)


def test_store_with_ungraded_variant_reports_the_rest_and_says_so(tmp_path):
    make_store(tmp_path / "s.db", ungraded=True)
    res = report.load_results(tmp_path / "s.db").to_json()
    assert "delta=0.750,T=1" not in [v["name"] for v in res["variants"]]
    (note,) = res["config"]["skipped_variants"]
    assert note.startswith("delta=0.750,T=1: ") and "not graded yet" in note


def test_store_errors(tmp_path):
    from wiseft.store import SampleStore

    with SampleStore(tmp_path / "empty.db"):
        pass
    with pytest.raises(ConfigError, match="empty.db holds no graded variant"):
        report.load_results(tmp_path / "empty.db")
    import sqlite3

    con = sqlite3.connect(tmp_path / "other.db")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a wiseft sample store"):
        report.load_results(tmp_path / "other.db")


# --- bad input: a clear message and nothing written ----------------------------------------------------------
@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("variants"), "field 'variants' must be a list"),
        (lambda r: r["variants"][2].update(kind="soup"), r"variants\[2\] \(checkpoint-200\): field 'kind'"),
        (lambda r: r["variants"][0].pop("summary"), r"variants\[0\] \(checkpoint-50\): field 'summary'"),
        (lambda r: r["variants"][1].update(delta="half"), "field 'delta' must be a finite number"),
        (lambda r: r["variants"][1].update(name="checkpoint-50"), "checkpoint-50 appear more than once"),
    ],
)
def test_malformed_results_name_the_field_and_write_nothing(tmp_path, mutate, message):
    res = make_results(sweep=False, temperatures=False)
    mutate(res)
    with pytest.raises(ConfigError, match=message):
        report.build(res, tmp_path / "out", dpi=DPI)
    assert list(tmp_path.iterdir()) == []


def test_unknown_k_names_the_flag_and_what_exists(tmp_path):
    with pytest.raises(ConfigError, match=r"--k 32: not computed.*available k: 1, 2, 4, 8, 16"):
        report.build(make_results(trajectory=False), tmp_path / "out", ks=[4, 32], dpi=DPI)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    res = lone()
    with pytest.raises(OutputError, match="already exists.*--force"):
        report.build(res, out, dpi=DPI)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    report.build(res, out, force=True, dpi=DPI)
    assert not (out / "keep.txt").exists() and (out / "report.html").is_file()


def test_load_results_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        report.load_results(tmp_path / "missing")
    with pytest.raises(ConfigError, match="holds no results.json, metrics.json or samples.db"):
        report.load_results(tmp_path)
    bad = tmp_path / "results.json"
    bad.write_text('{"variants": [\n  oops ]}')
    with pytest.raises(ConfigError, match=r"results.json: not valid JSON \(Expecting value at line 2"):
        report.load_results(bad)
    bad.write_text('{"variants": 3}')
    with pytest.raises(ConfigError, match="results.json: field 'variants'"):
        report.load_results(tmp_path)


# --- the CLI ------------------------------------------------------------------------------------------------
def test_cli_writes_the_report_and_prints_its_paths(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(make_results(trajectory=False, temperatures=False)))
    out = tmp_path / "rep"
    assert main(["report", str(run), "-o", str(out), "--k", "1,4"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert str(out / "report.html") in shown and str(out / "metrics_vs_delta.png") in shown
    assert (out / "report.html").is_file()
    titles = re.findall(r"<h3>([^<]+)</h3>", (out / "report.html").read_text(encoding="utf-8"))
    assert titles[0] == "Pass@k against k"
    assert main(["report", str(run), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("flag, message", [("1,x", "--k must be positive integers"), ("0", "--k must be")])
def test_cli_bad_k(tmp_path, capsys, flag, message):
    (tmp_path / "results.json").write_text(json.dumps(make_results(trajectory=False, temperatures=False)))
    assert main(["report", str(tmp_path / "results.json"), "-o", str(tmp_path / "rep"), "--k", flag]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()

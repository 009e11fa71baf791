"""The report's figures as a reader sees them: no title or label cut by the figure's edge, no legend over
the data, percent axes within [0, 100], readable bands with many variants, point labels off one another,
no plot of a trade-off that is not there, and nothing printed by matplotlib."""

from __future__ import annotations

import warnings

import pytest
from matplotlib.collections import PolyCollection
from support.report import (
    layout_problems,
    make_all_zero_results,
    make_demo_like_results,
    make_results,
    make_summary,
    variant,
)

from wiseft import report
from wiseft.report import plots
from wiseft.report.data import Results
from wiseft.report.style import emphasis, fit_text, text_width


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def lone(name: str = "model") -> dict:
    """One variant: every per-variant figure has a single panel."""
    return {"variants": [variant(name, "imported", make_summary(0.5, 1.0, seed=1))]}


def flat_sweep(n_deltas: int = 3, name=lambda d: f"delta={d:.3f},T=1") -> dict:
    deltas = [i / (n_deltas - 1) for i in range(n_deltas)]
    return {
        "variants": [variant(name(d), "mix", make_summary(0.5, 1.0, seed=i), d) for i, d in enumerate(deltas)]
    }


# --- nothing cut, nothing over the data -------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_figures():
    return report.figures(make_results())


@pytest.mark.parametrize("name", [name for name, *_ in report.PLOTS])
def test_full_run_figures_have_no_layout_faults(full_figures, name):
    """Every title, label, tick and legend inside the figure; legends beside or under the data."""
    assert layout_problems(full_figures[name]) == []


@pytest.mark.parametrize(
    "results, names",
    [
        (lone(), ["rho_hist", "bias_variance", "pass_at_k"]),  # one histogram: its title used to be cut
        (flat_sweep(), ["distinct_answers", "metrics_vs_delta", "frontier"]),  # one diversity panel
        (
            lone("an-imported-model-with-a-very-long-name-from-another-engine-run-42"),
            ["rho_hist", "pass_at_k"],
        ),
        (flat_sweep(7, lambda d: f"checkpoint-with-a-long-run-name-{d:.2f}-sampled-at-T=1"), ["rho_hist"]),
        (make_demo_like_results(), ["pass_at_k", "frontier", "bias_variance", "trajectory"]),
        (make_all_zero_results(), ["metrics_vs_delta", "frontier", "bias_variance", "pass_at_k"]),
    ],
)
def test_small_and_odd_runs_have_no_layout_faults(results, names):
    figs = report.figures(results)
    for name in names:
        assert layout_problems(figs[name]) == [], name


def test_long_titles_are_wrapped_to_their_panel():
    fig = report.figures(flat_sweep(7, lambda d: f"checkpoint-with-a-long-run-name-{d:.2f}-sampled-at-T=1"))[
        "rho_hist"
    ]
    for ax in visible_axes(fig):
        lines = ax.get_title().split("\n")
        assert 1 <= len(lines) <= 2 and all(text_width(line, 8) <= 2.1 for line in lines)


@pytest.mark.parametrize(
    "text, width, lines",
    [
        ("short", 3.0, ["short"]),
        ("Per-problem Pass@1 ρ: collapse shows as mass at 0 and 1", 2.5, 2),  # wrapped at a space
        ("x" * 200, 1.0, 2),  # one word wider than a line: cut, and an ellipsis after two lines
    ],
)
def test_fit_text_keeps_every_line_within_the_width(text, width, lines):
    out = fit_text(text, width, 10).split("\n")
    assert out == lines if isinstance(lines, list) else len(out) == lines
    assert all(text_width(line, 10) <= width for line in out)
    if len(text) == 200:
        assert out[-1].endswith("…")


# --- percent axes, bands -----------------------------------------------------------------------------------
def test_no_percent_axis_goes_below_zero_on_any_run():
    for results in (make_all_zero_results(), make_results(), make_demo_like_results()):
        for name, fig in report.figures(results).items():
            for ax in visible_axes(fig):
                if ax.get_ylabel().endswith("(%)"):
                    assert 0.0 <= ax.get_ylim()[0] < ax.get_ylim()[1] <= 100.0, name
                if ax.get_xlabel().endswith("(%)"):
                    assert 0.0 <= ax.get_xlim()[0] < ax.get_xlim()[1] <= 100.0, name


@pytest.mark.parametrize(
    "n, highlighted, want",
    [
        (4, False, {"band": True, "thin": False}),  # few lines: every one has its band
        (5, False, {"band": False, "thin": True}),  # many: thin, no band
        (5, True, {"band": True, "thin": False}),  # many, but the chosen one or an end
        (3, False, {"band": False, "thin": True}),  # many=3 for whole curves (δ sweeps per step)
    ],
)
def test_emphasis_table(n, highlighted, want):
    assert emphasis(n, highlighted, many=3 if n == 3 else 5) == want


def test_many_variants_keep_bands_only_for_the_chosen_and_the_ends():
    res = flat_sweep(9)
    res["best"] = {"metric": "pass@1", "variant": "delta=0.500,T=1", "how": "highest"}
    res["variants"][4]["summary"]["metrics"]["pass@1"]["value"] = 0.99  # no tie
    (ax,) = visible_axes(report.figures(res)["pass_at_k"])
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3
    thick = [ln.get_label() for ln in ax.get_lines() if ln.get_linewidth() > 1]
    assert thick == ["δ=0", "δ=0.5", "δ=1"]


# --- plots left out ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "lengths, drawn",
    [
        ((120.0, 120.0, 120.0), False),  # the demo's simulated runs: exactly equal
        ((11.48, 11.51, 11.5), False),  # the toy demo: 0.03 tokens apart
        ((300.0, 302.0, 301.0), False),  # within 1 %
        ((300.0, 310.0, 320.0), True),  # a real difference: drawn
        ((10.0, 10.8, 10.2), True),  # short answers, 0.8 tokens apart (> 0.5): drawn
    ],
)
def test_length_plot_only_when_lengths_differ(tmp_path, lengths, drawn):
    res = flat_sweep(3)
    for v, mean in zip(res["variants"], lengths, strict=True):
        v["summary"]["tokens"]["mean"] = mean
    assert ("tokens_vs_accuracy" in report.figures(res)) == drawn
    if not drawn:
        md = (report.build(res, tmp_path / "r", dpi=30) / "report.md").read_text(encoding="utf-8")
        assert "Not drawn: Length against accuracy — every variant's mean completion length is the same" in md


# --- matplotlib never prints ---------------------------------------------------------------------------------
def test_no_warning_escapes_the_report_and_what_was_caught_can_be_seen(tmp_path, monkeypatch, capfd):
    """A plot that makes matplotlib warn (a legend with nothing in it, a message through its logger)."""
    import logging

    from matplotlib.figure import Figure

    def noisy(res, headline_ks, curve_ks):
        fig = Figure()
        ax = fig.subplots()
        ax.plot([1, 2], [1, 2])
        ax.legend()  # "No artists with labels found to put in legend"
        logging.getLogger("matplotlib.font_manager").warning("findfont: Font family 'Nope' not found.")
        return fig

    monkeypatch.setattr(plots, "PLOTS", plots.PLOTS + [("noisy", "Noisy", "A plot that warns.", noisy)])
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        caught: list[str] = []
        res = Results(lone())
        figs = plots.make_figures(res, [8], [1, 2, 4, 8], caught)
        plots.render_png(figs["noisy"], 30, caught)
    assert escaped == [] and capfd.readouterr() == ("", "")
    assert any("No artists with labels" in c for c in caught) and any("findfont" in c for c in caught)


def test_the_report_command_prints_only_its_own_lines(tmp_path, capfd):
    import json

    from wiseft.cli import main

    (tmp_path / "results.json").write_text(json.dumps(make_all_zero_results()))
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        assert main(["report", str(tmp_path / "results.json"), "-o", str(tmp_path / "rep")]) == 0
    out, err = capfd.readouterr()
    assert escaped == [] and err == ""
    assert "warn" not in out.lower() and "matplotlib" not in out


@pytest.mark.parametrize(
    "results",
    [make_results(), make_all_zero_results(), make_demo_like_results(), lone(), flat_sweep(9)],
    ids=["full", "all_zero", "demo", "lone", "sweep9"],
)
def test_the_plots_themselves_make_matplotlib_warn_about_nothing(results):
    caught: list[str] = []
    res = Results(results)
    headline, curve_ks = report.resolve_ks(res, None)
    plots.make_figures(res, headline, curve_ks, caught)
    assert caught == []


def test_figures_are_deterministic_bytes():
    one = [plots.render_png(f, 30) for f in report.figures(make_demo_like_results()).values()]
    two = [plots.render_png(f, 30) for f in report.figures(make_demo_like_results()).values()]
    assert one == two

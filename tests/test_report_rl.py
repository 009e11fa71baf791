"""The report's RL section: GRPO step logs found, read as untrusted input and drawn against the step."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from support.report import layout_problems, make_demo_like_results
from support.rl import make_rl_dir, rl_records, write_log

from wiseft import report
from wiseft.errors import ConfigError
from wiseft.report import rl as rlmod
from wiseft.report.plots import quiet
from wiseft.report.render import RL_TITLE


def labelled(ax) -> list[str]:
    return [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def test_a_log_is_read_step_by_step_and_a_torn_last_line_is_skipped(tmp_path):
    recs = rl_records(5, 0.4, 0.01, seed=0)
    path = write_log(tmp_path / "final" / "grpo_log.jsonl", recs, tail='{"step": 6, "reward_')
    run = rlmod.read_rl_log(path)
    assert run.label == "final" and run.steps == [1, 2, 3, 4, 5]
    assert run.reward == [r["reward_mean"] for r in recs]
    assert run.pass_at_k[1] == [r["pass_at_k"]["1"] for r in recs] and run.group == 8
    assert run.kl == [None] * 5 and run.zero_std == [r["zero_std_fraction"] for r in recs]


def test_logs_are_found_in_the_demo_layout_and_in_a_run_directory(tmp_path):
    make_rl_dir(tmp_path / "demo")
    assert [label for label, _ in rlmod.find_rl_logs(tmp_path / "demo")] == ["final", "mix", "early"]
    assert [label for label, _ in rlmod.find_rl_logs(tmp_path / "demo" / "rl")] == ["final", "mix", "early"]
    write_log(tmp_path / "one" / "grpo_log.jsonl", rl_records(3, 0.5, 0.0, seed=1))
    assert [label for label, _ in rlmod.find_rl_logs(tmp_path / "one")] == ["one"]
    assert rlmod.find_rl_logs(tmp_path / "nothing") == [] and rlmod.load_rl_runs(tmp_path / "one")[
        0
    ].steps == [1, 2, 3]


def _bad(tmp_path: Path, case: str) -> Path:
    good = rl_records(3, 0.5, 0.0, seed=0)
    path = tmp_path / "rl" / "final" / "grpo_log.jsonl"
    path.parent.mkdir(parents=True)
    edits = {
        "not json": lambda: path.write_text(json.dumps(good[0]) + "\n{oops\n" + json.dumps(good[1]) + "\n"),
        "an array": lambda: write_log(path, [[1, 2]]),
        "step repeats": lambda: write_log(path, [good[0], good[0]]),
        "step text": lambda: write_log(path, [{**good[0], "step": "1"}]),
        "reward NaN": lambda: path.write_text(json.dumps(good[0]).replace('"reward_mean": 0', '"reward_mean": NaN, "x": 0') + "\n"),
        "reward missing": lambda: write_log(path, [{k: v for k, v in good[0].items() if k != "reward_mean"}]),
        "pass@k above 1": lambda: write_log(path, [{**good[0], "pass_at_k": {"1": 1.5}}]),
        "pass@k key": lambda: write_log(path, [{**good[0], "pass_at_k": {"k": 0.5}}]),
        "zero-variance over 1": lambda: write_log(path, [{**good[0], "zero_std_fraction": 2}]),
        "kl text": lambda: write_log(path, [{**good[0], "kl": "big"}]),
        "long line": lambda: write_log(path, [{**good[0], "pad": "x" * (rlmod.MAX_LINE_CHARS + 1)}, good[1]]),
        "not utf-8": lambda: path.write_bytes(b"\xff\xfe" + json.dumps(good[0]).encode() + b"\n"),
    }  # fmt: skip
    edits[case]()
    return path


BAD = ["not json", "an array", "step repeats", "step text", "reward NaN", "reward missing", "pass@k above 1",
       "pass@k key", "zero-variance over 1", "kl text", "long line", "not utf-8"]  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_a_malformed_log_is_one_line_naming_the_file_and_nothing_is_written(tmp_path, case):
    path = _bad(tmp_path, case)
    with pytest.raises(ConfigError) as err:
        runs = report.load_rl_runs(tmp_path)
        report.build(make_demo_like_results(), tmp_path / "out", rl=runs)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_an_oversized_log_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = write_log(tmp_path / "final" / "grpo_log.jsonl", rl_records(30, 0.5, 0.0, seed=0))
    monkeypatch.setattr(rlmod, "MAX_LOG_BYTES", 1000)
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*over the limit"):
        rlmod.read_rl_log(path)


def test_a_label_with_mathtext_is_drawn_literally(tmp_path):
    write_log(tmp_path / "a$b$" / "grpo_log.jsonl", rl_records(3, 0.5, 0.0, seed=0))
    caught: list[str] = []
    with quiet(caught):
        fig = rlmod.plot_rl_curves(report.load_rl_runs(tmp_path))
        fig.canvas.draw()
    assert labelled(fig.axes[0]) == [r"RL from a\$b\$"] and caught == []


@pytest.fixture(scope="module")
def rl_runs(tmp_path_factory):
    return report.load_rl_runs(make_rl_dir(tmp_path_factory.mktemp("demo")))


def test_curves_one_per_start_reward_pass1_and_pass_at_group(rl_runs):
    with quiet():
        fig = rlmod.plot_rl_curves(rl_runs)
    axs = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axs] == ["mean reward", "Pass@1 of the groups", "Pass@8 of the groups"]
    for ax in axs:
        assert labelled(ax) == ["RL from final", "RL from mix", "RL from early"]
        assert ax.get_xlabel() == "RL step"
    bold = next(ln for ln in axs[1].get_lines() if ln.get_label() == "RL from mix")
    raw = [r for r in rl_runs if r.label == "mix"][0].pass_at_k[1]
    window = max(3, len(raw) // 10)
    assert np.allclose(bold.get_ydata()[-1], 100 * np.mean(raw[-window:]))  # percent, running mean
    assert layout_problems(fig) == []


def test_health_panels_show_kl_only_when_it_was_computed(rl_runs, tmp_path):
    with quiet():
        fig = rlmod.plot_rl_health(rl_runs)
        assert len([ax for ax in fig.axes if ax.get_visible()]) == 2
        write_log(tmp_path / "kl" / "grpo_log.jsonl", rl_records(20, 0.5, 0.0, seed=3, kl=True))
        fig = rlmod.plot_rl_health(report.load_rl_runs(tmp_path))
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[-1] == "KL to the start (per token)" and layout_problems(fig) == []


def test_the_section_and_its_plots_appear_only_with_rl_logs(rl_runs, tmp_path):
    without = report.build(make_demo_like_results(), tmp_path / "plain")
    assert not list(without.glob("rl_*.png"))
    assert RL_TITLE not in (without / "report.md").read_text() + (without / "report.html").read_text()
    out = report.build(make_demo_like_results(), tmp_path / "rl", rl=rl_runs)
    assert sorted(p.name for p in out.glob("rl_*.png")) == ["rl_health.png", "rl_reward.png"]
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert f"## {RL_TITLE}" in md and "![RL: reward and Pass@k against the step](rl_reward.png)" in md
    assert '<h2 id="rl">' in page and page.count("data:image/png;base64,") == len(list(out.glob("*.png")))
    assert md.index(RL_TITLE) < md.index("## Variants")
    for label in ("final", "mix", "early"):
        assert f"| {label} | 40 |" in md


def test_a_run_without_steps_yet_is_listed_but_not_drawn(tmp_path):
    write_log(tmp_path / "final" / "grpo_log.jsonl", [])
    runs = report.load_rl_runs(tmp_path)
    out = report.build(make_demo_like_results(), tmp_path / "out", rl=runs)
    assert not list(out.glob("rl_*.png")) and "| final | 0 |" in (out / "report.md").read_text()


def test_cli_finds_the_logs_in_the_run_and_takes_more_with_rl(tmp_path, cli):
    run = make_rl_dir(tmp_path / "run")
    (run / "results.json").write_text(json.dumps(make_demo_like_results()))
    write_log(tmp_path / "other" / "grpo_log.jsonl", rl_records(10, 0.2, 0.01, seed=5))
    code, err = cli(["report", run, "-o", tmp_path / "out", "--rl", tmp_path / "other"])
    assert code == 0, err
    md = (tmp_path / "out" / "report.md").read_text()
    assert all(f"| {label} |" in md for label in ("final", "mix", "early", "other"))
    assert "rl_reward.png" in cli.out


@pytest.mark.parametrize("case", ["not json", "reward NaN"])
def test_cli_a_hostile_log_is_one_line_on_stderr_exit_2_and_nothing_written(tmp_path, cli, case):
    path = _bad(tmp_path / "run", case)
    (tmp_path / "run" / "results.json").write_text(json.dumps(make_demo_like_results()))
    code, err = cli(["report", tmp_path / "run", "-o", tmp_path / "out"])
    assert code == 2 and str(path) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_rl_dir_without_logs_is_refused(tmp_path, cli):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(make_demo_like_results()))
    (tmp_path / "empty").mkdir()
    code, err = cli(["report", tmp_path / "run", "-o", tmp_path / "out", "--rl", tmp_path / "empty"])
    assert code == 2 and "--rl" in err and str(tmp_path / "empty") in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_rl_section_at_1280px_in_headless_chromium(rl_runs, tmp_path):
    """The demo-like report with its RL section, measured and screenshotted as the other reports are
    (test-artifacts/report-screenshots/demo_rl/)."""
    from test_report_browser import ARTIFACTS, WIDTH, measure, screenshot

    art = ARTIFACTS / "demo_rl"
    art.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / ".gitignore").write_text("*\n")
    out = report.build(make_demo_like_results(), art / "report", force=True, source="demo_rl", rl=rl_runs)
    m = measure(out / "report.html", tmp_path / "profile")
    (art / "measure.json").write_text(json.dumps(m, indent=1), encoding="utf-8")
    for state in ("closed", "opened"):
        page = m[state]
        assert page["scrollWidth"] <= page["clientWidth"] == WIDTH, (state, page["beyond"])
        assert page["beyond"] == [] and page["overflow"] == [], state
    imgs = {i["alt"]: i for i in m["closed"]["imgs"]}
    for name in ("RL: reward and Pass@k against the step", "RL: zero-variance groups, length and KL"):
        assert imgs[name]["complete"] and imgs[name]["natural"] > 0
        assert 0 < imgs[name]["shown"] <= imgs[name]["box"] + 0.5
    shot = screenshot(
        out / "report.html", art / "page.png", tmp_path / "profile", min(m["closed"]["height"], 16000)
    )
    assert shot.shape[1] == WIDTH and shot.mean(axis=2).std() > 0.05

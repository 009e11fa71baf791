"""The report's PNGs rendered in a forked child and here: the same bytes as rendering them one by one,
and a failed or hung child never loses a figure."""

import os
import sys
import time

import pytest
from matplotlib.figure import Figure

from wiseft.report import pngs
from wiseft.report.plots import render_png

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the forked renderer runs on Linux only")


def _figs(count: int) -> dict[str, Figure]:
    figs = {}
    for i in range(count):
        fig = Figure(figsize=(3, 2))
        ax = fig.add_subplot()
        ax.plot(range(10), [x * (i + 1) % 7 for x in range(10)], label=f"line {i}")
        ax.set_title(f"figure {i}")
        ax.legend()
        figs[f"fig{i}"] = fig
    return figs


@pytest.mark.parametrize("count", [1, 2, 5])
def test_two_workers_give_the_bytes_of_one_in_the_figures_order(count):
    figs = _figs(count)
    serial = {name: render_png(fig) for name, fig in figs.items()}
    both = pngs.render_pngs(figs, workers=2)
    assert list(both) == list(figs) and both == serial
    assert pngs.render_pngs(figs, workers=1) == serial


def _in_child_only(action):
    parent = os.getpid()

    def render(fig, dpi=110):
        if os.getpid() != parent:
            action()
        return render_png(fig, dpi)

    return render


@pytest.mark.parametrize(
    ("action", "timeout", "killed"),
    [
        (lambda: (_ for _ in ()).throw(RuntimeError("boom")), 60.0, False),  # the child fails
        (lambda: os._exit(0), 60.0, False),  # the child exits cleanly without writing
        (lambda: time.sleep(3600), 0.5, True),  # the child hangs: killed at the timeout
    ],
)
def test_a_failed_or_hung_child_is_replaced_by_rendering_here(monkeypatch, action, timeout, killed):
    figs = _figs(4)
    serial = {name: render_png(fig) for name, fig in figs.items()}
    monkeypatch.setattr(pngs, "render_png", _in_child_only(action))
    kills = []
    real_kill = os.kill
    monkeypatch.setattr(os, "kill", lambda pid, sig: (kills.append(sig), real_kill(pid, sig)))
    assert pngs.render_pngs(figs, workers=2, timeout=timeout) == serial
    assert kills == ([9] if killed else [])


def _builders(count: int, absent=()) -> dict:
    figs = _figs(count)
    return {name: (lambda n=name: None if n in absent else figs[n]) for name in figs}


@pytest.mark.parametrize("workers", [1, 2])
def test_builders_are_built_where_they_are_rendered_and_a_missing_plot_is_left_out(workers):
    serial = {name: render_png(fig) for name, fig in _figs(5).items()}
    got = pngs.render_pngs(_builders(5, absent={"fig1", "fig2"}), workers=workers)
    assert list(got) == ["fig0", "fig3", "fig4"] and got == {n: serial[n] for n in got}
    parent, built_in = os.getpid(), {}

    def where(name, fig):
        def build():
            built_in[name] = os.getpid() == parent
            return fig

        return build

    figs = _figs(4)
    assert pngs.render_pngs({n: where(n, f) for n, f in figs.items()}, workers=workers) == {
        n: serial[n] for n in figs
    }
    assert built_in == ({n: True for n in figs} if workers == 1 else {"fig0": True, "fig2": True})


def test_a_builder_that_fails_fails_here_too():
    def broken():
        raise ValueError("no data for this plot")

    with pytest.raises(ValueError, match="no data"):
        pngs.render_pngs({"a": _builders(1)["fig0"], "b": broken}, workers=2)

"""compiled.spans / compiled.run_parts: how the compiled loops' spans are cut and run side by side (the
bytes they give are pinned in test_merge_pinned.py)."""

from __future__ import annotations

import threading

import pytest

from wiseft.merge import compiled


@pytest.mark.parametrize(
    "m, align, min_part, wanted, expected",
    [
        (100, 1, 64, 2, [(0, 100)]),  # too short for two parts of 64
        (128, 1, 64, 2, [(0, 64), (64, 128)]),
        (129, 1, 64, 2, [(0, 65), (65, 129)]),
        (1000, 1, 64, 3, [(0, 334), (334, 668), (668, 1000)]),
        (1000, 300, 64, 3, [(0, 600), (600, 1000)]),  # starts on multiples of 300
        (1000, 1, 64, 1, [(0, 1000)]),  # one CPU: never cut
        (200, 128, 64, 3, [(0, 128), (128, 200)]),  # three parts asked, rounded up to 128: two
    ],
)
def test_spans(monkeypatch, m, align, min_part, wanted, expected):
    monkeypatch.setattr(compiled, "parts_wanted", lambda: wanted)
    cuts = compiled.spans(m, align=align, min_part=min_part)
    assert cuts == expected
    assert cuts[0][0] == 0 and cuts[-1][1] == m
    assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:], strict=False))
    assert all(lo % align == 0 for lo, _ in cuts)


def test_a_short_tail_joins_the_part_before_it(monkeypatch):
    monkeypatch.setattr(compiled, "parts_wanted", lambda: 2)
    assert compiled.spans(140, align=100, min_part=64) == [(0, 140)]  # (100, 140) is shorter than 64


def test_run_parts_runs_every_part_and_raises_after_all_have_finished(monkeypatch):
    done, threads = [], set()
    barrier = threading.Barrier(3, timeout=10)  # all three parts at once: they do run side by side

    def call(lo, hi):
        threads.add(threading.get_ident())
        barrier.wait()
        done.append((lo, hi))
        if lo == 1:
            raise ValueError("part 1")

    with pytest.raises(ValueError, match="part 1"):
        compiled.run_parts(call, [(0, 1), (1, 2), (2, 3)])
    assert sorted(done) == [(0, 1), (1, 2), (2, 3)] and len(threads) == 3

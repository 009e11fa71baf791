"""Grids and k lists as users write them, and the bounds that keep a typo from becoming a billion values."""

from __future__ import annotations

import pytest

from wiseft.errors import ConfigError
from wiseft.grids import MAX_GRID, parse_grid, parse_ks, powers_of_two


@pytest.mark.parametrize(
    "spec, want",
    [
        ("0:1:0.125", tuple(i / 8 for i in range(9))),
        ("0.25, 0.5", (0.25, 0.5)),
        ([0, 1], (0.0, 1.0)),
        (0.3, (0.3,)),
        ("1", (1.0,)),
    ],
)
def test_parse_grid(spec, want):
    assert parse_grid(spec) == want


def test_a_range_includes_its_stop_despite_rounding():
    grid = parse_grid("0:1:0.1")
    assert len(grid) == 11 and grid[-1] == 1.0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("0:1", "give start:stop:step"),
        ("1:0:0.1", "positive step"),
        ("a,b", "give start:stop:step"),
        ("", "is empty"),
        ("0:1:1e-9", f"at most {MAX_GRID} are allowed"),
        ("0:inf:1", "must be finite numbers"),
        ("nan", "must be finite numbers"),
        ([0, "x"], "every value must be a number"),
        (True, "expected numbers"),
        (list(range(MAX_GRID + 1)), f"at most {MAX_GRID} are allowed"),
    ],
)
def test_bad_grids_are_one_line_errors_naming_the_flag(spec, message):
    with pytest.raises(ConfigError) as err:
        parse_grid(spec, "--delta")
    assert message in str(err.value) and "--delta" in str(err.value)


def test_parse_ks():
    assert parse_ks("4,1,4,16") == (1, 4, 16)
    assert parse_ks("1:4:1") == (1, 2, 3, 4)
    for bad in ("0", "1.5", "-1"):
        with pytest.raises(ConfigError, match="--k must be positive integers"):
            parse_ks(bad)
    with pytest.raises(ConfigError, match=f"at most {MAX_GRID}"):
        parse_ks("1:100000000:1")


def test_powers_of_two():
    assert powers_of_two(1) == (1,) and powers_of_two(12) == (1, 2, 4, 8) and powers_of_two(16)[-1] == 16

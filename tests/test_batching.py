"""greedy_batches: consecutive batches of length-sorted positions under a fit predicate."""

import pytest

from wiseft.batching import greedy_batches


@pytest.mark.parametrize(
    "lengths, max_rows, max_cells, expected",
    [
        ([], 4, 100, []),
        ([9, 5, 3, 1], 4, 100, [[0, 1, 2, 3]]),
        ([9, 5, 3, 1], 2, 100, [[0, 1], [2, 3]]),
        ([9, 5, 3, 1], 4, 18, [[0, 1], [2, 3]]),  # the widest item (the first) sets a batch's width
        ([50, 5, 3], 4, 18, [[0], [1, 2]]),  # an item that fits no batch runs alone
    ],
)
def test_batches_grow_while_they_fit_and_the_first_item_sets_the_width(
    lengths, max_rows, max_cells, expected
):
    def fits(rows, width):
        return rows <= max_rows and rows * width <= max_cells

    assert greedy_batches(lengths, fits) == expected

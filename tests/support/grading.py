"""Shared tables for the grading tests: hand-written answer pairs and the gold-mutation rule."""

import re
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data beside the project

# (gold, answer, equivalent?) — written by hand; each group exercises one kind of answer.
PAIRS = [
    # fractions and decimals
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac{1}{2}", "\\dfrac{1}{2}", True),
    ("\\frac{3}{4}", "0.75", True),
    ("\\frac{1}{2}", "1/2", True),
    ("\\frac{2}{3}", "0.67", False),
    ("\\frac{1}{3}", "\\frac{1}{4}", False),
    ("0.25", "\\frac14", True),
    ("\\frac{6}{8}", "\\frac{3}{4}", True),
    # thousands separators
    ("1000", "1,000", True),
    ("1234567", "1,234,567", True),
    ("1000", "1,001", False),
    ("2125", "2{,}125", True),
    # percentages
    ("50\\%", "50", True),
    ("50\\%", "0.5", True),
    ("25\\%", "30\\%", False),
    # units and \text{}
    ("10", "10 \\text{ cm}", True),
    ("18", "\\$18", True),
    ("18", "18 \\text{ dollars}", True),
    ("90^\\circ", "90", True),
    ("5 \\text{ meters}", "6 \\text{ meters}", False),
    # negative numbers
    ("-3", "-3.0", True),
    ("-3", "3", False),
    ("-\\frac{1}{2}", "-0.5", True),
    # radicals and π
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", True),
    ("\\sqrt{2}", "\\sqrt{3}", False),
    ("2\\pi", "\\pi \\cdot 2", True),
    ("\\pi", "3.14159", False),
    ("4\\pi", "4 \\pi", True),
    # intervals
    ("[2,5)", "[2, 5)", True),
    ("[2,5)", "(2,5)", False),
    ("(-\\infty, 3]", "(-\\infty,3]", True),
    # sets and tuples
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("(1,2)", "(2,1)", False),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("1,2,3", "3,2,1", True),
    # matrices
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", True),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", False),
    ("\\begin{pmatrix}1 & 0\\\\0 & 1\\end{pmatrix}", "\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}", True),
    # multiple-choice letters
    ("\\text{(C)}", "C", True),
    ("(C)", "C", True),
    ("C", "D", False),
    ("\\text{(A)}", "(B)", False),
    # plain words
    ("\\text{Evelyn}", "Evelyn", True),
    ("\\text{Monday}", "\\text{Tuesday}", False),
    ("\\text{odd}", "\\text{even}", False),
    ("\\text{even}", "\\text{even}", True),
    # expressions and equations
    ("x^2+1", "1+x^2", True),
    ("x^2+1", "x^2-1", False),
    ("x=5", "5", True),
    ("10^{10}", "10000000000", True),
    ("y=2x+3", "y = 3 + 2x", True),
]


def change_number(gold: str) -> str:
    """The gold with its first number increased by one; a gold with no digit gets "+1" appended.

    The first number, not the last: the last is often a unit exponent (cm^2) or a base subscript (_7),
    which Math-Verify rightly or wrongly ignores.
    """
    m = re.search(r"\d+", gold)
    if m is None:
        return gold + "+1"
    return gold[: m.start()] + str(int(m.group()) + 1) + gold[m.end() :]


# Golds whose changed form Math-Verify still accepts, each with the reason (see the test module).
CHANGED_EXCEPTIONS = {
    # Math-Verify compares numbers after rounding: 1/2004! and 2/2004! are both 0 to 6 decimals.
    "\\frac{1}{2004!}",
}

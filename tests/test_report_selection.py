"""`selection_note`: when "the best δ" is a tie, an endpoint itself, or not separated from an endpoint, the
report (and the CLI) must say so. Table-driven on hand-written results, numbers chosen to sit on each side
of every boundary."""

from __future__ import annotations

import pytest

from wiseft import report
from wiseft.results import RunResults, check_selection, endpoint, selection_note


def stat(value, lo=None, hi=None):
    out = {"value": value}
    if lo is not None:
        out.update(lo=lo, hi=hi)
    return out


def mix(delta, p1, name=None, temperature=1.0, step=None, kind="mix"):
    """A variant whose pass@1 is `p1` (a number, or (value, lo, hi))."""
    p1 = p1 if isinstance(p1, tuple) else (p1, p1 - 0.05, p1 + 0.05)
    return {"name": name or f"delta={delta:.3f},T={temperature:g}", "kind": kind, "delta": delta,
            "temperature": temperature, "step": step, "summary": {"metrics": {"pass@1": stat(*p1)}}}  # fmt: skip


def run(variants, chosen, **extra) -> RunResults:
    return RunResults.from_json(
        {"variants": variants, "best": {"metric": "pass@1", "variant": chosen, "how": "highest"}, **extra}
    )


SEP = (0.30, 0.25, 0.35)  # an endpoint well below the mix's interval (0.60 ± 0.05)


@pytest.mark.parametrize(
    "variants, chosen, tie, want",
    [
        # a mix clearly above both endpoints: nothing to say
        ([mix(0, SEP), mix(0.5, 0.6), mix(1, SEP)], "delta=0.500,T=1", False, None),
        # every variant the same value (a task nobody solves): a tie, no star
        ([mix(d, (0.0, 0.0, 0.0)) for d in (0, 0.5, 1)], "delta=0.000,T=1", True,
         "All 3 variants tie on Pass@1 (0.0 % on all problems): the run singles none out, so none is marked as "
         "chosen. The best δ is 0: the final checkpoint itself, not a mix."),
        # two of three share the top value
        ([mix(0, SEP), mix(0.25, 0.6), mix(0.5, 0.6)], "delta=0.250,T=1", True,
         "delta=0.250,T=1 ties with delta=0.500,T=1 on Pass@1 (60.0 % on all problems): the choice among them "
         "is arbitrary, so none is marked as chosen."),
        # δ = 1 is the early checkpoint, not a mix
        ([mix(0, SEP), mix(1, 0.6)], "delta=1.000,T=1", False,
         "The best δ is 1: the early checkpoint itself, not a mix."),
        # the interval touches the final checkpoint's (0.55 ≤ 0.55): not separated
        ([mix(0, (0.5, 0.45, 0.55)), mix(0.5, 0.6), mix(1, SEP)], "delta=0.500,T=1", False,
         "The 95% interval of the best δ=0.5 on Pass@1 (all problems: 60.0 [55.0, 65.0] %) overlaps the final "
         "checkpoint's (δ=0, delta=0.000,T=1: 50.0 [45.0, 55.0] %): this run does not separate the mix from "
         "that endpoint."),
        # just apart (0.549 < 0.55): separated
        ([mix(0, (0.5, 0.45, 0.549)), mix(0.5, 0.6), mix(1, SEP)], "delta=0.500,T=1", False, None),
        # overlapping both endpoints
        ([mix(0, 0.58), mix(0.5, 0.6), mix(1, 0.57)], "delta=0.500,T=1", False,
         "The 95% interval of the best δ=0.5 on Pass@1 (all problems: 60.0 [55.0, 65.0] %) overlaps the final "
         "checkpoint's (δ=0, delta=0.000,T=1: 58.0 [53.0, 63.0] %) and the early checkpoint's (δ=1, "
         "delta=1.000,T=1: 57.0 [52.0, 62.0] %): this run does not separate the mix from those endpoints."),
        # an endpoint at another temperature is not this mix's endpoint
        ([mix(0, 0.6, temperature=0.7), mix(0.5, 0.61), mix(1, SEP)], "delta=0.500,T=1", False, None),
        # no interval (a summary without one): no overlap can be judged
        ([mix(0, (0.5,)), mix(0.5, (0.6,)), mix(1, (0.3,))], "delta=0.500,T=1", False, None),
        # the best is not a mix (a trajectory's checkpoint): only ties matter
        ([mix(None, 0.6, "step=400,T=1", kind="checkpoint", step=400), mix(0.5, 0.59)], "step=400,T=1", False,
         None),
    ],
)  # fmt: skip
def test_selection_note_table(variants, chosen, tie, want):
    res = run(variants, chosen)
    assert selection_note(res) == want
    note = check_selection(res)
    assert (note is not None and note.tie) == tie
    assert report.selection_note(res) == want  # the report re-exports it


def test_no_best_or_unknown_best_says_nothing():
    assert selection_note(RunResults({}, {}, [])) is None
    res = run([mix(0, 0.5), mix(1, 0.4)], "delta=0.500,T=1")  # the best is not among the variants
    assert selection_note(res) is None


def test_overlap_is_judged_on_the_test_split_when_a_validation_split_chose():
    """The choice is made on the validation split (ties there), the interval judged where it is reported."""
    a, b = mix(0, SEP), mix(0.5, 0.6)
    a["splits"] = {"validation": {"pass@1": stat(0.4, 0.3, 0.5)}, "test": {"pass@1": stat(0.5, 0.4, 0.62)}}
    b["splits"] = {"validation": {"pass@1": stat(0.7, 0.6, 0.8)}, "test": {"pass@1": stat(0.6, 0.56, 0.64)}}
    res = RunResults.from_json({"variants": [a, b], "best": {"metric": "pass@1", "variant": b["name"], "how": "",
                                "validation": stat(0.7), "test": stat(0.6)}})  # fmt: skip
    assert selection_note(res).startswith(
        "The 95% interval of the best δ=0.5 on Pass@1 (the test split: 60.0 "
    )
    b["splits"]["validation"]["pass@1"] = stat(0.4, 0.3, 0.5)  # equal on the split that chose: a tie
    res = RunResults.from_json({"variants": [a, b], "best": {"metric": "pass@1", "variant": b["name"], "how": "",
                                "validation": stat(0.4), "test": stat(0.6)}})  # fmt: skip
    assert selection_note(res).startswith("All 2 variants tie on Pass@1 (40.0 % on the validation split)")


@pytest.mark.parametrize(
    "extra, delta, want",
    [
        ({}, 0.0, "delta=0.000,T=1"),  # a sampled δ=0 mix
        ({"roles": {"final": "final-ckpt", "early": "early-ckpt"}}, 1.0, "early-ckpt"),  # the demo's roles
        ({"early_step": 50}, 1.0, "step=50,T=1"),  # a trajectory: the checkpoint at the early step
        ({}, 1.0, None),  # nothing at δ=1
    ],
)
def test_endpoint_of_a_mix(extra, delta, want):
    variants = [mix(0, 0.5), mix(0.5, 0.6, step=400), mix(None, 0.3, "step=50,T=1", kind="checkpoint", step=50),
                mix(None, 0.3, "early-ckpt", kind="checkpoint"), mix(None, 0.5, "final-ckpt", kind="checkpoint")]  # fmt: skip
    variants[0]["step"] = 400
    res = run(variants, "delta=0.500,T=1", **extra)
    found = endpoint(res, res.variant("delta=0.500,T=1"), delta)
    assert (found.name if found else None) == want


def test_only_the_variants_measured_on_validation_can_tie_with_a_choice_made_there():
    """The demo chooses among its mixes on validation problems; its checkpoints have no validation value,
    so a checkpoint whose test Pass@1 happens to equal the choice's validation Pass@1 is no tie."""
    split = {"validation": {"pass@1": stat(0.6)}, "test": {"pass@1": stat(0.55, 0.5, 0.6)}}
    other = {"validation": {"pass@1": stat(0.5)}, "test": {"pass@1": stat(0.5, 0.45, 0.55)}}
    variants = [
        mix(None, 0.6, "step=640,T=1", kind="checkpoint", step=640),
        {**mix(0.5, 0.55), "splits": split},
        {**mix(0.25, 0.5), "splits": other},
    ]
    best = {"metric": "pass@1", "variant": "delta=0.500,T=1", "how": "on validation",
            "validation": stat(0.6), "test": stat(0.55, 0.5, 0.6)}  # fmt: skip
    res = RunResults.from_json({"variants": variants, "best": best})
    assert check_selection(res) is None or not check_selection(res).tie
    variants[2]["splits"] = split  # a second mix with the same validation value: a tie
    res = RunResults.from_json({"variants": variants, "best": best})
    assert check_selection(res).tie

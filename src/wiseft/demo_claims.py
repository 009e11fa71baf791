"""The demo's choices and claims on its evaluated variants: the mix chosen on validation problems (a rule
fixed in advance), and the paper's claims (a)–(e) on paired tables of the claims' problems."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from wiseft.claims import (
    Claim,
    claim_best_of_k,
    claim_bias_variance,
    claim_mix_recovers,
    claim_sft_collapse,
    claim_temperature_cannot,
)
from wiseft.paired import PairedTables
from wiseft.results import RunResults, Selection, VariantResult


def choose_mix(
    mixes: list[VariantResult], validation: list[VariantResult], metric: str, deltas: Sequence[float],
    n_eval: int, n_val: int,
) -> Selection:  # fmt: skip
    """The mix with the highest `metric` on the `n_val` validation problems (reported on the `n_eval`
    claims' problems, each mix's two values in its `splits`), or in-sample when there are none."""
    deltas = list(deltas)
    if not validation:
        how = (
            f"highest {metric} among the mixes δ ∈ {deltas}, on all {n_eval} evaluated test problems "
            "(in-sample: the demo's claims use the same problems)"
        )
        return Selection.highest(mixes, metric, how)
    on_val = {v.name: v.summary["metrics"][metric] for v in validation}
    for v in mixes:
        v.splits = {
            "validation": {"n_problems": n_val, metric: on_val[v.name]},
            "test": {"n_problems": n_eval, metric: v.summary["metrics"][metric]},
        }
    best = max(mixes, key=lambda v: on_val[v.name]["value"])  # ties: the smallest δ
    how = (
        f"highest {metric} among the mixes δ ∈ {deltas} on {n_val} validation problems (test problems "
        f"{n_eval + 1}–{n_eval + n_val}); the claims are checked on the other {n_eval}"
    )
    return Selection(metric, best.name, how, on_val[best.name], best.summary["metrics"][metric])


def demo_claims(
    results: RunResults, ks: Sequence[int], seed: int, n_boot: int, with_verifier: bool
) -> list[Claim]:
    """The paper's claims on this run's numbers (its `roles` set); (e) when the toy verifier ran."""
    roles = results.roles
    early, final, mix = roles["early"], roles["final"], roles["mix"]
    temps = {name: results.variant(name).temperature for name in roles["temperatures"]}
    variants = results.variants
    tables = PairedTables({v.name: v.per_problem for v in variants}, ks, seed=seed, n_boot=n_boot,
                          known={v.name: v.table for v in variants})  # fmt: skip
    bias_variance = claim_bias_variance(tables, mix, final, temps)
    peak = sft_peak(results)
    if peak is not None:  # what (d)'s bias² side depends on, recorded beside it (not part of the verdict)
        bias_variance = dataclasses.replace(
            bias_variance, numbers={**bias_variance.numbers, "sft_peak": peak}
        )
    claims = [  # the final model at T=1 is a temperature of the final model too
        claim_sft_collapse(tables, early, final),
        claim_mix_recovers(tables, mix, final),
        claim_temperature_cannot(tables, mix, {final: 1.0, **temps}),
        bias_variance,
    ]
    if with_verifier:
        skipped = (results.base.get("verifier") or {}).get("skipped")
        claims.append(claim_best_of_k(tables, mix, final, skipped))
    return claims


def sft_peak(results: RunResults) -> dict | None:
    """Where Pass@1 on the claims' problems peaked along the evaluated SFT checkpoints (at the final's
    temperature), and how far below that peak the final checkpoint lies: how much late narrowing there was
    for a mix to undo. Recorded beside (d), not used by it (docs/TOY-LOG.md, "Round 9 on a third CPU", has
    how the two went together). None with fewer than two checkpoints evaluated; the earlier step wins a tie."""
    final = results.variant(results.roles["final"])
    points = [
        (v.step, v.summary["metrics"]["pass@1"]["value"])
        for v in results.variants
        if v.kind == "checkpoint" and v.step is not None and v.temperature == final.temperature
    ]
    if len(points) < 2 or final.step is None:
        return None
    best_step, best = max(points, key=lambda point: (point[1], -point[0]))
    value = final.summary["metrics"]["pass@1"]["value"]
    return {"metric": "pass@1", "best_step": best_step, "best": best, "final_step": final.step, "final": value,
            "final_minus_best": value - best}  # fmt: skip

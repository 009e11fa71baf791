"""The paper's claims, checked on this run's numbers (never bent to hold).

(a) Over SFT, Pass@1 rose while Pass@k (every k >= 8 that was measured) fell: from the early checkpoint
    (the mix's anchor) to the final one. Held when the paired 95% bootstrap interval of each difference
    lies entirely on the claimed side of zero.
(b) The best mix recovered Pass@k over the final model (paired interval of every k >= 8 above zero)
    without losing Pass@1 beyond its interval (the mix's Pass@1 is at least the lower end of the final
    model's 95% interval).
(c) No temperature of the final model reached the mix's Pass@1 at equal or higher Pass@k: for every
    temperature and every k >= 8, not (Pass@1_T >= Pass@1_mix and Pass@k_T >= Pass@k_mix), on the
    point estimates.
(d) The best mix lowered bias² = (1−E[ρ])² and Var[ρ] together relative to the final model (the paired
    95% interval of each difference below zero), while every other temperature of the final model traded
    one for the other: its paired differences from the final model at T=1 have opposite signs (point
    estimates, as in (c); their intervals are printed). bias² and Var[ρ] are not per-problem means, so
    their paired intervals recompute both for both variants on the same resamples of problems
    (`PairedTables.bias_variance_diff`).
(e) With a verifier's scores (the demo's toy outcome verifier), the best mix beat the final model under
    Best@K (the verifier picks one of K samples) as well as under majority vote maj@K, K the largest k:
    the paired 95% interval of each difference above zero. Weighted maj@K is reported beside them.

Paired differences are bootstraps over the same problems (all variants answer the same problems with
common random numbers), which is far tighter than comparing two separate intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wiseft.paired import PairedTables


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str
    held: bool
    evidence: str
    numbers: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: dict) -> Claim:
        return cls(
            str(obj.get("key", "")),
            str(obj.get("statement", "")),
            bool(obj.get("held")),
            str(obj.get("evidence", "")),
            obj.get("numbers") if isinstance(obj.get("numbers"), dict) else {},
        )

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "statement": self.statement,
            "held": self.held,
            "evidence": self.evidence,
            "numbers": self.numbers,
        }


def claim_sft_collapse(t: PairedTables, early: str, final: str) -> Claim:
    p1 = t.diff(final, early, "pass@1")
    big = [t.diff(final, early, f"pass@{k}") for k in t.big_ks()]
    held = bool(big) and p1.lo > 0 and all(d.hi < 0 for d in big)
    evidence = f"final − early: {p1.text()}; " + "; ".join(d.text() for d in big)
    return Claim(
        "a",
        "over SFT, Pass@1 rose while Pass@k (k >= 8) fell",
        held,
        evidence,
        {"early": early, "final": final, "diffs": [p1.as_dict()] + [d.as_dict() for d in big]},
    )


def claim_mix_recovers(t: PairedTables, mix: str, final: str) -> Claim:
    big = [t.diff(mix, final, f"pass@{k}") for k in t.big_ks()]
    p1 = t.diff(mix, final, "pass@1")
    mix_p1 = t.value(mix, "pass@1")
    final_p1, final_lo, final_hi = t.interval(final, "pass@1")
    recovered = bool(big) and all(d.lo > 0 for d in big)
    kept = mix_p1 >= final_lo
    evidence = (
        "mix − final: "
        + "; ".join(d.text() for d in big)
        + f"; Pass@1 {mix_p1:.3f} vs final {final_p1:.3f} [{final_lo:.3f}, {final_hi:.3f}] ({p1.text()})"
    )
    return Claim(
        "b",
        "the best mix recovered Pass@k over the final model without losing Pass@1 beyond its interval",
        recovered and kept,
        evidence,
        {
            "mix": mix,
            "final": final,
            "diffs": [d.as_dict() for d in big] + [p1.as_dict()],
            "pass@k_recovered": recovered,
            "pass@1_kept": kept,
            "final_pass@1_interval": [final_lo, final_hi],
        },
    )


def claim_temperature_cannot(t: PairedTables, mix: str, temperatures: dict[str, float]) -> Claim:
    mix_p1 = t.value(mix, "pass@1")
    rows, reached = [], []
    for name, temp in temperatures.items():
        p1 = t.value(name, "pass@1")
        pk = {k: t.value(name, f"pass@{k}") for k in t.big_ks()}
        hits = [k for k in t.big_ks() if p1 >= mix_p1 and pk[k] >= t.value(mix, f"pass@{k}")]
        if hits:
            reached.append(f"T={temp:g} (k={','.join(map(str, hits))})")
        rows.append(
            {"variant": name, "temperature": temp, "pass@1": p1, **{f"pass@{k}": v for k, v in pk.items()}}
        )
    mix_row = {"pass@1": mix_p1, **{f"pass@{k}": t.value(mix, f"pass@{k}") for k in t.big_ks()}}
    nearest = _nearest_temperature(t, mix, temperatures)
    best_t = max(rows, key=lambda r: r["pass@1"]) if rows else None
    evidence = f"mix Pass@1 {mix_p1:.3f}, " + ", ".join(
        f"Pass@{k} {mix_row[f'pass@{k}']:.3f}" for k in t.big_ks()
    )
    if best_t is not None:
        evidence += (
            f"; best temperature by Pass@1: T={best_t['temperature']:g} with Pass@1 {best_t['pass@1']:.3f}"
        )
    if reached:
        evidence += "; reached by " + ", ".join(reached)
    return Claim(
        "c",
        "no temperature of the final model reached the mix's Pass@1 at equal or higher Pass@k",
        bool(rows) and not reached,
        evidence,
        {"mix": mix_row, "temperatures": rows, "reached_by": reached, "nearest": nearest},
    )


def _nearest_temperature(t: PairedTables, mix: str, temperatures: dict[str, float]) -> dict | None:
    """The temperature that came closest to the mix at the largest k, and by how much it fell short.

    A temperature reaches the mix when it is at least as high on Pass@1 and on Pass@K; its shortfall is
    the larger of the mix's two leads. The nearest one has the smallest shortfall; its paired difference
    (mix − it) on the metric of that shortfall is the effect size of (c) (negative: it reached the mix).
    """
    if not t.big_ks() or not temperatures:
        return None
    top = f"pass@{max(t.big_ks())}"
    best = None
    for name, temp in temperatures.items():
        leads = {m: t.value(mix, m) - t.value(name, m) for m in ("pass@1", top)}
        metric = max(leads, key=leads.get)
        if best is None or leads[metric] < best[0]:
            best = (leads[metric], name, temp, metric)
    _, name, temp, metric = best
    return {"variant": name, "temperature": temp, "diff": t.diff(mix, name, metric).as_dict()}


def claim_bias_variance(t: PairedTables, mix: str, final: str, temperatures: dict[str, float]) -> Claim:
    """(d): `temperatures` are the other temperatures of the final model (its T=1 self excluded). The
    statement is about *raising* the temperature: each T > 1 must trade (bias² and Var[ρ] move in opposite
    directions); those below 1 are reported, not judged."""
    b2, var = t.bias_variance_diff(mix, final)
    together = b2.hi < 0 and var.hi < 0
    rows, not_trading = [], []
    for name, temp in temperatures.items():
        tb, tv = t.bias_variance_diff(name, final)
        judged = temp > 1
        trades = tb.value * tv.value < 0
        if judged and not trades:
            not_trading.append(f"T={temp:g}")
        rows.append({"variant": name, "temperature": temp, "judged": judged, "trades": trades,
                     "diffs": [tb.as_dict(), tv.as_dict()]})  # fmt: skip
    raised = [row for row in rows if row["judged"]]
    evidence = f"mix − final: {b2.text()}; {var.text()}"
    for row in rows:
        tb, tv = row["diffs"]
        evidence += (
            f"; T={row['temperature']:g} − T=1{'' if row['judged'] else ' (lower T, not judged)'}: "
            f"bias² {tb['value']:+.3f} [{tb['lo']:+.3f}, {tb['hi']:+.3f}], "
            f"Var[ρ] {tv['value']:+.3f} [{tv['lo']:+.3f}, {tv['hi']:+.3f}]"
        )
    if not_trading:
        evidence += "; not a trade at " + ", ".join(not_trading)
    if not raised:
        evidence += "; no temperature above 1 to compare"
    return Claim(
        "d",
        "the best mix lowered bias² and Var[ρ] together, while raising the temperature traded one for the "
        "other",
        together and bool(raised) and not not_trading,
        evidence,
        {
            "mix": mix,
            "final": final,
            "diffs": [b2.as_dict(), var.as_dict()],
            "together": together,
            "mix_bias_variance": list(t.bias_variance(mix)),
            "final_bias_variance": list(t.bias_variance(final)),
            "temperatures": rows,
            "not_trading": not_trading,
        },
    )


def claim_best_of_k(t: PairedTables, mix: str, final: str, skipped: str | None = None) -> Claim:
    """(e): needs best@K in both variants' tables (every sample of both scored by one verifier); with
    `skipped` (why there are no scores) it is recorded as not held, for that reason."""
    k = max(t.ks)
    if skipped:
        statement = (
            f"the best mix beat the final model under Best@{k} (toy verifier) as well as majority vote"
        )
        return Claim("e", statement, False, f"not checked: {skipped}", {"mix": mix, "final": final})
    best, maj = t.diff(mix, final, f"best@{k}"), t.diff(mix, final, f"maj@{k}")
    wmaj = t.diff(mix, final, f"wmaj@{k}")
    held = best.lo > 0 and maj.lo > 0
    evidence = f"mix − final: {best.text()}; {maj.text()} (weighted by the verifier: {wmaj.text()})"
    return Claim(
        "e",
        f"the best mix beat the final model under Best@{k} (toy verifier) as well as majority vote",
        held,
        evidence,
        {"mix": mix, "final": final, "diffs": [best.as_dict(), maj.as_dict(), wmaj.as_dict()]},
    )


# --- the claims over replicates: one row per seed, and how many seeds each claim held on -----------------


def claim_effects(claim: Claim) -> list[dict]:
    """The paired differences (value, lo, hi) that stand for a claim in a replicate table.

    (a) Pass@1 and Pass@K (final − early), K the largest k; (b) Pass@K and Pass@1 (mix − final); (c) the
    nearest temperature's shortfall (mix − it, with `versus`); (d) bias² and Var[ρ] (mix − final); (e)
    best@K and maj@K (mix − final); (f) Pass@1 and Pass@K after RL (RL from the mix − RL from final).
    """
    n = claim.numbers
    diffs = n.get("diffs") or []
    if claim.key == "a" and diffs:
        return [diffs[0], diffs[-1]]
    if claim.key == "b" and len(diffs) >= 2:
        return [diffs[-2], diffs[-1]]
    if claim.key == "c" and n.get("nearest"):
        near = n["nearest"]
        return [{**near["diff"], "versus": f"T={near['temperature']:g}"}]
    if claim.key == "d":
        return list(diffs)
    if claim.key == "e":
        return list(diffs[:2])
    if claim.key == "f" and diffs:  # RL from the mix − RL from the final checkpoint (`demo_rl`)
        return [diffs[0], diffs[-1]]
    return []


def effect_text(diff: dict) -> str:
    """`Pass@32 -0.227 [-0.283, -0.173]`, and `vs T=0.7` where the claim compares with a temperature."""
    name = str(diff.get("metric", "?")).replace("pass@", "Pass@").replace("best@", "Best@")
    versus = f" vs {diff['versus']}" if diff.get("versus") else ""
    return f"{name} {diff['value']:+.3f} [{diff['lo']:+.3f}, {diff['hi']:+.3f}]{versus}"


def replicate_row(seed: int, claims: list[Claim], extra: dict | None = None) -> dict:
    """One seed's line of the replicate table: which claims held and their effect sizes (plus `extra`)."""
    return {
        "seed": seed,
        "held": {c.key: c.held for c in claims},
        "effects": {c.key: claim_effects(c) for c in claims},
        **(extra or {}),
    }


def replicate_table(rows: list[dict]) -> dict:
    """The seed × claim table: the rows, and on how many seeds each claim (and all of them) held."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row["held"] if k not in keys]
    return {
        "seeds": [row["seed"] for row in rows],
        "claims": keys,
        "rows": list(rows),
        "held": {k: sum(row["held"].get(k) is True for row in rows) for k in keys},
        "all_held": sum(all(row["held"].get(k) is True for k in keys) for row in rows),
        "n": len(rows),
    }

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
        {"mix": mix_row, "temperatures": rows, "reached_by": reached},
    )

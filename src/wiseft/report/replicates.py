"""The seed × claim table of a demo run over several seeds (`results.replicates`), for both documents."""

from __future__ import annotations

from wiseft.claims import effect_text


def replicate_table(rep: dict | None) -> tuple[list[str], list[list[str]], str] | None:
    """(header, rows, summary sentence) of the replicate table, or None when the results have none.

    A cell says whether the claim held on that seed and the paired effects behind it; the last row
    counts the seeds each claim held on."""
    if not rep or not rep.get("rows"):
        return None
    keys = list(rep.get("claims") or [])
    header = ["seed"] + [f"({k})" for k in keys] + ["all"]
    rows = []
    for row in rep["rows"]:
        cells = [str(row.get("seed", "?"))]
        for key in keys:
            held = "held" if row["held"].get(key) else "did not hold"
            cells.append(
                "; ".join([held] + [effect_text(d) for d in (row.get("effects") or {}).get(key, [])])
            )
        cells.append("yes" if all(row["held"].get(k) for k in keys) else "no")
        rows.append(cells)
    n = rep.get("n", len(rows))
    counts = rep.get("held") or {}
    rows.append(["held on"] + [f"{counts.get(k, 0)}/{n}" for k in keys] + [f"{rep.get('all_held', 0)}/{n}"])
    summary = (
        f"The whole story on {n} seeds (pretraining and the fine-tunes seeded by each, every seed its own "
        "base); "
        "effects are paired differences with 95% bootstrap intervals over problems."
    )
    return header, rows, summary

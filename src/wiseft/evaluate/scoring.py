"""`wiseft score`: Pass@k, maj@k, Best@k and weighted maj@k with intervals from graded records, written as
metrics.json (apart from `offline.grade_file`, so that grading never loads the metrics and results)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wiseft.atomic import write_json
from wiseft.errors import OutputError
from wiseft.grading.sources import read_graded
from wiseft.limits import check_n_boot
from wiseft.metrics import score_records
from wiseft.results import metrics_json


@dataclass(frozen=True)
class ScoreReport:
    body: dict  # the metrics.json
    path: Path  # where it was written
    ks: tuple[int, ...]


def score_file(
    graded: str | Path, ks: tuple[int, ...], *, seed: int = 0, n_boot: int = 1000, variant: str | None = None,
    output: str | Path | None = None, force: bool = False, group_by: list[str] | None = None,
    verifier: str | None = None,
) -> ScoreReport:  # fmt: skip
    """Score graded records and write metrics.json (default: beside `graded`); `group_by` breaks the
    metrics down by record fields (default: MATH's subject and level when present); `verifier` (an id)
    names whose scores go into best@k and wmaj@k when samples carry scores of several."""
    check_n_boot(n_boot)
    out = Path(output) if output else Path(graded).with_name("metrics.json")
    if out.exists() and not force:
        raise OutputError(f"output {out} already exists; choose another -o/--output or pass --force")
    records = read_graded(graded, verifier=verifier, variant=variant)
    summaries, graders = score_records(
        records, ks, seed=seed, n_boot=n_boot, variant=variant, group_by=group_by, verifier=verifier
    )
    body = metrics_json(summaries, ", ".join(graders) or None, str(graded))
    write_json(out, body)
    return ScoreReport(body, out, tuple(ks))

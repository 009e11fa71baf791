"""The one owner of an evaluation's output files.

A run directory holds `results.json` (`RunResults.to_json()`), the resolved config (`config.yaml`),
`samples.jsonl` (every graded sample record, with its problem's gold answer and prompt), the sample store
(`samples.db`, written as the run goes) and, unless switched off, `report/`. `wiseft eval` writes
`metrics.json` (the shape of `wiseft score`) instead of results.json, and `machine.json` when the engine
describes where it sampled (`--ray`: results.json's `machine`). Each file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

from wiseft.atomic import write_json
from wiseft.config import write_resolved
from wiseft.errors import OutputError
from wiseft.records import write_records
from wiseft.report import build, load_rl_runs
from wiseft.results import RunResults, metrics_json


def check_output(out: str | Path, result_file: str, force: bool) -> Path:
    """The output directory may hold a killed run's store (it resumes), but not finished results unless
    `force`. Checked before any work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a directory; choose another -o/--output")
    if (out / result_file).exists() and not force:
        raise OutputError(
            f"output {out} already holds {result_file}; pass --force to recompute it (stored samples are "
            "reused) or choose another -o/--output"
        )
    return out


def write_run(out: Path, results: RunResults, records: list[dict], cfg, report: bool = True) -> Path | None:
    """results.json, samples.jsonl and the resolved config; then the report unless `report` is False
    (its path)."""
    write_records(out / "samples.jsonl", records)
    write_results(out, results, cfg)
    return write_report(out, results) if report else None


def write_results(out: Path, results: RunResults, cfg=None) -> None:
    """results.json, and the resolved config (`config.yaml`) when `cfg` is given."""
    write_json(out / "results.json", results.to_json())
    if cfg is not None:
        write_resolved(out, cfg)


def write_report(out: Path, results: RunResults) -> Path:
    """The report of `results` in OUT/report (replacing an older one), with the RL runs found in OUT."""
    return build(results, out / "report", force=True, rl=load_rl_runs(out))


def write_eval(out: Path, results: RunResults, records: list[dict], cfg) -> None:
    """metrics.json, samples.jsonl (graded records of every variant) and the resolved config."""
    grader = results.versions.get("grader")
    summaries = [(v.name, v.summary) for v in results.variants]
    write_records(out / "samples.jsonl", records)
    write_resolved(out, cfg)
    write_json(
        out / "metrics.json", metrics_json(summaries, grader, str(out / "samples.jsonl"), results.task)
    )
    if results.machine:  # where it sampled (a Ray run: the cluster, the actors, which actor drew each unit)
        write_json(out / "machine.json", results.machine)

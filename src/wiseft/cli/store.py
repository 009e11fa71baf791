"""`wiseft store info|export|import STORE`: look into a sample store and move samples in and out as JSONL.

The JSONL is the sample-record schema of `wiseft grade` (README), so a store's samples can be graded or
scored elsewhere, and samples produced by another tool (vLLM, an API) can be brought into a store.
`export --format lm-eval|lighteval` writes the harnesses' per-sample files instead (`wiseft.harness`).
"""

from __future__ import annotations

from pathlib import Path

from wiseft.cli.progress import stdout_console
from wiseft.errors import ConfigError, OutputError, StoreError


def register(subparsers) -> None:
    p = subparsers.add_parser("store", help="inspect a sample store; export or import its samples as JSONL")
    sub = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)

    info = sub.add_parser("info", help="variants in the store with their sample and grade counts")
    info.add_argument("store", help="sample store (samples.db)")
    info.set_defaults(func=run_info)

    exp = sub.add_parser(
        "export",
        help="write sample records as JSONL, or as lm-evaluation-harness / lighteval per-sample files",
        description="Write the samples of a store: sample records (with grades, prompt and gold where "
        "known) as JSONL, or the per-sample files lm-evaluation-harness (--log_samples) or lighteval "
        "(details) write, for their viewers and scripts; those need every sample graded.",
    )
    exp.add_argument("store", help="sample store (samples.db)")
    exp.add_argument("-o", "--output", required=True, help="JSONL file (--format jsonl) or output directory")
    exp.add_argument(
        "--format", default="jsonl", metavar="FORMAT",
        help="jsonl (default), lm-eval (DIR/VARIANT/samples_TASK_DATE.jsonl) or lighteval "
        "(DIR/details/VARIANT/DATE/details_TASK|0_DATE.parquet; needs pyarrow)",
    )  # fmt: skip
    exp.add_argument("--variant", action="append", help="only this variant (repeatable; default: all)")
    exp.add_argument(
        "--verifier", metavar="ID",
        help="whose scores the records carry when the store holds scores of several verifiers (`wiseft "
        "verify`; default: the only one)",
    )  # fmt: skip
    exp.add_argument(
        "--k", help="Pass@k values in the harness files, each ≤ n (default: powers of two up to n)"
    )
    exp.add_argument(
        "--force", action="store_true",
        help="replace an existing JSONL file; write into an existing directory (files of the same name "
        "are replaced, others kept)",
    )  # fmt: skip
    exp.set_defaults(func=run_export)

    imp = sub.add_parser("import", help="add JSONL sample records (graded or not) to a store")
    imp.add_argument("store", help="sample store (created when absent)")
    imp.add_argument("samples", help="JSONL of sample records")
    imp.add_argument("--task", required=True, help="task the samples answer (recorded with each variant)")
    imp.add_argument("--variant", default="imported", help="variant name for records without one")
    imp.set_defaults(func=run_import)


def run_info(args) -> int:
    from rich.table import Table

    from wiseft.store import SampleStore

    _check_exists(args.store)
    with SampleStore(args.store, writer=False) as store:
        rows = store.summary()
        scorers = [(store.verifier(vid), n) for vid, n in store.scored_by().items()]
    table = Table(title=f"sample store {args.store}")
    for col in ("variant", "kind", "task", "T", "step", "problems", "samples", "graded", "correct"):
        table.add_column(col, justify="left" if col in ("variant", "kind", "task") else "right")
    for r in rows:
        acc = f"{r['correct'] / r['graded']:.3f}" if r["graded"] else "-"
        table.add_row(
            r["name"], r["kind"], r["task"], _fmt(r["temperature"]), _fmt(r["step"]),
            str(r["problems"]), str(r["samples"]), str(r["graded"]), acc,
        )  # fmt: skip
    stdout_console().print(table)
    if scorers:
        _verifiers_table(scorers)
    return 0


def _verifiers_table(scorers: list) -> None:
    """The verifiers whose scores the store holds (`wiseft verify`)."""
    from rich.table import Table

    table = Table(title="verifier scores")
    for col in ("verifier id", "kind", "from", "votes", "samples scored"):
        table.add_column(col, justify="right" if col == "samples scored" else "left")
    for row, n in scorers:
        where = row.identity.get("path") or row.identity.get("imported_from") or "-"
        table.add_row(row.id, row.kind or "-", str(where), row.vote_transform or "-", str(n))
    stdout_console().print(table)


def run_export(args) -> int:

    from wiseft.harness import check_format
    from wiseft.store import SampleStore

    if args.format != "jsonl":
        return _export_harness(args, check_format(args.format))
    if args.k is not None:
        raise ConfigError("--k applies to --format lm-eval and lighteval, not to jsonl")
    _check_exists(args.store)
    out = Path(args.output)
    if out.exists() and not args.force:
        raise OutputError(f"output {out} already exists; choose another -o/--output or pass --force")
    with SampleStore(args.store, writer=False) as store:
        variants = [store.find_variant(name) for name in args.variant] if args.variant else None
        n = store.export_jsonl(out, variants, verifier=args.verifier)
    stdout_console().print(f"exported {n} sample records to {out}")
    return 0


def _export_harness(args, fmt: str) -> int:
    from wiseft.grids import parse_ks
    from wiseft.harness import export_store
    from wiseft.store import SampleStore

    ks = parse_ks(args.k) if args.k is not None else None
    _check_exists(args.store)
    with SampleStore(args.store, writer=False) as store:
        done = export_store(
            store, args.output, fmt, variants=args.variant, ks=ks, force=args.force, verifier=args.verifier
        )
    console = stdout_console()
    console.soft_wrap = True  # paths whole on one line each
    for name, problems in zip(done.variants, done.problems, strict=True):
        console.print(f"variant {name}: {problems} problems")
    console.print(f"wrote {len(done.files)} {fmt} files under {args.output}:")
    for path in done.files:
        console.print(f"  {path}", highlight=False, markup=False)
    return 0


def run_import(args) -> int:

    from wiseft.records import read_records
    from wiseft.store import SampleStore, problem_fields

    if not Path(args.samples).is_file():
        raise StoreError(f"samples file {args.samples} does not exist")
    records = read_records(args.samples)  # checked before the store is opened (or created)
    problem_fields(records, args.samples)
    with SampleStore(args.store) as store:
        added = store.import_records(records, args.samples, args.task, default_variant=args.variant)
    for name, n in added.items():
        stdout_console().print(f"variant {name}: {n} new sample records")
    return 0


def _check_exists(path: str) -> None:
    if not Path(path).is_file():
        raise StoreError(f"sample store {path} does not exist; give the samples.db of a sweep, eval or demo")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:g}"

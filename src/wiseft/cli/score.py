"""`wiseft score GRADED.jsonl --k 1,2,4,…`: metrics with bootstrap intervals, a table and metrics.json.

GRADED is a graded JSONL file (from `wiseft grade`) or a graded sample store (every variant under its own
name). With scores (`wiseft verify`), best@k and weighted maj@k (wmaj@k) join, from one verifier's scores
(`--verifier ID` when there are several). One variant: metrics.json is the `metrics.summarize` dictionary plus "variant", "grader" and
"source"; several: {"variants": [{"name", "summary"}, …], "grader", "source"}.
"""

from __future__ import annotations

from wiseft.cli.progress import stdout_console
from wiseft.grids import parse_ks


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="Pass@k, maj@k, best@k with bootstrap intervals, bias–variance and diversity of graded samples",
        description="Score a graded JSONL (from `wiseft grade`) or a graded sample store: print a table with "
        "95% bootstrap intervals and write metrics.json.",
    )
    p.add_argument("graded", help="graded JSONL (output of `wiseft grade`) or a graded sample store")
    p.add_argument("--k", default="1", help="comma-separated k values, each ≤ n (default 1)")
    p.add_argument("-o", "--output", help="metrics JSON to write (default: metrics.json beside GRADED)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--variant", help="score only this variant (default: every variant in the file)")
    p.add_argument(
        "--verifier",
        metavar="ID",
        help="whose scores go into best@k and wmaj@k when samples carry scores of several verifiers "
        "(the id `wiseft verify` printed; required then)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument(
        "--group-by",
        help="comma-separated record fields to break the metrics down by (default: subject and level when "
        "every record has them, as MATH's do)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from wiseft.cli.tables import metrics_tables
    from wiseft.evaluate.scoring import score_file

    ks = parse_ks(args.k)
    report = score_file(
        args.graded, ks, seed=args.seed, n_boot=args.n_boot, variant=args.variant, output=args.output,
        force=args.force, group_by=[f.strip() for f in args.group_by.split(",") if f.strip()] if args.group_by else None,
        verifier=args.verifier,
    )  # fmt: skip
    console = stdout_console()
    metrics_tables(console, report.body, list(ks))
    for line in verifier_notes(report.body):
        console.print(line, highlight=False)
    console.print(f"metrics written to {report.path}")
    return 0


def verifier_notes(body: dict) -> list[str]:
    """Whose scores best@k and wmaj@k read, and which variants lack some scores (and so lack both)."""
    lines, seen = [], set()
    for v in body["variants"]:
        info = v["summary"].get("verifier")
        if not info:
            continue
        if info["scored"] < info["samples"]:
            lines.append(
                f"note: variant {v['name']}: {info['scored']} of {info['samples']} samples are scored; best@k "
                "and wmaj@k need every sample scored (run `wiseft verify` again to finish)"
            )
        key = (info["id"], info["vote_transform"])
        if key not in seen:
            seen.add(key)
            who = f"verifier {info['id']}" if info["id"] else "the records' `score` (no verifier named)"
            lines.append(
                f"best@k and wmaj@k: scores of {who}; votes weighted by {info['vote_transform']}(score)"
            )
    return lines

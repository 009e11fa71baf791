"""`wiseft soup CKPT... --task T --split S --n N --metric M -o OUT`: the greedy model soup (Wortsman et al.)."""

from __future__ import annotations

import argparse

from wiseft.cli._common import ProgressView, interval, load_config, table_console
from wiseft.cli.progress import stderr_console
from wiseft.config import add_options, option_dests
from wiseft.evaluate.soup_config import SoupConfig

EPILOG = """examples:
  wiseft soup A B C D --task toy --split sft --n 8 --metric pass@1 -o soup
  wiseft soup A B C --task gsm8k --data DIR --split train --limit 200 --n 4 --metric maj@4 -o soup
  wiseft soup A B C --task math500 --val-fraction 0.5 --n 4 -o soup   # a seeded half; the rest held out
  wiseft soup A B C --task math500 --in-sample --n 4 -o soup     # chosen on the test problems (recorded)

Every candidate is evaluated alone, then tried in the order of its score (best first; ties keep the order
given): a candidate stays in the soup (the uniform average of the ones kept) when the soup with it scores
at least as well as without it. Each soup is written into the model in memory, never to disk; samples go
to a store (default OUTPUT.samples.db), so a rerun of a killed run resumes. OUTPUT is the bytes of
`wiseft merge KEPT... --method linear` with equal weights; its wiseft.json records the order, every
score (with its bootstrap interval) and which candidates were kept."""

HIDDEN = {"ray", "candidates", "length_reference"}  # Ray: variants decided one at a time; no length report


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "soup",
        help="greedy model soup: keep each checkpoint whose addition does not lower a validation metric",
        description="The greedy soup of candidate checkpoints by a metric on a validation split, evaluated "
        "in memory; the chosen soup is written once, as wiseft merge would write it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("candidates", nargs="*", help="candidate model directories (fine-tuned from one model)")
    p.add_argument("--config", help="YAML file with any of the settings below (flags override it)")
    add_options(p, SoupConfig, [d for d in option_dests(SoupConfig) if d.split(".")[0] not in HIDDEN])
    p.add_argument("-o", "--output", required=True, help="output model directory (written whole at the end)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from wiseft.evaluate.soup import run_soup

    cfg = load_config(SoupConfig, args, candidates=tuple(args.candidates) or None)
    with ProgressView(stderr_console()) as view:
        result = run_soup(cfg, args.output, progress=view, force=args.force)
    show_soup(table_console(), result)
    return 0


def show_soup(console, result) -> None:
    """One row per candidate in the greedy order: its own score, the soup tried with it, kept or not."""
    from rich.table import Table

    trace, names, record = result.trace, result.labels, result.record
    metric = record["metric"]
    val = record["validation"]
    table = Table(
        title=f"greedy soup by {metric} on {val['n_problems']} {val['task']} {val['split']} problems",
        caption="value [95% bootstrap interval over problems]",
    )
    for column in ("rank", "candidate", f"{metric} alone", f"soup {metric}", "kept"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    tried = {s.candidate: s for s in trace.steps}
    for rank, i in enumerate(trace.order, 1):
        step = tried.get(i)
        soup = interval(step.score.to_json()) if step else "(first)"
        kept = "yes" if i in trace.kept else "no"
        table.add_row(str(rank), names[i], interval(trace.scores[i].to_json()), soup, kept)
    console.print(table)
    if val["in_sample"]:
        console.print("[yellow]note:[/] in-sample: the soup was chosen on the test problems themselves")
    console.print(
        f"kept {len(trace.kept)} of {len(trace.scores)} candidates: {', '.join(names[i] for i in trace.kept)} "
        f"({metric} {interval(trace.final.to_json())}) → {result.merged.out}",
        highlight=False,
    )

"""`wiseft eval MODEL --task T --n N --k …`: sample → grade → score one model; table and metrics.json.

metrics.json has the shape `wiseft score` writes (one temperature: the summary plus "variant", "grader",
"source"; several: {"variants": [{"name", "summary"}], …}); samples.jsonl holds the graded sample records,
config.yaml the resolved settings, samples.db the store (a rerun resumes from it).
"""

from __future__ import annotations

from wiseft.cli.sweep import COMMON, ProgressView, add_common_args, overrides, prepare_output, table_console


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="sample, grade and score one model on a task (Pass@k, maj@k with intervals)",
        description="Sample n completions per problem from MODEL, grade them and compute Pass@k/maj@k with "
        "bootstrap intervals. Writes metrics.json, samples.jsonl and config.yaml into the output.",
    )
    p.add_argument("model", help="model directory (Hugging Face format)")
    add_common_args(p, "eval-out")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from wiseft.atomic import write_json
    from wiseft.cli.score import _single_table, _variants_table
    from wiseft.config import load, write_resolved
    from wiseft.grading.records import write_records
    from wiseft.sweep import ModelEvalConfig, run_eval

    flags = overrides(args, COMMON)
    flags["model"] = args.model
    cfg = load(ModelEvalConfig, args.config, flags)
    out = prepare_output(args, "metrics.json")
    console = Console(stderr=True)
    with ProgressView(console) as view:
        entries = run_eval(cfg, cfg.model, out, progress=view)
    grader = entries[0]["grader"]
    source = str(out / "samples.jsonl")
    if len(entries) == 1:
        body = {"variant": entries[0]["name"], "grader": grader, **entries[0]["summary"], "source": source}
    else:
        body = {"variants": [{"name": e["name"], "summary": e["summary"]} for e in entries],
                "grader": grader, "source": source}  # fmt: skip
    write_records(out / "samples.jsonl", [r for e in entries for r in e["records"]])
    write_resolved(out, cfg)
    write_json(out / "metrics.json", body)
    show = table_console()
    if "variants" in body:
        _variants_table(show, body, list(cfg.k))
    else:
        _single_table(show, body, list(cfg.k))
    show.print(f"metrics written to {out / 'metrics.json'}")
    return 0

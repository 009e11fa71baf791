"""`wiseft eval MODEL --task T --n N --k …`: sample → grade → score one model; table and metrics.json.

metrics.json has the shape `wiseft score` writes; samples.jsonl holds the graded sample records,
config.yaml the resolved settings, samples.db the store (a rerun resumes from it).
"""

from __future__ import annotations

from wiseft.cli._common import add_eval_args, load_config, start_ray_early
from wiseft.cli.progress import ProgressView, stderr_console
from wiseft.evaluate.config import ModelEvalConfig


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="sample, grade and score one model on a task (Pass@k, maj@k with intervals)",
        description="Sample n completions per problem from MODEL, grade them and compute Pass@k/maj@k with "
        "bootstrap intervals. Writes metrics.json, samples.jsonl and config.yaml into the output.",
    )
    p.add_argument("model", help="model directory (Hugging Face format)")
    add_eval_args(p, ModelEvalConfig, "eval-out")
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = load_config(ModelEvalConfig, args, model=args.model)
    start_ray_early(cfg)
    from wiseft.cli.tables import metrics_tables, print_warnings, table_console
    from wiseft.evaluate.runners import run_eval
    from wiseft.results import metrics_json

    console = stderr_console()
    with ProgressView(console) as view:
        results = run_eval(cfg, args.output, progress=view, force=args.force)
    show = table_console()
    body = metrics_json([(v.name, v.summary) for v in results.variants], results.versions["grader"], None)
    metrics_tables(show, body, list(cfg.k))
    print_warnings(console, results)
    show.print(f"metrics written to {args.output}/metrics.json")
    return 0

"""`wiseft trajectory RUN_DIR`: every checkpoint-* of a training run, raw and WiSE-FT-mixed with an early
checkpoint, evaluated and tabulated by step (results.json, config.yaml, report/)."""

from __future__ import annotations

from wiseft.cli._common import add_eval_args, load_config, start_ray_early
from wiseft.cli.progress import ProgressView, stderr_console
from wiseft.evaluate.config import TrajectoryConfig


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "trajectory",
        help="evaluate every checkpoint of a training run, raw and mixed with an early checkpoint",
        description="For each RUN_DIR/checkpoint-STEP: sample, grade and score it as is, and mixed with the "
        "early checkpoint at each δ (θ = δ·early + (1−δ)·checkpoint). The table is ordered by step.",
    )
    p.add_argument("run_dir", help="training run directory holding checkpoint-STEP directories")
    p.add_argument("--no-report", action="store_true", help="do not build the report")
    add_eval_args(p, TrajectoryConfig, "trajectory-out")
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = load_config(TrajectoryConfig, args, run_dir=args.run_dir)
    start_ray_early(cfg)
    from wiseft.cli.tables import print_warnings, results_table, table_console
    from wiseft.evaluate.runners import run_trajectory

    console = stderr_console()
    with ProgressView(console) as view:
        results = run_trajectory(cfg, args.output, progress=view, report=not args.no_report, force=args.force)
    title = (
        f"trajectory: {results.task['n_problems']} problems × n={cfg.n}, early = step {results.early_step}"
    )
    show = table_console()
    results_table(show, results, title)
    print_warnings(stderr_console(), results)
    show.print(f"results written to {args.output}/results.json")
    return 0

"""`wiseft trajectory RUN_DIR`: every checkpoint-* of a training run, raw and WiSE-FT-mixed with an early
checkpoint, evaluated and tabulated by step (results.json, config.yaml, report/)."""

from __future__ import annotations

from wiseft.cli.sweep import (
    COMMON,
    ProgressView,
    add_common_args,
    overrides,
    prepare_output,
    results_table,
    table_console,
    write_results,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "trajectory",
        help="evaluate every checkpoint of a training run, raw and mixed with an early checkpoint",
        description="For each RUN_DIR/checkpoint-STEP: sample, grade and score it as is, and mixed with the "
        "early checkpoint at each δ (θ = δ·early + (1−δ)·checkpoint). The table is ordered by step.",
    )
    p.add_argument("run_dir", help="training run directory holding checkpoint-STEP directories")
    p.add_argument("--early", type=int, help="step of the early checkpoint to mix with (default: the first)")
    p.add_argument("--delta", help="δ value(s) of the mixes, comma-separated (default 0.5)")
    p.add_argument("--val-fraction", type=float, help="share of problems that choose the best (default 0.5)")
    p.add_argument("--metric", help="metric that chooses the best variant (default pass@1)")
    p.add_argument("--no-report", action="store_true", help="do not build the report")
    add_common_args(p, "trajectory-out")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from wiseft.config import load
    from wiseft.sweep import TrajectoryConfig, run_trajectory

    flags = overrides(args, COMMON + ("early", "delta", "val_fraction", "metric"))
    flags["run_dir"] = args.run_dir
    cfg = load(TrajectoryConfig, args.config, flags)
    out = prepare_output(args, "results.json")
    console = Console(stderr=True)
    with ProgressView(console) as view:
        results = run_trajectory(cfg, out, progress=view)
    results["variants"].sort(key=lambda v: (v["step"] if v["step"] is not None else -1, v["delta"] or 0.0))
    write_results(out, results, cfg, args.no_report, console)
    title = f"trajectory: {results['task']['n_problems']} problems × n={cfg.n}, early = step {results['early_step']}"
    show = table_console()
    results_table(show, results, title)
    show.print(f"results written to {out / 'results.json'}")
    return 0

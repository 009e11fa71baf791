"""`wiseft demo`: SFT collapses diversity, WiSE-FT rescues it, temperature cannot — on a CPU in minutes."""

from __future__ import annotations

import time
from pathlib import Path

from wiseft.cli.progress import LogLines, stderr_console, stdout_console


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole effect end to end on a tiny model (a few minutes on a CPU)",
        description="Pretrain a tiny sloppy base (cached), fine-tune it on 96 clean problems with checkpoints, "
        "evaluate the trajectory, early⊕final mixes and temperatures of the final model (Pass@1…Pass@32, "
        "maj@32, distinct answers, bootstrap intervals), check the paper's three claims on this run, and "
        "write results.json and the report.",
    )
    p.add_argument("-o", "--output", help="output directory (default: wiseft-out/demo-<UTC time>)")
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    p.add_argument("--fresh", action="store_true", help="rebuild the base model even if it is cached")
    p.add_argument("--no-report", action="store_true", help="skip report.md/report.html and the plots")
    p.add_argument("--cache-dir", help="where the base model is cached (default: ~/.cache/wiseft)")
    p.add_argument("--data-seed", type=int, default=None, help="seed of the SFT/test problems (default 5)")
    p.add_argument("--pretrain-seed", type=int, default=None, help="seed of pretraining (default 2)")
    p.add_argument("--sft-seed", type=int, default=None, help="seed of SFT batches (default 0)")
    p.add_argument("--sample-seed", type=int, default=None, help="seed of sampling and bootstrap (default 0)")
    p.add_argument("--n-test", type=int, default=None, help="test problems (default 400)")
    p.add_argument("--n-eval", type=int, default=None, help="test problems evaluated (default 300)")
    p.add_argument("--n", type=int, default=None, help="samples per problem (default 32)")
    p.add_argument("--delta", default=None, help="δ grid of the early⊕final mixes, e.g. 0.25,0.5,0.75")
    p.add_argument("--temperature", default=None, help="temperatures of the final model, e.g. 0.7,1.3,1.6")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--thinking", action="store_true",
                   help="instead: the Instruct ↔ Thinking interpolation's three stages (wiseft.demo_thinking)")  # fmt: skip
    p.set_defaults(func=run)


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    from wiseft.errors import ConfigError

    if text is None:
        return None
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag} is empty; give comma-separated numbers")
    return values


def build_config(args):
    import dataclasses

    from wiseft.demo import DemoConfig
    from wiseft.train.toy import ToyRecipe

    recipe_changes = {
        k: v
        for k, v in {
            "data_seed": args.data_seed,
            "pretrain_seed": args.pretrain_seed,
            "sft_seed": args.sft_seed,
            "n_test": args.n_test,
            "threads": args.threads,
        }.items()
        if v is not None
    }
    recipe = dataclasses.replace(ToyRecipe(), **recipe_changes)
    changes = {
        k: v
        for k, v in {
            "recipe": recipe,
            "n": args.n,
            "n_eval": args.n_eval if args.n_eval is not None else min(DemoConfig.n_eval, recipe.n_test),
            "sample_seed": args.sample_seed,
            "deltas": _floats(args.delta, "--delta"),
            "temperatures": _floats(args.temperature, "--temperature"),
            "threads": args.threads,
        }.items()
        if v is not None
    }
    return DemoConfig(**changes)


def run(args) -> int:
    if args.thinking:  # issue 16: its own module
        from wiseft.cli.demo_thinking import run_thinking

        return run_thinking(args)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from transformers.utils import logging as hf_logging

    from wiseft.atomic import check_output_dir
    from wiseft.demo import base_path, default_cache_dir, run_demo

    hf_logging.disable_progress_bar()  # transformers' per-load bars would interleave with ours
    hf_logging.set_verbosity_error()  # training feeds right-padded rows without a mask on purpose
    console = stderr_console()
    cfg = build_config(args)
    out = Path(args.output or f"wiseft-out/demo-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    check_output_dir(out, args.force)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    cached = (base_path(cfg, cache) / "model.safetensors").is_file() and not args.fresh
    console.print(
        f"[bold]wiseft demo[/]: base model {'cached in' if cached else 'to build into'} {base_path(cfg, cache)}"
    )
    labels = {
        "pretrain": "1/4 pretrain the sloppy base",
        "sft": f"2/4 SFT on {cfg.recipe.n_sft} clean problems",
        "eval": "3/4 sample, grade, summarise",
        "report": "4/4 report",
    }
    with Progress(
        TextColumn("{task.description:34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, int] = {}
        lines = LogLines(console)

        def progress(stage, done, total, detail):
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=total, detail="")
            bar.update(tasks[stage], completed=done, total=total, detail=detail)
            lines.update(stage, labels.get(stage, stage), done, total, detail)

        results = run_demo(
            cfg,
            out,
            cache_dir=cache,
            fresh=args.fresh,
            report=not args.no_report,
            force=args.force,
            progress=progress,
        )
    show(results, stdout_console(), out, report=not args.no_report)
    return 0


def _cell(metric) -> str:
    return f"{metric['value']:.3f} [{metric['lo']:.3f}, {metric['hi']:.3f}]"


def headline_table(results):
    from rich.table import Table

    roles = results.roles
    table = Table()
    for col in ("model", "Pass@1", "Pass@8", "Pass@32", "maj@32", "distinct"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for v in results.variants:
        m = v.summary["metrics"]
        style = "bold" if v.name in (roles["mix"], roles["final"], roles["early"]) else None
        table.add_row(
            _label(v, roles),
            _cell(m["pass@1"]),
            f"{m['pass@8']['value']:.3f}",
            _cell(m["pass@32"]),
            f"{m['maj@32']['value']:.3f}",
            f"{v.summary['diversity']['mean_distinct']:.1f}",
            style=style,
        )
    n = results.variants[-1].summary["n"]
    table.title = f"wiseft demo: {results.task['n_problems']} held-out toy problems, n={n} samples each"
    return table


def _label(v, roles) -> str:
    if v.kind == "base":
        return "base (sloppy pretraining)"
    if v.kind == "checkpoint":
        tag = " (early)" if v.name == roles["early"] else " (final)" if v.name == roles["final"] else ""
        return f"SFT step {v.step}{tag}"
    if v.kind == "mix":
        star = "  ← best mix" if v.name == roles["mix"] else ""
        return f"{v.delta:g}·early + {1 - v.delta:g}·final{star}"
    return f"final at T={v.temperature:g}"


def show(results, console, out: Path, report: bool) -> None:
    from rich.table import Table

    console.print(headline_table(results))
    claims = Table(title="the paper's claims, checked on this run", show_lines=True)
    claims.add_column("", justify="center")
    claims.add_column("claim")
    claims.add_column("evidence (paired 95% bootstrap intervals)")
    for c in results.claims:
        mark = "[green]held[/]" if c.held else "[red]did not hold[/]"
        claims.add_row(mark, f"({c.key}) {c.statement}", c.evidence)
    console.print(claims)
    t, cpu = results.timings, results.cpu_seconds or {}
    timing = Table(title="where the time went (seconds)")
    timing.add_column("stage")
    timing.add_column("wall", justify="right")
    timing.add_column("CPU", justify="right")
    base_label = "base (cached)" if results.base["cached"] else "base (pretraining)"
    rows = [
        (base_label, "base"),
        ("SFT", "sft"),
        ("evaluation", "eval"),
        ("  switch weights", "eval.switch"),
        ("  sample", "eval.sample"),
        ("  grade", "eval.grade"),
        ("  summarise", "eval.score"),
        ("claims", "claims"),
        ("report", "report"),
        ("total", "total"),
    ]
    for name, key in rows:
        if key in t:
            c = cpu.get(key)
            timing.add_row(name, f"{t[key]:.1f}", "" if c is None else f"{c:.1f}")
    console.print(timing)
    m = results.machine or {}
    if m:
        console.print(
            f"{m['torch_threads']} thread(s) on {m['cpu_count']} CPUs ({m.get('busy_cores_before', '?')} busy at "
            f"the start); load average {m['loadavg_1min_before']} before, {m['loadavg_1min_after']} after "
            "(other processes slow the demo)"
        )
    held = sum(c.held for c in results.claims)
    console.print(f"{held}/{len(results.claims)} claims held. Results: [bold]{out / 'results.json'}[/]")
    if report:
        console.print(f"Report: [bold]{out / 'report' / 'report.html'}[/] (and report.md)")
    console.print(f"Output directory: [bold]{out}[/]")

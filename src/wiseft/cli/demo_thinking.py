"""`wiseft demo --thinking`: the Instruct ↔ Thinking interpolation's three stages on the toy world
(`wiseft.demo_thinking`): progress, the λ table, the claims held or not, where the time went; with
--seeds/--replicates the whole story once per seed and the seed × claim table."""

from __future__ import annotations

import time
from pathlib import Path

from wiseft.atomic import check_output_dir
from wiseft.cli.demo import base_line, parse_seeds
from wiseft.cli.progress import LogLines, stderr_console, stdout_console
from wiseft.errors import ConfigError

NOT_THINKING = {
    "delta": "--delta",
    "temperature": "--temperature",
    "n_val": "--n-val",
    "no_verifier": "--no-verifier",
}  # `wiseft demo`'s own settings


def build_config(args):
    import dataclasses

    from wiseft.demo_thinking import ThinkingDemoConfig
    from wiseft.train.toy_thinking import StyleSFT

    for name, flag in NOT_THINKING.items():
        if getattr(args, name, None) not in (None, False):
            raise ConfigError(
                f"{flag} is a setting of wiseft demo; the thinking demo sweeps a fixed λ grid at the paper's "
                f"Thinking sampling (T = 0.6): drop {flag} or --thinking"
            )
    recipe_changes = {k: v for k, v in {"data_seed": args.data_seed, "pretrain_seed": args.pretrain_seed,
                                        "n_test": args.n_test}.items() if v is not None}  # fmt: skip
    sft = StyleSFT(seed=args.sft_seed if args.sft_seed is not None else 0, threads=args.threads or 0)
    changes = {k: v for k, v in {"n": args.n, "n_eval": args.n_eval, "sample_seed": args.sample_seed}.items()
               if v is not None}  # fmt: skip
    return ThinkingDemoConfig(recipe=dataclasses.replace(ThinkingDemoConfig().recipe, **recipe_changes), sft=sft,
                              threads=args.threads or 0, **changes)  # fmt: skip


def thinking_seeds(args) -> list[int] | None:
    """The replicate seeds of --seeds/--replicates (`cli.demo.parse_seeds`), which also seed sampling
    here: --sample-seed beside them is refused."""
    seeds = parse_seeds(args)
    if seeds is not None and args.sample_seed is not None:
        raise ConfigError(
            "--seeds/--replicates of the thinking demo set the pretraining, fine-tuning and sampling seeds; "
            "drop --sample-seed"
        )
    return seeds


def run_thinking(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from transformers.utils import logging as hf_logging

    from wiseft.demo import default_cache_dir
    from wiseft.demo_thinking import run_thinking_demo, run_thinking_replicates

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    console = stderr_console()
    cfg = build_config(args)
    seeds = thinking_seeds(args)
    out = Path(args.output or f"wiseft-out/demo-thinking-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    check_output_dir(out, args.force)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    labels = {"pretrain": "0/4 pretrain the sloppy base (once)", "instruct": "1/4 SFT the Instruct model",
              "thinking": "2/4 SFT the Thinking model", "eval": "3/4 sample λ = 0 … 1"}  # fmt: skip
    options = dict(cache_dir=cache, fresh=args.fresh, report=not args.no_report, force=args.force)
    with Progress(TextColumn("{task.description:40}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console) as bar:  # fmt: skip
        tasks: dict[str, int] = {}
        lines = LogLines(console)
        seed = [""]  # a replicate's bars restart per seed

        def progress(stage, done, total, detail):
            if stage == "replicates" and done < total:
                seed[0] = f"{detail}: "
            key, label = seed[0] + stage, seed[0] + labels.get(stage, stage)
            if key not in tasks:
                tasks[key] = bar.add_task(label, total=total, detail="")
            bar.update(tasks[key], completed=done, total=total, detail=detail)
            lines.update(key, label, done, total, detail)

        if seeds is None:
            results = run_thinking_demo(cfg, out, progress=progress, **options)
        else:
            results = run_thinking_replicates(cfg, seeds, out, progress=progress, **options)
    show(results, stdout_console(), out, report=not args.no_report)
    return 0


def _cell(m: dict, scale: float = 100.0, digits: int = 1) -> str:
    return f"{scale * m['value']:.{digits}f} [{scale * m['lo']:.{digits}f}, {scale * m['hi']:.{digits}f}]"


def lambda_table(results):
    from rich.table import Table

    roles = results.roles or {}
    table = Table(title=f"wiseft demo --thinking: θ = λ·Thinking + (1−λ)·Instruct on {results.task['n_problems']} "
                  "held-out toy problems")  # fmt: skip
    k = max(results.variants[0].summary["ks"])
    for col in (
        "λ",
        "Pass@1 %",
        f"Pass@{k} %",
        f"maj@{k} %",
        "Think %",
        "tokens",
        "thinking tok",
        "length ×λ=1",
    ):
        table.add_column(col, justify="right")
    for v in results.variants:
        s, th = v.summary, v.summary["thinking"]
        ratio = s["tokens"].get("length_ratio")
        mark = "  ← sweet spot" if v.name == roles.get("sweet_spot") else ""
        stage = " ▸" if 1 - v.delta in (roles.get("switch_start"), roles.get("switch_end")) else ""
        table.add_row(f"{1 - v.delta:.2f}{stage}", _cell(s["metrics"]["pass@1"]), _cell(s["metrics"][f"pass@{k}"]),
                      f"{100 * s['metrics'][f'maj@{k}']['value']:.1f}", _cell(th["think_frac"]),
                      _cell({"value": s["tokens"]["mean"], "lo": s["tokens"]["ci"]["mean"][0],
                             "hi": s["tokens"]["ci"]["mean"][1]}, 1.0),
                      f"{th['thinking_tokens']['value']:.1f}", (f"{ratio['value']:.2f}" if ratio else "-") + mark)  # fmt: skip
    table.caption = (
        "value [95% bootstrap interval over problems]; ▸ marks the stage boundaries (Think % > 10 %, > 90 %)"
    )
    return table


def replicates_table(rep: dict):
    """The seed × claim table of `run_thinking_replicates`: one row per seed, then the seeds each held on."""
    from rich.table import Table

    n = rep["n"]
    table = Table(title=f"wiseft demo --thinking over {n} seeds (pretraining, both fine-tunes and sampling "
                  "seeded by each; every seed its own base)")  # fmt: skip
    for col in ("seed", "base steps", *(f"({k})" for k in rep["claims"]), "stages", ">10 % at λ", ">90 % at λ",
                "Pass@1 λ=0 %", "Pass@1 λ=1 %", "s", "CPU s"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rep["rows"]:
        steps = f"{r.get('pretrain_steps')}" + ("" if r.get("stopped_at_gate") else " (limit)")
        table.add_row(
            str(r["seed"]), steps, *("held" if r["held"].get(k) else "[red]no[/]" for k in rep["claims"]),
            "yes" if r.get("appeared") else "[red]NO[/]", str(r.get("switch_start")), str(r.get("switch_end")),
            _pct_or_dash(r.get("pass1_instruct")), _pct_or_dash(r.get("pass1_thinking")),
            f"{r.get('seconds') or 0:.1f}", f"{r.get('cpu_seconds') or 0:.1f}",
        )  # fmt: skip
    appeared = sum(bool(r.get("appeared")) for r in rep["rows"])
    table.add_row("held on", "", *(f"{rep['held'][k]}/{n}" for k in rep["claims"]), f"{appeared}/{n}",
                  *[""] * 6)  # fmt: skip
    return table


def _pct_or_dash(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def show(results, console, out: Path, report: bool) -> None:
    from rich.table import Table

    from wiseft.demo_thinking import stages_appeared

    if results.replicates:
        console.print(replicates_table(results.replicates))
        console.print(f"below: the first seed's run ({out / results.replicates['rows'][0]['dir']})")
    base_line(console, results.base or {})
    console.print(lambda_table(results))
    roles = results.roles or {}
    console.print(f"stage boundaries from Think %: first λ above 10 %: {roles.get('switch_start')}, above 90 %: "
                  f"{roles.get('switch_end')}; sweet spot (fewest tokens within the best Pass@1's interval): "
                  f"{roles.get('sweet_spot')}")  # fmt: skip
    claims = Table(title="claims, rules fixed in advance (wiseft.demo_thinking)", show_lines=True)
    claims.add_column("", justify="center", no_wrap=True)
    claims.add_column("claim")
    claims.add_column("evidence (95% bootstrap intervals)")
    for c in results.claims:
        claims.add_row(
            "[green]held[/]" if c.held else "[red]did not hold[/]", f"({c.key}) {c.statement}", c.evidence
        )
    console.print(claims)
    verdict = "appeared" if stages_appeared(results) else "did NOT appear"
    console.print(f"the three stages {verdict} on this run (claims a, b and c)")
    t, cpu = results.timings or {}, results.cpu_seconds or {}
    parts = [
        f"{k} {t[k]:.1f}s" for k in ("base", "instruct", "thinking", "eval", "report", "total") if k in t
    ]
    console.print("time: " + ", ".join(parts) + f" (CPU {sum(cpu.values()):.1f}s)")
    console.print(
        f"Results: [bold]{out / 'results.json'}[/]"
        + (f"; report: {out / 'report' / 'report.html'}" if report else "")
    )

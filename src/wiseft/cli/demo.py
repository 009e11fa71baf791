"""`wiseft demo`: SFT collapses diversity, WiSE-FT rescues it, temperature cannot — on a CPU in minutes."""

from __future__ import annotations

import time
from pathlib import Path

from wiseft.atomic import check_output_dir
from wiseft.cli.progress import LogLines, stderr_console, stdout_console
from wiseft.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the whole effect end to end on a tiny model (a few minutes on a CPU)",
        description="Pretrain a tiny sloppy base (cached), fine-tune it on 48 clean problems with checkpoints "
        "that double from 1/64 of SFT (the first is the early checkpoint), evaluate the trajectory, "
        "early⊕final mixes (one chosen on validation problems) and temperatures of the final model "
        "(Pass@1…Pass@16, maj@16, distinct answers, bias²/Var[ρ], bootstrap intervals), train a toy outcome "
        "verifier on the base's samples of the SFT problems for Best@16 and weighted maj@16 of the final "
        "model, the mix and the temperatures, check the paper's claims on this run, and write results.json "
        "and the report. --seeds/--replicates repeat the "
        "whole story per seed and count the seeds each claim held on.",
    )
    p.add_argument("-o", "--output", help="output directory (default: wiseft-out/demo-<UTC time>)")
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    p.add_argument("--fresh", action="store_true", help="rebuild the base model even if it is cached")
    p.add_argument("--no-report", action="store_true", help="skip report.md/report.html and the plots")
    p.add_argument("--cache-dir", help="where the base model is cached (default: ~/.cache/wiseft)")
    p.add_argument("--data-seed", type=int, default=None, help="seed of the SFT/test problems (default 5)")
    p.add_argument("--pretrain-seed", type=int, default=None, help="seed of pretraining (default 0)")
    p.add_argument("--sft-seed", type=int, default=None, help="seed of SFT batches (default 0)")
    p.add_argument("--sample-seed", type=int, default=None, help="seed of sampling and bootstrap (default 0)")
    p.add_argument("--n-test", type=int, default=None, help="test problems (default 700)")
    p.add_argument("--n-eval", type=int, default=None, help="test problems the claims use (default 600)")
    p.add_argument(
        "--n-val", type=int, default=None,
        help="the next test problems, which choose the mix (default 100; 0: choose in-sample)",
    )  # fmt: skip
    p.add_argument("--n", type=int, default=None, help="samples per problem (default 16)")
    p.add_argument("--delta", default=None, help="δ grid of the early⊕final mixes, e.g. 0.25,0.5,0.75")
    p.add_argument("--temperature", default=None, help="temperatures of the final model, e.g. 0.7,1.3,1.6")
    p.add_argument(
        "--eval-steps", default=None,
        help="SFT checkpoints to evaluate, e.g. 20,40,80, or 'all' (default: the early one, every other "
        "one after it, and the final)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--thinking", action="store_true",
                   help="instead: the Instruct ↔ Thinking interpolation's three stages (wiseft.demo_thinking)")  # fmt: skip
    p.add_argument(
        "--no-verifier", action="store_true",
        help="skip the toy outcome verifier (Best@k, weighted maj@k and claim (e))",
    )  # fmt: skip
    p.add_argument(
        "--rl", action="store_true", help="GRPO from the final, the mix and the early start; claim (f)"
    )
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        default=None,
        help="run the whole story once per seed (pretraining and SFT seeded by it, and with --thinking "
        "sampling too; each base cached), "
        "e.g. 0,1,2, and print the seed × claim table",
    )
    seeds.add_argument("--replicates", type=int, default=None, help="= --seeds 0,1,…,N-1")
    p.set_defaults(func=run)


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag} is empty; give comma-separated numbers")
    return values


def _eval_steps(text: str | None, recipe) -> tuple[int, ...] | None:
    if text is None:
        return None
    if text.strip() == "all":
        return tuple(recipe.checkpoint_steps())
    try:
        steps = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--eval-steps must be comma-separated integers or 'all', got {text!r}") from None
    if not steps:
        raise ConfigError("--eval-steps is empty; give comma-separated checkpoint steps or 'all'")
    return steps


def parse_seeds(args) -> list[int] | None:
    """The replicate seeds of --seeds or --replicates (None: one run), checked before any work."""
    from wiseft.demo import check_seeds

    if args.replicates is not None:
        if args.replicates < 1:
            raise ConfigError(f"--replicates must be at least 1, got {args.replicates}")
        seeds = list(range(args.replicates))
    elif args.seeds is not None:
        try:
            seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    else:
        return None
    if args.pretrain_seed is not None or args.sft_seed is not None:
        raise ConfigError(
            "--seeds/--replicates set the pretraining and SFT seeds; drop --pretrain-seed/--sft-seed"
        )
    return check_seeds(seeds)


def build_config(args):
    import dataclasses

    from wiseft.demo import DemoConfig, ks_up_to
    from wiseft.demo_rl import RLStageConfig
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
    n_eval = args.n_eval if args.n_eval is not None else min(DemoConfig.n_eval, recipe.n_test)
    changes = {
        k: v
        for k, v in {
            "recipe": recipe,
            "n": args.n,
            "ks": ks_up_to(args.n) if args.n is not None else None,
            "n_eval": n_eval,
            "n_val": args.n_val
            if args.n_val is not None
            else max(0, min(DemoConfig.n_val, recipe.n_test - n_eval)),
            "sample_seed": args.sample_seed,
            "deltas": _floats(args.delta, "--delta"),
            "temperatures": _floats(args.temperature, "--temperature"),
            "eval_steps": _eval_steps(getattr(args, "eval_steps", None), recipe),
            "threads": args.threads,
            "rl": RLStageConfig(threads=args.threads) if getattr(args, "rl", False) else None,
        }.items()
        if v is not None
    }
    if args.no_verifier:
        changes["verifier"] = None
    return DemoConfig(**changes)


def run(args) -> int:
    if args.thinking:  # issue 16: its own module (which imports this one: imported here, not at the top)
        from wiseft.cli.demo_thinking import run_thinking

        return run_thinking(args)
    from transformers.utils import logging as hf_logging

    from wiseft.demo import base_path, default_cache_dir, run_demo, run_replicates

    hf_logging.disable_progress_bar()  # transformers' per-load bars would interleave with ours
    hf_logging.set_verbosity_error()  # training feeds right-padded rows without a mask on purpose
    console = stderr_console()
    cfg = build_config(args)
    seeds = parse_seeds(args)
    out = Path(args.output or f"wiseft-out/demo-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    check_output_dir(out, args.force)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    options = dict(cache_dir=cache, fresh=args.fresh, report=not args.no_report, force=args.force)
    with DemoProgress(console, cfg) as progress:
        if seeds is None:
            cached = (base_path(cfg, cache) / "model.safetensors").is_file() and not args.fresh
            where = "cached in" if cached else "to build into"
            console.print(f"[bold]wiseft demo[/]: base model {where} {base_path(cfg, cache)}")
            results = run_demo(cfg, out, progress=progress, **options)
        else:
            console.print(
                f"[bold]wiseft demo[/]: {len(seeds)} replicates, seeds {', '.join(map(str, seeds))}"
            )
            results = run_replicates(cfg, seeds, out, progress=progress, **options)
    show(results, stdout_console(), out, report=not args.no_report)
    return 0


def base_line(console, base: dict) -> None:
    """How pretraining ended: at the gate (the rule fixed in advance) or at its step limit."""
    if not base.get("gate"):
        return
    steps, prob, gate = base.get("pretrain_steps"), base.get("gate_probability"), base["gate"]
    attempt, attempts = base.get("attempt", 1), base.get("attempts", 1)
    restarted = ""
    if attempt > 1:
        before = "the attempt before it" if attempt == 2 else f"the {attempt - 1} attempts before it"
        restarted = (f" of attempt {attempt} ({before} stayed on the plateau for {base.get('max_steps')} steps "
                     "and started again from a fresh seed)")  # fmt: skip
    if base.get("stopped_at_gate"):
        console.print(f"base: pretraining ended at step {steps}{restarted}, where the base first wrote the gold "
                      f"chain of its gate problems with probability {prob:.3f} ≥ {gate:g} (checked every "
                      f"{base.get('gate_every', 25)} steps)")  # fmt: skip
    else:
        tries = f" in each of {attempts} attempts" if attempts > 1 else ""
        console.print(f"[yellow]base: pretraining reached its limit of {steps} steps{tries} before the gate "
                      f"(gold-chain probability {prob:.3f} < {gate:g}); the claims rest on a weaker base[/]")  # fmt: skip


class DemoProgress:
    """Live bars on a terminal, plain lines when piped (`LogLines`); a replicate's bars restart per seed."""

    def __init__(self, console, cfg):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description:40}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.lines = LogLines(console)
        self.tasks: dict[str, int] = {}
        self.seed = ""
        self.labels = {
            "replicates": "replicates",
            "pretrain": "1/4 pretrain the sloppy base",
            "sft": f"2/4 SFT on {cfg.recipe.n_sft} clean problems",
            "eval": "3/4 sample, grade, summarise",
            "verifier": "3/4 toy verifier: train, score",
            "rl": "RL: GRPO from three starts",
            "rl-eval": "RL: evaluate the three results",
            "report": "4/4 report",
        }

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def __call__(self, stage, done, total, detail):
        if stage == "replicates" and done < total:
            for key in [k for k in self.tasks if k != "replicates"]:
                self.bar.remove_task(self.tasks.pop(key))
            self.seed = f"{detail} · "
        label = self.labels.get(stage, stage)
        if stage not in ("replicates", "report"):
            label = self.seed + label
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(label, total=total, detail="")
        self.bar.update(self.tasks[stage], completed=done, total=total, detail=detail)
        self.lines.update((self.seed, stage), label, done, total, detail)


def _cell(metric) -> str:
    return f"{metric['value']:.3f} [{metric['lo']:.3f}, {metric['hi']:.3f}]"


def headline_table(results):
    """One row per variant: Pass@1, Pass@8 and Pass@K (K the largest k) with intervals, maj@K, Best@K and
    weighted maj@K where the toy verifier scored the variant, distinct answers, bias² and Var[ρ]."""
    from rich.table import Table

    from wiseft.cli.tables import starred

    roles, star = results.roles, starred(results)
    big = max(results.variants[0].summary["ks"])
    table = Table()
    columns = ["model", "Pass@1"] + (["Pass@8"] if big > 8 else []) + [f"Pass@{big}", f"maj@{big}"]
    scored = any(f"best@{big}" in v.summary["metrics"] for v in results.variants)
    columns += [f"Best@{big}", f"wmaj@{big}"] if scored else []
    for col in columns + ["distinct", "bias²", "Var[ρ]"]:
        table.add_column(col, justify="left" if col == "model" else "right")
    for v in results.variants:
        m, bv = v.summary["metrics"], v.summary["bias_variance"]
        style = "bold" if v.name in (roles["mix"], roles["final"], roles["early"]) else None
        cells = [_label(v, roles, star), _cell(m["pass@1"])]
        cells += [f"{m['pass@8']['value']:.3f}"] if big > 8 else []
        cells += [_cell(m[f"pass@{big}"]), f"{m[f'maj@{big}']['value']:.3f}"]
        if scored:
            cells += [_cell(m[f"best@{big}"]) if f"best@{big}" in m else "-"]
            cells += [f"{m[f'wmaj@{big}']['value']:.3f}" if f"wmaj@{big}" in m else "-"]
        cells += [f"{v.summary['diversity']['mean_distinct']:.1f}", f"{bv['bias2']:.3f}", f"{bv['var']:.3f}"]
        table.add_row(*cells, style=style)
    n = results.variants[-1].summary["n"]
    table.title = f"wiseft demo: {results.task['n_problems']} held-out toy problems, n={n} samples each"
    return table


def _label(v, roles, star: str | None) -> str:
    """The row's name; ★ marks the chosen mix unless it ties with another (then the claims still use it,
    and the note under the table says the choice was arbitrary)."""
    if v.kind == "base":
        return "base (sloppy pretraining)"
    if v.kind == "checkpoint":
        tag = " (early)" if v.name == roles["early"] else " (final)" if v.name == roles["final"] else ""
        return f"SFT step {v.step}{tag}"
    if v.kind == "mix":
        name = f"{v.delta:g}·early + {1 - v.delta:g}·final"
        if v.name == star:
            return f"★ {name}  ← chosen mix"
        return f"{name}  ← the claims' mix (tied)" if v.name == roles["mix"] else name
    return f"final at T={v.temperature:g}"


def claims_table(claims):
    """The paper's claims checked on this run: held or not, the claim, its evidence."""
    from rich.table import Table

    table = Table(title="the paper's claims, checked on this run", show_lines=True)
    table.add_column("", justify="center")
    table.add_column("claim")
    table.add_column("evidence (paired 95% bootstrap intervals)")
    for c in claims:
        mark = "[green]held[/]" if c.held else "[red]did not hold[/]"
        table.add_row(mark, f"({c.key}) {c.statement}", c.evidence)
    return table


def timing_table(results):
    """Where the time went: wall and CPU seconds of each stage the run timed."""
    from rich.table import Table

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
        ("toy verifier (train, score)", "verifier"),
        ("claims", "claims"),
        ("RL (3 starts, train + eval)", "rl"),
        ("report", "report"),
        ("total", "total"),
    ]
    for name, key in rows:
        if key in t:
            c = cpu.get(key)
            timing.add_row(name, f"{t[key]:.1f}", "" if c is None else f"{c:.1f}")
    return timing


def show(results, console, out: Path, report: bool) -> None:
    from wiseft.cli.tables import selection_lines

    console.print(headline_table(results))
    selection_lines(console, results, label="mix chosen")
    console.print(claims_table(results.claims))
    base_line(console, results.base or {})
    sft_peak_line(console, results.claims)
    verifier_line(console, (results.base or {}).get("verifier"))
    if results.replicates:
        console.print(replicate_view(results.replicates))
    console.print(timing_table(results))
    m = results.machine or {}
    if m:
        console.print(
            f"{m['torch_threads']} thread(s) on {m['cpu_count']} CPUs ({m.get('busy_cores_before', '?')} busy at "
            f"the start); load average {m['loadavg_1min_before']} before, {m['loadavg_1min_after']} after "
            "(other processes slow the demo)"
        )
    held = sum(c.held for c in results.claims)
    first = f" on seed {results.replicates['seeds'][0]}" if results.replicates else ""
    console.print(
        f"{held}/{len(results.claims)} claims held{first}. Results: [bold]{out / 'results.json'}[/]"
    )
    if results.replicates:
        rep = results.replicates
        counts = ", ".join(f"({k}) {rep['held'][k]}/{rep['n']}" for k in rep["claims"])
        console.print(f"Over {rep['n']} seeds: {counts}; all claims on {rep['all_held']}/{rep['n']} seeds.")
    if report:
        console.print(f"Report: [bold]{out / 'report' / 'report.html'}[/] (and report.md)")
    console.print(f"Output directory: [bold]{out}[/]")


def sft_peak_line(console, claims) -> None:
    """Where SFT's Pass@1 peaked and how far below it the final checkpoint is (claim (d)'s `sft_peak`)."""
    peak = next((c.numbers.get("sft_peak") for c in claims if c.key == "d"), None)
    if not peak:
        return
    console.print(
        f"SFT: Pass@1 peaked at step {peak['best_step']} ({peak['best']:.3f}); the final checkpoint (step "
        f"{peak['final_step']}) has {peak['final']:.3f}, {peak['final_minus_best']:+.3f} from that peak (how this "
        "gap and claim (d) went together over the seeds measured so far: docs/TOY-LOG.md)"
    )


def verifier_line(console, info: dict | None) -> None:
    """What the toy verifier learned from, how well it fits its own training samples (chance is 0.5
    under its balanced loss) and how well it ranks the samples of each held-out claims problem, so that a
    Best@k column is read with the verifier's quality in mind."""
    if not info:
        return
    if info.get("skipped"):
        console.print(f"toy verifier: not trained — {info['skipped']}", highlight=False)
        return
    acc, within = info.get("train_accuracy"), info.get("train_within_auc")
    ranks = (
        f"; AUC within a problem (what Best@k needs) {within:.2f} over its {info['n_mixed_prompts']} problems "
        "with right and wrong samples"
        if within is not None
        else ""
    )
    console.print(
        f"toy verifier {info['id']}: trained on {info['n_samples']} samples of the base model on the SFT "
        f"problems ({info['n_correct']} right); accuracy on them {acc:.2f} (0.5 is chance), loss "
        f"{info['loss_first']:.3f} → {info['loss_last']:.3f}{ranks}",
        highlight=False,
    )
    held = [
        (name, r)
        for name, r in (info.get("heldout_ranking") or {}).items()
        if r.get("within_auc") is not None
    ]
    if held:
        parts = ", ".join(f"{name} {r['within_auc']:.2f} ({r['n_mixed_problems']})" for name, r in held)
        console.print(
            f"  on the claims problems (never trained on), AUC within a problem (problems with right and wrong "
            f"samples): {parts}; 0.5 is a random pick, where Best@k is about Pass@1",
            highlight=False,
        )


def replicate_view(rep: dict):
    """The seed × claim table: held or not, with the paired effects behind each claim."""
    from rich.table import Table

    from wiseft.claims import effect_text

    table = Table(title="the claims over seeds (paired 95% bootstrap intervals)", show_lines=True)
    table.add_column("seed", justify="right")
    for key in rep["claims"]:
        table.add_column(f"({key})")
    table.add_column("all", justify="center")
    table.add_column("wall / CPU s", justify="right")
    for row in rep["rows"]:
        cells = []
        for key in rep["claims"]:
            mark = "[green]held[/]" if row["held"].get(key) else "[red]did not hold[/]"
            cells.append("\n".join([mark] + [effect_text(d) for d in row["effects"].get(key, [])]))
        every = all(row["held"].get(k) for k in rep["claims"])
        seconds = f"{row.get('seconds') or 0:.0f} / {row.get('cpu_seconds') or 0:.0f}"
        table.add_row(str(row["seed"]), *cells, "[green]yes[/]" if every else "[red]no[/]", seconds)
    counts = [f"{rep['held'][k]}/{rep['n']}" for k in rep["claims"]]
    total = sum(row.get("seconds") or 0 for row in rep["rows"])
    cpu = sum(row.get("cpu_seconds") or 0 for row in rep["rows"])
    table.add_row("held on", *counts, f"{rep['all_held']}/{rep['n']}", f"{total:.0f} / {cpu:.0f}")
    return table

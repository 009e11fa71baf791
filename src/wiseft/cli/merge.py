"""`wiseft merge`: parse flags into a Recipe, show the plan or run the streaming merge with a progress bar."""

from __future__ import annotations

import argparse
from pathlib import Path

from wiseft.atomic import check_output_dir
from wiseft.cli.progress import stderr_console, stdout_console
from wiseft.errors import ConfigError

EPILOG = """examples:
  wiseft merge EARLY FINAL --delta 0.25 -o mix                     # WiSE-FT: 0.25·EARLY + 0.75·FINAL
  wiseft merge A B C --method linear --weights 0.2,0.3,0.5 -o soup
  wiseft merge A B --base BASE --weights 0.7,0.7 -o ta             # task arithmetic
  wiseft merge A B --method slerp --param t=0.3 -o s               # spherical interpolation
  wiseft merge A B --base BASE --method ties --weights 1,1 --param density=0.5 -o t
  wiseft merge A B --base BASE --method dare_ties --weights 1,1 --param density=0.3 --seed 7 -o d
  wiseft merge --config recipe.yaml -o out --dry-run               # schedules; show the plan only
  wiseft merge --config mergekit.yml -o out                        # a mergekit configuration as it is
  wiseft merge A B --method fisher --fisher FA --fisher FB -o f   # Fisher merging (wiseft fisher)
  wiseft merge --list                                              # methods, parameters, formulas
  wiseft soup A B C --task toy --split sft --n 8 -o soup           # greedy soup (needs an evaluation)
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "merge",
        help="merge checkpoints (WiSE-FT, linear, task arithmetic, schedules), streaming and atomic",
        description="Merge Hugging Face safetensors checkpoints tensor by tensor into a new model directory.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="*", help="input model directories or Hub names (wise-ft: EARLY FINAL)")
    p.add_argument(
        "--method", help="merge method (default: wise-ft; linear with --weights; task_arithmetic with --base)"
    )
    p.add_argument("--delta", type=float, help="wise-ft: weight of EARLY, θ = δ·EARLY + (1−δ)·FINAL")
    p.add_argument("--weights", help="comma-separated weights: linear w_i (sum 1) or task-arithmetic λ_i")
    p.add_argument("--base", help="the base model of task-vector methods (task_arithmetic, ties, dare_*, …)")
    p.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a method parameter (see --list), e.g. t=0.3, density=0.5 or density=0.5,0.7 (one per model)",
    )
    p.add_argument("--seed", type=int, help="seed of randomised methods (dare_*, della*; default 0)")
    p.add_argument(
        "--fisher",
        action="append",
        metavar="DIR",
        help="method fisher: a model's Fisher directory (wiseft fisher), once per model in order",
    )
    p.add_argument(
        "--config",
        help="YAML recipe (ours, or a mergekit configuration: merge_method, models, parameters …); flags override it",
    )
    p.add_argument("--extrapolate", action="store_true", help="allow δ / linear weights outside [0, 1]")
    p.add_argument("-o", "--output", help="output model directory (written atomically)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--shard-size", default="5GB", help="maximum shard size (default 5GB)")
    p.add_argument(
        "--buffered-io",
        action="store_true",
        help="write the shards through the page cache instead of with direct I/O (the output then stays "
        "cached for a load right after; on some machines writing is slower)",
    )
    p.add_argument("--dtype", help="output dtype: bfloat16, float16, float32, float64 (default: the inputs')")
    p.add_argument(
        "--dry-run", action="store_true", help="check the inputs and print the plan; write nothing"
    )
    p.add_argument("--allow-nonfinite", action="store_true", help="merge even if values are nan/inf")
    p.add_argument(
        "--allow-unmatched",
        action="store_true",
        help="a recipe rule that matches no tensor is a warning, not an error",
    )
    p.add_argument(
        "--copy-tokenizer-from",
        help="input (path or index) whose tokenizer/generation files are copied, or union (every input's tokens)",
    )
    p.add_argument("--list", action="store_true", help="list the merge methods and exit")
    p.set_defaults(func=run)


def build_recipe(args):
    """The recipe of the flags (and --config); `read_recipe` also says which schema the file was."""
    return read_recipe_args(args)[0]


def read_recipe_args(args):
    """(recipe, schema read — "flags", "wiseft" or "mergekit", warnings)."""
    from wiseft.merge import Recipe
    from wiseft.merge.recipe_file import read_recipe

    weights = _weights(args.weights) if args.weights is not None else None
    params = _params(getattr(args, "param", []) or [])
    seed = getattr(args, "seed", None)
    if args.config:
        overrides = {
            "models": list(args.models) if args.models else None,
            "method": args.method,
            "base": args.base,
            "delta": args.delta,
            "weights": weights,
            "parameters": params or None,
            "seed": seed,
            "extrapolate": True if args.extrapolate else None,
            "allow_unmatched": True if getattr(args, "allow_unmatched", False) else None,
            "fishers": getattr(args, "fisher", None),
        }
        return read_recipe(args.config, overrides)
    method = args.method or (
        "task_arithmetic" if args.base else "linear" if weights is not None else "wise-ft"
    )
    if not args.models:
        raise ConfigError(
            "give the input models (e.g. wiseft merge EARLY FINAL --delta 0.25 -o OUT) or --config"
        )
    recipe = Recipe(
        method=method,
        models=tuple(args.models),
        base=args.base,
        delta=args.delta,
        weights=weights,
        extrapolate=args.extrapolate,
        parameters=params or None,
        seed=seed,
        allow_unmatched=bool(getattr(args, "allow_unmatched", False)),
        fishers=getattr(args, "fisher", None),
    )
    return recipe, "flags", []


def _params(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE, e.g. --param density=0.5")
        parts = [v.strip() for v in value.split(",")]
        out[name.strip()] = parts if len(parts) > 1 else parts[0]
    return out


def _weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.replace(",", " ").split())
    except ValueError as exc:
        raise ConfigError(f"--weights {text!r}: expected comma-separated numbers, e.g. 0.5,0.5") from exc


def run(args) -> int:

    console = stderr_console()
    if args.list:
        return _list_methods(stdout_console())
    from rich.markup import escape

    from wiseft.checkpoints import parse_size
    from wiseft.merge.plan import plan as make_plan

    recipe, schema, notes = read_recipe_args(args)
    shard_size = parse_size(args.shard_size)
    if not args.dry_run:
        if not args.output:
            raise ConfigError("-o/--output is required (or use --dry-run to only see the plan)")
        check_output_dir(Path(args.output), args.force)
    plan = make_plan(recipe, out_dtype=args.dtype, tokenizer_from=args.copy_tokenizer_from)
    # said once the pre-flight passed, so that an error stays one line
    if schema == "mergekit":
        console.print(
            f"read {args.config} as a mergekit configuration (merge_method {recipe.method}); interpreted as "
            "mergekit does: substring filters, gradients over the layers with embeddings, norm and lm_head "
            "at their first value",
            soft_wrap=True,
            markup=False,
        )
    elif schema == "wiseft":
        console.print(f"read {args.config} as a wiseft recipe", soft_wrap=True, markup=False)
    for note in notes:
        console.print(f"[yellow]warning:[/] {escape(note)}", soft_wrap=True)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    if args.dry_run:
        if args.output:
            from wiseft.merge.driver import check_output_location

            check_output_location(plan, Path(args.output))
        _show_plan(stdout_console(), plan, args)
        return 0
    return _run_merge(console, plan, args, shard_size)


def _run_merge(console, plan, args, shard_size: int) -> int:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from wiseft.merge.driver import merge

    columns = (
        TextColumn("merging"),
        BarColumn(),
        DownloadColumn(binary_units=False),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("merge", total=plan.bytes_read + plan.bytes_written)
        result = merge(
            plan,
            args.output,
            force=args.force,
            shard_size=shard_size,
            allow_nonfinite=args.allow_nonfinite,
            progress=lambda done, total: bar.update(task, completed=done),
            direct_io=not args.buffered_io,
        )
    for name in result.nonfinite:
        console.print(f"[yellow]warning:[/] tensor {name} has non-finite values (--allow-nonfinite)")
    from rich.table import Table

    table = Table(title=f"wiseft merge → {result.out}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("method", plan.method.name)
    table.add_row("tensors", str(result.n_tensors))
    table.add_row("shards", str(result.shards))
    table.add_row("read", _gb(result.bytes_read))
    table.add_row("written", _gb(result.bytes_written))
    if args.buffered_io:
        table.add_row("writes", "buffered (--buffered-io)")
    else:  # a file system that refuses O_DIRECT is said, not passed over
        table.add_row(
            "writes", "direct" if result.direct_io else "buffered (the file system refused O_DIRECT)"
        )
    table.add_row("time", f"{result.seconds:.2f} s")
    rate = (result.bytes_read + result.bytes_written) / max(result.seconds, 1e-9)
    table.add_row("throughput", f"{rate / 1e9:.2f} GB/s")
    stdout_console().print(table)
    return 0


def _show_plan(console, plan, args) -> None:
    from collections import defaultdict

    from rich.table import Table

    from wiseft.merge.plan import ST_NAMES

    table = Table(title="wiseft merge plan (dry run: nothing read or written)")
    table.add_column("what")
    table.add_column("value")
    table.add_row("method", f"{plan.method.name}: {plan.method.summary}")
    for i, ck in enumerate(plan.inputs):
        role = _role(plan, i)
        table.add_row(f"input {i} ({role})", f"{ck.path}  [{ck.architecture}, {_gb(ck.total_bytes)}]")
    table.add_row("output", str(args.output or "(none given)"))
    dtype = ST_NAMES.get(plan.out_dtype, "same as inputs") if plan.out_dtype else "same as inputs"
    table.add_row("output dtype", dtype)
    if plan.vocabulary:
        table.add_row(
            "vocabulary", f"of input {plan.tokenizer_from}, embeddings re-indexed by token: {plan.vocabulary}"
        )
    n_copy = sum(t.kind == "copy" for t in plan.tensors)
    table.add_row("tensors", f"{len(plan.tensors)} ({n_copy} integer/bool copied)")
    if plan.dropped:
        table.add_row("not written", ", ".join(plan.dropped) + " (tied to the input embeddings)")
    table.add_row("bytes to read", _gb(plan.bytes_read))
    table.add_row("bytes to write", _gb(plan.bytes_written))
    table.add_row("estimated time", f"{plan.estimated_seconds:.1f} s")
    table.add_row(
        "peak memory (anonymous)",
        f"{plan.peak_memory_bytes / 2**20:.0f} MiB: ~{(plan.peak_memory_bytes - plan.buffer_bytes) / 2**20:.0f} "
        f"MiB interpreter and torch + {plan.buffer_bytes / 2**20:.0f} MiB buffers, whatever the model size",
    )
    console.print(table)
    by_rule: dict[str, list] = defaultdict(list)
    for t in plan.tensors:
        if t.kind == "merge":
            by_rule[t.rule].append(t.coeffs)
    rules = Table(title=f"coefficients ({plan.method.coefficient}) by rule")
    rules.add_column("rule")
    rules.add_column("tensors", justify="right")
    rules.add_column("min")
    rules.add_column("max")
    for rule, coeffs in by_rule.items():
        lo = tuple(min(c[i] for c in coeffs) for i in range(len(coeffs[0])))
        hi = tuple(max(c[i] for c in coeffs) for i in range(len(coeffs[0])))
        rules.add_row(rule, str(len(coeffs)), _fmt(lo), _fmt(hi))
    console.print(rules)
    _per_tensor(console, plan)


def _per_tensor(console, plan) -> None:
    """Every tensor's resolved parameters, as the merge will use them: one line per tensor."""
    params = {p.name: p for p in plan.method.params}
    base = 1 if plan.recipe.base else 0
    console.print("resolved parameters per tensor:", soft_wrap=True)
    width = max((len(t.name) for t in plan.tensors), default=0)
    for t in plan.tensors:
        if t.kind != "merge":
            continue
        layout = plan.method.layout(len(t.sources) - base if t.inputs else len(plan.recipe.models))
        cells = [
            f"{name if i is None else f'{name}[{i}]'}={_cell(params[name].decode(v))}"
            for (name, i), v in zip(layout, t.coeffs, strict=True)
        ]
        source = ""
        if t.inputs and len(t.sources) == 1:  # a passthrough tensor: which model and tensor it is
            source = f"  ← {t.sources[0].name} of input {t.inputs[0]}"
        console.print(
            f"  {t.name:<{width}}  {'  '.join(cells)}{source}  ({t.rule})",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    if plan.recipe.seed is not None and plan.method.randomized:
        console.print(
            f"seed {plan.recipe.seed}: random draws per (seed, tensor, model, block of 65536 elements)",
            soft_wrap=True,
        )


def _cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _role(plan, i: int) -> str:
    n = len(plan.recipe.models)
    if plan.recipe.fishers is not None and i >= n:
        return f"Fisher of model {i - n + 1}"
    if plan.method.name == "wise-ft":
        return ("early", "final")[i]
    if plan.method.needs_base:
        return "base" if i == 0 else f"model {i}"
    return f"model {i + 1}"


def _fmt(values) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


def _gb(n: int) -> str:
    return f"{n / 1e9:.3f} GB" if n >= 1e8 else f"{n / 1e6:.3f} MB"


def _list_methods(console) -> int:
    from rich.table import Table

    from wiseft.merge.methods import all_methods, command_methods

    table = Table(
        title="merge methods (parameters: name (type, default); set with --weights, --delta, --param)"
    )
    table.add_column("method")
    table.add_column("inputs")
    table.add_column("parameters")
    table.add_column("formula")
    for m in all_methods():
        base = {True: "base + ", "optional": "[base] + ", False: ""}[m.needs_base]
        count = f"{m.min_models}" if m.max_models == m.min_models else f"≥{m.min_models}"
        params = ", ".join(p.describe() for p in m.params) or "none"
        if m.randomized:
            params += ", seed (int, 0)"
        table.add_row(m.name, f"{base}{count} models", params, m.summary)
    for c in command_methods():  # methods that need an evaluation: their own command
        table.add_row(c.name, c.inputs, c.params, f"{c.summary}: {c.command}")
    console.print(table)
    return 0

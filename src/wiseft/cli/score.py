"""`wiseft score GRADED.jsonl --k 1,2,4,…`: metrics with bootstrap intervals, a table and metrics.json.

Graded records come from a source: a graded JSONL file, or a sample store (its graded samples, every
variant under its own name).
One variant: metrics.json is the `metrics.summarize` dictionary plus "variant", "grader" and "source".
Several variants in one file: {"variants": [{"name", "summary"}, …], "grader", "source"}.
"""

from __future__ import annotations

from pathlib import Path

from wiseft.errors import ConfigError, OutputError


class GradedJsonlSource:
    def __init__(self, path: str):
        self.path = Path(path)

    def records(self) -> list[dict]:
        from wiseft.grading.records import read_records

        return read_records(self.path, graded=True)


class StoreGradedSource:
    """The graded samples of every variant in a sample store (read-only)."""

    def __init__(self, path: str):
        self.path = Path(path)

    def records(self) -> list[dict]:
        from wiseft.store import SampleStore

        with SampleStore(self.path, writer=False) as store:
            variants = store.variants()
            names = [v.name for v in variants]
            out = []
            for v in variants:
                name = v.name if names.count(v.name) == 1 else f"{v.name}#{v.id}"
                out += [{**r, "variant": name} for r in store.records(v, graded=True)]
        if not out:
            raise ConfigError(
                f"sample store {self.path} holds no graded samples; run `wiseft grade` on it first"
            )
        return out


def open_source(args) -> GradedJsonlSource | StoreGradedSource:
    from wiseft.store import is_store

    if is_store(args.graded):
        return StoreGradedSource(args.graded)
    return GradedJsonlSource(args.graded)


def parse_ks(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"--k must be comma-separated positive integers such as 1,2,4,8, got {text!r}"
        ) from None
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"--k must be comma-separated positive integers such as 1,2,4,8, got {text!r}")
    return sorted(set(ks))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="Pass@k, maj@k, best@k with bootstrap intervals, bias–variance and diversity of graded samples",
        description="Score a graded JSONL (from `wiseft grade`): print a table with 95%% bootstrap intervals "
        "and write metrics.json.",
    )
    p.add_argument("graded", help="graded JSONL (output of `wiseft grade`) or a graded sample store")
    p.add_argument("--k", default="1", help="comma-separated k values, each ≤ n (default 1)")
    p.add_argument("-o", "--output", help="metrics JSON to write (default: metrics.json beside GRADED)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--variant", help="score only this variant (default: every variant in the file)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.set_defaults(func=run)


def score_records(
    records: list[dict], ks: list[int], seed: int, n_boot: int, variant: str | None = None
) -> dict:
    """The metrics.json body for graded records (one or several variants)."""
    from wiseft.grading.records import by_variant, problem_samples
    from wiseft.metrics import summarize

    groups = by_variant(records)
    if variant is not None:
        if variant not in groups:
            raise ConfigError(
                f"--variant {variant!r} is not in the file; it holds {', '.join(map(str, groups)) or 'none'}"
            )
        groups = {variant: groups[variant]}
    graders = sorted({str(r.get("grader")) for r in records if r.get("grader")})
    results = []
    for name, recs in groups.items():
        where = f"variant {name!r}" if name is not None else "graded records"
        summary = summarize(problem_samples(recs, where), ks, seed=seed, n_boot=n_boot)
        results.append((name, summary))
    grader = ", ".join(graders) or None
    if len(results) == 1:
        name, summary = results[0]
        return {"variant": name, "grader": grader, **summary}
    return {"variants": [{"name": n, "summary": s} for n, s in results], "grader": grader}


def run(args) -> int:
    from rich.console import Console

    from wiseft.atomic import write_json

    ks = parse_ks(args.k)
    if args.n_boot < 1:
        raise ConfigError(f"--n-boot must be at least 1, got {args.n_boot}")
    source = open_source(args)
    out = Path(args.output) if args.output else source.path.with_name("metrics.json")
    if out.exists() and not args.force:
        raise OutputError(f"output {out} already exists; choose another -o/--output or pass --force")
    body = score_records(source.records(), ks, args.seed, args.n_boot, args.variant)
    body["source"] = str(source.path)
    write_json(out, body)
    console = Console()
    if "variants" in body:
        _variants_table(console, body, ks)
    else:
        _single_table(console, body, ks)
    console.print(f"metrics written to {out}")
    return 0


def _interval(m: dict) -> str:
    return f"{m['value']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]"


def _single_table(console, s: dict, ks: list[int]) -> None:
    from rich.table import Table

    title = f"{s['n_problems']} problems × n={s['n']}" + (f" — {s['variant']}" if s.get("variant") else "")
    table = Table(title=title, caption="value [95% bootstrap interval over problems]")
    table.add_column("k", justify="right")
    kinds = [m for m in ("pass", "maj", "best") if f"{m}@{ks[0]}" in s["metrics"]]
    for m in kinds:
        table.add_column(f"{m}@k", justify="right")
    table.add_column("E[(1−ρ)^k]", justify="right")
    table.add_column("≥ Jensen bound", justify="right")
    bv = s["bias_variance"]
    for k in ks:
        row = [str(k)] + [_interval(s["metrics"][f"{m}@{k}"]) for m in kinds]
        row.append(f"{bv['one_minus_pass_plugin'][str(k)]:.3f}")
        row.append(f"{bv['bound'][str(k)]:.3f}" if k >= 2 else "-")  # a lower bound only for k ≥ 2
        table.add_row(*row)
    console.print(table)
    bv, div, tok = s["bias_variance"], s["diversity"], s["tokens"]
    extra = Table(show_header=False)
    extra.add_row("E[ρ] / bias² / Var[ρ]", f"{bv['mean_rho']:.3f} / {bv['bias2']:.3f} / {bv['var']:.3f}")
    extra.add_row(
        "distinct answers", f"{div['mean_distinct']:.2f} per problem ({div['frac_distinct']:.1%} of samples)"
    )
    extra.add_row("ρ histogram (0→1)", " ".join(str(c) for c in div["rho_hist"]))
    if tok["mean"] is not None:
        trunc = (
            f", {tok['truncated_frac']:.1%} hit the length limit" if tok["truncated_frac"] is not None else ""
        )
        extra.add_row("tokens", f"mean {tok['mean']:.1f}, median {tok['median']:.0f}{trunc}")
    console.print(extra)


def _variants_table(console, body: dict, ks: list[int]) -> None:
    from rich.table import Table

    table = Table(title="metrics by variant", caption="value [95% bootstrap interval over problems]")
    table.add_column("variant")
    first = body["variants"][0]["summary"]["metrics"]
    names = [f"{m}@{k}" for m in ("pass", "maj", "best") for k in ks if f"{m}@{k}" in first]
    for name in names:
        table.add_column(name, justify="right")
    for v in body["variants"]:
        table.add_row(
            str(v["name"]),
            *[_interval(v["summary"]["metrics"][n]) if n in v["summary"]["metrics"] else "-" for n in names],
        )
    console.print(table)

"""The closing tables of the evaluating commands (`eval`, `sweep`, `trajectory`, `score`, the demo) and the
notes under them. The commands import this module inside `run`: it reads typed results (`wiseft.results`,
which loads numpy), which argument parsing does not need."""

from __future__ import annotations

from wiseft.cli.progress import stdout_console
from wiseft.results import RunResults, check_selection

# The metric families of a summary, in table order (best@k and wmaj@k exist only with verifier scores).
METRIC_FAMILIES = ("pass", "maj", "best", "wmaj")


def table_console():
    """The console for final tables (`progress.stdout_console`)."""
    return stdout_console()


def interval(m: dict | None, digits: int = 2) -> str:
    if not m:
        return "-"
    return f"{m['value']:.3f} [{m['lo']:.{digits}f},{m['hi']:.{digits}f}]"


def results_table(console, results: RunResults, title: str) -> None:
    """One row per variant: Pass@k at every k the run asked for and maj@k at the largest, with intervals;
    distinct answers and mean tokens. Everything else is in results.json and the report."""
    from rich.table import Table

    ks = sorted(results.config["k"])
    names = [f"pass@{k}" for k in ks] + ([f"maj@{ks[-1]}"] if ks[-1] > 1 else [])
    table = Table(title=title, caption="value [95% bootstrap interval over problems]")
    table.add_column("variant", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("distinct", justify="right")
    table.add_column("tokens", justify="right")
    thinking = any("thinking" in v.summary for v in results.variants)
    if thinking:  # Think % and length relative to the reference variant (issue 16)
        table.add_column("think %", justify="right")
        table.add_column("length ×ref", justify="right")
    best = starred(results)
    for v in results.variants:
        s = v.summary
        tok = s["tokens"]["mean"]
        row = [("★ " if v.name == best else "") + v.name]
        row += [interval(s["metrics"].get(n)) for n in names]
        row += [f"{s['diversity']['mean_distinct']:.2f}", f"{tok:.1f}" if tok is not None else "-"]
        if thinking:
            think = s.get("thinking", {}).get("think_frac")
            ratio = s["tokens"].get("length_ratio")
            row += [
                f"{100 * think['value']:.1f}" if think else "-",
                f"{ratio['value']:.2f}" if ratio else "-",
            ]
        table.add_row(*row)
    console.print(table)
    selection_lines(console, results)


def starred(results: RunResults) -> str | None:
    """The variant a closing table marks with ★: the best one, unless it ties (`check_selection`)."""
    selection = check_selection(results)
    tie = selection is not None and selection.tie
    return results.best.variant if results.best and not tie else None


def selection_lines(console, results: RunResults, label: str = "best") -> None:
    """Under a closing table: which variant was chosen, how, and its value, then the selection's notes
    (why it is in-sample; a tie, an endpoint, an overlap with an endpoint: `check_selection`)."""
    if not results.best:
        return
    b = results.best
    shown = interval(b.test or b.value)
    console.print(f"{label} by {b.metric}: [bold]{b.variant}[/bold] — {b.how}: {shown}")
    if b.note:
        console.print(f"[yellow]note:[/] {b.note}")
    selection = check_selection(results)
    if selection is not None:
        console.print(f"[yellow]note:[/] {selection.text}", highlight=False)


def print_warnings(console, results: RunResults) -> None:
    """The run's warnings (e.g. thinking blocks that never close), one line each."""
    for warning in results.warnings or []:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def metrics_tables(console, body: dict, ks: list[int]) -> None:
    """The tables of a metrics.json body: per k for one variant, per variant for several."""
    if len(body["variants"]) > 1:
        _variants_table(console, body, ks)
    else:
        (only,) = body["variants"]
        _single_table(console, {"variant": only["name"], **only["summary"]}, ks)
    for v in body["variants"]:
        for field, rows in v["summary"].get("groups", {}).items():
            groups_table(console, f"{v['name'] or 'all samples'} by {field}", rows)


def groups_table(console, title: str, rows: list[dict]) -> None:
    """One row per value of a grouping field: problems and its metrics with intervals."""
    from rich.table import Table

    names = list(rows[0]["metrics"]) if rows else []
    table = Table(title=title, caption="value [95% bootstrap interval over the group's problems]")
    table.add_column("value")
    table.add_column("problems", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            str(row["value"]), str(row["n_problems"]), *[_interval(row["metrics"][n]) for n in names]
        )
    console.print(table)


def _interval(m: dict) -> str:
    return f"{m['value']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]"


def _single_table(console, s: dict, ks: list[int]) -> None:
    from rich.table import Table

    title = f"{s['n_problems']} problems × n={s['n']}" + (f" — {s['variant']}" if s.get("variant") else "")
    table = Table(title=title, caption="value [95% bootstrap interval over problems]")
    table.add_column("k", justify="right")
    kinds = [m for m in METRIC_FAMILIES if f"{m}@{ks[0]}" in s["metrics"]]
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
    names = [f"{m}@{k}" for m in METRIC_FAMILIES for k in ks if f"{m}@{k}" in first]
    for name in names:
        table.add_column(name, justify="right")
    for v in body["variants"]:
        table.add_row(
            str(v["name"]),
            *[_interval(v["summary"]["metrics"][n]) if n in v["summary"]["metrics"] else "-" for n in names],
        )
    console.print(table)

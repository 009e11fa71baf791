"""The report: results (docs/ARCHITECTURE.md, "Sweep and report") → report.md, report.html and PNG plots.

`build(results, out_dir)` is what `wiseft report`, `wiseft sweep`, `wiseft trajectory` and `wiseft demo`
call (`results` a `RunResults`, or its JSON); `load_results(path)` reads a run directory, a results.json,
a metrics.json or a sample store into a `RunResults`. The report directory
is written atomically: it appears complete or not at all. matplotlib is imported inside the functions that
draw (the evaluation engine imports this package; `wiseft eval` draws nothing).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wiseft.atomic import atomic_dir, check_output_dir, write_json
from wiseft.errors import ConfigError
from wiseft.jsonl import loads
from wiseft.report import thinking
from wiseft.report.captions import caption, omitted
from wiseft.report.data import FAMILIES, Results
from wiseft.report.from_store import results_from_store
from wiseft.report.plots import PLOTS, figure_builders, make_figures, quietly
from wiseft.report.pngs import render_pngs
from wiseft.report.render import RLSection, Table, html_doc, markdown
from wiseft.report.rl import RL_PLOTS, RLRun, find_rl_logs, load_rl_runs, rl_figure_builders, rl_table
from wiseft.report.sources import is_metrics_json, results_from_metrics
from wiseft.results import RunResults, selection_note
from wiseft.store import is_store

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PLOTS",
    "REPORT_FILES",
    "RL_PLOTS",
    "RLRun",
    "build",
    "figures",
    "find_rl_logs",
    "load_results",
    "load_rl_runs",
    "resolve_ks",
    "selection_note",
]

REPORT_FILES = ("report.md", "report.html", "results.json")


def resolve_ks(res: Results, ks: Iterable[int] | None) -> tuple[list[int], list[int]]:
    """(headline ks, ks for the Pass@k-against-k curves).

    Without `ks` the plots show Pass@1 and the largest k of the run, and the Pass@k curves every k.
    With `ks` (the CLI's --k) exactly those; each must be present in the results.
    """
    available = sorted({k for fam in FAMILIES for k in res.ks(fam)})
    if ks is None:
        big = [k for k in available if k > 1]
        return ([max(big)] if big else []), res.ks("pass")
    chosen = sorted(set(ks))
    bad = [k for k in chosen if not isinstance(k, int) or isinstance(k, bool) or k < 1]
    if bad or not chosen:
        raise ConfigError(f"--k must be a list of positive integers such as 1,4,16; got {list(ks)!r}")
    missing = [k for k in chosen if k not in available]
    if missing:
        raise ConfigError(
            f"--k {','.join(map(str, missing))}: not computed in {res.source}; "
            f"available k: {', '.join(map(str, available)) or 'none'}"
        )
    curve_ks = [k for k in res.ks("pass") if k in chosen]
    return chosen, (curve_ks if len(curve_ks) >= 2 else res.ks("pass"))


def figures(results: RunResults | dict | Results, *, ks: Iterable[int] | None = None) -> dict[str, Figure]:
    """Every plot that has data, as matplotlib Figures by name (report order); nothing is written."""
    res = results if isinstance(results, Results) else Results(results)
    headline, curve_ks = resolve_ks(res, ks)
    return make_figures(res, headline, curve_ks)


def build(
    results: RunResults | dict,
    out_dir: str | os.PathLike,
    *,
    ks: Iterable[int] | None = None,
    force: bool = False,
    dpi: int = 110,
    source: str | None = None,
    rl: Sequence[RLRun] = (),
) -> Path:
    """Write report.md, report.html (self-contained), the PNG plots and a copy of results.json into
    `out_dir` (atomically; an existing `out_dir` needs `force`). Returns `out_dir`. `rl`: RL runs whose
    step logs get their own section (`load_rl_runs(run_dir)`); none, no section. Nothing is printed:
    matplotlib's warnings are kept off the console."""
    out = Path(out_dir)
    check_output_dir(out, force)  # before the slow part
    res = Results(results, source or "results")
    headline, curve_ks = resolve_ks(res, ks)
    builders = figure_builders(res, headline, curve_ks)
    meta = {name: (title, caption) for name, title, caption, _ in PLOTS}
    sections = thinking_hook(res, builders, meta)
    rl_builders = {name: quietly(build) for name, build in rl_figure_builders(rl).items()}
    pngs = render_pngs({**builders, **rl_builders}, dpi)  # every figure at once, on two cores
    drawn = [name for name in builders if name in pngs]  # (a builder without data draws nothing)
    rendered = [
        (f"{name}.png", meta[name][0], caption(name, res, meta[name][1], headline, curve_ks), pngs[name])
        for name in drawn
    ]
    metric_names = res.metric_names(headline) if ks is not None else res.metric_names(vote_ks=headline)
    left_out = omitted(res, drawn)
    section = rl_section(rl, pngs)
    with atomic_dir(out, force) as tmp:
        for fname, _title, _caption, png in rendered + list(section.plots if section else []):
            (tmp / fname).write_bytes(png)
        md = markdown(res, [r[:3] for r in rendered], metric_names, left_out, rl=section, sections=sections)
        (tmp / "report.md").write_text(md, encoding="utf-8")
        page = html_doc(res, rendered, metric_names, left_out, rl=section, sections=sections)
        (tmp / "report.html").write_text(page, encoding="utf-8")
        write_json(tmp / "results.json", res.run.to_json())
    return out


def rl_section(runs: Sequence[RLRun], pngs: dict[str, bytes]) -> RLSection | None:
    """The RL section of the report (its figures from `pngs`, the report's rendered figures by name, and
    the table of runs), or None without RL runs."""
    if not runs:
        return None
    meta = {name: (title, caption) for name, title, caption, _ in RL_PLOTS}
    plots = [(f"{name}.png", *meta[name], pngs[name]) for name in meta if name in pngs]
    header, rows = rl_table(runs)
    return RLSection(plots, Table("RL runs", header, rows))


def thinking_hook(res: Results, builders: dict, meta: dict) -> list:
    """The Instruct ↔ Thinking section (`report.thinking`), only when the run has thinking statistics:
    its figure's builder added to `builders`/`meta`, its (title, notes, header, rows) returned."""
    if not thinking.has_thinking(res):
        return []
    builders[thinking.PLOT[0]] = lambda: thinking.figure_for(res)  # (built outside `quiet`, as it was)
    meta[thinking.PLOT[0]] = thinking.PLOT[1:]
    found = thinking.section(res)
    return [("Instruct ↔ Thinking", *found)] if found else []


def load_results(path: str | os.PathLike, *, length_reference: str | None = None) -> RunResults:
    """A run directory holding results.json, a results.json file, a sample store, or the metrics.json of
    `wiseft score`/`wiseft eval` → its `RunResults`. `length_reference` (a variant's name) adds lengths
    relative to it to a report built from a store (a run's results carry their own)."""
    p = Path(path)
    if p.is_dir():
        for name in ("results.json", "metrics.json"):
            if (p / name).is_file():
                return load_results(p / name, length_reference=length_reference)
        if (p / "samples.db").is_file():  # a run that was killed before it wrote results.json
            return load_results(p / "samples.db", length_reference=length_reference)
        raise ConfigError(
            f"{p} holds no results.json, metrics.json or samples.db; give a run directory written by wiseft "
            "sweep/trajectory/demo/eval, a results.json or metrics.json file, or a sample store"
        )
    if not p.is_file():
        raise ConfigError(f"{p} does not exist; give a run directory, a results.json file or a sample store")
    if is_store(p):
        return results_from_store(p, length_reference=length_reference)
    if length_reference is not None:
        raise ConfigError(
            f"--length-reference applies to a report built from a sample store; {p} is a results file, whose "
            "variants carry the lengths their run computed"
        )
    return _read_json(p)


def _read_json(path: Path) -> RunResults:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is neither a results.json (not UTF-8 text) nor a sample store") from exc
    data = loads(text, str(path), ConfigError)
    if is_metrics_json(data):
        return results_from_metrics(data, str(path))
    return RunResults.from_json(data, str(path))

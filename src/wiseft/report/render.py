"""report.md and report.html from the results view and the rendered PNGs.

Both documents carry the same content: the chosen variant and how it was chosen, the plots with a caption
each, the table of every variant with its metrics and 95% intervals, the package and grader versions, and
the resolved config. The HTML is self-contained: inline CSS, images as base64 data URIs, no scripts, no
fonts or links to fetch, so it opens offline from a file (and survives being mailed around).
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import yaml

from wiseft import __version__
from wiseft.report.data import Results, Stat, VariantView, as_stat, metric_label
from wiseft.report.replicates import replicate_table

TITLE = "wiseft report"


def fmt_pct(stat: Stat | None) -> str:
    if stat is None:
        return "–"
    if stat.has_interval:
        return f"{100 * stat.value:.1f} [{100 * stat.lo:.1f}, {100 * stat.hi:.1f}]"
    return f"{100 * stat.value:.1f}"


def fmt_num(stat: Stat | None, digits: int = 2) -> str:
    if stat is None:
        return "–"
    if stat.has_interval:
        return f"{stat.value:.{digits}f} [{stat.lo:.{digits}f}, {stat.hi:.{digits}f}]"
    return f"{stat.value:.{digits}f}"


def _opt(x: float | int | None) -> str:
    return "–" if x is None else f"{x:g}"


Column = tuple[str, Callable[[VariantView], str]]


@dataclass(frozen=True)
class Table:
    """One table of the variants: a title (None for the headline table), the header and the rows."""

    title: str | None
    header: list[str]
    rows: list[list[str]]


def tables(res: Results, metric_names: Sequence[str], headline: Sequence[str] | None = None) -> list[Table]:
    """The variants table, split so that none scrolls sideways: the headline table (what the variant is,
    Pass@1 and the metrics at the headline k, the selection metric), then the other Pass@k/maj@k/best@k,
    then diversity, bias–variance and length. Columns empty for every variant are left out."""
    heads = list(headline) if headline is not None else default_headline(res, metric_names)
    ident: list[Column] = [("variant", lambda v: v.name), ("kind", lambda v: v.kind)]
    for name, key in (("step", "step"), ("δ", "delta"), ("T", "temperature")):
        if any(getattr(v, key) is not None for v in res.variants):
            ident.append((name, lambda v, key=key: _opt(getattr(v, key))))
    for name, key in (("problems", "n_problems"), ("n", "n")):
        if len({v.summary.get(key) for v in res.variants}) > 1:  # the same for all: in the meta line
            ident.append((name, lambda v, key=key: _opt(v.summary.get(key))))
    pct = [(f"{metric_label(m)} (%)", lambda v, m=m: fmt_pct(v.metric(m))) for m in metric_names]
    first = ident + [c for c, m in zip(pct, metric_names, strict=True) if m in heads]
    more = [c for c, m in zip(pct, metric_names, strict=True) if m not in heads]
    out = [_table(res, None, first)]
    if more:
        out.append(_table(res, "Pass@k, maj@k and best@k at the other k", ident[:1] + more))
    if _extra_columns(res):
        out.append(_table(res, "Diversity, bias–variance and length", ident[:1] + _extra_columns(res)))
    return out


def default_headline(res: Results, metric_names: Sequence[str]) -> list[str]:
    """Pass@1, every metric at the largest k of the table, and the metric that chose the best variant."""
    ks = [int(m.split("@")[1]) for m in metric_names]
    top = max(ks, default=1)
    names = [m for m in metric_names if m == "pass@1" or m.endswith(f"@{top}")]
    if res.best is not None and res.best.metric in metric_names and res.best.metric not in names:
        names.append(res.best.metric)
    return names


def _extra_columns(res: Results) -> list[Column]:
    extra: list[Column] = []
    if any(v.diversity("mean_distinct") for v in res.variants):
        extra.append(("distinct answers", lambda v: fmt_num(v.diversity("mean_distinct"))))
    if any(v.bv("var") for v in res.variants):
        extra.append(("bias²", lambda v: fmt_num(v.bv("bias2"), 3)))
        extra.append(("Var ρ", lambda v: fmt_num(v.bv("var"), 3)))
    if any(v.tokens("mean") for v in res.variants):
        extra.append(("mean tokens", lambda v: fmt_num(v.tokens("mean"), 1)))
        extra.append(("truncated (%)", lambda v: fmt_pct(v.tokens("truncated_frac"))))
    return extra


def _table(res: Results, title: str | None, columns: Sequence[Column]) -> Table:
    return Table(title, [name for name, _ in columns], [[fn(v) for _, fn in columns] for v in res.variants])


def best_lines(res: Results) -> list[str]:
    """Plain sentences about the chosen variant (shared by markdown and HTML)."""
    if not res.best:
        return ["This run chose no best variant."]
    metric, name, how = res.best.metric, res.best.variant, res.best.how
    v = res.best_variant
    lines = [f"Chosen: {name}" + (f" ({_describe(v)})" if v else " (not among the variants below)")]
    lines.append(f"Chosen by: {metric_label(metric)}" + (f" — {how}" if how else ""))
    for split in ("validation", "test"):
        stat = as_stat(getattr(res.best, split))
        if stat is not None:
            lines.append(f"{metric_label(metric)} on the {split} split: {fmt_pct(stat)} %")
    if v is not None and v.metric(metric) is not None:
        lines.append(f"{metric_label(metric)} on all problems: {fmt_pct(v.metric(metric))} %")
    if res.selection is not None:
        lines.append(f"Note: {res.selection.text}")
    return lines


def provenance(res: Results) -> str | None:
    """What made these results, when they say it: the command of a store's run, imported JSONL files."""
    parts = []
    command = res.config.get("command")
    imported = res.config.get("imported")
    if isinstance(command, str) and command and not (command == "store import" and imported):
        version = res.config.get("wiseft_version")
        parts.append(f"made by wiseft {command}" + (f" (wiseft {version})" if version else ""))
    if isinstance(imported, list) and imported:
        files = sorted({str(i.get("from")) for i in imported if isinstance(i, dict) and i.get("from")})
        where = f" from {', '.join(files)}" if files else ""
        parts.append(f"{len(imported)} variant(s) imported with wiseft store import{where}")
    store = res.versions.get("store")
    if store:
        parts.append(f"read from the sample store {store}")
    text = "; ".join(parts)
    return f"{text[0].upper()}{text[1:]}." if text else None


def meta_line(res: Results) -> str:
    """Task, problems and sample count, when the results say them."""
    parts = []
    if res.task.get("name"):
        parts.append(f"task {res.task['name']}")
    ns = sorted({v.summary.get("n") for v in res.variants if isinstance(v.summary.get("n"), int)})
    probs = sorted(
        {v.summary.get("n_problems") for v in res.variants if isinstance(v.summary.get("n_problems"), int)}
    )
    if probs:
        parts.append(f"{'/'.join(map(str, probs))} problems")
    if ns:
        parts.append(f"n = {'/'.join(map(str, ns))} samples per problem")
    parts.append(f"{len(res.variants)} variants")
    return " · ".join(parts)


def claim_lines(res: Results) -> list[tuple[bool, str]]:
    """(held, sentence) per claim the run checked (the demo's three claims)."""
    out = []
    for c in res.claims:
        text = f"{'HELD' if c.held else 'DID NOT HOLD'}: {c.statement or c.key or '?'}"
        if c.evidence:
            text += f" — {c.evidence}"
        out.append((c.held, text))
    return out


def _describe(v: VariantView) -> str:
    ends = {0.0: "the final checkpoint itself", 1.0: "the early checkpoint itself"}
    parts = [ends[v.delta] if v.kind == "mix" and v.delta in ends else v.kind]
    if v.delta is not None:
        parts.append(f"δ={v.delta:g}")
    if v.temperature is not None:
        parts.append(f"T={v.temperature:g}")
    if v.step is not None:
        parts.append(f"step {v.step}")
    return ", ".join(parts)


def config_text(res: Results) -> str:
    if not res.config:
        return f"(the results record no config; they were read from {res.source})"
    return yaml.safe_dump(
        res.config, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100
    ).rstrip()


def versions(res: Results) -> list[tuple[str, str]]:
    out = [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in res.versions.items()]
    out.append(("wiseft (report)", __version__))
    return out


# --- Markdown: text from the results (names, paths, sentences) is escaped, never markup -----------------------
_MD_PUNCT = re.compile(r"([\\`*_|~])")
_MD_LINK = re.compile(r"\]([(\[])")  # "](" or "][": what makes brackets a link or an image


Section = tuple[str, list[str], list[str], list[list[str]]]  # title, notes, table header, table rows


def md_text(s: str) -> str:
    """Text as Markdown shows it literally: HTML escaped (`<script>` stays text), emphasis, code and table
    punctuation backslash-escaped, and no "](" that could make a link or image; one line."""
    s = " ".join(str(s).split()).replace("&", "&amp;").replace("<", "&lt;")  # no tag or entity can open
    return _MD_LINK.sub(r"]\\\1", _MD_PUNCT.sub(r"\\\1", s))


def md_code(s: str) -> str:
    """An inline code span that holds `s` whatever backticks it contains (one line; `|` escaped for tables)."""
    s = " ".join(str(s).split()).replace("|", "\\|")
    ticks = "`" * (max((len(r) for r in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s else ""
    return f"{ticks}{pad}{s}{pad}{ticks}"


def md_fence(s: str, lang: str = "") -> list[str]:
    """A fenced code block longer than any run of backticks inside it."""
    ticks = "`" * max(3, max((len(r) for r in re.findall(r"`+", s)), default=0) + 1)
    return [f"{ticks}{lang}", s, ticks]


def _md_table(t: Table) -> list[str]:
    out = [f"### {md_text(t.title)}", ""] if t.title else []
    out.append("| " + " | ".join(md_text(h) for h in t.header) + " |")
    out.append("|" + "|".join("---" for _ in t.header) + "|")
    out += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in t.rows]
    return out + [""]


def markdown(
    res: Results, plots: Sequence[tuple[str, str, str]], metric_names: Sequence[str],
    omitted: Sequence[tuple[str, str]] = (), headline: Sequence[str] | None = None,
    rl: RLSection | None = None,
    sections: Sequence[Section] = (),
) -> str:  # fmt: skip
    """`plots`: (file name, title, caption) of each PNG written beside the report; `omitted`: (title,
    reason) of plots left out on purpose; `sections`: further tables (e.g. the Instruct ↔ Thinking table,
    `report.thinking`) before the variants table."""
    out = [f"# {TITLE}", "", f"Source: {md_code(res.source)} · {md_text(meta_line(res))}", ""]
    if provenance(res):
        out += [md_text(provenance(res)), ""]
    out += ["## Best variant", ""] + [f"- {md_text(line)}" for line in best_lines(res)] + [""]
    if res.claims:
        out += (
            ["## Claims checked on this run", ""]
            + [f"- {md_text(text)}" for _, text in claim_lines(res)]
            + [""]
        )
    if rep := replicate_table(res.replicates):
        header, rows, summary = rep
        out += ["## Claims over seeds", "", md_text(summary), "", *_md_table(Table(None, header, rows))]
    out += ["## Plots", ""]
    if not plots:
        out += ["No plot has data in these results.", ""]
    for fname, title, caption in plots:
        out += [f"### {md_text(title)}", "", md_text(caption), "", f"![{md_text(title)}]({fname})", ""]
    out += [f"Not drawn: {md_text(title)} — {md_text(reason)}" for title, reason in omitted]
    out += _md_rl(rl) if rl is not None else []
    for title, notes, head, body in sections:
        out += ["", f"## {md_text(title)}", ""] + [f"- {md_text(n)}" for n in notes] + [""]
        out += _md_table(Table(None, head, body))[:-1]
    out += ["", "## Variants", "", "Metrics in percent with 95% bootstrap intervals over problems.", ""]
    for t in tables(res, metric_names, headline):
        out += _md_table(t)
    out += ["## Versions", ""]
    out += [f"- {md_text(name)}: {md_code(value)}" for name, value in versions(res)]
    out += ["", "## Config", "", *md_fence(config_text(res), "yaml"), ""]
    return "\n".join(out)


# --- the RL section: the GRPO runs' step logs (`report.rl`), shown only when a run has them ---------------
RL_TITLE = "Reinforcement learning (GRPO)"
RL_INTRO = (
    "Each RL run's per-step log (grpo_log.jsonl beside its checkpoints), drawn against the RL step; the "
    "values are over each step's groups of samples on the RL prompts, not the held-out test problems."
)


@dataclass(frozen=True)
class RLSection:
    """The rendered RL figures, (file name, title, caption, PNG bytes) each, and the table of runs."""

    plots: Sequence[tuple[str, str, str, bytes]]
    table: Table


def _md_rl(rl: RLSection) -> list[str]:
    out = ["", f"## {RL_TITLE}", "", md_text(RL_INTRO), ""]
    for fname, title, caption, _png in rl.plots:
        out += [f"### {md_text(title)}", "", md_text(caption), "", f"![{md_text(title)}]({fname})", ""]
    return out + _md_table(rl.table)


def _html_rl(rl: RLSection) -> list[str]:
    e = html.escape
    parts = [f'<h2 id="rl">{e(RL_TITLE)}</h2>', f"<p>{e(RL_INTRO)}</p>"]
    parts += _html_plots(rl.plots, ())[1:]  # without its "Plots" heading
    if rl.table.title:
        parts.append(f"<h3>{e(rl.table.title)}</h3>")
    return parts + _html_table(Table(None, rl.table.header, rl.table.rows), None)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.meta{color:#666;font-size:.9rem;overflow-wrap:anywhere}.best{background:#fff8dc;border:1px solid #f2c200;
padding:.6rem 1rem;border-radius:6px;overflow-wrap:anywhere}.best .note{color:#8a5a00;font-weight:600}
figure{margin:1.2rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee;box-sizing:border-box}
figcaption{color:#555;font-size:.9rem;overflow-wrap:anywhere}.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.8rem}th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
td{white-space:nowrap}th{background:#f4f4f6;position:sticky;top:0}
td:first-child,th:first-child{text-align:left;white-space:normal;overflow-wrap:anywhere;max-width:18rem}
td:nth-child(2),th:nth-child(2),table.kv td{text-align:left}
tr.chosen td{background:#fff3c4;font-weight:600}
details{margin:1rem 0}summary{cursor:pointer;font-weight:600}
pre{background:#f6f8fa;padding:.8rem;overflow-x:auto;font-size:.8rem;white-space:pre-wrap;overflow-wrap:anywhere}
li.held{color:#1b6e33}li.failed{color:#a4161a;font-weight:600}code{overflow-wrap:anywhere}
"""


def _html_table(t: Table, chosen: str | None) -> list[str]:
    e = html.escape
    out = ['<div class="scroll"><table><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in t.header)]
    out.append("</tr></thead><tbody>")
    for row in t.rows:
        cls = ' class="chosen"' if chosen is not None and row[0] == chosen else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    return out + ["</tbody></table></div>"]


def _html_best(res: Results) -> str:
    e = html.escape
    lines = [
        f'<span class="note">{e(ln)}</span>' if ln.startswith("Note: ") else e(ln) for ln in best_lines(res)
    ]
    return '<div class="best">' + "<br>".join(lines) + "</div>"


def _html_plots(
    plots: Sequence[tuple[str, str, str, bytes]], omitted: Sequence[tuple[str, str]]
) -> list[str]:
    e = html.escape
    parts = ["<h2>Plots</h2>"] + (["<p>No plot has data in these results.</p>"] if not plots else [])
    for fname, title, caption, png in plots:
        data = base64.b64encode(png).decode("ascii")
        parts += [
            f'<figure id="{e(fname.rsplit(".", 1)[0])}"><h3>{e(title)}</h3>',
            f'<img alt="{e(title)}" src="data:image/png;base64,{data}">',
            f"<figcaption>{e(caption)} ({e(fname)})</figcaption></figure>",
        ]
    return parts + [f'<p class="meta">Not drawn: {e(title)} — {e(reason)}</p>' for title, reason in omitted]


def html_doc(
    res: Results, plots: Sequence[tuple[str, str, str, bytes]], metric_names: Sequence[str],
    omitted: Sequence[tuple[str, str]] = (), headline: Sequence[str] | None = None,
    rl: RLSection | None = None,
    sections: Sequence[Section] = (),
) -> str:  # fmt: skip
    """`plots`: (file name, title, caption, PNG bytes); the bytes are embedded as data URIs. The headline
    table is shown; the other columns fold into <details>, so the page never scrolls sideways. `sections`
    as in `markdown`."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(TITLE)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(TITLE)}</h1>",
        f'<p class="meta">Source: <code>{e(res.source)}</code> · {e(meta_line(res))}</p>',
    ]
    if provenance(res):
        parts.append(f'<p class="meta">{e(provenance(res))}</p>')
    parts += ["<h2>Best variant</h2>", _html_best(res)]
    if res.claims:
        parts += ["<h2>Claims checked on this run</h2>", "<ul>"]
        for held, text in claim_lines(res):
            parts.append(f'<li class="{"held" if held else "failed"}">{e(text)}</li>')
        parts.append("</ul>")
    if rep := replicate_table(res.replicates):
        header, rows, summary = rep
        parts += [
            "<h2>Claims over seeds</h2>",
            f"<p>{e(summary)}</p>",
            *_html_table(Table(None, header, rows), None),
        ]
    parts += _html_plots(plots, omitted)
    parts += _html_rl(rl) if rl is not None else []
    for title, notes, head, body in sections:
        parts += [f"<h2>{e(title)}</h2>", "<ul>", *[f"<li>{e(n)}</li>" for n in notes], "</ul>"]
        parts += _html_table(Table(None, head, body), None)
    parts += ["<h2>Variants</h2>",
              "<p>Metrics in percent with 95% bootstrap intervals over problems, as <i>value [lo, hi]</i>.</p>"]  # fmt: skip
    chosen = res.chosen.name if res.chosen is not None else None
    first, *rest = tables(res, metric_names, headline)
    parts += _html_table(first, chosen)
    for t in rest:
        parts += [f"<details><summary>{e(t.title or '')}</summary>", *_html_table(t, chosen), "</details>"]
    parts += ["<h2>Versions</h2>", '<table class="kv"><tbody>']
    parts += [f"<tr><td>{e(k)}</td><td><code>{e(v)}</code></td></tr>" for k, v in versions(res)]
    parts += [
        "</tbody></table>",
        "<h2>Config</h2>",
        f"<pre>{e(config_text(res))}</pre>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)

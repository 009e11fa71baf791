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
from collections.abc import Sequence

import yaml

from wiseft import __version__
from wiseft.report.data import Results, Stat, VariantView, as_stat, metric_label

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


def table(res: Results, metric_names: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per variant, metrics in percent with their 95% intervals."""
    header = ["variant", "kind", "step", "δ", "T", "problems", "n"]
    header += [f"{metric_label(m)} (%)" for m in metric_names]
    extra = []
    if any(v.diversity("mean_distinct") for v in res.variants):
        extra.append(("distinct answers", lambda v: fmt_num(v.diversity("mean_distinct"))))
    if any(v.bv("var") for v in res.variants):
        extra.append(("bias²", lambda v: fmt_num(v.bv("bias2"), 3)))
        extra.append(("Var ρ", lambda v: fmt_num(v.bv("var"), 3)))
    if any(v.tokens("mean") for v in res.variants):
        extra.append(("mean tokens", lambda v: fmt_num(v.tokens("mean"), 1)))
        extra.append(("truncated (%)", lambda v: fmt_pct(v.tokens("truncated_frac"))))
    header += [name for name, _ in extra]
    rows = []
    for v in res.variants:
        row = [v.name, v.kind, _opt(v.step), _opt(v.delta), _opt(v.temperature)]
        row += [_opt(v.summary.get("n_problems")), _opt(v.summary.get("n"))]
        row += [fmt_pct(v.metric(m)) for m in metric_names]
        row += [fn(v) for _, fn in extra]
        rows.append(row)
    return header, rows


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
    return lines


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
    parts = [v.kind]
    if v.delta is not None:
        parts.append(f"δ={v.delta:g}")
    if v.temperature is not None:
        parts.append(f"T={v.temperature:g}")
    if v.step is not None:
        parts.append(f"step {v.step}")
    return ", ".join(parts)


def config_text(res: Results) -> str:
    if not res.config:
        return "(no config recorded in the results)"
    return yaml.safe_dump(
        res.config, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100
    ).rstrip()


def versions(res: Results) -> list[tuple[str, str]]:
    out = [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in res.versions.items()]
    out.append(("wiseft (report)", __version__))
    return out


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


Section = tuple[str, list[str], list[str], list[list[str]]]  # title, notes, table header, table rows


def markdown(
    res: Results,
    plots: Sequence[tuple[str, str, str]],
    metric_names: Sequence[str],
    sections: Sequence[Section] = (),
) -> str:
    """`plots`: (file name, title, caption) of each PNG written beside the report; `sections`: further
    tables (e.g. the Instruct ↔ Thinking table, `report.thinking`) before the variants table."""
    out = [f"# {TITLE}", "", f"Source: `{res.source}` · {meta_line(res)}", ""]
    out += ["## Best variant", ""] + [f"- {line}" for line in best_lines(res)] + [""]
    if res.claims:
        out += ["## Claims checked on this run", ""] + [f"- {text}" for _, text in claim_lines(res)] + [""]
    out += ["## Plots", ""]
    if not plots:
        out += ["No plot has data in these results.", ""]
    for fname, title, caption in plots:
        out += [f"### {title}", "", caption, "", f"![{title}]({fname})", ""]
    for title, notes, head, body in sections:
        out += [f"## {title}", ""] + [f"- {n}" for n in notes] + [""]
        out.append("| " + " | ".join(_md_cell(h) for h in head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in body] + [""]
    header, rows = table(res, metric_names)
    out += ["## Variants", "", "Metrics in percent with 95% bootstrap intervals over problems.", ""]
    out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
    out.append("|" + "|".join("---" for _ in header) + "|")
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    out += ["", "## Versions", ""]
    out += [f"- {name}: `{value}`" for name, value in versions(res)]
    out += ["", "## Config", "", "```yaml", config_text(res), "```", ""]
    return "\n".join(out)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.meta{color:#666;font-size:.9rem}.best{background:#fff8dc;border:1px solid #f2c200;padding:.6rem 1rem;
border-radius:6px}figure{margin:1.2rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9rem}.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.8rem;white-space:nowrap}th,td{border:1px solid #ddd;
padding:.25rem .5rem;text-align:right}th{background:#f4f4f6;position:sticky;top:0}
td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}tr.chosen td{background:#fff3c4;font-weight:600}
pre{background:#f6f8fa;padding:.8rem;overflow-x:auto;font-size:.8rem}
li.held{color:#1b6e33}li.failed{color:#a4161a;font-weight:600}
"""


def html_doc(
    res: Results, plots: Sequence[tuple[str, str, str, bytes]], metric_names: Sequence[str],
    sections: Sequence[Section] = (),
) -> str:  # fmt: skip
    """`plots`: (file name, title, caption, PNG bytes); the bytes are embedded as data URIs; `sections` as
    in `markdown`."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(TITLE)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(TITLE)}</h1>",
        f'<p class="meta">Source: <code>{e(res.source)}</code> · {e(meta_line(res))}</p>',
        "<h2>Best variant</h2>",
        '<div class="best">' + "<br>".join(e(line) for line in best_lines(res)) + "</div>",
    ]
    if res.claims:
        parts += ["<h2>Claims checked on this run</h2>", "<ul>"]
        for held, text in claim_lines(res):
            parts.append(f'<li class="{"held" if held else "failed"}">{e(text)}</li>')
        parts.append("</ul>")
    parts.append("<h2>Plots</h2>")
    if not plots:
        parts.append("<p>No plot has data in these results.</p>")
    for fname, title, caption, png in plots:
        data = base64.b64encode(png).decode("ascii")
        parts += [
            f'<figure id="{e(fname.rsplit(".", 1)[0])}"><h3>{e(title)}</h3>',
            f'<img alt="{e(title)}" src="data:image/png;base64,{data}">',
            f"<figcaption>{e(caption)} ({e(fname)})</figcaption></figure>",
        ]
    for title, notes, head, body in sections:
        parts += [f"<h2>{e(title)}</h2>", "<ul>"] + [f"<li>{e(n)}</li>" for n in notes] + ["</ul>"]
        parts.append(
            '<div class="scroll"><table><thead><tr>'
            + "".join(f"<th>{e(h)}</th>" for h in head)
            + "</tr></thead><tbody>"
        )
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in body]
        parts.append("</tbody></table></div>")
    header, rows = table(res, metric_names)
    chosen = res.best_variant.name if res.best_variant else None
    parts += [
        "<h2>Variants</h2>",
        "<p>Metrics in percent with 95% bootstrap intervals over problems, as <i>value [lo, hi]</i>.</p>",
        '<div class="scroll"><table><thead><tr>'
        + "".join(f"<th>{e(h)}</th>" for h in header)
        + "</tr></thead>",
        "<tbody>",
    ]
    for row in rows:
        cls = ' class="chosen"' if row[0] == chosen else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    parts += ["</tbody></table></div>", "<h2>Versions</h2>", "<table><tbody>"]
    parts += [f"<tr><td>{e(k)}</td><td><code>{e(v)}</code></td></tr>" for k, v in versions(res)]
    parts += [
        "</tbody></table>",
        "<h2>Config</h2>",
        f"<pre>{e(config_text(res))}</pre>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)

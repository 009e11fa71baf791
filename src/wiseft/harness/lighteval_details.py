"""lighteval's details files, written from a store (the format of lighteval 0.13: `EvaluationTracker.save`
and `save_details`, one row per `DetailsLogger.Detail(doc, model_response, metric)`).

Layout, one "model" per variant (its name made safe as a directory name):

    DIR/details/<variant>/<date_id>/details_<task>|<fewshot>_<date_id>.parquet   one row per problem
    DIR/results/<variant>/results_<date_id>.json                                 the aggregated results

Columns (sorted, as lighteval writes them): `doc`, `metric`, `model_response`, each a struct with the
fields of lighteval's dataclasses, so `ModelResponse(**row["model_response"])` rebuilds the response
(what `--load-responses-from-details-date-id` does):

    doc.query            the prompt ("" when unknown); doc.choices = [gold] ("" when unknown), gold_index 0
    doc.original_query   the question, when the problem's meta holds one ("question")
    doc.specific         {"problem_id", the problem's meta fields (lists and objects as JSON text; all
                          of them as text when a field's type differs between problems),
                          "wiseft": per-sample lists sample_idx, correct, verdict, answer, answer_class,
                          n_tokens, finish_reason}
    doc.id               the problem's index (as lm-eval's doc_id); doc.task_name "<task>|<fewshot>"
    doc.num_samples      n; generation_size and stop_sequences from the variant's sampling settings
    model_response.input the prompt; model_response.text the n completions
    metric               "avg@n:n=<n>": fraction of the n samples graded correct;
                         "pass@k:k=<k>&n=<n>": unbiased Pass@k, for each k (lighteval's names)
"""

from __future__ import annotations

import json
from pathlib import Path

from wiseft import __version__
from wiseft.atomic import write_json
from wiseft.errors import ConfigError
from wiseft.harness.common import ProblemDoc, VariantDocs, mean_stderr, pass_values, safe_name

PYARROW = "pyarrow==26.0.1"


def require_pyarrow():
    """pyarrow (the `export` extra), or a one-line ConfigError saying how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"--format lighteval writes parquet files and needs pyarrow; install it with "
            f"`pip install 'wiseft[export]'` ({PYARROW})"
        ) from None
    return pyarrow


def metric_names(vd: VariantDocs) -> list[str]:
    return [f"avg@n:n={vd.n}"] + [f"pass@k:k={k}&n={vd.n}" for k in vd.ks]


def _scalar(value, as_text: bool):
    """A meta value as a parquet column holds it: scalars as they are, lists and objects as JSON text; all
    of them as text with `as_text` (for a field whose type differs between problems)."""
    if value is None or isinstance(value, str) or (not as_text and isinstance(value, (bool, int, float))):
        return value
    return json.dumps(value, ensure_ascii=False)


def doc_struct(doc: ProblemDoc, vd: VariantDocs, as_text: bool = False) -> dict:
    """lighteval's `Doc`, field for field (in its order)."""
    s = vd.variant.sampling
    specific = {
        "problem_id": doc.problem_id,
        **{k: _scalar(v, as_text) for k, v in doc.meta.items() if k != "problem_id"},
    }
    specific["wiseft"] = doc.sample_lists()
    stop = s.get("stop")
    question = doc.meta.get("question") if isinstance(doc.meta.get("question"), str) else None
    return {
        "query": doc.prompt or "", "choices": [doc.gold or ""], "gold_index": 0, "instruction": None,
        "images": None, "specific": specific, "unconditioned_query": None, "original_query": question,
        "id": str(doc.doc_id), "task_name": f"{vd.task}|{vd.fewshot}", "fewshot_samples": [],
        "sampling_methods": ["GENERATIVE"], "fewshot_sorting_class": None,
        "generation_size": s.get("max_new_tokens"),
        "stop_sequences": list(stop) if isinstance(stop, (list, tuple)) else None,
        "use_logits": False, "num_samples": doc.n, "generation_grammar": None,
    }  # fmt: skip


def response_struct(doc: ProblemDoc) -> dict:
    """lighteval's `ModelResponse`, field for field (in its order)."""
    return {
        "input": doc.prompt or "", "input_tokens": [], "text": [r["completion"] for r in doc.samples],
        "output_tokens": [], "text_post_processed": None, "reasonings": [], "logprobs": [],
        "argmax_logits_eq_gold": [], "logits": None, "unconditioned_logprobs": None,
        "truncated_tokens_count": 0, "padded_tokens_count": 0,
    }  # fmt: skip


def detail_row(doc: ProblemDoc, vd: VariantDocs, as_text: bool = False) -> dict:
    values = [doc.c / doc.n] + list(pass_values(doc, vd.ks).values())
    metric = dict(zip(metric_names(vd), values, strict=True))
    return {"doc": doc_struct(doc, vd, as_text), "metric": metric, "model_response": response_struct(doc)}


def details_table(vd: VariantDocs, pa):
    """The rows as an Arrow table; when a meta field's type differs between problems (2 and "Level 5"),
    every meta value is written as text instead."""
    rows = [detail_row(doc, vd) for doc in vd.docs]
    try:
        return rows, pa.Table.from_pylist(rows)
    except pa.ArrowException:
        rows = [detail_row(doc, vd, as_text=True) for doc in vd.docs]
        return rows, pa.Table.from_pylist(rows)


def results_json(vd: VariantDocs, rows: list[dict]) -> dict:
    """The aggregated results lighteval writes under results/: per-task means with their standard errors."""
    full = f"{vd.task}|{vd.fewshot}"
    scores: dict = {}
    for name in metric_names(vd):
        values = [row["metric"][name] for row in rows]
        scores[name] = sum(values) / len(values)
        se = mean_stderr(values)
        if se is not None:
            scores[f"{name}_stderr"] = se
    v = vd.variant
    return {
        "config_general": {
            "model_name": v.name,
            "model_config": {
                "model_name": v.name,
                "kind": v.kind,
                "temperature": v.temperature,
                "step": v.step,
                "recipe": v.recipe,
                "models": v.model_hashes,
            },
            "wiseft_version": __version__,
        },
        "results": {full: scores, "all": dict(scores)},
        "versions": {full: 0},
        "config_tasks": {
            full: {
                "name": vd.task,
                "num_fewshots": vd.fewshot,
                "num_samples": [vd.n],
                "metrics": metric_names(vd),
                "grader": vd.grader,
            }
        },
    }


def write(variants: list[VariantDocs], root: Path, date: str) -> list[Path]:
    """Write each variant's details parquet and results JSON under `root`; return the paths written."""
    pa = require_pyarrow()
    import pyarrow.parquet as pq

    written = []
    for vd in variants:
        rows, table = details_table(vd, pa)
        folder = root / "details" / vd.dirname / date
        folder.mkdir(parents=True, exist_ok=True)
        details = folder / f"details_{safe_name(vd.task)}|{vd.fewshot}_{date}.parquet"
        pq.write_table(table, details)
        results = root / "results" / vd.dirname / f"results_{date}.json"
        write_json(results, results_json(vd, rows))
        written += [details, results]
    return written

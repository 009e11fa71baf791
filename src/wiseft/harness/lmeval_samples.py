"""lm-evaluation-harness's `--log_samples` files, written from a store (the format of lm-eval 0.4.13:
`EvaluationTracker.save_results_samples`, and the per-sample dict built in `evaluator.evaluate`).

Layout, one directory per variant (lm-eval's model directory, `sanitize_model_name` of its name):

    DIR/<variant>/samples_<task>_<date_id>.jsonl     one line per problem
    DIR/<variant>/results_<date_id>.json             the aggregated results lm-eval writes beside it

A line maps one problem ("doc") with its n samples (lm-eval's `repeats`) as lm-eval writes it:

    doc_id          the problem's index (the id itself when every id is a whole number)
    doc             {"problem_id", the problem's meta fields (subject, level, …), "gold"}
    target          the gold answer ("" when the store does not know it)
    arguments       {"gen_args_0": {"arg_0": the prompt ("" when unknown), "arg_1": generation kwargs}}
    resps           [[the n completions]]   (one request, n repeats)
    filtered_resps  [[the n extracted answers]]   ("[invalid]", lm-eval's no-match value, when none)
    filter          "wiseft-extract"
    metrics         the names of the metric keys below
    doc_hash, prompt_hash, target_hash   SHA-256 as lm-eval computes them
    <metric>        fraction of the n samples graded correct (named as lm-eval names that grader's
                    measure: math_verify, exact_match, prompt_level_strict_acc; else acc)
    pass@<k>        unbiased Pass@k of the problem, for each k (lm-eval's humaneval naming)
    wiseft          per-sample lists aligned with resps: sample_idx, correct, verdict, answer,
                    answer_class, n_tokens, finish_reason; and the variant's name and grader
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

from wiseft import __version__
from wiseft.atomic import atomic_write_text, write_json
from wiseft.harness.common import ProblemDoc, VariantDocs, gen_kwargs, mean_stderr, pass_values, safe_name

FILTER = "wiseft-extract"
NO_ANSWER = "[invalid]"


def metric_name(grader: str) -> str:
    """lm-eval's name for what the grader measures."""
    if grader.startswith("math-verify"):
        return "math_verify"  # minerva_math's Math-Verify metric
    if grader == "int-exact":
        return "exact_match"  # gsm8k's
    if grader.startswith("ifeval"):
        return "prompt_level_strict_acc"  # ifeval's
    return "acc"


def hash_string(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def doc_fields(doc: ProblemDoc) -> dict:
    meta = {k: v for k, v in doc.meta.items() if k not in ("problem_id", "gold")}
    return {"problem_id": doc.problem_id, **meta, "gold": doc.gold}


def sample_line(doc: ProblemDoc, vd: VariantDocs) -> dict:
    """One problem as lm-eval logs a doc: its fields in lm-eval's order, then the metric values."""
    prompt, target = doc.prompt or "", doc.gold or ""
    fields = doc_fields(doc)
    lists = doc.sample_lists()
    metrics = {metric_name(vd.grader): doc.c / doc.n}
    metrics.update({f"pass@{k}": v for k, v in pass_values(doc, vd.ks).items()})
    line = {
        "doc_id": doc.doc_id,
        "doc": fields,
        "target": target,
        "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": gen_kwargs(vd.variant)}},
        "resps": [[r["completion"] for r in doc.samples]],
        "filtered_resps": [[NO_ANSWER if a is None else a for a in lists["answer"]]],
        "filter": FILTER,
        "metrics": list(metrics),
        "doc_hash": hash_string(json.dumps(fields, indent=2, ensure_ascii=False)),
        "prompt_hash": hash_string(prompt),
        "target_hash": hash_string(target),
    }
    line.update(metrics)
    line["wiseft"] = {"variant": vd.variant.name, "grader": vd.grader, **lists}
    return line


def results_json(vd: VariantDocs, lines: list[dict], date: str) -> dict:
    """The aggregated results lm-eval writes beside the samples: what its viewers read first (the task's
    config, metric list and filter; the model's arguments)."""
    task, names = vd.task, lines[0]["metrics"]
    scores: dict = {"alias": task}
    for name in names:
        values = [line[name] for line in lines]
        se = mean_stderr(values)
        scores[f"{name},{FILTER}"] = sum(values) / len(values)
        scores[f"{name}_stderr,{FILTER}"] = "N/A" if se is None else se
    v = vd.variant
    return {
        "results": {task: scores},
        "group_subtasks": {task: []},
        "configs": {
            task: {
                "task": task,
                "output_type": "generate_until",
                "repeats": vd.n,
                "num_fewshot": vd.fewshot,
                "generation_kwargs": gen_kwargs(v),
                "metric_list": [
                    {"metric": m, "aggregation": "mean", "higher_is_better": True} for m in names
                ],
                "filter_list": [{"name": FILTER, "filter": [{"function": "wiseft", "grader": vd.grader}]}],
                "metadata": {"wiseft": __version__},
            }
        },
        "versions": {task: None},
        "n-shot": {task: vd.fewshot},
        "higher_is_better": {task: dict.fromkeys(names, True)},
        "n-samples": {task: {"original": len(lines), "effective": len(lines)}},
        "config": {
            "model": "wiseft",
            "model_args": {
                "variant": v.name,
                "kind": v.kind,
                "temperature": v.temperature,
                "step": v.step,
                "recipe": v.recipe,
                "models": v.model_hashes,
            },
        },
        "model_name": v.name,
        "model_name_sanitized": vd.dirname,
        "date": _timestamp(date),
        "task_hashes": {
            task: hash_string("".join(x["doc_hash"] + x["prompt_hash"] + x["target_hash"] for x in lines))
        },
    }


def _timestamp(date: str) -> float | None:
    day, _, time = date.partition("T")
    try:
        return datetime.fromisoformat(f"{day}T{time.replace('-', ':')}").timestamp()
    except ValueError:
        return None


def write(variants: list[VariantDocs], root: Path, date: str) -> list[Path]:
    """Write each variant's samples and results files under `root`; return the paths written."""
    written = []
    for vd in variants:
        lines = [sample_line(doc, vd) for doc in vd.docs]
        folder = root / vd.dirname
        samples = folder / f"samples_{safe_name(vd.task)}_{date}.jsonl"
        atomic_write_text(samples, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
        results = folder / f"results_{date}.json"
        write_json(results, results_json(vd, lines, date))
        written += [samples, results]
    return written

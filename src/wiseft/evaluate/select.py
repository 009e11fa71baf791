"""Choosing the best variant without grading the choice on the data that made it.

The variant with the highest `cfg.metric` on a validation split of the problems (`tasks.split.split_problems`,
seeded) is chosen and reported on the held-out rest. With `val_fraction` 0 the choice is made and reported
on all problems, and the selection says it is in-sample; so it is, with a note saying why, when the
problems are too few to split (`--limit 1`).
"""

from __future__ import annotations

from collections.abc import Sequence

from wiseft.errors import ConfigError, MetricError, TaskError
from wiseft.evaluate.config import SelectConfig
from wiseft.metrics import summarize
from wiseft.results import Selection, VariantResult
from wiseft.tasks import Problem
from wiseft.tasks.split import split_problems


def choose_best(
    variants: Sequence[VariantResult], problems: Sequence[Problem], cfg: SelectConfig
) -> tuple[Selection, dict[str, dict]]:
    """(the selection, each variant's selection metric on the validation and test splits by name).

    `variants[i].per_problem` must follow the order of `problems`. The split dict is empty when the
    choice is in-sample."""
    metric = cfg.metric
    if cfg.val_fraction == 0:
        how = f"highest {metric} on all {len(problems)} problems (no validation split: in-sample)"
        return Selection.highest(variants, metric, how), {}
    try:
        val, test = split_problems(problems, cfg.val_fraction, cfg.seed)
    except TaskError:
        how = f"highest {metric} on all {len(problems)} problems (in-sample)"
        note = (
            f"{len(problems)} problem(s) are too few for a validation split of {cfg.val_fraction:g}: the best "
            "variant was chosen and is reported in-sample; use more problems for a held-out estimate"
        )
        return Selection.highest(variants, metric, how, note=note), {}
    position = {p.id: i for i, p in enumerate(problems)}
    k = int(metric.split("@")[1])
    splits = {}
    for v in variants:
        splits[v.name] = {}
        for split_name, part in (("validation", val), ("test", test)):
            chosen = [v.per_problem[position[p.id]] for p in part]
            try:
                s = summarize(chosen, [k], seed=cfg.seed, n_boot=cfg.n_boot)
            except MetricError as exc:
                raise ConfigError(f"--metric {metric}: {exc}") from exc
            splits[v.name][split_name] = {"n_problems": len(part), metric: s["metrics"][metric]}
    best = max(variants, key=lambda v: splits[v.name]["validation"][metric]["value"])
    how = (
        f"highest {metric} on a validation split of {len(val)} problems (seed {cfg.seed}); "
        f"reported on the other {len(test)} held-out problems"
    )
    chosen_splits = splits[best.name]
    return Selection(
        metric, best.name, how, chosen_splits["validation"][metric], chosen_splits["test"][metric]
    ), splits

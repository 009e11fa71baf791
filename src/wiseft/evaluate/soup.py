"""`wiseft soup`: the greedy model soup, each candidate soup evaluated in memory, the chosen one written once.

`run_soup(cfg, out)`:

1. **Pre-flight** (`preflight`; nothing written): at least two candidates with the same architecture (their
   headers, through the plan of their uniform average), a pass@k or maj@k metric, the validation problems
   (the task's `--split`, checked disjoint from its test split by question text, or the test problems
   themselves with `--in-sample`), the output place and the sample store.
2. **Greedy soup** (`evaluate.greedy.greedy_soup`): every candidate alone, then each soup the recipe tries,
   is a variant of one `EvalSession`: the engine's weight source writes the uniform average of the soup's
   candidates into the live model (`WeightSpace`, the kernels of `wiseft merge`), the session samples what
   the store lacks, grades and summarises; the metric of the summary (with its bootstrap interval) is the
   soup's score. No soup is written to disk. The store keys each variant by the soup's recipe (a linear
   recipe over its candidates, equal weights) and their content fingerprints, so a killed run, rerun,
   samples only what it had not committed.
3. **Output** (`write_soup`): the kept candidates' uniform average is merged by the streaming driver from
   a linear recipe (the kept candidates in the order given, weights 1/m), so the output is the bytes of
   `wiseft merge KEPT... --method linear --weights 1/m,...`; its wiseft.json gains a `soup` record: the
   greedy order, every candidate's and every tried soup's score with its interval, which were kept, the
   validation problems and the settings, written by the driver in its one write of wiseft.json
   (`merge(..., provenance_extra=)`). The directory appears whole (`atomic.atomic_dir`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from wiseft.atomic import check_output_dir
from wiseft.checkpoints import parse_size, resolve
from wiseft.config import to_dict
from wiseft.errors import ConfigError, TaskError
from wiseft.evaluate.config import with_model_sampling
from wiseft.evaluate.engine import Engine, SamplerFactory, make_engine
from wiseft.evaluate.greedy import Score, SoupTrace, greedy_soup
from wiseft.evaluate.plan import VariantSpec
from wiseft.evaluate.session import EvalProgress, EvalSession, load_task
from wiseft.evaluate.soup_config import TEST_SPLIT, SoupConfig
from wiseft.merge.driver import MergeResult, check_output_location, merge
from wiseft.merge.plan import Plan
from wiseft.merge.plan import plan as make_plan
from wiseft.merge.recipe import Recipe, recipe_to_dict
from wiseft.results import VariantResult
from wiseft.store import SampleStore
from wiseft.tasks import Task, get_task, split_problems


@dataclass(frozen=True)
class SoupSpec(VariantSpec):
    """A soup variant: materialised as linear weights over all candidates (zero for the ones left out, so
    one weight space serves every soup), identified in the store by `soup`, the linear recipe over its own
    candidates with equal weights (the recipe `wiseft merge` would write)."""

    soup: Recipe | None = None

    @property
    def recipe(self) -> dict | None:
        return recipe_to_dict(self.soup) if self.soup is not None else None


@dataclass(frozen=True)
class Prepared:
    """What the pre-flight resolved: the config (sampling defaults filled, the store set), the validation
    task, what the output records about it, and the plan of the candidates' uniform average."""

    cfg: SoupConfig
    task: Task
    validation: dict
    plan: Plan


@dataclass
class SoupResult:
    trace: SoupTrace
    labels: tuple[str, ...]
    record: dict
    merged: MergeResult
    variants: list[VariantResult]


def soup_recipe(models: Sequence[str], dtype: str | None = None) -> Recipe:
    """The uniform average of `models`: linear, weights 1/m."""
    return Recipe(
        method="linear", models=tuple(models), weights=(1.0 / len(models),) * len(models), dtype=dtype
    )


def labels(candidates: Sequence[str]) -> tuple[str, ...]:
    """Short names of the candidates for variant names and tables: their directory names, numbered when
    two are the same."""
    names = [Path(c).name or str(c) for c in candidates]
    if len(set(names)) == len(names):
        return tuple(names)
    return tuple(f"{i + 1}:{name}" for i, name in enumerate(names))


def soup_spec(cfg: SoupConfig, soup: tuple[int, ...], names: Sequence[str]) -> SoupSpec:
    """The variant of the soup of candidates `soup` (indices, ascending)."""
    weight = 1.0 / len(soup)
    mix = tuple(weight if i in soup else 0.0 for i in range(len(cfg.candidates)))
    models = tuple(cfg.candidates[i] for i in soup)
    name = names[soup[0]] if len(soup) == 1 else "soup(" + "+".join(names[i] for i in soup) + ")"
    return SoupSpec(name, "mix", cfg.temperature[0], mix=mix, anchors=tuple(cfg.candidates), models=models,
                    soup=soup_recipe(models))  # fmt: skip


def default_store(out: str | os.PathLike) -> Path:
    """OUT.samples.db beside the output (the output itself is written whole at the end)."""
    out = Path(out)
    return out.with_name(out.name + ".samples.db")


# --------------------------------------------------------------------------------------------- pre-flight


def validation_task(cfg: SoupConfig) -> tuple[Task, dict]:
    """The problems the soup is chosen on (cut to --limit) and what the output records about them. A
    split other than the test split is renamed TASK/SPLIT, so its samples never pass for the test
    split's in a shared store (problem ids may repeat across splits), and is checked disjoint from the
    test split by question text."""
    split = cfg.validation_split
    info = {"task": cfg.task, "split": split, "in_sample": cfg.in_sample}
    if cfg.in_sample:
        task = load_task(cfg)
        info["disjoint_from_test"] = "no: in-sample, the soup is chosen on the test problems themselves"
    elif cfg.val_fraction is not None:
        task, info["held_out"] = _share_of_test(cfg)
        info["val_fraction"] = cfg.val_fraction
        info["disjoint_from_test"] = (
            f"by construction: a seeded share of the test split; the other {len(info['held_out'])} problems "
            "(held_out) are the test set to report the soup on"
        )
    else:
        task = load_task(cfg, _split_task(cfg, split))
        info["disjoint_from_test"] = _check_disjoint(cfg, task, split)
        task = dataclasses.replace(task, name=f"{task.name}/{split}")
    info.update(n_problems=len(task.problems), source=task.source, store_task=task.name)
    return task, info


def _share_of_test(cfg: SoupConfig) -> tuple[Task, list[str]]:
    """The validation part of `tasks.split_problems(test problems, --val-fraction, --seed)` (cut to
    --limit), and the ids of the held-out rest. The problems are the test split's own, so the task keeps
    its name: their samples are the same in any store."""
    task = get_task(cfg.task, data=cfg.data)
    validation, held_out = split_problems(task.problems, cfg.val_fraction, cfg.seed)  # type: ignore[arg-type]
    return load_task(cfg, task.subset([p.id for p in validation])), [p.id for p in held_out]


def _split_task(cfg: SoupConfig, split: str) -> Task:
    hint = (
        "give --split NAME (a split disjoint from the test set) or --in-sample (choose on the test problems, "
        "recorded as in-sample)"
    )
    try:
        return get_task(cfg.task, data=cfg.data, split=split)
    except TypeError as exc:
        if "split" not in str(exc):  # not the factory refusing the option: a real error
            raise
        raise TaskError(
            f"task {cfg.task} has no named splits (--split {split}): its problems are the --data file; pass "
            "--in-sample to choose the soup on them (recorded as in-sample)"
        ) from None
    except TaskError as exc:
        raise TaskError(f"--split {split}: {exc}; {hint}") from None


def _check_disjoint(cfg: SoupConfig, task: Task, split: str) -> str:
    try:
        test = get_task(cfg.task, data=cfg.data, split=TEST_SPLIT)
    except TaskError as exc:
        return f"not checked: the test split did not load ({exc})"
    seen = {p.question.strip() for p in test.problems}
    shared = [p.id for p in task.problems if p.question.strip() in seen]
    if shared:
        raise TaskError(
            f"--split {split}: {len(shared)} of its {len(task.problems)} problems (e.g. {shared[0]!r}) are also "
            f"in task {cfg.task}'s test split; choose a split disjoint from it, or --in-sample"
        )
    return (
        f"checked: none of the {len(task.problems)} {split} problems is among the {len(test.problems)} "
        "test problems (by question text)"
    )


def preflight(cfg: SoupConfig, out: str | os.PathLike, force: bool) -> Prepared:
    """Everything checked before a model is loaded or a file written (see the module docstring)."""
    out = Path(out)
    check_output_dir(out, force)
    parse_size(cfg.shard_size)
    plan = make_plan(soup_recipe(cfg.candidates), out_dtype=cfg.dtype)  # architectures, headers only
    check_output_location(plan, out)
    store = Path(cfg.store) if cfg.store else default_store(out)
    if out.resolve() in store.resolve().parents:
        raise ConfigError(
            f"--store {store} lies inside -o {out}, which is written whole at the end; put the store elsewhere"
        )
    SampleStore.check_free(store)
    cfg = with_model_sampling(cfg, resolve(cfg.candidates[0]))
    cfg = dataclasses.replace(cfg, store=str(store))
    task, validation = validation_task(cfg)
    return Prepared(cfg, task, validation, plan)


# ------------------------------------------------------------------------------------------------ the run


class SessionScorer:
    """The greedy soup's scorer: each soup a variant of the session, its score the summary's metric."""

    def __init__(self, session: EvalSession, cfg: SoupConfig, names: Sequence[str]):
        self.session, self.cfg, self.names = session, cfg, names
        self.variants: list[VariantResult] = []

    def __call__(self, soup: tuple[int, ...]) -> Score:
        result = self.session.evaluate(soup_spec(self.cfg, soup, self.names))
        self.variants.append(result)
        m = result.summary["metrics"][self.cfg.metric]
        return Score(m["value"], m.get("lo"), m.get("hi"))


def run_soup(
    cfg: SoupConfig, out: str | os.PathLike, *, progress: EvalProgress | None = None,
    engine: Engine | None = None, sampler_factory: SamplerFactory | None = None, force: bool = False,
) -> SoupResult:  # fmt: skip
    """Choose the greedy soup of `cfg.candidates` on the validation problems and write it to `out`."""
    prepared = preflight(cfg, out, force)
    cfg = prepared.cfg
    names = labels(cfg.candidates)
    store = Path(cfg.store)  # type: ignore[arg-type]
    with (
        _engine(engine, cfg, sampler_factory, progress) as live,
        EvalSession.open(cfg, prepared.task, live, store.parent, "soup", progress) as session,
    ):
        scorer = SessionScorer(session, cfg, names)
        trace = greedy_soup(len(cfg.candidates), scorer)
    kept = [cfg.candidates[i] for i in trace.kept]
    plan = make_plan(soup_recipe(kept), out_dtype=cfg.dtype)
    record = soup_record(cfg, trace, prepared.validation, store)
    merged = write_soup(plan, out, record, force, parse_size(cfg.shard_size))
    return SoupResult(trace, names, record, merged, scorer.variants)


@contextlib.contextmanager
def _engine(engine: Engine | None, cfg: SoupConfig, sampler_factory, progress) -> Iterator[Engine]:
    """The given engine, or the one `cfg` asks for, started on the first candidate and closed after."""
    if engine is not None:
        yield engine
        return
    built = make_engine(cfg, cfg.candidates[0], cfg.candidates[1:], sampler_factory, progress=progress)
    try:
        yield built
    finally:
        built.close()


def soup_record(cfg: SoupConfig, trace: SoupTrace, validation: dict, store: Path) -> dict:
    """The output's wiseft.json `soup` section."""
    kept = len(trace.kept)
    return {
        "method": "greedy_soup",
        "reference": "https://arxiv.org/abs/2203.05482",
        "metric": cfg.metric,
        "validation": validation,
        **trace.to_json(cfg.candidates),
        "weights": [1.0 / kept] * kept,
        "store": str(store),
        "config": to_dict(cfg),
    }


def write_soup(plan: Plan, out: str | os.PathLike, record: dict, force: bool, shard_size: int) -> MergeResult:
    """Merge `plan` with the streaming driver into `out`, `record` written as wiseft.json's `soup` section
    in the driver's one write of it: `out` appears whole (atomically), or not at all."""
    return merge(plan, out, force=force, shard_size=shard_size, provenance_extra={"soup": record})

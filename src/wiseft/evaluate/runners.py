"""The three evaluation commands as library calls: plan, check, open a session, evaluate, select, write.

- `run_sweep(cfg, out)`: θ(δ) = δ·EARLY + (1−δ)·FINAL over a δ grid (or a recipe) × temperatures;
- `run_trajectory(cfg, out)`: every checkpoint of a training run, raw and mixed with an early one;
- `run_eval(cfg, out)`: one model at each temperature.

Each checks its inputs before anything is written (task, split, checkpoint headers), evaluates through
one `EvalSession`, and writes its outputs (`evaluate.outputs`). `engine` replaces the engine the config
asks for (`make_engine`: transformers or vLLM here, or Ray actors holding one of them with `ray:`);
`sampler_factory(model, tokenizer)` only the transformers engine's sampler.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from wiseft.checkpoints import Checkpoint, find_checkpoints, resolve
from wiseft.errors import ConfigError
from wiseft.evaluate.config import (
    ModelEvalConfig,
    SelectConfig,
    SweepConfig,
    TrajectoryConfig,
)
from wiseft.evaluate.engine import Engine, SamplerFactory, make_engine
from wiseft.evaluate.model_sampling import with_model_sampling
from wiseft.evaluate.outputs import check_output, write_eval, write_run
from wiseft.evaluate.plan import (
    VariantSpec,
    default_length_reference,
    plan_eval,
    plan_sweep,
    plan_trajectory,
)
from wiseft.evaluate.select import choose_best
from wiseft.evaluate.session import EvalProgress, EvalSession, load_task, store_path
from wiseft.evaluate.thinking import add_length_ratios, check_reference, unclosed_thinking
from wiseft.merge.ablation import group_names
from wiseft.merge.ablation import resolve as resolve_choice
from wiseft.merge.compat import check_compatible
from wiseft.merge.plan import plan
from wiseft.merge.recipe import Recipe
from wiseft.merge.recipe_file import load_recipe
from wiseft.results import RunResults
from wiseft.store import SampleStore
from wiseft.tasks import Task
from wiseft.weightspace import policy_of, reindexes


def run_sweep(
    cfg: SweepConfig, out_dir: str | os.PathLike, *, progress: EvalProgress | None = None,
    engine: Engine | None = None, sampler_factory: SamplerFactory | None = None, task: Task | None = None,
    report: bool = True, force: bool = True,
) -> RunResults:  # fmt: skip
    """Run (or resume) a δ × temperature sweep into `out_dir`; return its results."""
    out = check_output(out_dir, "results.json", force)
    cfg, specs = plan_sweep_run(cfg)
    task = load_task(cfg, task)
    SampleStore.check_free(store_path(cfg, out))  # a second writer is refused before the model loads
    with _engine(engine, cfg, specs[0].anchors[-1], (), sampler_factory, specs, progress) as engine:
        return _evaluate_and_select(cfg, task, engine, specs, out, "sweep", progress, report)


def plan_sweep_run(cfg: SweepConfig) -> tuple[SweepConfig, list[VariantSpec]]:
    """The sweep's config with the model's sampling defaults filled in, and its checked variants: the
    anchors' headers read (no tensor data), ablations resolved against them, --length-reference checked.
    Nothing is written."""
    recipe = load_recipe(cfg.recipe) if cfg.recipe else None
    anchors = tuple(recipe.models) if recipe is not None else cfg.anchors
    cfg = with_model_sampling(cfg, resolve(anchors[-1]))
    names: list[str] = []
    if cfg.layers is not None or cfg.modules is not None:
        names = list(Checkpoint.open(anchors[-1]).tensors)
    specs = plan_sweep(cfg, recipe, names)
    check_anchors(specs)
    check_reference(cfg.length_reference, [s.name for s in specs])
    return cfg, specs


def dry_run_sweep(cfg: SweepConfig) -> list[dict]:
    """What `wiseft sweep --dry-run` shows, per variant: its name, δ, T, ablation and the tensors it moves
    (block indices folded, `merge.ablation.group_names`), of how many. Reads headers only."""
    cfg, specs = plan_sweep_run(cfg)
    names = list(Checkpoint.open(specs[0].anchors[-1]).tensors)
    rows = []
    for spec in specs:
        moved = names if spec.choice is None else resolve_choice(spec.choice, names)
        rows.append({"name": spec.name, "delta": spec.delta, "temperature": spec.temperature,
                     "ablation": spec.ablation, "moved": group_names(moved), "n_moved": len(moved),
                     "n_tensors": len(names)})  # fmt: skip
    return rows


def run_trajectory(
    cfg: TrajectoryConfig, out_dir: str | os.PathLike, *, progress: EvalProgress | None = None,
    engine: Engine | None = None, sampler_factory: SamplerFactory | None = None, task: Task | None = None,
    report: bool = True, force: bool = True,
) -> RunResults:  # fmt: skip
    """Every checkpoint-STEP of `cfg.run_dir` raw, and mixed with the early checkpoint at each δ."""
    out = check_output(out_dir, "results.json", force)
    checkpoints = find_checkpoints(cfg.run_dir)
    early_step = cfg.early if cfg.early is not None else min(checkpoints)
    if early_step not in checkpoints:
        raise ConfigError(f"--early {early_step}: {cfg.run_dir} has checkpoints at steps {list(checkpoints)}")
    cfg = with_model_sampling(cfg, checkpoints[max(checkpoints)])
    task = load_task(cfg, task)
    specs = plan_trajectory(cfg, checkpoints, early_step)
    check_anchors(specs)
    check_reference(cfg.length_reference, [s.name for s in specs])
    SampleStore.check_free(store_path(cfg, out))
    with _engine(
        engine, cfg, checkpoints[early_step], [cfg.run_dir], sampler_factory, specs, progress
    ) as engine:
        return _evaluate_and_select(
            cfg, task, engine, specs, out, "trajectory", progress, report, early_step=early_step
        )


def run_eval(
    cfg: ModelEvalConfig, out_dir: str | os.PathLike, *, progress: EvalProgress | None = None,
    engine: Engine | None = None, sampler_factory: SamplerFactory | None = None, task: Task | None = None,
    force: bool = True,
) -> RunResults:  # fmt: skip
    """One model at each temperature: sample → grade → summarise; writes metrics.json and samples.jsonl."""
    out = check_output(out_dir, "metrics.json", force)
    cfg = with_model_sampling(cfg, resolve(cfg.model))
    task = load_task(cfg, task)
    specs = plan_eval(cfg)
    check_reference(cfg.length_reference, [s.name for s in specs])
    SampleStore.check_free(store_path(cfg, out))
    with (
        _engine(engine, cfg, cfg.model, (), sampler_factory, specs, progress) as engine,
        EvalSession.open(cfg, task, engine, out, "eval", progress) as session,
    ):
        variants = session.evaluate_all(specs)
        records = {spec.name: session.records(spec.name) for spec in specs}
        results = session.results(variants, None, **_thinking_extras(cfg, variants, records, "eval", specs))
    write_eval(out, results, [r for recs in records.values() for r in recs], cfg)
    return results


@contextlib.contextmanager
def _engine(
    engine: Engine | None, cfg, model_dir, tokenizer_dirs, sampler_factory, specs, progress
) -> Iterator[Engine]:
    """The given engine, or the one `cfg` asks for, started on `model_dir` (with `ray:`, actors that will
    sample `specs`) and closed after the run."""
    if engine is not None:
        yield engine
        return
    built = make_engine(cfg, model_dir, tokenizer_dirs, sampler_factory, specs=specs, progress=progress)
    try:
        yield built
    finally:
        built.close()


def _evaluate_and_select(
    cfg: SelectConfig, task: Task, engine: Engine, specs: Sequence[VariantSpec], out, command: str,
    progress: EvalProgress | None, report: bool, **extra,
) -> RunResults:  # fmt: skip
    """Evaluate every variant in one session, choose the best, write the run's outputs."""
    with EvalSession.open(cfg, task, engine, out, command, progress) as session:
        variants = session.evaluate_all(specs)
        best, splits = choose_best(variants, task.problems, cfg)
        for v in variants:
            v.splits = splits.get(v.name)
        records = {spec.name: session.records(spec.name) for spec in specs}
        extra.update(_thinking_extras(cfg, variants, records, command, specs))
        results = session.results(variants, best, **extra)
    write_run(out, results, [r for recs in records.values() for r in recs], cfg, report)
    return results


def _thinking_extras(cfg, variants, records: dict[str, list[dict]], command: str, specs) -> dict:
    """Lengths relative to the reference variant (in each summary) and the warnings for thinking blocks
    that never close ({"warnings": [...]} when there are any)."""
    reference = cfg.length_reference or default_length_reference(specs, command)
    add_length_ratios(variants, reference, cfg.seed, cfg.n_boot)
    warnings = [w for name, recs in records.items() if (w := unclosed_thinking(name, recs, cfg.thinking()))]
    return {"warnings": warnings} if warnings else {}


def check_anchors(specs: Sequence[VariantSpec]) -> None:
    """Pre-flight on headers only: every group of anchors a variant mixes is compatible (same tensors and
    shapes), so a mismatch fails before anything is sampled or written."""
    groups = {(spec.anchors, spec.base) for spec in specs if spec.mix is not None}
    policies = {(s.mix.models, s.mix.base, repr(policy_of(s.mix))): s.mix
                for s in specs if isinstance(s.mix, Recipe) and reindexes(s.mix)}  # fmt: skip
    for recipe in policies.values():  # vocabularies may differ: the merge pre-flight checks the re-indexing
        groups.discard((recipe.models, recipe.base))
        plan(recipe)
    for anchors, base in sorted(groups, key=str):
        paths = ([base] if base is not None else []) + list(anchors)
        check_compatible([Checkpoint.open(p) for p in dict.fromkeys(paths)])

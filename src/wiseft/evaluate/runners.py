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

from wiseft.checkpoints import Checkpoint, find_checkpoints
from wiseft.errors import ConfigError
from wiseft.evaluate.config import ModelEvalConfig, SelectConfig, SweepConfig, TrajectoryConfig
from wiseft.evaluate.engine import Engine, SamplerFactory, make_engine
from wiseft.evaluate.outputs import check_output, write_eval, write_run
from wiseft.evaluate.plan import VariantSpec, plan_eval, plan_sweep, plan_trajectory
from wiseft.evaluate.select import choose_best
from wiseft.evaluate.session import EvalProgress, EvalSession, load_task, store_path
from wiseft.merge.plan import check_compatible
from wiseft.merge.recipe import load_recipe
from wiseft.results import RunResults
from wiseft.store import SampleStore
from wiseft.tasks import Task


def run_sweep(
    cfg: SweepConfig, out_dir: str | os.PathLike, *, progress: EvalProgress | None = None,
    engine: Engine | None = None, sampler_factory: SamplerFactory | None = None, task: Task | None = None,
    report: bool = True, force: bool = True,
) -> RunResults:  # fmt: skip
    """Run (or resume) a δ × temperature sweep into `out_dir`; return its results."""
    out = check_output(out_dir, "results.json", force)
    recipe = load_recipe(cfg.recipe) if cfg.recipe else None
    task = load_task(cfg, task)
    specs = plan_sweep(cfg, recipe)
    check_anchors(specs)
    SampleStore.check_free(store_path(cfg, out))  # a second writer is refused before the model loads
    with _engine(engine, cfg, specs[0].anchors[-1], (), sampler_factory, specs, progress) as engine:
        return _evaluate_and_select(cfg, task, engine, specs, out, "sweep", progress, report)


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
    task = load_task(cfg, task)
    specs = plan_trajectory(cfg, checkpoints, early_step)
    check_anchors(specs)
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
    task = load_task(cfg, task)
    specs = plan_eval(cfg)
    SampleStore.check_free(store_path(cfg, out))
    with (
        _engine(engine, cfg, cfg.model, (), sampler_factory, specs, progress) as engine,
        EvalSession.open(cfg, task, engine, out, "eval", progress) as session,
    ):
        variants = session.evaluate_all(specs)
        records = [r for spec in specs for r in session.records(spec.name)]
        results = session.results(variants, None)
    write_eval(out, results, records, cfg)
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
        results = session.results(variants, best, **extra)
        records = [r for spec in specs for r in session.records(spec.name)]
    write_run(out, results, records, cfg, report)
    return results


def check_anchors(specs: Sequence[VariantSpec]) -> None:
    """Pre-flight on headers only: every group of anchors a variant mixes is compatible (same tensors and
    shapes), so a mismatch fails before anything is sampled or written."""
    groups = {(spec.anchors, spec.base) for spec in specs if spec.mix is not None}
    for anchors, base in sorted(groups, key=str):
        paths = ([base] if base is not None else []) + list(anchors)
        check_compatible([Checkpoint.open(p) for p in dict.fromkeys(paths)])

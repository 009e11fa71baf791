"""Helpers for the Ray tests: a sweep config on the toy task, Ray and local engines, the store's rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from support.stores import sample_count
from wiseft.distributed.actor import ActorSetup
from wiseft.distributed.engine import RayEngine
from wiseft.distributed.fake import ScriptedEngine
from wiseft.evaluate.config import RayConfig, SweepConfig
from wiseft.evaluate.engine import Engine
from wiseft.evaluate.plan import plan_sweep


def sweep_cfg(early, final, **kw) -> SweepConfig:
    base = dict(anchors=(str(early), str(final)), task="toy", limit=12, n=2, k=(1, 2), delta=(0.0, 0.5, 1.0),
                max_new_tokens=64, seed=3, threads=1, chunk=2, n_boot=20, device="cpu", val_fraction=0.0)  # fmt: skip
    base.update(kw)
    return SweepConfig(**base)


def ray_fake_engine(cfg: SweepConfig, per_token: float, actors: int = 2, progress=None, **ray_kw):
    """A Ray engine whose actors hold `ScriptedEngine(per_token=...)`; (Engine, RayEngine)."""
    ray_cfg = RayConfig(actors=actors, cpus_per_actor=1.0, **ray_kw)
    setup = ActorSetup(cfg.anchors[-1], (), "cpu", 1)
    ray_engine = RayEngine(ray_cfg, plan_sweep(cfg), setup, ScriptedEngine(per_token=per_token), progress)
    return Engine(ray_engine, ray_engine, None, describe=ray_engine.describe), ray_engine


def local_fake_engine() -> Engine:
    return ScriptedEngine()(None)


def rows(db_path: Path) -> list[tuple]:
    """Every stored sample: (variant, problem, index, completion, tokens, finish), in key order."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(
            "SELECT v.name, s.problem_id, s.sample_idx, s.completion, s.n_tokens, s.finish_reason FROM samples s "
            "JOIN variants v ON v.id = s.variant_id ORDER BY v.name, s.problem_id, s.sample_idx"
        ).fetchall()
    finally:
        db.close()


count = sample_count  # the Ray tests' name for it

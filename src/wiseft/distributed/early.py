"""Ray actors asked for at the start of a command, before the driver imports torch and transformers.

A fresh actor spends most of its start importing torch, transformers and the engine (~4 s of ~6 on the
project's VM, bench/ray.py); the driver spends ~3 s importing the same before it builds its engine. Asked
for in that order, the two starts add up. `prestart(cfg)`, which the CLI calls right after reading its
flags (this module imports neither library), joins the cluster, places the actors and asks for them, so
their imports (`actor.warm`) run while the driver does its own. `RayEngine.start` then `adopt`s them, and
gives each the run's setup (`EngineWorker.configure`) before it loads the model, as a run that asked for
its actors itself would. A run that asks for other actors (another shape or engine) stops these and makes
its own; actors never adopted are stopped when the command ends (`stop_unadopted`), with the cluster it started.

`create_actor` and `actor_runtime_env` are how both paths make an actor.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
from typing import Any

from wiseft.distributed import cluster
from wiseft.distributed.actor import ActorSetup, EngineWorker, engine_name
from wiseft.distributed.shape import ActorShape, actor_shape
from wiseft.openmp import VARIABLE


@dataclasses.dataclass
class Placed:
    """A run's place on the cluster: whether this process started the connection (and a local cluster),
    the cluster's snapshot, the actors' shape and their placement group."""

    owns_connection: bool
    cluster: dict
    shape: ActorShape
    pg: Any


@dataclasses.dataclass
class Prestarted:
    """Actors asked for by `prestart`, waiting for the run's engine to adopt them."""

    key: tuple
    placed: Placed
    handles: dict[int, Any]


_waiting: Prestarted | None = None


def prestart_key(ray_cfg, device: str, tp: int, engine) -> tuple:
    """What decides the actors: the `ray:` settings, the device, vLLM's tensor parallelism, the engine."""
    return (ray_cfg, device or "", tp, engine_name(engine))


def join_and_place(ray_cfg, device: str, tp: int) -> Placed:
    """Join the cluster `ray_cfg` names (or start a local one), snapshot it, and place the actors' shape;
    a failure leaves no connection this call made."""
    owns = cluster.connect(ray_cfg.address)
    try:
        snap = cluster.snapshot()
        shape = actor_shape(ray_cfg, device or "", snap["resources"], tp, snap["nodes"])
        return Placed(owns, snap, shape, cluster.place(shape, ray_cfg.strategy, ray_cfg.start_timeout))
    except BaseException:
        if owns:
            cluster.disconnect()
        raise


def prestart(cfg) -> None:
    """Join the cluster `cfg.ray` names, place the actors and ask for them (see the module docstring).
    Raises what `RayEngine.start` would (a cluster that cannot be reached or cannot hold the actors)."""
    global _waiting
    if _waiting is not None:
        return
    options = cfg.engine_options()
    tp = options.tensor_parallel_size if options is not None else 1
    ray = cluster.ray_module()
    placed = join_and_place(cfg.ray, cfg.device, tp)
    shape = placed.shape
    setup = ActorSetup("", env={})  # the env each actor needs is its shape's; the rest comes in `configure`
    handles = {
        a: create_actor(
            ray, shape, placed.pg, a, cfg.engine, dataclasses.replace(setup, env=shape.actor_env(a))
        )
        for a in range(shape.actors)
    }
    _waiting = Prestarted(prestart_key(cfg.ray, cfg.device, tp, cfg.engine), placed, handles)


def adopt(key: tuple) -> Prestarted | None:
    """The actors `prestart` asked for when they are the ones `key` needs (once); otherwise None, after
    stopping any that were asked for (this process's connection stays for the caller's own actors)."""
    global _waiting
    waiting, _waiting = _waiting, None
    if waiting is None:
        return None
    if waiting.key == key:
        return waiting
    _stop(waiting, disconnect=False)
    return None


def _stop(waiting: Prestarted, disconnect: bool) -> None:
    ray = cluster.ray_module()
    if ray.is_initialized():
        for handle in waiting.handles.values():
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        cluster.release(waiting.placed.pg)
    if disconnect and waiting.placed.owns_connection:
        cluster.disconnect()


@atexit.register
def stop_unadopted() -> None:
    """Stop the actors no run adopted (it failed on bad input, or had nothing left to sample), and a
    local cluster this process started for them. The CLI calls it when a command ends; also at exit."""
    global _waiting
    waiting, _waiting = _waiting, None
    if waiting is not None:
        _stop(waiting, disconnect=True)


def create_actor(ray, shape: ActorShape, pg, actor: int, engine, setup: ActorSetup):
    """Actor `actor` of `shape` in its bundles of the placement group `pg`, holding `engine`."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    options = shape.actor_options(actor)
    where = PlacementGroupSchedulingStrategy(
        pg, placement_group_bundle_index=options.pop("placement_group_bundle_index"),
        placement_group_capture_child_tasks=options.pop("placement_group_capture_child_tasks"),
    )  # fmt: skip
    return (
        ray.remote(EngineWorker)
        .options(**options, max_restarts=0, scheduling_strategy=where, runtime_env=actor_runtime_env())
        .remote(engine, setup)
    )


def actor_runtime_env() -> dict | None:
    """The actors' process environment, where it must be set before their interpreter imports torch:
    the driver's OpenMP waiting policy (the CLI sets PASSIVE for the commands that run models, see
    `wiseft.openmp`), so that actors spend their cores as the same command run locally would."""
    policy = os.environ.get(VARIABLE)
    return {"env_vars": {VARIABLE: policy}} if policy else None

"""The cluster a run samples on: connect (or start a local one), read its resources, place the actors.

- `connect(address)`: `None`/"local" starts a local cluster for the run (stopped at the end), "auto" joins
  the cluster started on this machine with `ray start`, "HOST:PORT" a remote one.
  A driver that is already connected (a test, a notebook) keeps its connection, and keeps it afterwards.
- `snapshot()`: the cluster's total resources and its nodes, as the run records them.
- `actor_shape(cfg, device, resources, gpus_per_replica)`: how many actors of how many CPUs and GPUs.
- `place(shape, strategy, timeout)`: a placement group of one bundle per actor, ready, or a ConfigError
  that says what the cluster has.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from wiseft.errors import ConfigError
from wiseft.evaluate.config import RayConfig


def ray_module():
    """`ray`, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'wiseft[ray]' (ray==2.60.0)") from None
    return ray


def connect(address: str | None) -> bool:
    """Connect this process to a Ray cluster; True when the connection (and a local cluster) is ours to
    close at the end of the run."""
    ray = ray_module()
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    local = address in (None, "local")
    try:
        ray.init(address="local" if local else address, **kwargs)  # "local": a new one, not `ray start`'s
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "start one with `ray start --head`, or give --ray without an address for a local cluster"
        raise ConfigError(
            f"--ray {address or 'local'}: cannot connect to a Ray cluster ({first}); {hint}"
        ) from None
    return True


def disconnect() -> None:
    ray = ray_module()
    if ray.is_initialized():
        ray.shutdown()


def snapshot() -> dict:
    """The cluster's resources and nodes (alive or not), as plain JSON values."""
    ray = ray_module()
    nodes = [
        {"node_id": n["NodeID"], "ip": n.get("NodeManagerAddress"), "alive": bool(n.get("Alive")),
         "resources": {k: v for k, v in n.get("Resources", {}).items() if not k.startswith("node:")}}
        for n in ray.nodes()
    ]  # fmt: skip
    total = {k: v for k, v in ray.cluster_resources().items() if not k.startswith("node:")}
    return {"resources": total, "nodes": nodes}


@dataclass(frozen=True)
class ActorShape:
    actors: int
    cpus: float
    gpus: float

    def bundle(self) -> dict[str, float]:
        return {k: v for k, v in (("CPU", self.cpus), ("GPU", self.gpus)) if v}


def actor_shape(
    cfg: RayConfig, device: str | None, resources: dict[str, float], gpus_per_replica: int = 1
) -> ActorShape:
    """Actors and their resources: GPUs default to one replica's (1, or vLLM's tensor-parallel size) per
    actor when the cluster has GPUs and the device is not the CPU; actors default to as many as the
    cluster's resources hold."""
    have_gpus = resources.get("GPU", 0.0)
    gpus = cfg.gpus_per_actor
    if gpus is None:
        gpus = float(gpus_per_replica) if have_gpus and not (device or "").startswith("cpu") else 0.0
    if (device or "").startswith("cuda") and not gpus:
        raise ConfigError(f"--device {device} with --ray-gpus-per-actor 0: the actors would see no GPU")
    cpus = float(cfg.cpus_per_actor)
    fits = [resources.get("CPU", 0.0) / cpus] if cpus else []
    fits += [have_gpus / gpus] if gpus else []
    actors = cfg.actors if cfg.actors is not None else int(math.floor(min(fits) + 1e-9))
    if actors < 1:
        raise ConfigError(
            f"--ray: an actor needs {cpus:g} CPU and {gpus:g} GPU, the cluster has {resources.get('CPU', 0):g} "
            f"CPU and {have_gpus:g} GPU; lower --ray-cpus-per-actor/--ray-gpus-per-actor or add nodes"
        )
    return ActorShape(actors, cpus, gpus)


def place(shape: ActorShape, strategy: str, timeout: float):
    """A ready placement group of `shape.actors` bundles, or a ConfigError naming what does not fit."""
    ray = ray_module()
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([shape.bundle()] * shape.actors, strategy=strategy)
    if not pg.wait(timeout_seconds=timeout):
        remove_placement_group(pg)
        have = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        raise ConfigError(
            f"--ray: {shape.actors} actor(s) of {shape.bundle()} ({strategy}) could not be placed within "
            f"{timeout:g} s on a cluster with {have}; lower --ray-actors or the resources per actor"
        )
    return pg


def release(pg) -> None:
    """Free the placement group (when still connected: any Ray call after shutdown would start Ray)."""
    ray = ray_module()
    from ray.util.placement_group import remove_placement_group

    if not ray.is_initialized():
        return
    try:
        remove_placement_group(pg)
    except Exception:  # noqa: BLE001 - the cluster may already be gone; nothing is left to free then
        pass

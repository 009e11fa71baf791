"""How many actors of what size, and what each one asks of Ray and of vLLM (pure: no Ray import).

An actor is one engine replica. Its resources are `cpus` CPUs and `gpus` GPUs; a vLLM replica with
`--tensor-parallel-size` T > 1 on GPUs needs T GPUs, one per vLLM worker, and starts those workers in one of
two ways (`--ray-tp-executor`):

- `mp` (default): one placement bundle {CPU: cpus, GPU: T} per actor, on one node. The actor holds the T
  GPUs (Ray sets CUDA_VISIBLE_DEVICES to them) and vLLM's multiprocessing executor starts its T workers as
  the actor's child processes on exactly those GPUs (vLLM spawns them, as it must in a Ray actor). This is
  the set-up reported to work for a Ray Serve replica with `num_gpus` T (vllm-project/vllm#30016). vLLM's
  own default inside a placement group would be its Ray executor, which refuses a bundle of more than one
  GPU (`initialize_ray_cluster`), so the actor asks for "mp" by name.
- `ray`: T bundles per actor, {CPU: cpus, GPU: 1} then {GPU: 1} × (T − 1). The actor reserves no GPU and
  runs in the first of its bundles with `placement_group_capture_child_tasks`; vLLM's Ray executor places
  one worker actor in each of the T bundles named by VLLM_RAY_BUNDLE_INDICES (its engine core kept in the
  actor's process, VLLM_ENABLE_V1_MULTIPROCESSING=0, so that it sees the placement group; Ray's
  CUDA_VISIBLE_DEVICES removed, as vLLM's workers choose their GPU themselves). This is vLLM's documented
  placement of workers (examples/offline_inference/ray_placement.py, rlhf_colocate.py) and OpenRLHF's
  set-up for its vLLM engines with tensor parallelism; the workers are Ray actors, so `ray status` and
  a lost node account for them.

The number of actors, when not given, is as many replicas as the cluster holds: per node for a single
bundle (its CPUs and GPUs must be on one node), over the whole cluster for the `ray` executor's bundles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wiseft.errors import ConfigError
from wiseft.evaluate.config import RayConfig

EPS = 1e-9


@dataclass(frozen=True)
class ActorShape:
    """`actors` replicas of `cpus` CPUs and `gpus` GPUs each; `tp` vLLM workers per replica (1: none)
    started by `executor` ("mp" or "ray", see the module docstring)."""

    actors: int
    cpus: float
    gpus: float
    tp: int = 1
    executor: str = "mp"

    @property
    def split(self) -> bool:
        """Whether a replica's GPUs are T bundles of one GPU (vLLM's Ray executor) instead of one."""
        return self.tp > 1 and self.executor == "ray" and self.gpus > 0

    def bundle(self) -> dict[str, float]:
        """What one replica reserves in all."""
        return _resources(self.cpus, self.gpus)

    def replica_bundles(self) -> list[dict[str, float]]:
        """One replica's placement bundles: the actor's first."""
        if not self.split:
            return [self.bundle()]
        return [_resources(self.cpus, 1.0)] + [{"GPU": 1.0}] * (self.tp - 1)

    def bundles(self) -> list[dict[str, float]]:
        """The placement group's bundles, replica after replica."""
        return self.replica_bundles() * self.actors

    def first_bundle(self, actor: int) -> int:
        return actor * len(self.replica_bundles())

    def actor_options(self, actor: int) -> dict:
        """`ray.remote(...).options` for actor `actor` (0-based), less its placement group."""
        return {
            "num_cpus": self.cpus,
            "num_gpus": 0.0 if self.split else self.gpus,
            "placement_group_bundle_index": self.first_bundle(actor),
            "placement_group_capture_child_tasks": self.split,
        }

    def actor_env(self, actor: int) -> dict[str, str | None]:
        """Environment variables actor `actor` sets before it starts vLLM (None: removed)."""
        if not self.split:
            return {}
        first = self.first_bundle(actor)
        return {
            "VLLM_RAY_BUNDLE_INDICES": ",".join(str(first + i) for i in range(self.tp)),
            "VLLM_RAY_PER_WORKER_GPUS": "1",
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            "CUDA_VISIBLE_DEVICES": None,
        }

    def vllm_backend(self) -> str | None:
        """vLLM's `distributed_executor_backend` in the actor: None for one worker (run in the actor)."""
        return None if self.tp == 1 else ("ray" if self.split else "mp")


def _resources(cpus: float, gpus: float) -> dict[str, float]:
    return {k: v for k, v in (("CPU", cpus), ("GPU", gpus)) if v}


def actor_shape(
    cfg: RayConfig,
    device: str | None,
    resources: dict[str, float],
    tp: int = 1,
    nodes: list[dict] | None = None,
) -> ActorShape:
    """Actors and their resources. GPUs per actor default to one replica's (1, or vLLM's tensor-parallel
    size T) when the cluster has GPUs and the device is not the CPU; actors default to as many as the
    cluster holds (`nodes`: the snapshot's, counted node by node; else the `resources` in all)."""
    have_gpus = resources.get("GPU", 0.0)
    gpus = cfg.gpus_per_actor
    if gpus is None:
        gpus = float(tp) if have_gpus and not (device or "").startswith("cpu") else 0.0
    if (device or "").startswith("cuda") and not gpus:
        raise ConfigError(f"--device {device} with --ray-gpus-per-actor 0: the actors would see no GPU")
    if tp > 1 and gpus and gpus != tp:
        raise ConfigError(
            f"--ray-gpus-per-actor {gpus:g} with --tensor-parallel-size {tp}: a vLLM replica needs one GPU per "
            f"worker; give --ray-gpus-per-actor {tp} or leave it out"
        )
    shape = ActorShape(1, float(cfg.cpus_per_actor), float(gpus), tp, cfg.tp_executor)
    actors = cfg.actors if cfg.actors is not None else replicas_that_fit(shape, resources, nodes)
    if actors < 1:
        raise ConfigError(
            f"--ray: an actor needs {shape.cpus:g} CPU and {shape.gpus:g} GPU"
            f"{' on one node' if nodes and not shape.split else ''}, the cluster has "
            f"{resources.get('CPU', 0):g} CPU and {have_gpus:g} GPU; lower --ray-cpus-per-actor/"
            "--ray-gpus-per-actor (or --tensor-parallel-size) or add nodes"
        )
    return ActorShape(actors, shape.cpus, shape.gpus, tp, cfg.tp_executor)


def replicas_that_fit(shape: ActorShape, resources: dict[str, float], nodes: list[dict] | None) -> int:
    """Replicas of `shape` the cluster holds: node by node when a replica is one bundle and the nodes are
    known, else over the cluster's totals."""
    if nodes is None or shape.split:
        return _fit(shape, resources)
    return sum(_fit(shape, n["resources"]) for n in nodes if n.get("alive", True))


def _fit(shape: ActorShape, have: dict[str, float]) -> int:
    fits = [have.get(k, 0.0) / v for k, v in shape.bundle().items()]
    return int(math.floor(min(fits) + EPS)) if fits else 0

"""Tensor parallelism in a Ray actor, without a GPU: the bundles each replica reserves, the options and
environment each actor is started with, vLLM's executor, and how many replicas a cluster holds, for
T = 1, 2, 4 and both ways of starting vLLM's workers (`--ray-tp-executor mp|ray`). The GPU path itself is
not run here (no GPU); these are what it is built from."""

from __future__ import annotations

import importlib.util
import os

import pytest

from wiseft.cli import build_parser
from wiseft.cli._common import load_config
from wiseft.distributed.actor import ActorSetup, apply_env, vllm_options
from wiseft.distributed.shape import ActorShape, actor_shape
from wiseft.errors import ConfigError
from wiseft.evaluate.config import RayConfig, SweepConfig
from wiseft.sampling.vllm import EngineOptions

EIGHT_GPUS = {"CPU": 64.0, "GPU": 8.0}


def _nodes(*shapes):
    return [
        {"node_id": f"n{i}", "alive": True, "resources": {"CPU": c, "GPU": g}}
        for i, (c, g) in enumerate(shapes)
    ]


@pytest.mark.parametrize(
    "tp, executor, replica, gpus_of_actor, env_of_actor_1, backend",
    [
        (1, "mp", [{"CPU": 4.0, "GPU": 1.0}], 1.0, {}, None),
        (1, "ray", [{"CPU": 4.0, "GPU": 1.0}], 1.0, {}, None),  # one worker: no executor to choose
        (2, "mp", [{"CPU": 4.0, "GPU": 2.0}], 2.0, {}, "mp"),
        (4, "mp", [{"CPU": 4.0, "GPU": 4.0}], 4.0, {}, "mp"),
        (2, "ray", [{"CPU": 4.0, "GPU": 1.0}, {"GPU": 1.0}], 0.0,
         {"VLLM_RAY_BUNDLE_INDICES": "2,3", "VLLM_RAY_PER_WORKER_GPUS": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
          "CUDA_VISIBLE_DEVICES": None}, "ray"),
        (4, "ray", [{"CPU": 4.0, "GPU": 1.0}, {"GPU": 1.0}, {"GPU": 1.0}, {"GPU": 1.0}], 0.0,
         {"VLLM_RAY_BUNDLE_INDICES": "4,5,6,7", "VLLM_RAY_PER_WORKER_GPUS": "1",
          "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "CUDA_VISIBLE_DEVICES": None}, "ray"),
    ],
)  # fmt: skip
def test_each_replica_reserves_its_tp_gpus(tp, executor, replica, gpus_of_actor, env_of_actor_1, backend):
    shape = actor_shape(RayConfig(cpus_per_actor=4, tp_executor=executor), "", EIGHT_GPUS, tp)
    assert shape == ActorShape(8 // tp, 4.0, float(tp), tp, executor)
    assert shape.replica_bundles() == replica and shape.bundles() == replica * (8 // tp)
    assert sum(b.get("GPU", 0) for b in shape.bundles()) == 8 and shape.bundle() == {
        "CPU": 4.0,
        "GPU": float(tp),
    }
    first = len(replica)  # actor 1 sits in the first bundle of the second replica
    assert shape.actor_options(1) == {
        "num_cpus": 4.0, "num_gpus": gpus_of_actor, "placement_group_bundle_index": first,
        "placement_group_capture_child_tasks": executor == "ray" and tp > 1,
    }  # fmt: skip
    assert shape.actor_env(1) == env_of_actor_1 and shape.vllm_backend() == backend


@pytest.mark.parametrize(
    "tp, executor, nodes, actors",
    [
        (1, "mp", [(32, 8), (32, 8)], 16),
        (2, "mp", [(32, 8), (32, 8)], 8),
        (4, "mp", [(32, 8), (32, 8)], 4),
        (4, "ray", [(32, 8), (32, 8)], 4),
        (2, "mp", [(32, 3), (32, 3)], 2),  # one bundle of 2 GPUs per node: the third GPU of each is left
        (2, "ray", [(32, 3), (32, 3)], 3),  # one-GPU bundles: 6 GPUs hold 3 replicas (one across nodes)
        (4, "mp", [(32, 2), (32, 2)], 0),
        (1, "mp", [(8, 8)], 2),  # CPUs bound it: 4 per actor
    ],
)
def test_replicas_follow_from_the_gpus_and_tp(tp, executor, nodes, actors):
    cfg = RayConfig(cpus_per_actor=4, tp_executor=executor)
    listed = _nodes(*nodes)
    total = {"CPU": float(sum(c for c, _ in nodes)), "GPU": float(sum(g for _, g in nodes))}
    if actors:
        assert actor_shape(cfg, "cuda", total, tp, listed).actors == actors
    else:
        with pytest.raises(
            ConfigError, match="an actor needs 4 CPU and 4 GPU on one node, the cluster has 64"
        ):
            actor_shape(cfg, "cuda", total, tp, listed)


def test_a_node_that_left_holds_no_replica():
    nodes = _nodes((32, 8), (32, 8))
    nodes[1]["alive"] = False
    assert actor_shape(RayConfig(), "cuda", {"CPU": 64.0, "GPU": 16.0}, 2, nodes).actors == 4


@pytest.mark.parametrize("gpus", [1.0, 3.0, 0.5])
def test_gpus_per_actor_other_than_tp_is_refused(gpus):
    with pytest.raises(ConfigError) as err:
        actor_shape(RayConfig(gpus_per_actor=gpus), "cuda", EIGHT_GPUS, 2)
    assert str(err.value) == (
        f"--ray-gpus-per-actor {gpus:g} with --tensor-parallel-size 2: a vLLM replica needs one GPU per worker; "
        "give --ray-gpus-per-actor 2 or leave it out"
    )


def test_tp_on_the_cpu_reserves_no_gpu_and_uses_processes():
    shape = actor_shape(RayConfig(cpus_per_actor=2, tp_executor="ray"), "cpu", {"CPU": 8.0}, 2)
    assert shape == ActorShape(4, 2.0, 0.0, 2, "ray") and not shape.split
    assert (
        shape.replica_bundles() == [{"CPU": 2.0}]
        and shape.vllm_backend() == "mp"
        and shape.actor_env(0) == {}
    )


@pytest.mark.parametrize(
    "tp, backend, want",
    [
        (1, None, "uni"),
        (1, "ray", "uni"),
        (2, None, "mp"),
        (2, "mp", "mp"),
        (2, "ray", "ray"),
        (4, "ray", "ray"),
    ],
)
def test_the_actors_vllm_starts_its_workers_with_the_shapes_executor(tp, backend, want):
    options = vllm_options(EngineOptions(tensor_parallel_size=tp), "cuda", backend)
    assert options.engine_kwargs("cuda")["distributed_executor_backend"] == want
    assert options.in_process is (tp == 1) and options.tensor_parallel_size == tp


def test_the_actor_sets_and_removes_its_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv("VLLM_RAY_BUNDLE_INDICES", raising=False)
    apply_env({"CUDA_VISIBLE_DEVICES": None, "VLLM_RAY_BUNDLE_INDICES": "2,3"})
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and os.environ["VLLM_RAY_BUNDLE_INDICES"] == "2,3"


@pytest.mark.parametrize(
    "argv, yaml_text, want",
    [
        (["--ray", "--ray-tp-executor", "ray"], None, "ray"),
        (["--ray"], None, "mp"),
        (["--ray"], "ray: {tp_executor: ray}", "ray"),
    ],
)
def test_the_tp_executor_flag_and_key(argv, yaml_text, want, tmp_path):
    if yaml_text is not None:
        (tmp_path / "c.yaml").write_text(yaml_text)
        argv = [*argv, "--config", str(tmp_path / "c.yaml")]
    args = build_parser().parse_args(["sweep", "e", "f", *argv])
    assert load_config(SweepConfig, args, anchors=tuple(args.anchors)).ray.tp_executor == want


def test_a_bad_tp_executor_names_the_flag():
    with pytest.raises(ConfigError, match="--ray-tp-executor must be one of mp, ray, got 'nccl'"):
        RayConfig(tp_executor="nccl")


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
@pytest.mark.parametrize("executor", ["mp", "ray"])
def test_the_ray_engine_starts_each_actor_with_its_bundle_options_and_env(monkeypatch, executor):
    """`RayEngine.start` on a faked cluster of 8 GPUs, T = 2: what each actor is asked for (no Ray runs)."""
    import ray

    from wiseft.distributed import cluster
    from wiseft.distributed.engine import RayEngine

    started = []

    class Handle:
        class start:  # noqa: N801 - the actor method's name
            @staticmethod
            def remote():
                return object()

    class Remote:
        def options(self, **kw):
            self.kw = kw
            return self

        def remote(self, engine, setup):
            started.append((self.kw, setup))
            return Handle()

    monkeypatch.setattr(ray, "remote", lambda cls: Remote())
    monkeypatch.setattr(cluster, "connect", lambda address: False)
    nodes = _nodes((32, 8))
    monkeypatch.setattr(cluster, "snapshot", lambda: {"resources": EIGHT_GPUS, "nodes": nodes})
    monkeypatch.setattr(cluster, "place", lambda shape, strategy, timeout: "pg")
    setup = ActorSetup("m", device="", options={"vllm": EngineOptions(tensor_parallel_size=2)})
    engine = RayEngine(RayConfig(cpus_per_actor=2, tp_executor=executor), [], setup, "vllm")
    engine.start()
    assert len(started) == 4
    for i, (kw, actor_setup) in enumerate(started):
        where = kw["scheduling_strategy"]
        assert (where.placement_group, where.placement_group_capture_child_tasks) == ("pg", executor == "ray")
        assert where.placement_group_bundle_index == (2 * i if executor == "ray" else i)
        assert (kw["num_cpus"], kw["num_gpus"]) == (2.0, 0.0 if executor == "ray" else 2.0)
        assert actor_setup.vllm_backend == executor and actor_setup.device == "cuda"
        want_env = {} if executor == "mp" else {"VLLM_RAY_BUNDLE_INDICES": f"{2 * i},{2 * i + 1}"}
        assert {k: actor_setup.env[k] for k in want_env} == want_env
    assert engine.describe()["ray"]["replica_bundles"] == engine.shape.replica_bundles()
    engine._dispatcher = engine._pg = None  # (nothing to stop: no actor ran)

"""A node that leaves the cluster mid-run: its actor's unit is redrawn on another node and the store holds
exactly the samples of an undisturbed run. The cluster is two raylets on this machine
(`ray.cluster_utils.Cluster`, Ray's own multi-node test harness); removing one kills that node's raylet and
every worker on it, as a machine that goes away would."""

from __future__ import annotations

import importlib.util
import threading
import time

import pytest
from support.ray_runs import local_fake_engine, ray_fake_engine, rows, sweep_cfg
from support.sampling import tiny_model_dir

from wiseft.evaluate.runners import run_sweep

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'wiseft[ray]')"
)


@pytest.fixture(scope="module")
def two_nodes():
    """A head node and a worker node, one CPU each; (cluster, the worker node)."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_a_node_that_leaves_mid_run_loses_nothing(two_nodes, tmp_path):
    cluster, worker = two_nodes
    early = tiny_model_dir(tmp_path, "early", seed=1)
    final = tiny_model_dir(tmp_path, "final", seed=2)
    cfg = sweep_cfg(early, final)
    run_sweep(cfg, tmp_path / "local", engine=local_fake_engine(), report=False)
    engine, ray_engine = ray_fake_engine(cfg, per_token=0.004, strategy="STRICT_SPREAD", start_timeout=60)
    gone = []

    def remove_worker_node_while_it_samples():
        deadline = time.time() + 60
        while time.time() < deadline and not gone:
            d = ray_engine._dispatcher
            slots = [slot for slot, unit in list(d.pending.values()) if unit is not None] if d else []
            on_worker = [s for s in slots if s.stats.where.get("node_id") == worker.node_id]
            if on_worker and ray_engine.monitor.done >= 2:
                time.sleep(0.05)
                gone.append(on_worker[0].stats.where["pid"])
                cluster.remove_node(worker, allow_graceful=False)
            time.sleep(0.01)

    watcher = threading.Thread(target=remove_worker_node_while_it_samples, daemon=True)
    watcher.start()
    res = run_sweep(cfg, tmp_path / "ray", engine=engine, report=False)
    watcher.join()
    assert gone, "the worker node was not removed"
    assert rows(tmp_path / "ray" / "samples.db") == rows(tmp_path / "local" / "samples.db")
    record = res.machine["ray"]
    lost = [u for u in record["units"] if u["outcome"] == "lost"]  # its running unit, and one waiting
    assert 1 <= len(lost) <= 2 and {u["pid"] for u in lost} == set(gone) and record["requeued"] == len(lost)
    done = [(u["variant"], u["start"]) for u in record["units"] if u["outcome"] == "done"]
    assert len(done) == len(set(done)) == 3 * 6
    assert {u["node"] for u in record["units"] if u["outcome"] == "done" and u["attempt"] == 2} == {
        record["actors"][0]["ip"]
    }
    assert [a["state"] for a in record["actors"] if a.get("node_id") == worker.node_id] == ["lost"]

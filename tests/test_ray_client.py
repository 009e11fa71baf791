"""Ray Client (`--ray ray://HOST:PORT`): a driver that reaches the cluster through its Ray Client server
alone. The cluster is a head node on this machine serving Ray Client on a free port
(`ray.cluster_utils.Cluster`, as `ray start --head --ray-client-server-port PORT` starts it, and stopped
by the fixture alone); the driver is the CLI in a fresh process."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest
from support.ray_runs import rows, sweep_cfg
from support.sampling import tiny_model_dir

from wiseft.evaluate.runners import run_sweep

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None or importlib.util.find_spec("grpc") is None,
        reason="ray or grpcio is not installed (pip install 'wiseft[ray]')",
    ),
    pytest.mark.slow,
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client_address():
    from ray.cluster_utils import Cluster

    for attempt in (1, 2, 3):  # Ray gives a node 30 s to register, which a loaded machine can miss
        port = _free_port()
        try:
            cluster = Cluster(
                initialize_head=True, connect=False,
                head_node_args={"num_cpus": 2, "include_dashboard": False, "ray_client_server_port": port},
            )  # fmt: skip
            break
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for a node that timed out
            if attempt == 3 or "timed out during startup" not in str(exc):
                raise
    yield f"ray://127.0.0.1:{port}"
    cluster.shutdown()


def _sweep(anchors, out, address, env=None):
    early, final = anchors
    cmd = [
        sys.executable, "-m", "wiseft", "sweep", str(early), str(final), "--task", "toy", "--limit", "8",
        "--n", "2", "--k", "1,2", "--delta", "0,1", "--max-new-tokens", "16", "--chunk", "2", "--threads",
        "1", "--n-boot", "20", "--device", "cpu", "--no-report", "-o", str(out), "--ray-actors", "2",
        "--ray", address,
    ]  # fmt: skip
    env = dict(os.environ, RAY_ADDRESS="", **(env or {}))  # (no cluster named in the environment)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_a_sweep_through_ray_client_stores_the_bytes_of_one_machine(client_address, tmp_path):
    anchors = tiny_model_dir(tmp_path, "early", seed=1), tiny_model_dir(tmp_path, "final", seed=2)
    done = _sweep(anchors, tmp_path / "client", client_address)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "client" / "results.json").read_text())["machine"]["ray"]
    assert record["address"] == client_address and record["cluster"]["resources"]["CPU"] == 2
    assert len(record["actors"]) == 2 and all(a["state"] == "stopped" for a in record["actors"])
    cfg = sweep_cfg(*anchors, limit=8, n=2, k=(1, 2), delta=(0.0, 1.0), max_new_tokens=16, seed=0,
                    val_fraction=0.5)  # fmt: skip
    run_sweep(cfg, tmp_path / "local", report=False)
    assert rows(tmp_path / "client" / "samples.db") == rows(tmp_path / "local" / "samples.db")


def test_a_client_server_that_does_not_answer_is_one_line_and_nothing_is_written(tmp_path):
    anchors = tiny_model_dir(tmp_path, "early", seed=1), tiny_model_dir(tmp_path, "final", seed=2)
    address = f"ray://127.0.0.1:{_free_port()}"  # nothing listens there
    quick = {"RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1", "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "1"}
    done = _sweep(anchors, tmp_path / "out", address, quick)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert f"--ray {address}: cannot connect to the Ray Client server (ray client connection timeout)" in last
    assert "--ray-client-server-port" in last and not (tmp_path / "out").exists()

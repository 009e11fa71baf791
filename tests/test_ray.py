"""Sampling on Ray actors (`wiseft.distributed`): the same store as one machine, byte for byte; faults
(an actor killed mid-unit, a driver killed with SIGKILL, Ctrl-C) lose and duplicate nothing. One local
cluster serves the module; the CLI runs connect to it by address."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from support.ray_runs import count, local_fake_engine, ray_fake_engine, rows, sweep_cfg
from support.sampling import tiny_model_dir

from wiseft.distributed.actor import ActorSetup
from wiseft.distributed.engine import RayEngine
from wiseft.errors import CheckpointError, ConfigError
from wiseft.evaluate.config import RayConfig
from wiseft.evaluate.plan import plan_sweep
from wiseft.evaluate.runners import run_sweep
from wiseft.sampling import SamplingParams

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'wiseft[ray]')")
# Each test starts Ray actors on a local cluster (seconds to a minute and more on a busy machine): all run
# under `make test-slow`; the settings without a cluster are tests/test_ray_config.py, in `make test`.
pytestmark = [needs_ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 4 logical CPUs for the module; its address for the CLI runs."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def anchors(tmp_path_factory):
    root = tmp_path_factory.mktemp("anchors")
    return tiny_model_dir(root, "early", seed=1), tiny_model_dir(root, "final", seed=2)


def _units(record: dict, outcome: str = "done") -> list[tuple]:
    return sorted(
        (u["variant"], u["start"], u["problems"]) for u in record["units"] if u["outcome"] == outcome
    )


def test_two_cpu_actors_store_the_bytes_of_one_machine(cluster, anchors, tmp_path):
    """The transformers engine on 2 actors and in this process: the same samples, text, token counts and
    finish reasons; each actor drew the session's own chunks, and switched at most once per variant."""
    cfg = sweep_cfg(*anchors, n=3, chunk=4, max_new_tokens=10)
    local = run_sweep(cfg, tmp_path / "local", report=False)
    seen = []
    cfg_ray = sweep_cfg(*anchors, n=3, chunk=4, max_new_tokens=10, ray=RayConfig(actors=2))
    remote = run_sweep(cfg_ray, tmp_path / "ray", report=False, progress=lambda *a: seen.append(a))
    assert rows(tmp_path / "ray" / "samples.db") == rows(tmp_path / "local" / "samples.db")
    assert [v.summary["metrics"] for v in remote.variants] == [v.summary["metrics"] for v in local.variants]
    record = remote.machine["ray"]
    chunks = [(s.name, start, 4) for s in plan_sweep(cfg) for start in range(0, 12, 4)]
    assert _units(record) == sorted(chunks)  # one unit per session chunk, none twice
    assert record["cluster"]["resources"]["CPU"] == 4 and len(record["actors"]) == 2
    assert all(a["switches"] <= 3 and a["state"] == "stopped" for a in record["actors"])
    assert all(a["niceness"] == 15 for a in record["actors"])  # Ray's default, kept on a cluster it joins
    labels = {a[0] for a in seen if a[1] == "ray"}
    assert {"queue", "actor 0", "actor 1"} <= labels and all(len(a) == 5 for a in seen if a[1] == "ray")


@pytest.mark.parametrize("command", ["eval", "trajectory"])
def test_eval_and_trajectory_on_ray_store_the_bytes_of_one_machine(cluster, anchors, tmp_path, cli, command):
    """The CLI with --ray (this process is connected already, so the run joins this cluster)."""
    if command == "eval":
        head = ["eval", anchors[1]]
    else:
        run = tmp_path / "run"
        for step, seed in ((10, 1), (20, 2)):
            tiny_model_dir(run, f"checkpoint-{step}", seed=seed)
        head = ["trajectory", run, "--delta", "0.5"]
    args = [*head, "--task", "toy", "--limit", "6", "--n", "2", "--k", "1,2", "--max-new-tokens", "8",
            "--threads", "1", "--n-boot", "20", "--device", "cpu", "--chunk", "2"]  # fmt: skip
    extra = [] if command == "eval" else ["--no-report"]
    assert cli([*args, *extra, "-o", tmp_path / "local"])[0] == 0
    code, err = cli([*args, *extra, "-o", tmp_path / "ray", "--ray-actors", "2", "--ray"])
    assert code == 0, err
    assert rows(tmp_path / "ray" / "samples.db") == rows(tmp_path / "local" / "samples.db")
    assert "ray actor 1: " in err and "ray queue: " in err  # progress lines (the console is not a terminal)
    record = json.loads(
        (tmp_path / "ray" / ("machine.json" if command == "eval" else "results.json")).read_text()
    )
    units = (record if command == "eval" else record["machine"])["ray"]["units"]
    assert sum(u["samples"] for u in units if u["outcome"] == "done") == count(
        tmp_path / "ray" / "samples.db"
    )


def test_scripted_actors_match_the_local_run_and_switch_once_per_variant(cluster, anchors, tmp_path):
    cfg = sweep_cfg(*anchors)
    run_sweep(cfg, tmp_path / "local", engine=local_fake_engine(), report=False)
    engine, ray_engine = ray_fake_engine(cfg, per_token=0.0005, actors=3)
    res = run_sweep(cfg, tmp_path / "ray", engine=engine, report=False)
    assert rows(tmp_path / "ray" / "samples.db") == rows(tmp_path / "local" / "samples.db")
    record = res.machine["ray"]
    assert record["switches"] <= 3 * 3 and record["requeued"] == 0
    assert len(_units(record)) == 3 * 6 and ray_engine._dispatcher is None  # stopped after the last variant


def test_an_actor_killed_mid_unit_is_replaced_and_its_unit_redrawn(cluster, anchors, tmp_path):
    """SIGKILL the process of an actor while it samples: its unit goes to another actor, a new actor
    takes the lost one's place, and the store holds exactly the samples of an undisturbed run."""
    cfg = sweep_cfg(*anchors)
    run_sweep(cfg, tmp_path / "local", engine=local_fake_engine(), report=False)
    engine, ray_engine = ray_fake_engine(cfg, per_token=0.004)
    killed = []

    def kill_one_busy_actor():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            d = ray_engine._dispatcher
            busy = [slot for slot, unit in list(d.pending.values()) if unit and slot.stats.where] if d else []
            if busy and ray_engine.monitor.done >= 2:
                time.sleep(0.05)  # well inside the unit (about 0.4 s)
                os.kill(busy[0].stats.where["pid"], signal.SIGKILL)
                killed.append(busy[0].stats.where["pid"])
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_one_busy_actor, daemon=True)
    watcher.start()
    res = run_sweep(cfg, tmp_path / "ray", engine=engine, report=False)
    watcher.join()
    assert killed, "no actor was killed"
    assert rows(tmp_path / "ray" / "samples.db") == rows(tmp_path / "local" / "samples.db")
    record = res.machine["ray"]
    lost = [u for u in record["units"] if u["outcome"] == "lost"]  # its running unit, and one waiting
    assert 1 <= len(lost) <= 2 and {u["pid"] for u in lost} == set(killed) and record["requeued"] == len(lost)
    for gone in lost:
        again = [u for u in record["units"] if u["outcome"] == "done" and u["start"] == gone["start"]
                 and u["variant"] == gone["variant"]]  # fmt: skip
        assert [u["attempt"] for u in again] == [2] and again[0]["pid"] != killed[0]
    assert len(_units(record)) == 3 * 6 and len(set(_units(record))) == 3 * 6
    states = sorted(a["state"] for a in record["actors"])
    assert states == ["lost", "stopped", "stopped"]  # the replacement joined


def test_actors_the_cluster_cannot_hold_fail_before_anything_is_written(cluster, anchors, tmp_path):
    cfg = sweep_cfg(*anchors, ray=RayConfig(actors=8, start_timeout=2))
    with pytest.raises(ConfigError) as err:
        run_sweep(cfg, tmp_path / "out", report=False)
    assert "--ray: 8 actor(s) of {'CPU': 1.0} (PACK) could not be placed within 2 s" in str(err.value)
    assert not (tmp_path / "out").exists()
    _wait_for_free_cpus(4)


def test_an_engine_error_inside_an_actor_comes_back_as_the_librarys_own(cluster, anchors, tmp_path):
    """A model directory the actor cannot load: its CheckpointError, with its one-line message, stops the
    run, and the actors are stopped."""
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(anchors[1] / "config.json", broken / "config.json")
    spec = plan_sweep(sweep_cfg(*anchors))[0]
    engine = RayEngine(RayConfig(actors=1), [spec], ActorSetup(str(broken), (), "cpu", 1), "hf")
    engine.materialise(spec)
    with pytest.raises(CheckpointError) as err:
        list(engine.stream(["12+3="], 1, SamplingParams(max_new_tokens=4), 1))
    assert str(broken) in str(err.value) and "\n" not in str(err.value)
    assert engine._dispatcher is None


def test_an_actor_refuses_a_model_that_is_not_the_drivers_copy(cluster, anchors, tmp_path):
    cfg = sweep_cfg(*anchors)
    engine, ray_engine = ray_fake_engine(cfg, per_token=0.0, actors=1)
    ray_engine._fingerprints[str(anchors[0])] = "0" * 32  # as if the driver had read another copy
    with pytest.raises(CheckpointError, match=r"is not the driver's copy \(fingerprint [0-9a-f]+ vs 0+\)"):
        run_sweep(cfg, tmp_path / "out", engine=engine, report=False)


@pytest.mark.parametrize("where", ["sample", "ray"])
def test_ctrl_c_in_the_driver_stops_the_actors_and_the_run_resumes(cluster, anchors, tmp_path, where):
    """KeyboardInterrupt raised between two commits ("sample") or while the driver waits on the actors
    ("ray"): the actors and their placement group are gone, the store holds whole units only, and a
    second run completes it with the samples of an undisturbed run."""

    cfg = sweep_cfg(*anchors)
    run_sweep(cfg, tmp_path / "local", engine=local_fake_engine(), report=False)

    def interrupt(name, stage, done, total, *detail):
        if stage == where and ray_engine.monitor.done >= 4:
            raise KeyboardInterrupt

    engine, ray_engine = ray_fake_engine(cfg, per_token=0.002, progress=interrupt)
    interrupted = False
    try:
        run_sweep(cfg, tmp_path / "ray", engine=engine, progress=interrupt, report=False)
    except KeyboardInterrupt:
        interrupted = True
    assert interrupted and ray_engine._dispatcher is None
    assert all(a["state"] in ("stopped", "lost") for a in ray_engine.describe()["ray"]["actors"])
    _wait_for_free_cpus(4)
    stored = rows(tmp_path / "ray" / "samples.db")
    assert 0 < len(stored) < 3 * 12 * 2 and _whole_problems(stored, 2)
    engine, _ = ray_fake_engine(cfg, per_token=0.0)
    run_sweep(cfg, tmp_path / "ray", engine=engine, report=False)
    assert rows(tmp_path / "ray" / "samples.db") == rows(tmp_path / "local" / "samples.db")


def _sweep_cmd(anchors, out, address, *extra):
    early, final = anchors
    return [
        sys.executable, "-m", "wiseft", "sweep", str(early), str(final), "--task", "toy", "--limit", "12",
        "--n", "3", "--k", "1,3", "--delta", "0,0.5,1", "--max-new-tokens", "24", "--chunk", "1",
        "--threads", "1", "--n-boot", "20", "--device", "cpu", "--no-report", "-o", str(out),
        "--ray-actors", "2", *extra, "--ray", address,
    ]  # fmt: skip


def _start_and_wait(cmd, db_path, samples):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and count(db_path) < samples:
        time.sleep(0.05)
    assert proc.poll() is None, (
        "the sweep ended before it could be stopped: " + proc.stderr.read().decode()[-2000:]
    )
    return proc


def _wait_for_free_cpus(cpus: int, seconds: float = 30) -> None:
    import ray

    deadline = time.time() + seconds
    while time.time() < deadline and ray.available_resources().get("CPU", 0) < cpus:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU", 0) == cpus


def _whole_problems(db_rows, n):
    per = {}
    for name, pid, idx, *_ in db_rows:
        per.setdefault((name, pid), []).append(idx)
    return all(sorted(v) == list(range(n)) for v in per.values())


def test_driver_killed_with_sigkill_resumes_from_the_store(cluster, anchors, tmp_path):
    """`wiseft sweep --ray ADDRESS` killed with SIGKILL mid-run, then started again: Ray ends the dead
    driver's actors, the second run samples only what is missing, and the store equals a local run's."""
    out = tmp_path / "killed"
    proc = _start_and_wait(_sweep_cmd(anchors, out, cluster), out / "samples.db", 3 * 4)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _wait_for_free_cpus(4)  # Ray ends the dead driver's actors and placement group
    partial = count(out / "samples.db")
    assert 0 < partial < 3 * 12 * 3 and partial % 3 == 0  # whole problems: one transaction per unit
    cfg = sweep_cfg(*anchors, n=3, k=(1, 3), max_new_tokens=24, chunk=1, seed=0, val_fraction=0.5)
    again = run_sweep(dataclasses.replace(cfg, ray=RayConfig(actors=2)), out, report=False)  # in this process
    resumed = [u for u in again.machine["ray"]["units"] if u["outcome"] == "done"]
    assert sum(u["samples"] for u in resumed) == 3 * 12 * 3 - partial  # only what was missing
    run_sweep(cfg, tmp_path / "local", report=False)
    assert rows(out / "samples.db") == rows(tmp_path / "local" / "samples.db")


def test_sigint_to_the_cli_stops_the_actors_and_leaves_whole_units(cluster, anchors, tmp_path):

    out = tmp_path / "interrupted"
    proc = _start_and_wait(_sweep_cmd(anchors, out, cluster), out / "samples.db", 3 * 4)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err.decode(), err.decode()[-2000:]
    stored = rows(out / "samples.db")
    assert 0 < len(stored) < 3 * 12 * 3 and _whole_problems(stored, 3)
    _wait_for_free_cpus(4)  # the actors and their placement group are gone


def test_ray_without_an_address_starts_its_own_local_cluster_and_stops_it(cluster, anchors, tmp_path):
    """`--ray` alone in a fresh process: a new local cluster for the run (not the one already running on
    this machine), whose actors are all stopped at the end, and the bytes of one machine."""
    out = tmp_path / "own"
    cmd = [c for c in _sweep_cmd(anchors, out, cluster) if c != cluster]  # `--ray` last, without an address
    env = dict(os.environ, RAY_ADDRESS="")  # (Ray would otherwise join a cluster named there)
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    machine = json.loads((out / "results.json").read_text())["machine"]["ray"]
    import ray

    theirs = {n["node_id"] for n in machine["cluster"]["nodes"]}
    assert machine["address"] == "local" and ray.get_runtime_context().get_node_id() not in theirs
    assert len(machine["actors"]) == 2 and all(a["state"] == "stopped" for a in machine["actors"])
    assert all(a["niceness"] == 0 for a in machine["actors"])  # its own cluster: the command's priority
    cfg = sweep_cfg(*anchors, n=3, k=(1, 3), max_new_tokens=24, chunk=1, seed=0, val_fraction=0.5)
    run_sweep(cfg, tmp_path / "local", report=False)
    assert rows(out / "samples.db") == rows(tmp_path / "local" / "samples.db")


def _counting_create_actor(monkeypatch) -> list[int]:
    """Record each actor `early.create_actor` makes (by index), calling through."""
    from wiseft.distributed import early

    made: list[int] = []
    real = early.create_actor

    def create(ray, shape, pg, actor, engine, setup):
        made.append(actor)
        return real(ray, shape, pg, actor, engine, setup)

    monkeypatch.setattr(early, "create_actor", create)
    return made


def test_actors_asked_for_before_the_imports_are_adopted_and_store_the_bytes_of_one_machine(
    cluster, anchors, tmp_path, monkeypatch
):
    """`early.prestart` (what the CLI calls before importing torch) asks for the run's two actors; the run
    adopts them (no other actor is made), gives them its setup before they load the model, and stores
    the bytes of one machine. Nothing waits afterwards."""
    from wiseft.distributed import early

    made = _counting_create_actor(monkeypatch)
    cfg = sweep_cfg(*anchors, n=3, chunk=4, max_new_tokens=10)
    local = tmp_path / "local"
    run_sweep(cfg, local, report=False)
    cfg_ray = sweep_cfg(*anchors, n=3, chunk=4, max_new_tokens=10, ray=RayConfig(actors=2))
    early.prestart(cfg_ray)
    assert made == [0, 1] and early._waiting is not None
    remote = run_sweep(cfg_ray, tmp_path / "ray", report=False)
    assert made == [0, 1] and early._waiting is None  # adopted: no other actor was made
    assert rows(tmp_path / "ray" / "samples.db") == rows(local / "samples.db")
    record = remote.machine["ray"]
    assert len(record["actors"]) == 2 and all(a["state"] == "stopped" for a in record["actors"])
    _wait_for_free_cpus(4)


def test_early_actors_of_another_shape_are_stopped_and_the_run_makes_its_own(
    cluster, anchors, tmp_path, monkeypatch
):
    """Actors asked for with other settings (one actor) than the run's (two) are not adopted: they are
    stopped, their placement group freed, and the run makes and uses its own."""
    from wiseft.distributed import early

    made = _counting_create_actor(monkeypatch)
    cfg = sweep_cfg(*anchors, n=2, chunk=4, max_new_tokens=8)
    run_sweep(cfg, tmp_path / "local", report=False)
    early.prestart(sweep_cfg(*anchors, n=2, chunk=4, max_new_tokens=8, ray=RayConfig(actors=1)))
    cfg_ray = sweep_cfg(*anchors, n=2, chunk=4, max_new_tokens=8, ray=RayConfig(actors=2))
    remote = run_sweep(cfg_ray, tmp_path / "ray", report=False)
    assert made == [0, 0, 1] and early._waiting is None
    assert rows(tmp_path / "ray" / "samples.db") == rows(tmp_path / "local" / "samples.db")
    assert len(remote.machine["ray"]["actors"]) == 2
    _wait_for_free_cpus(4)


def test_early_actors_never_adopted_are_stopped_at_exit(cluster, anchors, monkeypatch):
    """A command that asked for its actors and then failed (bad input) or had nothing left to sample:
    at exit its actors are stopped and their CPUs given back."""
    from wiseft.distributed import early

    early.prestart(sweep_cfg(*anchors, ray=RayConfig(actors=2)))
    assert early._waiting is not None
    early.stop_unadopted()
    assert early._waiting is None
    _wait_for_free_cpus(4)


@pytest.mark.parametrize("bad, asked", [("missing", []), ("empty", [0, 1])])
def test_bad_input_exits_2_and_leaves_no_early_actor(
    cluster, anchors, tmp_path, cli, monkeypatch, bad, asked
):
    """A model path that does not exist is found before any actor is asked for (`start_ray_early` checks
    the named paths); a directory that exists but holds no model is found after: either way the one-line
    error with exit 2 and nothing written, and the command stops its actors as it ends (in this process
    too, where no exit follows)."""
    from wiseft.distributed import early

    made = _counting_create_actor(monkeypatch)
    out, model = tmp_path / "out", tmp_path / bad
    if bad == "empty":
        model.mkdir()
    code, err = cli(["sweep", model, anchors[1], "--task", "toy", "--limit", "4", "--n", "2",
                     "--k", "1", "--device", "cpu", "--no-report", "-o", out, "--ray-actors", "2", "--ray"])  # fmt: skip
    assert code == 2 and bad in err and len(err.strip().splitlines()) == 1, err
    assert made == asked and not out.exists() and early._waiting is None
    _wait_for_free_cpus(4)

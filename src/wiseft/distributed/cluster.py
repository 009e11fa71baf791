"""The cluster a run samples on: connect (or start a local one), read its resources, place the actors.

- `connect(address)`: `None`/"local" starts a local cluster for the run (stopped at the end), "auto" joins
  the cluster started on this machine with `ray start`, "HOST:PORT" a cluster by its GCS address (this
  machine becomes a driver node: it must reach every node), "ray://HOST:PORT" a cluster through its Ray
  Client server (only that port is needed; the driver's Ray calls go over it).
  A driver that is already connected (a test, a notebook) keeps its connection, and keeps it afterwards.
  A local cluster runs its workers at the command's own priority (`LOCAL_SYSTEM_CONFIG`); a cluster the
  run joins keeps its own settings, and each actor records its niceness (`actor.where`).
- `snapshot()`: the cluster's total resources and its nodes, as the run records them.
- `place(shape, strategy, timeout)`: the placement group of the actors' bundles (`shape.ActorShape`),
  ready, or a ConfigError that says what the cluster has.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings

from wiseft.distributed.shape import ActorShape
from wiseft.errors import ConfigError


def ray_module():
    """`ray`, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'wiseft[ray]' (ray==2.60.0)") from None
    return ray


def address_kind(address: str | None) -> str:
    """ "local" (a cluster started for the run), "auto" (the one `ray start` runs on this machine),
    "client" (ray://HOST:PORT: a Ray Client server) or "gcs" (HOST:PORT: a cluster's GCS)."""
    if address in (None, "local"):
        return "local"
    if address == "auto":
        return "auto"
    return "client" if address.startswith("ray://") else "gcs"


# Ray starts its worker processes, and so the actors, at niceness 15 (its `worker_niceness` setting), which
# suits a driver that must stay responsive beside many short tasks. Here the actors do the run's work and the
# driver only dispatches and stores, so at 15 any other process on the node starves them. A toy sweep on 2
# cores beside two busy one-thread processes took 205-260 s with one actor at 15 (its start alone 92-114 s),
# 37-39 s at 0, and 30 s without Ray (README, "Sampling on Ray"). The cost: the driver no longer comes first,
# so 8 actors starting on 2 cores slow its dispatch (the scheduling benchmark's span 7.3-7.9 s at 15, 10.4-11 s
# at 0); a middle value starves less but still 2-6x (niceness 5: 55 s and 10: 162 s against 28 s at 0).
# A local cluster is the run's own, so it gets niceness 0, what the same command gets without --ray. A
# cluster started with `ray start` keeps its setting (`RAY_worker_niceness=0 ray start ...`, README).
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}


def init_kwargs(address: str | None) -> dict:
    """`ray.init`'s arguments for `address`. A Ray Client connection forwards its arguments to the
    `ray.init` the server runs for this driver, so it gets only the quiet logging; the dashboard and the
    workers' niceness are the cluster's business there, as with any existing cluster."""
    kind = address_kind(address)
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING)
    if kind == "client":
        return {"address": address, **quiet}
    kwargs = {"address": "local" if kind == "local" else address, "include_dashboard": False, **quiet}
    return {**kwargs, "_system_config": LOCAL_SYSTEM_CONFIG} if kind == "local" else kwargs


CONNECT_HINTS = {
    "local": "the local cluster did not start; see the Ray logs under /tmp/ray",
    "auto": "start one with `ray start --head`, or give --ray without an address for a local cluster",
    "gcs": "check that `ray start --head --port PORT` runs there and that this machine reaches every port of "
    "the cluster's nodes (from outside the cluster, use Ray Client: ray://HOST:10001)",
    "client": "check that the head node serves Ray Client on that port (`ray start --head` does, on 10001; "
    "--ray-client-server-port to change it), that the port is reachable from here, and that this machine "
    "runs the cluster's Ray and Python versions",
}


def connect(address: str | None) -> bool:
    """Connect this process to a Ray cluster; True when the connection (and a local cluster) is ours to
    close at the end of the run."""
    ray = ray_module()
    if ray.is_initialized():
        return False
    if address_kind(address) == "client" and importlib.util.find_spec("grpc") is None:
        raise ConfigError(
            f"--ray {address}: Ray Client needs grpcio: pip install 'wiseft[ray]' (grpcio==1.85.3)"
        )
    try:
        quiet_auth = (
            _quiet_local_auth_notice() if address_kind(address) == "local" else contextlib.nullcontext()
        )
        with warnings.catch_warnings(), quiet_auth:
            # (Ray Client warns of a timeout before it raises; the error says it)
            warnings.simplefilter("ignore")
            ray.init(**init_kwargs(address))  # "local": a new cluster, not `ray start`'s
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise connect_error(address, exc) from None
    return True


AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class _DropNotice(logging.Filter):
    """Drops Ray's notice that a cluster it starts has token authentication on (Ray 2.60 says so on every
    local `ray.init`, on stderr, before a run's own output). The local cluster is this command's, ends with
    it, and is the safe default; the opposite warning (authentication off) still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


@contextlib.contextmanager
def _quiet_local_auth_notice():
    log, drop = logging.getLogger(AUTH_LOGGER), _DropNotice()
    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


def connect_error(address: str | None, exc: BaseException) -> ConfigError:
    """One line: the address, Ray's message (on one line, cut at 200 characters), and what to check for
    that kind of address."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    first = text if len(text) <= 200 else text[:197] + "..."
    kind = address_kind(address)
    what = "the Ray Client server" if kind == "client" else "a Ray cluster"
    return ConfigError(
        f"--ray {address or 'local'}: cannot connect to {what} ({first}); {CONNECT_HINTS[kind]}"
    )


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


def place(shape: ActorShape, strategy: str, timeout: float):
    """A ready placement group of `shape.bundles()`, or a ConfigError naming what does not fit."""
    ray = ray_module()
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group(shape.bundles(), strategy=strategy)
    if not pg.wait(timeout_seconds=timeout):
        remove_placement_group(pg)
        have = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        each = shape.replica_bundles() if shape.split else shape.bundle()
        raise ConfigError(
            f"--ray: {shape.actors} actor(s) of {each} ({strategy}) could not be placed within "
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

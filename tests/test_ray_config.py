"""The Ray settings without a cluster: `--ray [ADDRESS]` and the `ray:` section, the actors' shape, the
units, the monitor's record, and the errors that stop a run before anything starts."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import re
import subprocess
import sys

import pytest
from support.sampling import tiny_model_dir

from wiseft.cli import build_parser
from wiseft.cli._common import load_config
from wiseft.config import from_dict, load_yaml, write_resolved
from wiseft.distributed.actor import vllm_options
from wiseft.distributed.cluster import connect, init_kwargs, ray_module
from wiseft.distributed.dispatch import split_units
from wiseft.distributed.engine import RayEngine, ray_engine
from wiseft.distributed.monitor import Monitor, _takes_detail
from wiseft.distributed.shape import ActorShape, actor_shape
from wiseft.errors import ConfigError
from wiseft.evaluate.config import (
    ModelEvalConfig,
    RayConfig,
    SweepConfig,
    TrajectoryConfig,
    ray_address_problem,
)
from wiseft.evaluate.engine import ENGINE_PLUGINS, make_engine
from wiseft.evaluate.plan import VariantSpec, plan_sweep
from wiseft.evaluate.session import takes_detail
from wiseft.sampling import SamplingParams
from wiseft.sampling.vllm import EngineOptions


def _ray(argv, yaml_text=None, tmp_path=None):
    if yaml_text is not None:
        path = tmp_path / "c.yaml"
        path.write_text(yaml_text)
        argv = [*argv, "--config", str(path)]
    args = build_parser().parse_args(["sweep", "e", "f", *argv])
    return load_config(SweepConfig, args, anchors=tuple(args.anchors)).ray


@pytest.mark.parametrize(
    "argv, yaml_text, want",
    [
        ([], None, None),
        (["--ray"], None, RayConfig()),
        (["--ray", "local"], None, RayConfig()),
        (["--ray", "auto"], None, RayConfig(address="auto")),
        (["--ray-actors", "3", "--ray", "10.0.0.1:6379"], None, RayConfig(address="10.0.0.1:6379", actors=3)),
        ([], "ray: {address: auto, actors: 2, cpus_per_actor: 1, gpus_per_actor: 0}",
         RayConfig(address="auto", actors=2, cpus_per_actor=1.0, gpus_per_actor=0.0)),
        (["--ray-actors", "4"], "ray: {address: auto, actors: 2}", RayConfig(address="auto", actors=4)),
        (["--ray"], "ray: {address: auto, actors: 2}", RayConfig(address="auto", actors=2)),  # bare flag keeps it
        (["--ray", "h:1"], "ray: auto", RayConfig(address="h:1")),
        (["--ray-strategy", "SPREAD"], "ray: true", RayConfig(strategy="SPREAD")),
    ],
)  # fmt: skip
def test_ray_flags_and_section(argv, yaml_text, want, tmp_path):
    assert _ray(argv, yaml_text, tmp_path) == want


@pytest.mark.parametrize(
    "argv, yaml_text, message",
    [
        (["--ray-actors", "2"], None, "--ray-actors needs --ray (or a `ray:` section in --config)"),
        (["--ray"], "ray: {actors: 0}", "--ray-actors must be at least 1, got 0"),
        (["--ray"], "ray: {cpus_per_actor: 0, gpus_per_actor: 0}", "an actor needs one"),
        (["--ray"], "ray: {nodes: 3}", "unknown key(s) nodes for RayConfig"),
        (["--ray"], "ray: {start_timeout: -1}", "--ray-start-timeout must be positive seconds"),
        ([], "ray: 5", "--ray takes an address (auto, HOST:PORT, ray://HOST:PORT) or nothing, got 5"),
    ],
)
def test_bad_ray_settings_name_the_flag(argv, yaml_text, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        _ray(argv, yaml_text, tmp_path)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "cfg, device, resources, want",
    [
        (RayConfig(), "cpu", {"CPU": 4.0}, ActorShape(4, 1.0, 0.0)),
        (RayConfig(cpus_per_actor=0.25), "cpu", {"CPU": 2.0}, ActorShape(8, 0.25, 0.0)),
        (RayConfig(), "", {"CPU": 16.0, "GPU": 2.0}, ActorShape(2, 1.0, 1.0)),  # GPUs when there are some
        (RayConfig(), "cpu", {"CPU": 16.0, "GPU": 2.0}, ActorShape(16, 1.0, 0.0)),  # unless --device cpu
        (RayConfig(gpus_per_actor=2, cpus_per_actor=4), "cuda", {"CPU": 32.0, "GPU": 8.0}, ActorShape(4, 4.0, 2.0)),
        (RayConfig(actors=3), "cpu", {"CPU": 1.0}, ActorShape(3, 1.0, 0.0)),  # asked for: the placement waits
    ],
)  # fmt: skip
def test_actor_shape(cfg, device, resources, want):
    assert actor_shape(cfg, device, resources) == want


@pytest.mark.parametrize(
    "cfg, device, resources, message",
    [
        (RayConfig(cpus_per_actor=4), "cpu", {"CPU": 2.0}, "an actor needs 4 CPU and 0 GPU, the cluster has 2 CPU"),
        (RayConfig(gpus_per_actor=0), "cuda", {"CPU": 2.0, "GPU": 1.0}, "--device cuda with --ray-gpus-per-actor 0"),
    ],
)  # fmt: skip
def test_actor_shape_errors(cfg, device, resources, message):
    with pytest.raises(ConfigError, match=message):
        actor_shape(cfg, device, resources)


def test_units_are_the_sessions_chunks():
    spec = VariantSpec("v", "mix", 1.0)
    params = SamplingParams(seed=1)
    units = split_units(spec, [f"p{i}" for i in range(7)], 2, params, 3)
    assert [(u.start, u.prompts) for u in units] == [
        (0, ("p0", "p1", "p2")),
        (3, ("p3", "p4", "p5")),
        (6, ("p6",)),
    ]
    assert len({u.key for u in units}) == 3 and all(u.attempt == 1 and not u.lookahead for u in units)


@pytest.mark.parametrize(
    "fn, five",
    [
        (lambda a, b, c, d: None, False),
        (lambda a, b, c, d, e="": None, True),
        (lambda *a: None, True),
        (print, True),
    ],
)
def test_progress_gets_detail_only_when_it_takes_five_arguments(fn, five):
    assert _takes_detail(fn) is five


@pytest.mark.parametrize(
    "fn, keyword",
    [
        (lambda name, stage, done, total: None, False),
        (lambda name, stage, done, total, detail="": None, True),
        (lambda name, stage, done, total, *, detail: None, True),
        (lambda name, stage, done, total, **kw: None, True),
        (lambda name, stage, done, total, *detail: None, False),  # a fifth positional, not the keyword
        (lambda *args: None, False),
    ],
)
def test_the_session_passes_detail_by_keyword_only_to_callbacks_that_take_it(fn, keyword):
    assert takes_detail(fn) is keyword


@pytest.mark.parametrize(
    "policy, want",
    [(None, None), ("PASSIVE", {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}),
     ("ACTIVE", {"env_vars": {"OMP_WAIT_POLICY": "ACTIVE"}})],
)  # fmt: skip
def test_actors_get_the_drivers_openmp_policy(monkeypatch, policy, want):
    """The CLI sets OMP_WAIT_POLICY before torch loads; actors' interpreters must get it the same way."""
    from wiseft.distributed.early import actor_runtime_env

    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    assert actor_runtime_env() == want


def test_monitor_busy_share_counts_from_each_actors_ready_time():
    now = [0.0]
    monitor = Monitor(clock=lambda: now[0])
    a, b = monitor.add_actor(0), monitor.add_actor(1)
    monitor.ready(a, {"pid": 1})
    now[0] = 4.0
    monitor.ready(b, {"pid": 2})  # four seconds later: its start-up is not idle time

    class Result:
        completions = [[None, None]]
        tokens, sample_s, switch_s, switched, cpu_s, sample_cpu_s = 10, 5.0, 1.0, True, 2.0, 1.5

    class Unit:
        spec = VariantSpec("v", "mix", 1.0)
        start, prompts, attempt, lookahead = 0, ("p",), 1, False

    now[0] = 10.0
    monitor.finished(a, Unit, Result, 6.0)
    monitor.finished(b, Unit, Result, 6.0)
    record = monitor.record()
    assert record["busy_share"] == pytest.approx(12.0 / (10.0 + 6.0))
    assert [u["actor"] for u in record["units"]] == ["actor 0", "actor 1"] and record["switches"] == 2


def test_the_ray_engine_is_found_by_name_and_builds_nothing_for_a_bad_request(tmp_path):
    assert ENGINE_PLUGINS["ray"] == "wiseft.distributed.engine:ray_engine"
    cfg = SweepConfig(anchors=("e", "f"), ray=RayConfig())
    with pytest.raises(ConfigError, match="--ray: a sampler_factory builds a sampler in this process"):
        make_engine(cfg, "e", (), sampler_factory=lambda m, t: None)
    with pytest.raises(ConfigError, match="--engine 'nope' has no Ray actor engine; choose one of hf, vllm"):
        RayEngine(RayConfig(), [], None, "nope")


@pytest.mark.parametrize(
    "tp, device, want",
    [
        (1, "cuda", dict(device="cuda", in_process=True, executor_backend=None)),
        (1, "cpu", dict(device="cpu", in_process=True, executor_backend=None)),
        (2, "cuda:0", dict(device="cuda", in_process=False, executor_backend="mp")),
    ],
)  # fmt: skip
def test_a_vllm_actor_starts_the_runs_options_on_its_own_device(tp, device, want):
    options = vllm_options(EngineOptions(tensor_parallel_size=tp, max_model_len=64, seed=5), device)
    assert {k: getattr(options, k) for k in want} == want
    assert (options.tensor_parallel_size, options.max_model_len, options.seed) == (tp, 64, 5)
    kwargs = options.engine_kwargs(options.device)
    assert kwargs["distributed_executor_backend"] == ("uni" if tp == 1 else "mp")


def test_engine_vllm_with_ray_gives_the_actors_vllm_and_keys_samples_as_vllm(monkeypatch, tmp_path):
    """`--engine vllm --ray`: each actor holds vLLM with the run's options (one replica's GPUs each), and
    the engine the session sees is named "vllm", as the same run on one machine."""
    early, final = tiny_model_dir(tmp_path, "early", seed=1), tiny_model_dir(tmp_path, "final", seed=2)
    monkeypatch.setattr(RayEngine, "start", lambda self: None)  # no cluster: only what is built
    args = build_parser().parse_args(["sweep", str(early), str(final), "--engine", "vllm",
                                      "--tensor-parallel-size", "2", "--max-model-len", "96", "--ray", "auto"])  # fmt: skip
    cfg = load_config(SweepConfig, args, anchors=tuple(args.anchors))
    engine = ray_engine(cfg, plan_sweep(cfg), final)
    ray_side = engine.sampler
    assert (engine.name, engine.max_context, ray_side.actor_engine) == ("vllm", 96, "vllm")
    assert ray_side.setup.options["vllm"] == cfg.engine_options()
    assert actor_shape(cfg.ray, "", {"CPU": 16.0, "GPU": 8.0}, 2) == ActorShape(4, 1.0, 2.0, 2, "mp")


def test_without_ray_the_flag_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"--ray needs Ray: pip install 'wiseft\[ray\]'"):
        ray_module()


def test_the_resolved_config_keeps_the_ray_section_and_reads_back(tmp_path):
    cfg = SweepConfig(anchors=("e", "f"), ray=RayConfig(address="auto", actors=2, strategy="SPREAD"))
    path = write_resolved(tmp_path, cfg)
    assert "ray:\n  address: auto\n  actors: 2\n" in path.read_text()
    data = {k: v for k, v in load_yaml(path).items() if k != "wiseft_version"}
    assert from_dict(SweepConfig, data).ray == cfg.ray


@pytest.mark.parametrize(
    "address",
    ["auto", "local", "h:1", "10.0.0.1:6379", "head-0.example.com:6379", "[::1]:6379", "ray://head:10001",
     "ray://10.0.0.1:10001", "ray://[fe80::1]:10001"],
)  # fmt: skip
def test_addresses_ray_can_join_are_taken(address):
    assert ray_address_problem(address) is None
    assert RayConfig(address=address).address == address


@pytest.mark.parametrize(
    "address, message",
    [
        ("head", "--ray head: not an address Ray can join; give auto, HOST:PORT"),
        ("head:0", "--ray head:0: not an address"),
        ("head:70000", "--ray head:70000: not an address"),
        ("ray://head", "--ray ray://head: not an address Ray can join; give auto, HOST:PORT (the cluster's GCS"),
        ("ray://", "--ray ray://: not an address"),
        ("ray://head:10001/x", "--ray ray://head:10001/x: not an address"),
        ("ray://h:1:2", "not an address"),
        (" ", "--ray  : not an address"),
        ("http://head:8265", "--ray http://head:8265: only a Ray Client address takes a scheme, ray:// (an http "
         "address is the dashboard's); give auto, HOST:PORT (the cluster's GCS, port 6379 by default) or "
         "ray://HOST:PORT (Ray Client, 10001)"),
        ("grpc://head:10001", "--ray grpc://head:10001: only a Ray Client address takes a scheme, ray://; give"),
    ],
)  # fmt: skip
def test_addresses_ray_cannot_join_are_refused_in_one_line(address, message, tmp_path):
    assert message in ray_address_problem(address)
    with pytest.raises(ConfigError, match=re.escape(message)):
        _ray(["--ray", address])
    with pytest.raises(ConfigError, match=re.escape(message)):
        _ray([], f"ray: {{address: '{address}'}}", tmp_path)


@pytest.mark.parametrize(
    "address, want",
    [
        # a cluster of the run's own: its workers (the actors) at the command's priority, not Ray's 15
        (None, dict(address="local", include_dashboard=False, _system_config={"worker_niceness": 0})),
        ("local", dict(address="local", include_dashboard=False, _system_config={"worker_niceness": 0})),
        ("auto", dict(address="auto", include_dashboard=False)),  # a running cluster keeps its settings
        ("10.0.0.1:6379", dict(address="10.0.0.1:6379", include_dashboard=False)),
        ("ray://head:10001", dict(address="ray://head:10001")),  # forwarded to the server's ray.init: no dashboard
    ],
)  # fmt: skip
def test_ray_init_gets_the_address_and_only_what_its_kind_takes(address, want):
    assert init_kwargs(address) == {**want, "log_to_driver": False, "logging_level": logging.WARNING}


def _grpc_installed(monkeypatch, installed: bool) -> None:
    """Make `grpc` look installed (or not) to connect()'s check, whichever this environment has."""
    real = importlib.util.find_spec
    spec = importlib.machinery.ModuleSpec("grpc", None)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (spec if installed else None) if name == "grpc" else real(name, *a),
    )


class _Unreachable:
    """A `ray` module whose `init` fails as Ray Client does when nothing answers on the port."""

    def __init__(self, exc):
        self.exc, self.calls = exc, []

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.calls.append(kwargs)
        raise self.exc


@pytest.mark.parametrize(
    "address, exc, message",
    [
        ("ray://head:10001", ConnectionError("ray client connection timeout"),
         "--ray ray://head:10001: cannot connect to the Ray Client server (ray client connection timeout); check "
         "that the head node serves Ray Client on that port (`ray start --head` does, on 10001;"),
        ("ray://head:10001", RuntimeError("Version mismatch: The cluster was started with:\n    Ray: 2.60.0\n"),
         "(Version mismatch: The cluster was started with: Ray: 2.60.0); check that the head node serves Ray Client"),
        ("head:6379", ConnectionError("Could not find any running Ray instance."),
         "--ray head:6379: cannot connect to a Ray cluster (Could not find any running Ray instance.); check that "
         "`ray start --head --port PORT` runs there"),
        ("auto", ConnectionError("x" * 300), "cannot connect to a Ray cluster (" + "x" * 197 + "...); start one"),
    ],
)  # fmt: skip
def test_a_cluster_that_cannot_be_reached_is_one_line_naming_the_address(monkeypatch, address, exc, message):
    fake = _Unreachable(exc)
    monkeypatch.setitem(sys.modules, "ray", fake)
    _grpc_installed(monkeypatch, True)  # (CI's environment has no `ray` extra, so no grpcio)
    with pytest.raises(ConfigError) as err:
        connect(address)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert fake.calls == [init_kwargs(address)]


def test_ray_client_without_grpcio_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", _Unreachable(AssertionError("not called")))
    _grpc_installed(monkeypatch, False)
    with pytest.raises(ConfigError, match=re.escape("--ray ray://h:1: Ray Client needs grpcio: pip install")):
        connect("ray://h:1")


@pytest.mark.parametrize("niceness, shown", [(0, False), (15, True), (None, False)])
def test_an_actor_below_normal_priority_says_so_in_its_progress_line(niceness, shown):
    """Ray's default worker niceness (15) lets any other process starve an actor; the progress line says
    so, so that a slow run on a busy node explains itself (a local cluster's actors run at 0)."""
    monitor = Monitor()
    stats = monitor.add_actor(0)
    where = {"host": "node", "pid": 7} | ({} if niceness is None else {"niceness": niceness})
    monitor.ready(stats, where)
    assert stats.detail().endswith(", niceness 15") is shown and "on node:7" in stats.detail()


def test_a_command_can_ask_for_ray_actors_before_it_imports_torch():
    """`distributed.early` (and the actor class it names) imports neither torch nor transformers, so the
    CLI can ask for a run's actors first and let their imports overlap its own (`start_ray_early`)."""
    code = (
        "import sys; import wiseft.distributed.early, wiseft.cli._common; "
        "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_early_actors_are_adopted_only_by_a_run_that_needs_the_same_ones():
    from wiseft.distributed.early import prestart_key

    key = prestart_key(RayConfig(actors=2), "", 1, "hf")
    assert key == prestart_key(RayConfig(actors=2), None, 1, "hf")  # no device named either way
    assert key != prestart_key(RayConfig(actors=1), "", 1, "hf")
    assert key != prestart_key(RayConfig(actors=2), "cuda", 1, "hf")
    assert key != prestart_key(RayConfig(actors=2), "", 2, "hf")
    assert key != prestart_key(RayConfig(actors=2), "", 1, "vllm")


def test_commands_without_ray_ask_for_no_actors(monkeypatch):
    from wiseft.cli._common import start_ray_early
    from wiseft.distributed import early

    monkeypatch.setattr(early, "prestart", lambda cfg: pytest.fail("no ray: section, no actors"))
    start_ray_early(SweepConfig(anchors=("a", "b"), task="toy"))


def test_without_ray_installed_the_run_checks_its_inputs_then_says_how_to_get_it(
    monkeypatch, tmp_path, cli, capsys
):
    """The head start is skipped where Ray is not installed (as in CI): a bad input is still reported as
    itself, and a good one gets "needs Ray" from the run, exit 2, with no sample written."""
    from wiseft.cli._common import start_ray_early
    from wiseft.distributed import early

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    monkeypatch.setattr(early, "prestart", lambda cfg: pytest.fail("no Ray, no head start"))
    start_ray_early(SweepConfig(anchors=("a", "b"), task="toy", ray=RayConfig()))
    final = tiny_model_dir(tmp_path, "final", seed=2)
    capsys.readouterr()  # (saving the model prints its progress)
    out = tmp_path / "out"
    code, err = cli(["sweep", tmp_path / "missing", final, "--task", "toy", "--n", "2", "--ray", "-o", out])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "missing" in err and "Ray" not in err, err
    code, err = cli(["sweep", final, final, "--task", "toy", "--n", "2", "--ray", "-o", out])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--ray needs Ray: pip install 'wiseft[ray]'" in err
    assert not out.exists()


def test_a_local_clusters_auth_notice_is_dropped_and_the_auth_off_warning_kept(caplog):
    """Ray 2.60 logs "Token authentication is enabled" on every local `ray.init`, which would put a line
    before a bad input's one-line error; only that notice is dropped, only while connecting."""
    from wiseft.distributed.cluster import AUTH_LOGGER, _quiet_local_auth_notice

    log = logging.getLogger(AUTH_LOGGER)
    with caplog.at_level(logging.WARNING, logger=AUTH_LOGGER):
        with _quiet_local_auth_notice():
            log.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled")
            log.warning("Token authentication is disabled for this Ray cluster. Anyone with network access")
        log.warning("Token authentication is enabled (after connecting)")
    assert [r.getMessage()[:37] for r in caplog.records] == [
        "Token authentication is disabled for ",
        "Token authentication is enabled (afte",
    ]


@pytest.mark.parametrize(
    "make_cfg, asks",
    [
        (lambda d: SweepConfig(anchors=(str(d / "a"), str(d / "b")), task="toy", ray=RayConfig()), True),
        (lambda d: SweepConfig(anchors=(str(d / "a"), str(d / "nope")), task="toy", ray=RayConfig()), False),
        (
            lambda d: SweepConfig(anchors=(str(d / "a"), "Qwen/Qwen2.5-0.5B"), task="toy", ray=RayConfig()),
            True,
        ),
        (lambda d: SweepConfig(recipe=str(d / "nope.yml"), task="toy", ray=RayConfig()), False),
        (
            lambda d: ModelEvalConfig(
                model=str(d / "a"), task="toy", data=str(d / "nope.jsonl"), ray=RayConfig()
            ),
            False,
        ),
        (lambda d: ModelEvalConfig(model=str(d / "a"), task="toy", ray=RayConfig()), True),
        (lambda d: TrajectoryConfig(run_dir=str(d / "nope"), task="toy", ray=RayConfig()), False),
        (lambda d: TrajectoryConfig(run_dir=str(d), task="toy", ray=RayConfig()), True),
    ],
)
def test_no_actor_is_asked_for_while_a_named_input_is_missing(monkeypatch, tmp_path, make_cfg, asks):
    """The head start waits for nothing, so it must not start a cluster for a run that will stop at its
    first input check: a path the command names that is neither on disk nor a Hub name skips it."""
    from wiseft.cli._common import start_ray_early
    from wiseft.distributed import early

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cfg, asked = make_cfg(tmp_path), []
    monkeypatch.setattr(early, "prestart", lambda cfg: asked.append(cfg))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # as if Ray were installed
    start_ray_early(cfg)
    assert bool(asked) is asks

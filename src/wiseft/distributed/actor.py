"""The actor: one engine replica that samples work units, its weights switched in place per variant.

`EngineWorker` is a plain class that `dispatch` turns into a Ray actor (`ray.remote`). It is built cheaply
and loads its engine in `start()`, so a bad model directory comes back to the driver as the library's own
typed error (an error in a Ray actor's constructor would only come back as text). The engine is made on
the actor's machine by an actor-side factory, named in `ACTOR_ENGINES` (or any picklable callable):

- `"hf"`: `evaluate.engine.hf_engine`, the transformers model with `HFSampler` and `AnchorWeights` (the
  anchors loaded once, each variant written into the live model in place, exactly as on one machine);
- `"vllm"`: `evaluate.engine.vllm_engine`, vLLM started with the run's options (`--engine vllm`) on the
  GPUs Ray gave the actor (or its CPUs), its workers holding the anchors and switching variants in place.
  With one GPU the engine runs inside the actor's process (stopping the actor stops it); with
  `--tensor-parallel-size` > 1 its workers are the actor's child processes on the actor's GPUs (vLLM's
  "mp" executor) or Ray actors in the replica's own bundles (its "ray" executor), see `shape`.

`run(spec, fingerprints, prompts, n, params)` switches to `spec` when it is not the variant the engine
holds (lazily: once per variant per actor), checks on first use that this node's copy of each model is
the one the driver fingerprinted (models are read from the same paths on every node; nothing is written
to shared storage), samples, and returns the completions with the unit's timings.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wiseft.errors import CheckpointError, ConfigError
from wiseft.memory import tune_allocator
from wiseft.sampling import Completion, SamplingParams

if TYPE_CHECKING:  # (torch and transformers come with these: the actor imports them in `warm`, so that a
    from wiseft.evaluate.engine import Engine  # driver can ask for actors before it has imported them)
    from wiseft.evaluate.plan import VariantSpec


@dataclass(frozen=True)
class ActorSetup:
    """What an actor-side factory needs to build one engine replica on its node."""

    model_dir: str
    tokenizer_dirs: tuple[str, ...] = ()
    device: str = "cpu"
    threads: int | None = None
    options: dict = field(default_factory=dict)
    vllm_backend: str | None = (
        None  # vLLM's executor for tensor parallelism (`shape.ActorShape.vllm_backend`)
    )
    env: dict = field(default_factory=dict)  # set (None: removed) in the actor before its engine starts


def hf_actor_engine(setup: ActorSetup) -> Engine:
    """The transformers engine: the model on the actor's device, `HFSampler`, `AnchorWeights`."""
    from wiseft.evaluate.engine import hf_engine

    return hf_engine(setup.model_dir, setup.device, setup.threads, setup.tokenizer_dirs)


def vllm_options(options, device: str, backend: str | None = None):
    """The run's vLLM options (`EngineOptions`) as one actor starts them: on the actor's device; one
    worker in the actor's process; more with `backend` ("mp": child processes on the actor's GPUs, "ray":
    worker actors in the replica's bundles; see `shape`), "mp" when none is named."""
    one = options.tensor_parallel_size == 1
    return dataclasses.replace(
        options, device="cuda" if device.startswith("cuda") else "cpu", in_process=one,
        executor_backend=None if one else (backend or "mp"),
    )  # fmt: skip


def vllm_actor_engine(setup: ActorSetup) -> Engine:
    """The vLLM engine with `setup.options["vllm"]` (the run's `EngineOptions`), see `vllm_options`."""
    from wiseft.evaluate.engine import vllm_engine

    options = vllm_options(setup.options["vllm"], setup.device, setup.vllm_backend)
    return vllm_engine(setup.model_dir, options, setup.tokenizer_dirs)


ActorEngineFactory = Callable[[ActorSetup], "Engine"]
ACTOR_ENGINES: dict[str, ActorEngineFactory] = {"hf": hf_actor_engine, "vllm": vllm_actor_engine}


def engine_name(engine: str | ActorEngineFactory) -> str:
    """The actors' engine as the run records it: its name, or the factory's class name."""
    return engine if isinstance(engine, str) else type(engine).__name__


def resolve_factory(engine: str | ActorEngineFactory) -> ActorEngineFactory:
    if callable(engine):
        return engine
    if engine not in ACTOR_ENGINES:
        raise ConfigError(
            f"--engine {engine!r} has no Ray actor engine; choose one of {', '.join(ACTOR_ENGINES)}"
        )
    return ACTOR_ENGINES[engine]


@dataclass(frozen=True)
class UnitResult:
    """One sampled unit as the actor returns it."""

    completions: list[list[Completion]]
    sample_s: float
    switch_s: float
    switched: bool
    tokens: int
    cpu_s: float = 0.0  # CPU seconds the actor's process has used so far (start-up included)
    sample_cpu_s: float = 0.0  # CPU seconds of this unit's sampling (its switch not included)


class EngineWorker:
    """One engine replica. Ray calls its methods one at a time (a plain, synchronous actor).

    The constructor sets the actor's environment (`setup.env`) and imports the engine's libraries
    (`warm`); `start` loads the model. An actor asked for before the run's models are known (`early`)
    gets the rest of its setup from `configure`, which Ray runs before `start` (one caller, in order)."""

    def __init__(self, engine: str | ActorEngineFactory, setup: ActorSetup):
        self.factory = engine
        self.setup = setup
        self.engine: Engine | None = None
        self.current: VariantSpec | None = None
        self.checked: dict[str, str] = {}
        apply_env(setup.env)
        tune_allocator()  # as the CLI does for the commands that run models (`wiseft.memory`)
        warm(engine)

    def configure(self, setup: ActorSetup) -> None:
        """The run's setup for an actor made early; its environment must be the one it was made with."""
        if setup.env != self.setup.env:
            raise ConfigError(
                f"an actor made with the environment {self.setup.env} cannot run with {setup.env}"
            )
        self.setup = setup

    def start(self) -> dict:
        """Build the engine (load the model); return where this actor runs and what engine it holds
        (`engine_info`: versions and options, as `Engine.info`)."""
        if self.engine is None:
            self.engine = resolve_factory(self.factory)(self.setup)
        return {**where(), "engine_info": _plain(self.engine.info)}

    def stop(self) -> None:
        """Release what the engine holds outside this process (vLLM's workers) before the actor ends."""
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()

    def run(
        self,
        spec: VariantSpec,
        fingerprints: dict[str, str],
        prompts: list[str],
        n: int,
        params: SamplingParams,
    ) -> UnitResult:
        engine = self.engine if self.engine is not None else self._started()
        t0 = time.perf_counter()
        switched = spec != self.current
        if switched:
            self.check_models(fingerprints)
            self.current = None  # a switch that fails leaves no variant claimed
            engine.weights.materialise(spec)
            self.current = spec
        t1, c1 = time.perf_counter(), time.process_time()
        completions = engine.sampler.generate(prompts, n, params)
        t2, c2 = time.perf_counter(), time.process_time()
        tokens = sum(c.n_tokens for row in completions for c in row)
        return UnitResult(completions, t2 - t1, t1 - t0, switched, tokens, c2, c2 - c1)

    def _started(self) -> Engine:
        self.start()
        return self.engine  # type: ignore[return-value]

    def check_models(self, fingerprints: dict[str, str]) -> None:
        """This node reads the models the driver fingerprinted, or the unit fails with a typed error."""
        for path, expected in fingerprints.items():
            if path not in self.checked:
                from wiseft.checkpoints import model_fingerprint

                self.checked[path] = model_fingerprint(path)
            if self.checked[path] != expected:
                raise CheckpointError(
                    f"{path} on node {socket.gethostname()} is not the driver's copy (fingerprint "
                    f"{self.checked[path]} vs {expected}); give every node the same model files at that path"
                )


def warm(engine: str | ActorEngineFactory) -> None:
    """Import what the project's engines load a model with (torch, transformers' model base and the
    engine module: ~4 s of a fresh actor's start on the project's VM), so that `start` only reads the
    model. Best effort: a transformers that moves its modules only loses the head start."""
    if not isinstance(engine, str):
        return
    import importlib

    for name in ("wiseft.evaluate.engine", "transformers.modeling_utils", "transformers.activations"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def apply_env(env: dict) -> None:
    """Set (or, for None, remove) environment variables in this actor's process."""
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _plain(info: dict) -> dict:
    """`Engine.info` as JSON values (vLLM's options are a dataclass's dict already)."""
    import json

    return json.loads(json.dumps(info, default=str))


def where() -> dict[str, Any]:
    """The actor's process (with its niceness: Ray's default 15 lets any other process starve it, see
    `cluster.LOCAL_SYSTEM_CONFIG`), node and accelerators."""
    import ray

    ctx = ray.get_runtime_context()
    return {
        "pid": os.getpid(),
        "niceness": os.getpriority(os.PRIO_PROCESS, 0),
        "host": socket.gethostname(),
        "ip": ray.util.get_node_ip_address(),
        "node_id": ctx.get_node_id(),
        "gpus": [str(g) for g in ray.get_gpu_ids()],
    }

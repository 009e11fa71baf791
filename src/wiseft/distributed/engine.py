"""The Ray engine: the evaluation seam's weight source and streaming sampler over actors on a cluster.

`RayEngine` is both halves of `evaluate.engine.Engine`:

- as a `WeightSource`, `materialise(spec)` only records the variant the session is on; each actor switches
  its own weights in place when it first draws a unit of that variant (`actor.EngineWorker.run`);
  `fingerprints(spec)` reads the models here, on the driver, and every actor checks its node's copy
  against them;
- as a `StreamingSampler`, `stream(prompts, n, params, unit)` cuts the variant's to-do list into the
  session's chunks and yields each as soon as an actor has sampled it (`dispatch.Dispatcher`); the
  session commits each in one transaction, and only this process writes the store.

`start()` joins the cluster (or starts a local one), makes the placement group and asks for the actors
without waiting for them to load their engines; `ray_engine` calls it, so the actors load while the
session opens (otherwise the first unit of work starts them). When the command asked for the same actors
before its own imports (`early.prestart`, from the CLI), `start()` adopts those instead. They are stopped after the
plan's last variant is sampled, on any error, and on Ctrl-C (KeyboardInterrupt); a driver that dies
outright takes them with it (Ray ends the actors and placement group of a job whose driver is gone).
`describe()` is the run's record (results.json, machine.ray): the cluster's resources and nodes, the
actors, and which actor drew each unit.

`ray_engine(cfg, specs, model_dir, tokenizer_dirs, progress)` is what `evaluate.engine.make_engine` calls
for a config with a `ray:` section.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from wiseft.checkpoints import model_fingerprint, validate_model_dir
from wiseft.distributed import cluster, early
from wiseft.distributed.actor import ActorEngineFactory, ActorSetup, engine_name, resolve_factory
from wiseft.distributed.dispatch import Dispatcher
from wiseft.distributed.monitor import Monitor
from wiseft.distributed.shape import ActorShape
from wiseft.errors import SamplingError
from wiseft.evaluate.config import EvalConfig, RayConfig
from wiseft.evaluate.engine import Engine, context_length, find_tokenizer
from wiseft.evaluate.plan import VariantSpec
from wiseft.sampling import Completion, SamplingParams


class RayEngine:
    """Samples a run's variants on Ray actors; see the module docstring."""

    def __init__(
        self, ray_cfg: RayConfig, plan: Sequence[VariantSpec], setup: ActorSetup,
        actor_engine: str | ActorEngineFactory = "hf", progress: Callable | None = None, lookahead: bool = True,
    ):  # fmt: skip
        resolve_factory(actor_engine)  # an unknown engine name fails before anything starts
        self.cfg = ray_cfg
        self.plan = list(plan)
        self.setup = setup
        self.actor_engine = actor_engine
        self.lookahead = lookahead
        self.monitor = Monitor(progress)
        self.current: VariantSpec | None = None
        self.cluster: dict | None = None
        self.shape: ActorShape | None = None
        self._fingerprints: dict[str, str] = {}
        self._dispatcher: Dispatcher | None = None
        self._pg = None
        self._owns_connection = False
        atexit.register(_close_if_alive, weakref.ref(self))

    # --- WeightSource ------------------------------------------------------------------------------
    def materialise(self, spec: VariantSpec) -> None:
        self.current = spec

    def fingerprints(self, spec: VariantSpec) -> dict[str, str]:
        for path in spec.identity:
            if path not in self._fingerprints:
                self._fingerprints[path] = model_fingerprint(path)
        return {path: self._fingerprints[path] for path in spec.identity}

    # --- samplers ----------------------------------------------------------------------------------
    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> list[list[Completion]]:
        """All of `prompts` as one unit (one actor, one `generate` call), in prompt order."""
        out: list[list[Completion]] = [[] for _ in prompts]
        for indices, completions in self.stream(prompts, n, params, max(1, len(prompts))):
            for i, row in zip(indices, completions, strict=True):
                out[i] = row
        return out

    def stream(
        self, prompts: list[str], n: int, params: SamplingParams, unit: int
    ) -> Iterator[tuple[list[int], list[list[Completion]]]]:
        spec = self.current
        if spec is None:
            raise SamplingError("RayEngine.stream: no variant was materialised; call materialise(spec) first")
        last = not self.plan or spec.name == self.plan[-1].name
        if prompts:
            dispatcher = self.start()
            try:
                for u, completions in dispatcher.run(spec, prompts, n, params, unit, self._next(spec)):
                    yield list(range(u.start, u.start + len(u.prompts))), completions
            except BaseException:  # an error, Ctrl-C, or the session closing this stream: stop the actors
                self.close()
                raise
        if last:
            self.close()

    def _next(self, spec: VariantSpec) -> VariantSpec | None:
        names = [s.name for s in self.plan]
        i = names.index(spec.name) if spec.name in names else -1
        return self.plan[i + 1] if 0 <= i < len(self.plan) - 1 else None

    # --- the cluster -------------------------------------------------------------------------------
    def start(self) -> Dispatcher:
        """Join the cluster, place and ask for the actors (once; again after `close`), or adopt the ones
        the command asked for before its imports (`early.prestart`) when they are the ones needed."""
        if self._dispatcher is not None:
            return self._dispatcher
        ray = cluster.ray_module()
        vllm = self.setup.options.get("vllm")
        tp = vllm.tensor_parallel_size if vllm is not None else 1
        waiting = early.adopt(early.prestart_key(self.cfg, self.setup.device, tp, self.actor_engine))
        placed = (
            waiting.placed if waiting is not None else early.join_and_place(self.cfg, self.setup.device, tp)
        )
        handles = waiting.handles if waiting is not None else {}
        self._owns_connection, self.cluster = placed.owns_connection, placed.cluster
        self.shape, self._pg = placed.shape, placed.pg
        shape, setup = self.shape, self._setup_for(self.shape)

        def new_actor(actor: int):
            actor_setup = dataclasses.replace(setup, env=shape.actor_env(actor))
            handle = handles.pop(actor, None)  # made early: its setup comes before its start (one caller)
            if handle is not None:
                handle.configure.remote(actor_setup)
                return handle
            return early.create_actor(ray, shape, self._pg, actor, self.actor_engine, actor_setup)

        self._dispatcher = Dispatcher(
            new_actor, shape.actors, self.fingerprints, self.monitor, self.cfg.start_timeout, self.lookahead
        )
        return self._dispatcher

    def _setup_for(self, shape: ActorShape) -> ActorSetup:
        """The actors' device (a GPU when the replica has some), threads (their CPUs, at least one) and
        vLLM's executor for the replica's workers (`shape.vllm_backend`)."""
        device = self.setup.device or ("cuda" if shape.gpus else "cpu")
        threads = self.setup.threads or max(1, int(shape.cpus))
        return dataclasses.replace(
            self.setup, device=device, threads=threads, vllm_backend=shape.vllm_backend()
        )

    def close(self) -> None:
        """Stop the actors, free the placement group, and leave the cluster if this run joined it."""
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.close()
        if self._pg is not None:
            cluster.release(self._pg)
            self._pg = None
        if self._owns_connection:
            self._owns_connection = False
            cluster.disconnect()
        self.monitor.emit(force=True)

    def describe(self) -> dict:
        """What results.json records under machine.ray."""
        shape = self.shape
        return {"ray": {
            "address": self.cfg.address or "local", "engine": engine_name(self.actor_engine),
            "strategy": self.cfg.strategy, "cluster": self.cluster,
            "actor_resources": shape.bundle() if shape else None,
            "replica_bundles": shape.replica_bundles() if shape else None,
            "vllm_executor": shape.vllm_backend() if shape and "vllm" in self.setup.options else None,
            "actors_planned": shape.actors if shape else None,
            "lookahead": self.lookahead, **self.monitor.record(),
        }}  # fmt: skip


def _driver_side(model_dir: Path, tokenizer_dirs, options) -> tuple:
    """The tokenizer and the context length, read on the driver (it renders and checks the prompts)."""
    from transformers import AutoConfig

    tokenizer = find_tokenizer([model_dir, *tokenizer_dirs])
    max_context = context_length(AutoConfig.from_pretrained(str(model_dir)))
    if options is not None and options.max_model_len:
        max_context = options.max_model_len
    return tokenizer, max_context


def _close_if_alive(ref: weakref.ref) -> None:
    engine = ref()
    if engine is not None:
        engine.close()


def ray_engine(
    cfg: EvalConfig, specs: Sequence[VariantSpec], model_dir: str | os.PathLike,
    tokenizer_dirs: Sequence[str | os.PathLike] = (), progress: Callable | None = None,
) -> Engine:  # fmt: skip
    """The engine of `make_engine` for a `ray:` config: actors each holding the engine `--engine` names
    (its vLLM options travel to them); the tokenizer and context length read here (the prompts are
    rendered and checked on the driver), the model loaded only by the actors. The engine's name is the
    actors' engine, so the store keys the samples as a run on one machine with that engine would."""
    options = cfg.engine_options()  # None for --engine hf
    model_dir = validate_model_dir(model_dir)
    setup = ActorSetup(
        str(model_dir), tuple(str(Path(d)) for d in tokenizer_dirs), cfg.device or "", cfg.threads,
        {"vllm": options} if options is not None else {},
    )  # fmt: skip
    engine = RayEngine(cfg.ray, specs, setup, cfg.engine, progress)
    engine.start()  # first: the actors start (imports, model) while this process reads the tokenizer
    try:
        tokenizer, max_context = _driver_side(model_dir, tokenizer_dirs, options)
    except BaseException:
        engine.close()
        raise
    return Engine(engine, engine, tokenizer, max_context, name=cfg.engine, info=engine.monitor.engine_info,
                  describe=engine.describe)  # fmt: skip

"""What an evaluation run is asked to do: frozen, honestly typed configs, one per command.

YAML files (`--config`) and flags are projections of these dataclasses (`wiseft.config`): each field's
`option` carries its help text and, for grids, the parser that turns `0:1:0.125` or `1,4,16` into a tuple;
the defaults live here and nowhere else. `__post_init__` validates the values together (k ≤ n, δ in
[0, 1], ...) with one-line errors that name the flag.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from wiseft.config import option
from wiseft.errors import ConfigError, MetricError
from wiseft.grids import check_ks_fit, parse_grid, parse_ks, parse_layers, parse_modules, powers_of_two
from wiseft.limits import DEFAULT_PROBLEM_BUDGET, check_budget, check_n_boot, check_workers
from wiseft.prompts import STYLES, make_prompter
from wiseft.sampling import SamplingParams
from wiseft.sampling.vllm_options import DTYPES as VLLM_DTYPES
from wiseft.sampling.vllm_options import EngineOptions

MAX_N = 65536  # samples per problem
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
TP_EXECUTORS = ("mp", "ray")  # how a Ray actor's vLLM starts its tensor-parallel workers
RAY_ADDRESSES = (
    "auto, HOST:PORT (the cluster's GCS, port 6379 by default) or ray://HOST:PORT (Ray Client, 10001)"
)
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9_.-]*):([0-9]{1,5})")
ENGINES = ("hf", "vllm", "auto")
# The vLLM options of EvalConfig and their defaults (an --engine hf run must leave them so).
VLLM_FIELDS = {"tensor_parallel_size": 1, "gpu_memory_utilization": None, "max_model_len": None,
               "kv_cache_gib": None, "max_num_seqs": None, "vllm_dtype": "auto", "enforce_eager": False,
               "enable_prefix_caching": None}  # fmt: skip
TASK_HELP = "task: gsm8k, math, math500, aime24, aime25, jsonl, toy"
GENERATION_CONFIG = ("auto", "ignore")
FALLBACK_SAMPLING = {"temperature": (1.0,), "top_p": 1.0, "top_k": 0}  # when neither flag nor model says


def _temperatures(value) -> tuple[float, ...]:
    return parse_grid(value, "--temperature")


def _deltas(value) -> tuple[float, ...]:
    return parse_grid(value, "--delta")


def _ray_section(value) -> dict:
    """`--ray [ADDRESS]` and the YAML shorthands (`ray: auto`, `ray: true`) as a `ray:` mapping; `local`
    or nothing is a cluster started for the run."""
    if isinstance(value, (dict, RayConfig)):
        return value
    if value is True or value in ("", "local"):
        return {}
    if not isinstance(value, str):
        raise ConfigError(
            f"--ray takes an address (auto, HOST:PORT, ray://HOST:PORT) or nothing, got {value!r}"
        )
    return {"address": value}


def ray_address_problem(address: str) -> str | None:
    """Why `address` is not one `--ray` takes, or None. `auto` and `local` (a cluster started for the run)
    by name; `HOST:PORT` the GCS of a cluster this machine belongs to or can reach on every port;
    `ray://HOST:PORT` a Ray Client server (the driver stays here, the cluster runs everything else)."""
    if address in ("auto", "local"):
        return None
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    if scheme not in ("", "ray"):
        dashboard = " (an http address is the dashboard's)" if scheme in ("http", "https") else ""
        return f"--ray {address}: only a Ray Client address takes a scheme, ray://{dashboard}; give {RAY_ADDRESSES}"
    match = _HOST_PORT.fullmatch(rest)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        return f"--ray {address}: not an address Ray can join; give {RAY_ADDRESSES}"
    return None


@dataclass(frozen=True)
class RayConfig:
    """Where and how a run samples on a Ray cluster (`wiseft.distributed`): one long-lived actor per engine
    replica, placed with a placement group, each holding the run's engine (`--engine`: transformers or
    vLLM) and its anchors."""

    address: str | None = None  # auto, HOST:PORT, ray://HOST:PORT; None: a cluster started for the run
    actors: int | None = option(
        None, "Ray actors, one engine replica each (default: as many as the cluster holds)"
    )
    cpus_per_actor: float = option(1.0, "CPUs each Ray actor reserves (fractions allowed)")
    gpus_per_actor: float | None = option(
        None,
        "GPUs each Ray actor reserves (default: when the cluster has GPUs and --device is not cpu, 1, or "
        "--tensor-parallel-size with --engine vllm; else 0)",
    )
    strategy: str = option("PACK", "placement of the actors over the nodes", choices=PLACEMENT_STRATEGIES)
    start_timeout: float = option(600.0, "seconds to wait for the cluster to place and start the actors")
    tp_executor: str = option(
        "mp", "with --engine vllm and --tensor-parallel-size T > 1 on GPUs, how each actor starts vLLM's T "
        "workers: mp (child processes on the actor's T GPUs, one bundle) or ray (Ray actors, T one-GPU "
        "bundles per actor)", choices=TP_EXECUTORS,
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.address is not None and not isinstance(self.address, str):
            raise ConfigError(f"--ray address must be {RAY_ADDRESSES}, got {self.address!r}")
        problem = ray_address_problem(self.address) if self.address is not None else None
        if problem:
            raise ConfigError(problem)
        if self.actors is not None and not (isinstance(self.actors, int) and self.actors >= 1):
            raise ConfigError(f"--ray-actors must be at least 1, got {self.actors!r}")
        for flag, value in (
            ("--ray-cpus-per-actor", self.cpus_per_actor),
            ("--ray-gpus-per-actor", self.gpus_per_actor),
        ):
            if value is not None and not (isinstance(value, (int, float)) and 0 <= value < 1e6):
                raise ConfigError(f"{flag} must be a number of at least 0, got {value!r}")
        if not self.cpus_per_actor and not self.gpus_per_actor:
            raise ConfigError("--ray-cpus-per-actor and --ray-gpus-per-actor are both 0; an actor needs one")
        if self.strategy not in PLACEMENT_STRATEGIES:
            raise ConfigError(
                f"--ray-strategy must be one of {', '.join(PLACEMENT_STRATEGIES)}, got {self.strategy!r}"
            )
        if not (isinstance(self.start_timeout, (int, float)) and self.start_timeout > 0):
            raise ConfigError(f"--ray-start-timeout must be positive seconds, got {self.start_timeout!r}")
        if self.tp_executor not in TP_EXECUTORS:
            raise ConfigError(
                f"--ray-tp-executor must be one of {', '.join(TP_EXECUTORS)}, got {self.tp_executor!r}"
            )


@dataclass(frozen=True)
class EvalConfig:
    """What every evaluation shares: the task, how many samples, how to sample, grade and score."""

    task: str = option("gsm8k", TASK_HELP)
    data: str | None = option(None, "local data file or directory of the task (default: the Hub)")
    limit: int | None = option(None, "use only the first N problems (default: all)")
    prompt: str = option("plain", "prompt style (README: Prompts)", choices=STYLES)
    prompt_template: str | None = option(
        None, "a prompt template file: {question} text, or Jinja with {{ question }}"
    )
    fewshot: int | None = option(None, "worked examples of a few-shot style (default: the harness's, 8 or 4)")
    system_prompt: str | None = option(None, "system prompt of --prompt chat")
    thinking_tag: str = option(
        "</think>",
        "closing tag of a thinking block: answers are read after it and Think % counts it ('': off)",
    )
    thinking_open_tag: str = option("<think>", "opening tag of a thinking block")
    n: int = option(16, "samples per problem")
    k: tuple[int, ...] | None = option(
        None,
        "k values for Pass@k/maj@k, each <= n, e.g. 1,4,16 (default: 1, 2, 4, … up to n)",
        parse=parse_ks,
    )
    temperature: tuple[float, ...] = option(  # type: ignore[assignment]  # None: not given (filled below)
        None, "sampling temperature(s), comma-separated (default: the model's generation_config.json, else 1)",
        parse=_temperatures,
    )  # fmt: skip
    top_p: float = option(
        None, "nucleus sampling, 1: off (default: the model's generation_config.json, else 1)"
    )  # type: ignore[assignment]
    top_k: int = option(None, "top-k sampling, 0: off (default: the model's generation_config.json, else 0)")  # type: ignore[assignment]
    generation_config: str = option(
        "auto", "auto: sampling settings not given take the evaluated model's generation_config.json values "
        "(vLLM's default); ignore: they take 1, 1, 0", choices=GENERATION_CONFIG,
    )  # fmt: skip
    max_new_tokens: int = option(512, "length limit per completion")
    seed: int = option(0, "sampling, split and bootstrap seed")
    device: str | None = option(None, "cpu, cuda or cuda:N (default: cuda when available)")
    threads: int | None = option(None, "CPU threads for sampling (default: torch's)")
    engine: str = option("hf", "sampling engine: hf (transformers), vllm, or auto: the faster of the two "
                         "for the model (README: vLLM engine)", choices=ENGINES)  # fmt: skip
    tensor_parallel_size: int = option(1, "vLLM: GPUs that hold one model")
    gpu_memory_utilization: float | None = option(
        None, "vLLM on CUDA: the fraction of GPU memory it may take (default: vLLM's 0.9)"
    )
    max_model_len: int | None = option(
        None, "vLLM: prompt + completion tokens per sequence (default: the model's maximum)"
    )
    kv_cache_gib: float | None = option(None, "vLLM: KV cache GiB (default: 1 on CPU, vLLM's sizing on CUDA)")
    max_num_seqs: int | None = option(None, "vLLM: sequences decoded together (default: vLLM's)")
    vllm_dtype: str = option("auto", "vLLM: weight dtype", choices=VLLM_DTYPES)
    enforce_eager: bool = option(False, "vLLM: no CUDA graphs (quicker start, slower decoding)")
    enable_prefix_caching: bool | None = option(
        None,
        "vLLM: reuse the KV cache of prompt prefixes that requests share (default: vLLM's choice; "
        "a config file may set false)",
    )
    chunk: int = option(64, "problems sampled and committed together")
    workers: int | None = option(None, "grader worker processes (default: from the cores)")
    problem_budget: float = option(DEFAULT_PROBLEM_BUDGET, "seconds of verifier time per problem")
    n_boot: int = option(1000, "bootstrap resamples for the intervals")
    store: str | None = option(
        None, "sample store (SQLite; default OUTPUT/samples.db); reruns resume from it"
    )
    length_reference: str | None = option(
        None, "variant that lengths are relative to (default: the last anchor as it is, e.g. the Thinking "
        "model of an Instruct→Thinking sweep)",
    )  # fmt: skip
    # Not flags. Which of temperature/top_p/top_k the user left unset (they take FALLBACK_SAMPLING until
    # `with_model_sampling` fills them from the model), and what was taken from generation_config.json.
    sampling_unset: tuple[str, ...] = ()
    sampling_defaults: dict | None = None
    ray: RayConfig | None = option(
        None, "sample on Ray actors: auto, HOST:PORT, ray://HOST:PORT (Ray Client), or nothing (or local) for a local cluster; put it after "
        "the positional arguments", parse=_ray_section, nargs="?", const="local", metavar="ADDRESS",
    )  # fmt: skip

    def __post_init__(self) -> None:
        self._fill_sampling()
        if not 1 <= self.n <= MAX_N:
            raise ConfigError(f"--n must lie in 1..{MAX_N}, got {self.n}")
        if self.k is None:  # the default depends on n
            object.__setattr__(self, "k", powers_of_two(self.n))
        _check_tuple(self.k, int, "--k")
        _check_tuple(self.temperature, float, "--temperature")
        check_ks_fit(self.k, self.n)
        if any(t < 0 for t in self.temperature):
            raise ConfigError(f"--temperature must be >= 0, got {self.temperature}")
        if self.chunk < 1:
            raise ConfigError(f"--chunk must be at least 1, got {self.chunk}")
        self.prompter()  # the prompt flags checked together (and a template file read) before any work
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        try:
            check_n_boot(self.n_boot)
        except MetricError as exc:
            raise ConfigError(str(exc)) from None
        check_workers(self.workers)
        check_budget(self.problem_budget)
        self.engine_options()
        SamplingParams(top_p=self.top_p, top_k=self.top_k, max_new_tokens=self.max_new_tokens)

    def _fill_sampling(self) -> None:
        """Unset sampling settings (None) take the fallbacks and are remembered in `sampling_unset`."""
        unset = [name for name in FALLBACK_SAMPLING if getattr(self, name) is None]
        for name in unset:
            object.__setattr__(self, name, FALLBACK_SAMPLING[name])
        if self.generation_config not in GENERATION_CONFIG:
            raise ConfigError(f"--generation-config must be auto or ignore, got {self.generation_config!r}")
        known = tuple(dict.fromkeys(tuple(self.sampling_unset) + tuple(unset)))
        if any(name not in FALLBACK_SAMPLING for name in known):
            raise ConfigError(
                f"sampling_unset may name only {', '.join(FALLBACK_SAMPLING)}, got {list(known)}"
            )
        object.__setattr__(self, "sampling_unset", known)

    def thinking(self) -> tuple[str, str | None] | None:
        """(closing tag, opening tag) of thinking blocks, or None when thinking is not looked for."""
        return (self.thinking_tag, self.thinking_open_tag or None) if self.thinking_tag else None

    def input_paths(self) -> tuple[str, ...]:
        """The files and directories this run reads that the user named (models, run directory, recipe,
        data): what must exist, or be a Hub name, before the run starts anything."""
        return (self.data,) if self.data else ()

    def engine_options(self) -> EngineOptions | None:
        """The vLLM engine's options (None for --engine hf, where setting one of them is an error; for
        --engine auto, the options vLLM starts with if auto chooses it)."""
        given = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(EvalConfig) if f.name in VLLM_FIELDS
        }
        if self.engine == "hf":
            changed = [n for n, v in given.items() if v != VLLM_FIELDS[n]]
            if changed:
                flag = "--" + changed[0].replace("_", "-")
                raise ConfigError(f"{flag} is an option of the vLLM engine; add --engine vllm or drop it")
            return None
        device = "auto" if self.device is None else ("cuda" if self.device.startswith("cuda") else "cpu")
        try:
            return EngineOptions(
                tensor_parallel_size=self.tensor_parallel_size, dtype=self.vllm_dtype,
                gpu_memory_utilization=self.gpu_memory_utilization, max_model_len=self.max_model_len,
                kv_cache_gib=self.kv_cache_gib, max_num_seqs=self.max_num_seqs,
                enforce_eager=self.enforce_eager, enable_prefix_caching=self.enable_prefix_caching,
                device=device, seed=self.seed,
                cpu_threads=f"0-{self.threads - 1}" if self.threads else None,
            )  # fmt: skip
        except ConfigError as exc:
            raise ConfigError(f"vLLM engine option: {exc}") from None

    def prompter(self):
        """How this run renders its prompts (`prompts.Prompter`)."""
        return make_prompter(self.prompt, self.fewshot, self.system_prompt, self.prompt_template)

    def sampling_params(self, temperature: float, stop: Sequence[str]) -> SamplingParams:
        return SamplingParams(
            temperature=temperature, top_p=self.top_p, top_k=self.top_k,
            max_new_tokens=self.max_new_tokens, stop=tuple(stop), seed=self.seed,
        )  # fmt: skip


@dataclass(frozen=True)
class ModelEvalConfig(EvalConfig):
    """`wiseft eval MODEL`: one model, each temperature."""

    model: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise ConfigError("wiseft eval needs a MODEL directory")

    def input_paths(self) -> tuple[str, ...]:
        return (self.model, *super().input_paths())


@dataclass(frozen=True)
class SelectConfig(EvalConfig):
    """Evaluations that choose a best variant: on a validation split of the problems (reported on the
    rest), or in-sample with `val_fraction` 0."""

    val_fraction: float = option(0.5, "share of problems that choose the best variant (0: in-sample)")
    metric: str = option("pass@1", "metric that chooses the best variant, e.g. pass@1, pass@16, maj@16")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_metric(self.metric, self.k)
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in [0, 1) (0: no split), got {self.val_fraction}")


@dataclass(frozen=True)
class SweepConfig(SelectConfig):
    """`wiseft sweep`: anchors EARLY FINAL (or a recipe) × a δ grid × temperatures."""

    anchors: tuple[str, ...] = ()
    recipe: str | None = option(None, "a merge recipe YAML (wiseft merge) instead of two anchors")
    delta: tuple[float, ...] = option(
        tuple(i / 8 for i in range(9)), "δ grid: start:stop:step or comma-separated", parse=_deltas,
        shown="0:1:0.125",
    )  # fmt: skip
    extrapolate: bool = option(False, "allow δ outside [0, 1]")
    layers: tuple[str, ...] | None = option(
        None, "interpolate only these block ranges, half-open START:STOP (e.g. 0:12,12:24; 'all'): one "
        "variant each (× δ); other tensors from --rest-from", parse=parse_layers,
    )  # fmt: skip
    modules: tuple[str, ...] | None = option(
        None, "interpolate only this kind in every block: attention, mlp (MoE: experts, router and shared "
        "expert), experts, router, shared_expert, norm, or no-KIND (all but it): one variant each (× δ)",
        parse=parse_modules,
    )  # fmt: skip
    rest_from: str = option(
        "first", "anchor the tensors outside --layers/--modules come from: first, last, or its path"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_tuple(self.delta, float, "--delta")
        _check_tuple(self.anchors, str, "anchors")
        for value, parse in ((self.layers, parse_layers), (self.modules, parse_modules)):
            if value is not None:
                parse(value)  # a YAML list is checked like the flag's text
        if self.recipe is None and self.rest_from not in ("first", "last", *self.anchors):
            raise ConfigError(
                f"--rest-from {self.rest_from!r} must be first, last or one of the anchors {list(self.anchors)}"
            )
        if self.recipe is None and len(self.anchors) != 2:
            raise ConfigError(
                f"wiseft sweep needs two anchors EARLY FINAL (or --recipe), got {len(self.anchors)}"
            )
        if not self.extrapolate and any(not 0 <= d <= 1 for d in self.delta):
            raise ConfigError(f"--delta values must lie in [0, 1] (or pass --extrapolate), got {self.delta}")

    def input_paths(self) -> tuple[str, ...]:
        named = (self.recipe,) if self.recipe else self.anchors  # (a recipe's models are read with it)
        return (*named, *super().input_paths())


@dataclass(frozen=True)
class TrajectoryConfig(SelectConfig):
    """`wiseft trajectory RUN_DIR`: each checkpoint raw, and mixed with the early checkpoint at each δ."""

    run_dir: str = ""
    early: int | None = option(None, "step of the early checkpoint to mix with (default: the first)")
    delta: tuple[float, ...] = option((0.5,), "δ value(s) of the mixes, comma-separated", parse=_deltas)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_tuple(self.delta, float, "--delta")
        if not self.run_dir:
            raise ConfigError("wiseft trajectory needs a RUN_DIR holding checkpoint-STEP directories")
        if any(not 0 <= d <= 1 for d in self.delta):
            raise ConfigError(f"--delta values must lie in [0, 1], got {self.delta}")

    def input_paths(self) -> tuple[str, ...]:
        return (self.run_dir, *super().input_paths())


def check_metric(metric: str, ks: Sequence[int]) -> None:
    m = re.fullmatch(r"(pass|maj|best)@(\d+)", metric)
    if not m or int(m.group(2)) not in ks:
        raise ConfigError(f"--metric {metric!r} must be pass@k, maj@k or best@k with k among --k {list(ks)}")
    if m.group(1) == "best":
        raise ConfigError(
            f"--metric {metric}: best@k needs reward-model scores, which a sweep does not produce; "
            "choose pass@k or maj@k"
        )


def _check_tuple(value, tp: type, flag: str) -> None:
    ok = isinstance(value, tuple) and all(
        isinstance(v, tp) and not isinstance(v, bool) or (tp is float and isinstance(v, int)) for v in value
    )
    if not ok:
        raise ConfigError(
            f"{flag} must be a tuple of {tp.__name__} (text such as '0,0.5,1' is parsed by wiseft.config.load "
            f"or wiseft.grids), got {value!r}"
        )

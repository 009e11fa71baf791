"""Settings of the vLLM engine (`EngineOptions`: checked when built, recorded with a run) and the rates it
reports while it samples (`Throughput`). No vLLM import: the evaluation config and Ray's actors use these
without the engine installed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from wiseft.errors import ConfigError

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

"""The merge pre-flight: everything that can be checked from config.json, indexes and headers.

`plan(recipe)` opens every input (no tensor data read), checks that they can be merged — same tensor
names, shapes, float dtypes, architecture, vocab size, tied embeddings — resolves every tensor's
coefficients from the recipe's schedule, and returns a `Plan`: the list of output tensors with their
sources, the bytes to read and write, an estimated time and the peak memory. `--dry-run` prints it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from wiseft.checkpoints import Checkpoint, TensorInfo
from wiseft.checkpoints.safetensors_format import TORCH_TO_ST, itemsize
from wiseft.errors import ConfigError, MergeError
from wiseft.merge.compute import CHUNK
from wiseft.merge.methods import Method, TensorContext, get_method
from wiseft.merge.recipe import Recipe, layer_count
from wiseft.merge.select import TOTAL_CAP
from wiseft.merge.tensorwise import step_for

IO_CHUNK = 1 << 22  # elements per read/write: 8 MiB of bf16 per input

_DTYPE_NAMES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "fp64": torch.float64,
}
ST_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}
# Rates used for the dry-run time estimate (DESIGN §5, this project's 2-core machine, warm page cache).
READ_RATE, WRITE_RATE, COMPUTE_NS_PER_ELEMENT, STARTUP_S = 4.0e9, 2.5e9, 1.2, 1.5
PROCESS_BASE_BYTES = 160 * 2**20  # anonymous memory of Python + torch + wiseft after import (measured)


def parse_dtype(name: str) -> torch.dtype:
    key = str(name).lower().removeprefix("torch.")
    if key not in _DTYPE_NAMES:
        raise ConfigError(
            f"--dtype {name!r} is not a float dtype; choose bfloat16, float16, float32 or float64"
        )
    return _DTYPE_NAMES[key]


@dataclass(frozen=True)
class TensorPlan:
    """One output tensor: its sources (one per method input), coefficients, and what to do."""

    name: str
    shape: tuple[int, ...]
    out_dtype: str  # safetensors spelling
    kind: str  # "merge" (float, computed) or "copy" (integer/bool, identical across inputs)
    coeffs: tuple[float, ...]
    rule: str
    sources: tuple[TensorInfo, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def out_bytes(self) -> int:
        return self.numel * itemsize(self.out_dtype)

    def context(self, recipe: Recipe) -> TensorContext:
        return TensorContext(
            self.name, self.shape, len(recipe.models), recipe.base is not None, recipe.seed or 0
        )


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    method: Method
    inputs: tuple[Checkpoint, ...]  # in method order: (base,) + models
    tensors: tuple[TensorPlan, ...]
    out_dtype: str | None  # None: per tensor, the inputs' dtype
    config_from: int  # index into inputs: whose config.json the output gets
    tokenizer_from: int  # index into inputs: whose tokenizer/generation files are copied
    dropped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    chunk: int = CHUNK  # elements per kernel call (float64 scratch size)
    io_chunk: int = IO_CHUNK  # elements per read/write (bigger: fewer thread hand-offs)

    @property
    def bytes_read(self) -> int:
        return sum(s.nbytes for t in self.tensors for s in t.sources)

    @property
    def bytes_written(self) -> int:
        return sum(t.out_bytes for t in self.tensors)

    @property
    def n_elements(self) -> int:
        return sum(t.numel for t in self.tensors)

    def job(self, t: TensorPlan):
        """The per-tensor job of tensor `t` (None for an elementwise method or a copied tensor)."""
        if self.method.job is None or t.kind != "merge":
            return None
        return self.method.job(t.context(self.recipe), t.coeffs)

    def io_step(self, t: TensorPlan) -> int:
        """Elements per read of tensor `t`: io_chunk, in whole granules of its job."""
        job = self.job(t)
        return step_for(job, self.io_chunk) if job is not None else self.io_chunk

    @property
    def max_io_step(self) -> int:
        if self.method.job is None:
            return self.io_chunk
        return max((self.io_step(t) for t in self.tensors), default=self.io_chunk)

    @property
    def buffer_bytes(self) -> int:
        """Memory the driver allocates: double-buffered input and output chunks of `io_chunk` elements,
        3 float64 kernel buffers of `chunk`, and for sums of 3+ terms a sorted stack (2 float64 + 1 int64
        rows per term). Per-tensor jobs add float64 rows of a chunk per input and model (task vectors,
        masks, sorted terms) and at most TOTAL_CAP gathered int64 keys for exact top-k selection."""
        n = len(self.inputs)
        per_element_in = sum(self._max_itemsize(i) for i in range(n))
        out = max((t.out_bytes // max(t.numel, 1) for t in self.tensors), default=1)
        stack = 3 * 8 * n * self.chunk if n >= 3 else 0
        total = 2 * (per_element_in + out) * self.max_io_step + 3 * 8 * self.chunk + stack
        if self.method.job is not None:
            chunk = max(
                self.chunk,
                max(
                    (step_for(self.job(t), self.chunk) for t in self.tensors if t.kind == "merge"), default=0
                ),
            )
            total += 8 * chunk * (5 * n + 12) + 8 * TOTAL_CAP
        return total

    def _max_itemsize(self, i: int) -> int:
        return max((t.sources[i].nbytes // max(t.numel, 1) for t in self.tensors), default=1)

    @property
    def peak_memory_bytes(self) -> int:
        return PROCESS_BASE_BYTES + self.buffer_bytes

    @property
    def estimated_seconds(self) -> float:
        io = self.bytes_read / READ_RATE + self.bytes_written / WRITE_RATE
        compute = self.n_elements * COMPUTE_NS_PER_ELEMENT * 1e-9
        return STARTUP_S + max(io, compute)


def check_compatible(inputs: Sequence[Checkpoint]) -> list[str]:
    """Architecture, vocab size, tied embeddings, tensor names, shapes and dtype kinds agree.

    Returns the names every input holds, in the first input's file order. Raises MergeError naming the
    model and the first differing names/shapes.
    """
    ref = inputs[0]
    for ck in inputs[1:]:
        if ck.architecture != ref.architecture:
            raise MergeError(
                f"different architectures: {ref.path} is {ref.architecture} but {ck.path} is {ck.architecture}; "
                "only checkpoints of one architecture can be merged"
            )
        if ck.vocab_size != ref.vocab_size:
            raise MergeError(
                f"different vocab sizes: {ref.path} has {ref.vocab_size} but {ck.path} has {ck.vocab_size}; "
                "resize the embeddings to match first"
            )
        if ck.tied_embeddings != ref.tied_embeddings:
            raise MergeError(
                f"tie_word_embeddings differs: {ref.path} is {'tied' if ref.tied_embeddings else 'untied'} but "
                f"{ck.path} is {'tied' if ck.tied_embeddings else 'untied'}"
            )
    tied = ref.tied_embeddings
    names = [n for n in ref.tensors if not (tied and n == "lm_head.weight")]
    wanted = set(names)
    for ck in inputs[1:]:
        have = {n for n in ck.tensors if not (tied and n == "lm_head.weight")}
        missing = [n for n in names if n not in have]
        extra = [n for n in ck.tensors if n in have and n not in wanted]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {len(missing)} tensor(s) of {ref.path}: {', '.join(missing[:3])}")
            if extra:
                parts.append(f"{len(extra)} extra tensor(s): {', '.join(extra[:3])}")
            raise MergeError(f"{ck.path} does not have the same tensors: {'; '.join(parts)}")
    for name in names:
        a = ref.tensors[name]
        for ck in inputs[1:]:
            b = ck.tensors[name]
            if b.shape != a.shape:
                raise MergeError(
                    f"tensor {name} has shape {list(a.shape)} in {ref.path} but {list(b.shape)} in {ck.path}"
                )
            if a.is_float != b.is_float or (not a.is_float and a.dtype != b.dtype):
                raise MergeError(
                    f"tensor {name} is {a.dtype} in {ref.path} but {b.dtype} in {ck.path}; float tensors are "
                    "merged, integer/bool tensors must have one dtype and identical values"
                )
    return names


def plan(
    recipe: Recipe,
    out_dtype: str | torch.dtype | None = None,
    tokenizer_from: str | int | None = None,
    chunk: int = CHUNK,
    io_chunk: int | None = None,
) -> Plan:
    """Open the inputs of `recipe` and resolve the whole merge without reading tensor data.

    `out_dtype` and `tokenizer_from` default to the recipe's `dtype` and `tokenizer_from`."""
    method = get_method(recipe.method)
    out_dtype = out_dtype if out_dtype is not None else recipe.dtype
    tokenizer_from = tokenizer_from if tokenizer_from is not None else recipe.tokenizer_from
    names = ([recipe.base] if recipe.base else []) + list(recipe.models)
    inputs = tuple(Checkpoint.open(n) for n in names)
    warnings = []
    seen: dict[str, str] = {}
    for name, ck in zip(names, inputs, strict=True):
        key = str(ck.path)
        if key in seen:
            warnings.append(
                f"the same model is given twice ({seen[key]} and {name} are both {ck.path}); the merge "
                "still runs but probably not as intended"
            )
        seen[key] = name
    tensor_names = check_compatible(inputs)
    ref = inputs[0]
    check_layer_range(recipe, tensor_names, ref)
    if tokenizer_from == "union":
        tokenizer_from = union_tokenizer(inputs)
    dropped = ()
    if ref.tied_embeddings and any("lm_head.weight" in ck.tensors for ck in inputs):
        dropped = ("lm_head.weight",)
    if out_dtype is None:
        out_st = None
    else:
        out_st = TORCH_TO_ST[out_dtype if isinstance(out_dtype, torch.dtype) else parse_dtype(out_dtype)]
    n_layers = layer_count(tensor_names, ref.config)
    tensors = []
    for name in tensor_names:
        sources = tuple(ck.tensors[name] for ck in inputs)
        if not sources[0].is_float:
            tensors.append(TensorPlan(name, sources[0].shape, sources[0].dtype, "copy", (), "copy", sources))
            continue
        dtypes = {s.dtype for s in sources}
        if out_st is not None:
            dtype = out_st
        elif len(dtypes) == 1:
            dtype = sources[0].dtype
        else:
            detail = ", ".join(f"{s.dtype} in {ck.path}" for s, ck in zip(sources, inputs, strict=True))
            raise MergeError(f"tensor {name} has different dtypes ({detail}); choose the output with --dtype")
        coeffs, rule = recipe.coefficients(name, n_layers)
        problem = method.check(coeffs, recipe.extrapolate)
        if problem:
            raise ConfigError(f"tensor {name} ({rule}): {problem}")
        tensors.append(TensorPlan(name, sources[0].shape, dtype, "merge", coeffs, rule, sources))
    # The output takes config and tokenizer from the "final" model: FINAL for wise-ft, the base for task
    # arithmetic, the first model for linear.
    if method.name == "wise-ft":
        config_from = 1
    else:
        config_from = 0
    tok = config_from if tokenizer_from is None else _input_index(tokenizer_from, names, inputs)
    return Plan(
        recipe=recipe,
        method=method,
        inputs=inputs,
        tensors=tuple(tensors),
        out_dtype=out_st,
        config_from=config_from,
        tokenizer_from=tok,
        dropped=dropped,
        warnings=tuple(warnings),
        chunk=chunk,
        io_chunk=max(chunk, io_chunk or IO_CHUNK),
    )


def check_layer_range(recipe: Recipe, names: list[str], ref: Checkpoint) -> None:
    """A mergekit slice must cover every layer (stacking or selecting layers is not supported yet)."""
    if recipe.layer_range is None:
        return
    n = layer_count(names, ref.config)
    if tuple(recipe.layer_range) != (0, n):
        raise ConfigError(
            f"layer_range {list(recipe.layer_range)}: the inputs have {n} layers; a slice must cover all of them "
            f"([0, {n}]); selecting or stacking layers (passthrough/frankenmerges) is not supported yet"
        )


def union_tokenizer(inputs: Sequence[Checkpoint]) -> int:
    """`tokenizer_source: union` is the first input's tokenizer when every input has the same files."""
    from wiseft.checkpoints import TOKENIZER_FILES

    vocabulary = [n for n in TOKENIZER_FILES if n not in ("tokenizer_config.json", "chat_template.jinja")]
    vocabulary = [n for n in vocabulary if "generation" not in n]

    def files(ck: Checkpoint) -> dict[str, bytes]:
        return {n: (ck.path / n).read_bytes() for n in vocabulary if (ck.path / n).is_file()}

    first = files(inputs[0])
    for ck in inputs[1:]:
        if files(ck) != first:
            raise ConfigError(
                f"tokenizer_source: union: the tokenizer of {ck.path} differs from {inputs[0].path}; building a "
                "union tokenizer is not supported yet; choose base or one model's tokenizer"
            )
    return 0


def _input_index(which: str | int, names: list[str], inputs: Sequence[Checkpoint]) -> int:
    if isinstance(which, int) or str(which).isdigit():
        i = int(which)
        if not 0 <= i < len(inputs):
            raise ConfigError(
                f"--copy-tokenizer-from {which}: there are {len(inputs)} inputs (0..{len(inputs) - 1})"
            )
        return i
    for i, (name, ck) in enumerate(zip(names, inputs, strict=True)):
        if str(which) == name or os.path.realpath(str(which)) == str(ck.path):
            return i
    raise ConfigError(f"--copy-tokenizer-from {which}: not one of the inputs ({', '.join(names)})")

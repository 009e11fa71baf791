"""The merge pre-flight: everything that can be checked from config.json, indexes and headers.

`plan(recipe)` opens every input (no tensor data read), checks that they can be merged — same tensor
names, shapes, float dtypes, architecture, vocab size, tied embeddings — resolves every tensor's
coefficients from the recipe's schedule, and returns a `Plan`: the list of output tensors with their
sources, the bytes to read and write, an estimated time and the peak memory. `--dry-run` prints it.
The output's tokenizer and vocabulary (a tokenizer policy over different vocabularies) are planned by
merge/tokenizer_plan.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from wiseft.checkpoints import Checkpoint, TensorInfo
from wiseft.checkpoints.safetensors_format import TORCH_TO_ST, itemsize
from wiseft.errors import ConfigError, MergeError
from wiseft.merge import slices
from wiseft.merge import vocab as vocabs
from wiseft.merge.compat import (
    check_compatible,
    check_family,
    check_layer_range,
)
from wiseft.merge.compute import CHUNK
from wiseft.merge.methods import Method, TensorContext, get_method
from wiseft.merge.recipe import Recipe, layer_count
from wiseft.merge.select import TOTAL_CAP
from wiseft.merge.tensorwise import step_for
from wiseft.merge.tokenizer_plan import input_index, output_vocabulary, token_matrices, tokenizer_policy

IO_CHUNK = 1 << 22  # elements per read/write: 8 MiB of bf16 per input
# A per-tensor job's tensor whose inputs take at most this many bytes is read once and held in memory for
# all its passes (the driver's resident buffers); larger ones (embeddings) are read again in every pass.
RESIDENT_BYTES = 1 << 28

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
    inputs: tuple[int, ...] = ()  # the plan input of each source (empty: every input, in order)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def out_bytes(self) -> int:
        return self.numel * itemsize(self.out_dtype)

    def context(self, recipe: Recipe) -> TensorContext:
        has_base = recipe.base is not None
        n_models = len(self.sources) - has_base if self.inputs else len(recipe.models)
        return TensorContext(self.name, self.shape, n_models, has_base, recipe.seed or 0)


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
    out_config: dict | None = None  # the output's config.json when it is not the config input's (slices)
    vocabulary: str | None = None  # embeddings re-indexed to one vocabulary (merge/vocab.py): a summary
    new_tokens: tuple = ()  # tokens appended to the output tokenizer (merge/union.py), after its own
    first_new_id: int = 0  # the id of the first of them

    def sources_of(self, t: TensorPlan) -> tuple[Checkpoint, ...]:
        """The checkpoint of each of `t`'s sources."""
        return tuple(self.inputs[i] for i in t.inputs) if t.inputs else self.inputs

    @property
    def n_sources(self) -> int:
        """The most sources any tensor has (the driver's buffers: one per source position)."""
        return max((len(t.sources) for t in self.tensors), default=len(self.inputs))

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
        masks, sorted terms), at most TOTAL_CAP gathered int64 keys for exact top-k selection, and the
        resident buffers that hold a tensor's inputs across its passes (`resident_sizes`)."""
        n = self.n_sources
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
            total += 8 * chunk * (5 * n + 12) + 8 * TOTAL_CAP + sum(self.resident_sizes)
        return total

    def holds_resident(self, t: TensorPlan) -> bool:
        """Whether the driver reads tensor `t` once for all the passes of its job (RESIDENT_BYTES)."""
        return (
            self.method.job is not None
            and t.kind == "merge"
            and sum(s.nbytes for s in t.sources) <= RESIDENT_BYTES
        )

    @property
    def resident_sizes(self) -> list[int]:
        """Bytes of the resident buffer of each source position: the most over the tensors held."""
        held = [t for t in self.tensors if self.holds_resident(t)]
        return [
            max((t.sources[i].nbytes for t in held if i < len(t.sources)), default=0)
            for i in range(self.n_sources)
        ]

    def _max_itemsize(self, i: int) -> int:
        """Bytes per element of source position `i`, the most over the tensors."""
        sizes = (t.sources[i].nbytes // max(t.numel, 1) for t in self.tensors if i < len(t.sources))
        return max(sizes, default=1)

    @property
    def peak_memory_bytes(self) -> int:
        return PROCESS_BASE_BYTES + self.buffer_bytes

    @property
    def estimated_seconds(self) -> float:
        io = self.bytes_read / READ_RATE + self.bytes_written / WRITE_RATE
        compute = self.n_elements * COMPUTE_NS_PER_ELEMENT * 1e-9
        return STARTUP_S + max(io, compute)


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
    tokenizer_from = tokenizer_policy(recipe, tokenizer_from)
    names = ([recipe.base] if recipe.base else []) + list(recipe.models)
    inputs, warnings = _open_inputs(names)
    out_st = _st_dtype(out_dtype)
    vocab = output_vocabulary(tokenizer_from, names, inputs, recipe)
    tensors, out_config, float_names = _resolve_tensors(recipe, method, inputs, out_st, vocab)
    warnings += recipe.unmatched(float_names, str(inputs[0].path))
    if recipe.fishers is not None:
        inputs, tensors = _with_fishers(recipe, method, inputs, tensors)
    if tokenizer_from == "union" or vocab is not None:  # a union of equal vocabularies: the first input's
        tokenizer_from = vocab.source if vocab is not None else 0
    config_from = _config_from(method)
    return Plan(
        recipe=recipe,
        method=method,
        inputs=inputs,
        tensors=tuple(tensors),
        out_dtype=out_st,
        config_from=config_from,
        tokenizer_from=config_from if tokenizer_from is None else input_index(tokenizer_from, names, inputs),
        dropped=_dropped(inputs),
        warnings=tuple(warnings),
        chunk=chunk,
        io_chunk=max(chunk, io_chunk or IO_CHUNK),
        out_config=out_config,
        vocabulary=vocabs.describe(vocab, [ck.name for ck in inputs]) if vocab is not None else None,
        new_tokens=vocab.new if vocab is not None else (),
        first_new_id=len(vocab.tokens) - len(vocab.new) if vocab is not None else 0,
    )


def _st_dtype(out_dtype: str | torch.dtype | None) -> str | None:
    """The safetensors name of the output dtype (None: each tensor keeps its input's)."""
    if out_dtype is None:
        return None
    return TORCH_TO_ST[out_dtype if isinstance(out_dtype, torch.dtype) else parse_dtype(out_dtype)]


def _config_from(method: Method) -> int:
    """The input whose config (and, by default, tokenizer) the output takes: the "final" model, FINAL for
    wise-ft, the base for task arithmetic, the first model for linear."""
    return 1 if method.name == "wise-ft" else 0


def _dropped(inputs: Sequence[Checkpoint]) -> tuple[str, ...]:
    """Tensors the output leaves out: an lm_head tied to the embeddings in the reference model."""
    if inputs[0].tied_embeddings and any("lm_head.weight" in ck.tensors for ck in inputs):
        return ("lm_head.weight",)
    return ()


def _resolve_tensors(
    recipe: Recipe, method: Method, inputs, out_st: str | None, vocab: vocabs.Vocabulary | None
) -> tuple[list[TensorPlan], dict | None, list[str]]:
    """(every output tensor's plan, the output config when it differs from the config input's, the names
    of the floating-point tensors the recipe's filters apply to): by layer slices, or whole tensors
    (token matrices re-indexed to `vocab` when the vocabularies differ)."""
    if recipe.slices is not None and not _whole(recipe, inputs):
        return _sliced_tensors(recipe, method, inputs, out_st, vocab)
    ref = inputs[0]
    remapped = token_matrices(inputs) if vocab is not None else frozenset()
    tensor_names = check_compatible(inputs, remapped)
    check_layer_range(recipe, tensor_names, ref)
    float_names = [n for n in tensor_names if ref.tensors[n].is_float]
    tensors = _whole_tensors(recipe, method, inputs, tensor_names, out_st, remapped, vocab)
    out_config = None
    if vocab is not None:
        out_config = {**inputs[_config_from(method)].config, "vocab_size": vocab.size}
    return tensors, out_config, float_names


def _open_inputs(names: list[str]) -> tuple[tuple[Checkpoint, ...], list[str]]:
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
    return inputs, warnings


def _whole_tensors(recipe, method, inputs, tensor_names, out_st, remapped, vocab) -> list[TensorPlan]:
    """Every tensor of the inputs, merged as a whole (no slices); token matrices re-indexed to `vocab`."""
    n_layers = layer_count(tensor_names, inputs[0].config)
    tensors = []
    for name in tensor_names:
        sources = tuple(ck.tensors[name] for ck in inputs)
        if name in remapped:
            sources = tuple(vocabs.RowMap(i, sources, vocab) for i in range(len(inputs)))
        piece = 0 if recipe.slices is not None else None  # one slice covering every layer
        coeffs, rule = (
            recipe.coefficients(name, n_layers, slice_index=piece) if sources[0].is_float else ((), "copy")
        )
        tensors.append(_tensor(name, sources, inputs, (), coeffs, rule, out_st, method, recipe))
    return tensors


def _tensor(name, sources, cks, idx, coeffs, rule, out_st, method, recipe) -> TensorPlan:
    """One output tensor: an integer/bool tensor is copied; a float one gets its output dtype and
    checked coefficients."""
    if not sources[0].is_float:
        return TensorPlan(name, sources[0].shape, sources[0].dtype, "copy", (), "copy", sources, idx)
    dtypes = {s.dtype for s in sources}
    if out_st is not None:
        dtype = out_st
    elif len(dtypes) == 1:
        dtype = sources[0].dtype
    else:
        detail = ", ".join(f"{s.dtype} in {ck.path}" for s, ck in zip(sources, cks, strict=True))
        raise MergeError(f"tensor {name} has different dtypes ({detail}); choose the output with --dtype")
    problem = method.check(coeffs, recipe.extrapolate)
    if problem:
        raise ConfigError(f"tensor {name} ({rule}): {problem}")
    return TensorPlan(name, sources[0].shape, dtype, "merge", coeffs, rule, sources, idx)


# --- Fisher merging (merge/methods/fisher.py) -----------------------------------------------------------

FISHER_INFO = "fisher.json"


def _with_fishers(recipe, method, inputs, tensors) -> tuple[tuple[Checkpoint, ...], list[TensorPlan]]:
    """The models' Fishers become inputs N..2N−1; every merged tensor gets its models' Fishers as sources
    (copied tensors keep the models only), and with normalize_fishers each Fisher's norm."""
    n = len(inputs)
    fishers = tuple(Checkpoint.open(f) for f in recipe.fishers)
    norms = [_fisher_norm(f) for f in fishers]
    out = []
    for t in tensors:
        if t.kind != "merge":
            out.append(dataclasses.replace(t, inputs=tuple(range(n))))
            continue
        extra = []
        for f, model in zip(fishers, inputs, strict=True):
            info = f.tensors.get(t.name)
            if info is None or info.shape != t.shape or not info.is_float:
                what = "has no tensor" if info is None else f"has {info.dtype} {list(info.shape)} for"
                raise MergeError(
                    f"Fisher {f.path} {what} {t.name} ({list(t.shape)} in {model.path}); compute it for that "
                    "model with wiseft fisher"
                )
            extra.append(info)
        coeffs = t.coeffs
        if method.unpack(coeffs, n).normalize_fishers:
            coeffs = tuple(
                norms[i] if name == "fisher_norm" else v
                for (name, i), v in zip(method.layout(n), coeffs, strict=True)
            )
        sources = t.sources + tuple(extra)
        out.append(dataclasses.replace(t, sources=sources, inputs=tuple(range(2 * n)), coeffs=coeffs))
    return inputs + fishers, out


def _fisher_norm(ck: Checkpoint) -> float:
    info = ck.path / FISHER_INFO
    if not info.is_file():
        raise MergeError(
            f"{ck.path} is not a Fisher directory (no {FISHER_INFO}); compute it with wiseft fisher"
        )
    try:
        norm = float(json.loads(info.read_text())["norm"])
    except (ValueError, KeyError, TypeError) as exc:
        raise MergeError(f"{info}: expected a JSON object with a numeric norm ({exc})") from exc
    if not norm > 0.0 or not math.isfinite(norm):
        raise MergeError(f"{info}: norm {norm} must be a positive number")
    return norm


# --- layer slices (merge/slices.py) ---------------------------------------------------------------------


def _input_of(recipe: Recipe):
    """(slice k, source j) -> plan input index."""
    offset = 1 if recipe.base else 0
    if recipe.method == "passthrough":
        return lambda k, j: offset + recipe.models.index(recipe.slices[k][j].model)
    return lambda k, j: j  # each slice's sources are in input order (base first)


def _whole(recipe: Recipe, inputs) -> bool:
    """A sliced recipe whose one slice covers every layer of every input is a plain merge."""
    n_layers = [layer_count(list(ck.tensors), ck.config) for ck in inputs]
    input_of = _input_of(recipe)
    slices.check_ranges(recipe.slices, n_layers, input_of)
    return slices.is_identity(recipe.slices, n_layers, input_of)


def _sliced_tensors(recipe, method, inputs, out_st, vocab) -> tuple[list[TensorPlan], dict, list[str]]:
    """The output tensors of layer slices; with a tokenizer policy the token matrices (outside the
    layers) are re-indexed to `vocab`, their default rows from the slice's sources (as mergekit)."""
    check_family(inputs, vocab=vocab is None)
    input_of = _input_of(recipe)
    outs, layer_sources = slices.layout(
        recipe.slices, inputs, input_of, recipe.schedule, inputs[0].tied_embeddings
    )
    remapped = token_matrices(inputs) if vocab is not None else frozenset()
    n_out = len(layer_sources)
    tensors = []
    for o in outs:
        idx = tuple(i for i, _ in o.sources)
        sources = tuple(inputs[i].tensors[name] for i, name in o.sources)
        cks = tuple(inputs[i] for i in idx)
        if o.name in remapped:
            sources = _remapped_sources(o, inputs, vocab)
        _check_slice_sources(o, sources, cks)
        coeffs, rule = (), "copy"
        if sources[0].is_float:
            coeffs, rule = recipe.coefficients(o.name, n_out, t=o.t, slice_index=o.slice_index)
            if method.name == "passthrough":
                coeffs = _narrow(method, coeffs, len(recipe.models), idx[0] - (1 if recipe.base else 0))
        tensors.append(_tensor(o.name, sources, cks, idx, coeffs, rule, out_st, method, recipe))
    config_input = inputs[input_of(0, 0)] if method.name == "passthrough" else inputs[0]
    out_config = slices.output_config(config_input.config, n_out, layer_sources)
    if vocab is not None:
        out_config["vocab_size"] = vocab.size
    return tensors, out_config, [t.name for t in tensors if t.kind == "merge"]


def _remapped_sources(o: slices.OutTensor, inputs, vocab: vocabs.Vocabulary) -> tuple[vocabs.RowMap, ...]:
    """A token matrix of a slice re-indexed to `vocab`, per source, defaults from the slice's inputs."""
    idx = tuple(i for i, _ in o.sources)
    names = [ck.name for ck in inputs]
    own = vocab.among(idx, o.name, names)
    infos = tuple(ck.tensors[o.name] for ck in inputs)
    return tuple(vocabs.RowMap(i, infos, own) for i in idx)


def _check_slice_sources(o, sources, cks) -> None:
    for src, ck in zip(sources[1:], cks[1:], strict=True):
        if src.shape != sources[0].shape or src.is_float != sources[0].is_float:
            raise MergeError(
                f"tensor {o.name}: {sources[0].name} of {cks[0].path} is {sources[0].dtype} "
                f"{list(sources[0].shape)} but {src.name} of {ck.path} is {src.dtype} {list(src.shape)}"
            )


def _narrow(method, coeffs: tuple[float, ...], n: int, model: int) -> tuple[float, ...]:
    """The coefficient slots of one model (global slots kept): a passthrough tensor has one source."""
    return tuple(v for (_, i), v in zip(method.layout(n), coeffs, strict=True) if i is None or i == model)

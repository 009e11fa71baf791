"""The weight space: anchors held once in memory, any mix materialised in place into a live model.

A sweep evaluates many mixes of the same checkpoints. Writing a checkpoint per mix (or reloading one) costs
seconds of I/O and gigabytes of allocation each time; here the anchors are read once, and each variant is
computed straight into the model's existing parameter storage with the very kernels `wiseft merge` uses
(`wiseft.merge.compute.combine_into`), so a variant is bit-identical to the checkpoint `wiseft merge` would
write for the same recipe and output dtype (the model's dtype). A switch allocates nothing (one reusable
float64 scratch of a few MiB) and reads nothing from disk.

Usage (the API the sweep codes against)::

    ws = WeightSpace.load([early_dir, final_dir])          # builds the model from FINAL's config
    ws.set_delta(0.25)          # θ = 0.25·early + 0.75·final, written into ws.model's parameters
    sample(ws.model, ...)       # ws.model is an ordinary transformers model (eval mode)
    ws.apply(0.5)               # a float is δ (two anchors)
    ws.apply([0.2, 0.3, 0.5])   # a sequence is linear weights (or task-arithmetic λ when base= was given)
    ws.apply(recipe)            # any wiseft.merge.Recipe, schedules included (its models are not re-read)
    ws.apply(recipe.with_parameter("density", 0.3))   # any method (ties, slerp, dare_*, …), any parameter

    ws = WeightSpace.load([early, final], model=my_model)   # or reuse a model you already built
    ws = WeightSpace.load([m1, m2], base=base_dir)          # task arithmetic: apply([λ1, λ2])
    ws = WeightSpace.from_recipe(recipe)    # the recipe's anchors, base and tokenizer policy; holds its variant
    ws = WeightSpace.load([a, b], tokenizer_from="union")   # inputs whose vocabularies differ (below)

`load(anchors, model=None, device="cpu", dtype=None, base=None, tokenizer_from=None, …)`: anchors are
model directories or Hub names (the same inputs as `wiseft merge`; for two anchors the order is EARLY,
FINAL as in DESIGN §4).
`dtype` is the model's dtype when `model` is None (default: float32 on CPU, bfloat16 on CUDA); the
anchors stay in their stored dtype on `device`. `ws.variant` is the recipe last applied.
Methods that need a whole tensor (slerp's angle, TIES's top-k, …) run their per-tensor job on each
parameter, one parameter per worker, with the same chunking rules as `wiseft merge`, so the bits are the
same. What a job's observation passes found (norms and inner products, top-k thresholds) is kept per
parameter and reused by later variants that need the same statistics: a grid over slerp's t or TIES's λ
computes the angles or thresholds once; a grid over TIES's density finds each density's thresholds once.

Inputs whose vocabularies differ need a tokenizer policy (`tokenizer_from`, and a recipe's
`tokenizer_tokens`/`pad_to_multiple_of`), as for `wiseft merge`: the token matrices (embeddings, an untied
lm_head) of every input are re-indexed to the output vocabulary once, at load, by the very `RowMap`s the
merge plan builds (merge/vocab.py), so a variant is bit-identical to the merged checkpoint and a switch
costs what it costs without a policy. The model (when `model` is None) is the config input's with its
token matrices resized to the output vocabulary; a recipe applied later must have the same policy.

Errors: CheckpointError/MergeError (anchors incompatible with each other or with `model`, or holding
nan/inf), ConfigError (bad coefficients, e.g. δ outside [0, 1] without extrapolate=True). Coefficients are
validated exactly as `wiseft merge` validates them; tensors not among the model's parameters (e.g. a
stored lm_head of a tied model) are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wiseft.checkpoints import Checkpoint, load_causal_lm
from wiseft.checkpoints.safetensors_format import DTYPES
from wiseft.errors import ConfigError, MergeError
from wiseft.merge import fused
from wiseft.merge.compat import check_compatible
from wiseft.merge.compute import (
    CHUNK,
    Scratch,
    all_finite,
    combine_float32,
    combine_into,
    exact_in_float32,
    magnitude_range,
)
from wiseft.merge.driver import tokenizer_files
from wiseft.merge.methods import TensorContext, get_method
from wiseft.merge.plan import parse_dtype, plan
from wiseft.merge.recipe import Recipe, layer_count
from wiseft.merge.tensorwise import run_job
from wiseft.merge.vocab import RowMap

PIECE = 1 << 22  # elements per work item handed to a worker


@dataclass(frozen=True)
class Reindexed:
    """Token matrices re-indexed to one output vocabulary (a tokenizer policy): per tensor name, the
    merge plan's RowMap of each input (base first), the checkpoints they read, the output's vocab_size,
    and the policy (tokenizer_from, tokenizer_tokens, pad_to_multiple_of) a variant must repeat."""

    sources: Mapping[str, tuple[RowMap, ...]]
    inputs: tuple[Checkpoint, ...]
    vocab_size: int
    policy: tuple
    config_input: Path | None = None  # the input whose config.json the merged output takes

    def write_tokenizer(self, directory: str | os.PathLike) -> None:
        """The output vocabulary's tokenizer files (as `wiseft merge` writes them) into `directory`."""
        vocab = next(iter(self.sources.values()))[0].vocab
        os.makedirs(directory, exist_ok=True)
        first = len(vocab.tokens) - len(vocab.new)
        tokenizer_files(self.inputs[vocab.source].path, Path(directory), vocab.new, first)

    def load(self, name: str, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Every input's tensor `name` re-indexed (flat), read once."""
        flats = []
        for src in self.sources[name]:
            raw = torch.empty(src.nbytes, dtype=torch.uint8)
            src.read_into(self.inputs, memoryview(raw.numpy()), 0)
            flats.append(raw.view(DTYPES[src.dtype]).to(device))
        return tuple(flats)


def policy_of(recipe: Recipe) -> tuple:
    """What a recipe says about the output vocabulary (compared between the space and a variant)."""
    return (recipe.tokenizer_from, recipe.tokenizer_tokens or (), recipe.pad_to_multiple_of)


def reindexes(recipe: Recipe) -> bool:
    """Whether `recipe` names a tokenizer policy (its token matrices may be re-indexed)."""
    return policy_of(recipe) != (None, (), None)


def reindexing(recipe: Recipe) -> Reindexed | None:
    """The re-indexed token matrices of `recipe`'s inputs under its tokenizer policy, from the merge
    pre-flight (no tensor data read); None when the inputs share one vocabulary and nothing is added."""
    p = plan(recipe)
    n = 1 + len(recipe.models) if recipe.base else len(recipe.models)
    sources = {t.name: t.sources[:n] for t in p.tensors if t.sources and isinstance(t.sources[0], RowMap)}
    if not sources:
        return None
    first = next(iter(sources.values()))[0]
    config_input = p.inputs[p.config_from].path
    return Reindexed(sources, p.inputs[:n], first.vocab.size, policy_of(recipe), config_input)


class WeightSpace:
    """Anchors in memory + one live model whose parameters are overwritten per variant."""

    def __init__(
        self,
        anchors: Sequence[Checkpoint],
        model: torch.nn.Module,
        device: str | torch.device = "cpu",
        base: Checkpoint | None = None,
        reindexed: Reindexed | None = None,
    ):
        self.anchors = tuple(anchors)
        self.base = base
        self.model = model
        self.device = torch.device(device)
        self.reindexed = reindexed
        inputs = ([base] if base is not None else []) + list(self.anchors)
        reference = base if base is not None else self.anchors[-1]
        names = check_compatible(inputs, frozenset(reindexed.sources) if reindexed else frozenset())
        self.n_layers = layer_count(names, reference.config)
        self._slots: list[tuple[str, torch.Tensor, tuple[torch.Tensor, ...]]] = []
        self._ranges: dict[int, tuple[tuple[float, float], ...]] = {}  # slot -> magnitude_range per input
        self._load_slots(inputs)
        largest = max((p.numel() for _, p, _ in self._slots), default=1)
        size = min(CHUNK if self.device.type == "cpu" else 1 << 24, largest)
        # On CPU, one worker (with its own scratch) per torch thread, each running single-threaded torch
        # ops on its share of the parameters: torch's own threads spin on chunk-sized ops, and under load
        # that made a switch several times slower. On CUDA the device parallelises; one stream suffices.
        workers = torch.get_num_threads() if self.device.type == "cpu" else 1
        self._scratches = [Scratch(size, self.device) for _ in range(max(1, workers))]
        self._pool = ThreadPoolExecutor(len(self._scratches)) if len(self._scratches) > 1 else None
        self._stats: list[dict] = [{} for _ in self._slots]  # per slot: job statistics by cache key
        self.variant: Recipe | None = None

    # --- construction --------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        anchors: Sequence[str | os.PathLike],
        model: torch.nn.Module | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        base: str | os.PathLike | None = None,
        tokenizer_from: str | int | None = None,
        tokenizer_tokens: Any = None,
        pad_to_multiple_of: int | None = None,
    ) -> WeightSpace:
        """Read the anchors once and (when `model` is None) build the model from the final anchor (the
        base when given); `tokenizer_from`, `tokenizer_tokens`, `pad_to_multiple_of`: the tokenizer
        policy (a recipe's keys of those names) when the vocabularies differ."""
        if not anchors:
            raise ConfigError("WeightSpace needs at least one anchor model")
        reindexed = None
        if tokenizer_from is not None or tokenizer_tokens or pad_to_multiple_of is not None:
            models = tuple(str(a) for a in anchors)
            method = "task_arithmetic" if base is not None else "linear"
            weights = (1.0,) * len(models) if base is not None else None
            policy = Recipe(method, models, None if base is None else str(base), weights=weights,
                            tokenizer_from=tokenizer_from, tokenizer_tokens=tokenizer_tokens,
                            pad_to_multiple_of=pad_to_multiple_of)  # fmt: skip
            reindexed = reindexing(policy)
        return cls._open(anchors, base, model, device, dtype, reindexed)

    @classmethod
    def from_recipe(
        cls,
        recipe: Recipe,
        model: torch.nn.Module | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        apply: bool = True,
    ) -> WeightSpace:
        """The weight space of `recipe`'s models and base, under its tokenizer policy, holding its
        variant (later variants: `apply(recipe.with_parameter(...))`); `apply=False`: no variant yet (a
        given `model` must already have the output vocabulary's rows)."""
        if not recipe.models:
            raise ConfigError("WeightSpace needs at least one anchor model")
        space = cls._open(recipe.models, recipe.base, model, device, dtype, reindexing(recipe))
        if apply:
            space.apply(recipe)
        return space

    @classmethod
    def _open(cls, anchors, base, model, device, dtype, reindexed: Reindexed | None) -> WeightSpace:
        checkpoints = [Checkpoint.open(a) for a in anchors]
        base_ckpt = Checkpoint.open(base) if base is not None else None
        device = torch.device(device)
        if model is None:
            if dtype is None:
                dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
            source = base_ckpt if base_ckpt is not None else checkpoints[-1]
            model = load_causal_lm(source.path, _dtype(dtype))
            if reindexed is not None:  # rows of the output vocabulary (the values come with a variant)
                model.resize_token_embeddings(reindexed.vocab_size, mean_resizing=False)
            model.to(device)
        model.eval()
        return cls(checkpoints, model, device, base_ckpt, reindexed)

    def _load_slots(self, inputs: list[Checkpoint]) -> None:
        names = dict(inputs[0].tensors)
        remapped = self.reindexed.sources if self.reindexed is not None else {}
        names.update({n: sources[0] for n, sources in remapped.items()})  # the output vocabulary's rows
        for pname, param in self.model.named_parameters():
            if pname not in names:
                raise MergeError(
                    f"model parameter {pname!r} is not in the anchor {inputs[0].path}; the model and the "
                    "anchors are different architectures"
                )
            if tuple(param.shape) != names[pname].shape:
                raise MergeError(
                    f"model parameter {pname!r} has shape {list(param.shape)} but the anchors store "
                    f"{list(names[pname].shape)}; the model does not match the anchors"
                )
            if not param.is_contiguous():
                raise MergeError(
                    f"model parameter {pname!r} is not contiguous; call .contiguous() on the model first"
                )
            if not param.dtype.is_floating_point:
                raise MergeError(
                    f"model parameter {pname!r} is {param.dtype}; only float parameters can be mixed"
                )
            if pname in remapped:
                flats = self.reindexed.load(pname, self.device)
            else:
                flats = tuple(ck.load(pname).reshape(-1).to(self.device) for ck in inputs)
            for ck, flat in zip(inputs, flats, strict=True):
                if not all_finite(flat):
                    raise MergeError(f"tensor {pname} of {ck.path} contains non-finite values (nan/inf)")
            self._slots.append((pname, param, flats))

    def write_tokenizer(self, directory: str | os.PathLike) -> None:
        """The tokenizer of the variants' vocabulary into `directory` (what a sampler must encode prompts
        with when the token matrices were re-indexed; a union adds tokens no input's tokenizer has)."""
        if self.reindexed is None:
            raise ConfigError("this weight space keeps its inputs' vocabulary; use the anchors' tokenizer")
        self.reindexed.write_tokenizer(directory)

    def anchor_tensors(self) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
        """(parameter name, its flat anchor tensors in anchor order) for every mixed parameter; read-only
        views of what the weight space holds (benchmarks compare a switch with a plain pass over these)."""
        return [(name, flats) for name, _, flats in self._slots]

    # --- variants ------------------------------------------------------------------------------------
    def set_delta(self, delta: float, extrapolate: bool = False) -> None:
        """θ = δ·early + (1−δ)·final (two anchors; DESIGN §4)."""
        if len(self.anchors) != 2 or self.base is not None:
            raise ConfigError(f"set_delta needs exactly two anchors (EARLY, FINAL), have {len(self.anchors)}")
        self.apply(self._recipe("wise-ft", delta=float(delta), extrapolate=extrapolate))

    def apply(self, variant: float | Sequence[float] | Recipe, extrapolate: bool = False) -> None:
        """Materialise `variant` into the model's parameters (see the module docstring)."""
        if isinstance(variant, Recipe):
            recipe = variant
        elif isinstance(variant, (int, float)) and not isinstance(variant, bool):
            return self.set_delta(float(variant), extrapolate)
        elif isinstance(variant, Sequence):
            method = "task_arithmetic" if self.base is not None else "linear"
            recipe = self._recipe(method, weights=tuple(float(w) for w in variant), extrapolate=extrapolate)
        else:
            raise ConfigError(f"cannot apply {variant!r}: give δ (float), weights (list) or a Recipe")
        method = get_method(recipe.method)
        self._check_fits(recipe, method)
        if method.job is not None and self.device.type != "cpu":
            raise ConfigError(
                f"method {method.name} needs whole-tensor statistics, which WeightSpace computes on CPU only "
                "for now; load the weight space with device='cpu' (or use wise-ft, linear, task_arithmetic)"
            )
        recipe.unmatched([name for name, _, _ in self._slots], "the weight space's model")
        piece = self._slice_of(recipe)
        resolved = [
            (recipe.coefficients(name, self.n_layers, slice_index=piece), param, flats)
            for name, param, flats in self._slots
        ]
        for ((coeffs, source), _, _), (name, _, _) in zip(resolved, self._slots, strict=True):
            problem = method.check(coeffs, recipe.extrapolate)
            if problem:
                raise ConfigError(f"tensor {name} ({source}): {problem}")
        pieces = []  # work items for the workers: elementwise slices of ≤ PIECE elements, or whole-tensor jobs
        for i, ((coeffs, _), param, flats) in enumerate(resolved):
            out = param.data.view(-1)
            if method.job is not None:
                ctx = TensorContext(
                    self._slots[i][0],
                    tuple(param.shape),
                    len(self.anchors),
                    self.base is not None,
                    recipe.seed or 0,
                )
                pieces.append((out, list(flats), coeffs, ("job", method.job(ctx, coeffs), self._stats[i])))
                continue
            kernel = self._kernel_for(i, method, coeffs, out.dtype)
            for start in range(0, out.numel(), PIECE):
                end = min(start + PIECE, out.numel())
                pieces.append((out[start:end], [f[start:end] for f in flats], coeffs, kernel))
        self._run_pieces(pieces, method)
        self.variant = recipe

    def _slice_of(self, recipe: Recipe) -> int | None:
        """0 for a recipe with one slice over every layer (mergekit's usual slerp file); layer slices that
        select or stack layers change the model's shape, which a weight space cannot."""
        if recipe.slices is None:
            return None
        whole = len(recipe.slices) == 1 and all(
            s.start == 0 and s.end == self.n_layers for s in recipe.slices[0]
        )
        if not whole or recipe.method == "passthrough":
            raise ConfigError(
                "recipe slices select or stack layers, which changes the model's shape; merge it with "
                "wiseft merge and evaluate the output instead of sweeping it in memory"
            )
        return 0

    def _check_fits(self, recipe: Recipe, method) -> None:
        self._check_policy(recipe)
        has_base = self.base is not None
        fits = method.needs_base == "optional" or bool(method.needs_base) == has_base
        if len(recipe.models) != len(self.anchors) or (recipe.base is not None) != has_base or not fits:
            raise ConfigError(
                f"recipe ({recipe.method}, {len(recipe.models)} model(s){', with base' if recipe.base else ''}) "
                f"does not fit this weight space ({len(self.anchors)} anchor(s){', with base' if has_base else ''})"
            )

    def _check_policy(self, recipe: Recipe) -> None:
        """A variant's tokenizer policy must be the one the token matrices were re-indexed for."""
        want = policy_of(recipe)
        if self.reindexed is None:
            if recipe.tokenizer_tokens or recipe.pad_to_multiple_of is not None:
                raise ConfigError(
                    "recipe tokenizer_tokens / pad_to_multiple_of re-index the embeddings; load the weight space "
                    "with that recipe (WeightSpace.from_recipe) instead of applying it to this one"
                )
            return
        if want != self.reindexed.policy:
            raise ConfigError(
                f"recipe tokenizer policy (tokenizer_from {want[0]!r}, {len(want[1])} tokenizer_tokens, "
                f"pad_to_multiple_of {want[2]}) is not the weight space's (tokenizer_from "
                f"{self.reindexed.policy[0]!r}); load a weight space for that policy (WeightSpace.from_recipe)"
            )

    def _run_pieces(self, pieces, method) -> None:
        if self._pool is None:
            _run(pieces, method, self._scratches[0])
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            n = len(self._scratches)
            jobs = [self._pool.submit(_run, pieces[i::n], method, self._scratches[i]) for i in range(n)]
            for job in jobs:
                job.result()
        finally:
            torch.set_num_threads(threads)

    def _kernel_for(self, slot: int, method, coeffs, out_dtype) -> str:
        """Which kernel mixes slot `slot`; all three give the same bits as `wiseft merge`:
        "fused" (one compiled float64 pass, merge/fused.py; needs numba), "float32" (few-bit weights
        such as δ = k/8, merge/compute.py) or "float64" (the torch kernel every method has), fastest
        first (bench/RESULTS.md)."""
        if out_dtype != torch.float32 or method.weights is None:
            return "float64"
        _, _, flats = self._slots[slot]
        weights = method.weights(coeffs)
        if fused.supports(flats, weights, out_dtype):
            return "fused"
        if slot not in self._ranges:  # measured once, on first need
            self._ranges[slot] = tuple(magnitude_range(f) for f in flats)
        if exact_in_float32(weights, [f.dtype for f in flats], self._ranges[slot]):
            return "float32"
        return "float64"

    def _recipe(self, method: str, **kwargs: Any) -> Recipe:
        models = tuple(str(a.path) for a in self.anchors)
        base = str(self.base.path) if self.base is not None else None
        if self.reindexed is not None:
            tokenizer_from, tokens, pad = self.reindexed.policy
            kwargs.update(tokenizer_from=tokenizer_from, tokenizer_tokens=tokens, pad_to_multiple_of=pad)
        return Recipe(method=method, models=models, base=base, **kwargs)


def _run(pieces, method, scratch: Scratch) -> None:
    with torch.no_grad():
        for out, xs, coeffs, kernel in pieces:
            if isinstance(kernel, tuple):  # ("job", job, statistics cache of the slot)
                _, job, cache = kernel
                run_job(out, xs, job, scratch, cache)
            elif kernel == "float32":
                combine_float32(out, xs, method.weights(coeffs))
            elif kernel == "fused":
                fused.combine(out, xs, method.weights(coeffs))
            else:
                combine_into(out, xs, method, coeffs, scratch)


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    return dtype if isinstance(dtype, torch.dtype) else parse_dtype(dtype)

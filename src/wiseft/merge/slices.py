"""Layer slices: output layers taken from layer ranges of the inputs (mergekit's `slices:`).

A recipe's `slices` is a list of output slices, each with `sources`: `{model: NAME, layer_range: [a, b]}`
(layers a … b−1 of that model; every source of a slice spans the same number of layers). The output has
the slices' layers one after another, renumbered from 0. With `passthrough` each slice has one source
(stacking layers of several models, "frankenmerges"); with any other method each slice lists every input
(the base too, for methods over a base; a slice that leaves the base out takes the base's layers at its
first source's range) and its layers are merged layer by layer, offset by each source's start.

As mergekit plans it: tensors before the layers (the embeddings) come from the first slice's sources,
tensors after them (final norm, lm_head) from the last slice's, each with that slice's rules; a gradient is
evaluated per slice, layer o of a slice of m layers at t = o/(m−1) (m = 1: t = 1 with mergekit's
schedule, 0 with ours); tensors outside the layers are placed as `merge.schedule.layer_position` says. The
output config gets the new layer count (`num_hidden_layers`, GPT-2's `n_layer`) and per-layer lists
(`layer_types`) taken from the source layers. Rules (regex `match`, `filter`) see output tensor names; a
rule's `slice: k` limits it to the tensors of output slice k.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wiseft.errors import ConfigError, MergeError
from wiseft.merge.schedule import EMBEDDING, LAYER, layer_count

SLICE_KEYS = ("sources",)
SOURCE_KEYS = ("model", "layer_range")


@dataclass(frozen=True)
class Source:
    model: str
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class OutTensor:
    """An output tensor of a sliced merge: its name, (input index, tensor name) per source, its slice
    and where gradients are evaluated for it (None: `layer_position` of the name)."""

    name: str
    sources: tuple[tuple[int, str], ...]
    slice_index: int
    t: float | None


def slice_models(raw: Any, base: str | None) -> tuple[str, ...]:
    """The distinct models the slices name, in order of first appearance (the base left out)."""
    names: list[str] = []
    for piece in raw if isinstance(raw, (list, tuple)) else ():
        sources = piece if isinstance(piece, tuple) else (piece or {}).get("sources") or ()
        for src in sources:
            name = src.model if isinstance(src, Source) else (src or {}).get("model")
            if isinstance(name, str) and name != base and name not in names:
                names.append(name)
    return tuple(names)


def parse_slices(raw: Any, method, models: Sequence[str], base: str | None) -> tuple | None:
    """The validated slices (tuples of Source; for a method other than passthrough each slice's sources in
    input order: base first, then `models`)."""
    if raw is None:
        if method.name == "passthrough" and len(models) != 1:
            raise ConfigError(
                f"passthrough takes one model, or slices naming a model per layer range; got {len(models)} models"
            )
        return None
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError(f"slices {raw!r}: expected a list of {{sources: [{{model, layer_range}}]}}")
    inputs = ([base] if base else []) + list(models)
    return tuple(_slice(piece, k, method, inputs, base) for k, piece in enumerate(raw))


def _slice(piece: Any, k: int, method, inputs: list[str], base: str | None) -> tuple[Source, ...]:
    where = f"slices[{k}]"
    if not isinstance(piece, tuple):
        if not isinstance(piece, dict):
            raise ConfigError(f"{where}: expected {{sources: [{{model, layer_range}}]}}, got {piece!r}")
        for key in piece:
            if key not in SLICE_KEYS:
                raise _unknown(key, SLICE_KEYS, where)
        raw_sources = piece.get("sources")
        if not isinstance(raw_sources, list) or not raw_sources:
            raise ConfigError(f"{where}: sources must be a non-empty list of {{model, layer_range}}")
        piece = tuple(_source(s, f"{where}.sources[{j}]") for j, s in enumerate(raw_sources))
    if len({s.length for s in piece}) != 1:
        spans = ", ".join(f"{s.model} [{s.start}, {s.end}]" for s in piece)
        raise ConfigError(f"{where}: every source must span the same number of layers ({spans})")
    if method.name == "passthrough":
        if len(piece) != 1:
            raise ConfigError(f"{where}: passthrough takes one source per slice, got {len(piece)}")
        if piece[0].model not in inputs:
            raise ConfigError(
                f"{where}: model {piece[0].model} is not one of the models ({', '.join(inputs)})"
            )
        return piece
    names = [s.model for s in piece]
    if base is not None and base not in names:  # the base at the slice's (first source's) layers
        piece = (Source(base, piece[0].start, piece[0].end), *piece)
        names.insert(0, base)
    if sorted(names) != sorted(inputs):
        raise ConfigError(
            f"{where}: {method.name} merges every input layer by layer, so each slice lists each of "
            f"{', '.join(inputs)} once (got {', '.join(names)})"
        )
    return tuple(sorted(piece, key=lambda s: inputs.index(s.model)))


def _source(raw: Any, where: str) -> Source:
    if isinstance(raw, Source):
        return raw
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), str):
        raise ConfigError(f"{where}: expected {{model: NAME, layer_range: [start, end]}}, got {raw!r}")
    for key in raw:
        if key not in SOURCE_KEYS:
            raise _unknown(key, SOURCE_KEYS, where)
    span = raw.get("layer_range")
    ok = isinstance(span, (list, tuple)) and len(span) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in span) and 0 <= span[0] < span[1]
    if not ok:
        raise ConfigError(f"{where}: layer_range {span!r} must be [start, end] with 0 <= start < end")
    return Source(raw["model"], int(span[0]), int(span[1]))


def slices_to_data(slices: tuple) -> list[dict]:
    return [
        {"sources": [{"model": s.model, "layer_range": [s.start, s.end]} for s in piece]} for piece in slices
    ]


def _unknown(key: str, known: tuple[str, ...], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint} (known: {', '.join(known)})")


# --- the plan side: output tensors of a sliced merge ----------------------------------------------------


def with_layer(name: str, layer: int) -> str:
    """`name` with its layer index replaced (`model.layers.3.mlp…` → `model.layers.{layer}.mlp…`)."""
    m = LAYER.search(name)
    return name[: m.start(1)] + str(layer) + name[m.end(1) :]


def is_identity(slices: tuple, n_layers: Sequence[int], input_of) -> bool:
    """One slice covering every layer of every source: the plain merge of whole models."""
    return len(slices) == 1 and all(
        s.start == 0 and s.end == n_layers[input_of(0, j)] for j, s in enumerate(slices[0])
    )


def check_ranges(slices: tuple, n_layers: Sequence[int], input_of) -> None:
    for k, piece in enumerate(slices):
        for j, s in enumerate(piece):
            n = n_layers[input_of(k, j)]
            if s.end > n:
                raise ConfigError(
                    f"slices[{k}].sources[{j}]: layer_range [{s.start}, {s.end}] of {s.model} does not exist: it "
                    f"has {n} layers (0..{n - 1})"
                )


def layout(slices: tuple, inputs, input_of, schedule: str, tied: bool) -> tuple[list[OutTensor], list]:
    """The output tensors of a sliced merge (pre, layers, post) and, per output layer, the config and
    layer index of its (first) source.

    `inputs`: the plan's checkpoints; `input_of(k, j)`: the input index of source j of slice k."""
    first = inputs[input_of(0, 0)]
    outside = [n for n in first.tensors if not LAYER.search(n) and not (tied and n == "lm_head.weight")]
    out: list[OutTensor] = []
    last = len(slices) - 1
    for name in outside:
        if EMBEDDING.search(name):
            out.append(_outside(name, slices, 0, inputs, input_of))
    layer = 0
    layer_sources: list[tuple[dict, int]] = []
    for k, piece in enumerate(slices):
        m = piece[0].length
        for o in range(m):
            t = o / (m - 1) if m > 1 else (1.0 if schedule == "mergekit" else 0.0)
            ref = inputs[input_of(k, 0)]
            names = [
                n for n in ref.tensors if (mm := LAYER.search(n)) and int(mm.group(1)) == piece[0].start + o
            ]
            for name in names:
                srcs = tuple((input_of(k, j), with_layer(name, s.start + o)) for j, s in enumerate(piece))
                for i, src in srcs:
                    _exists(inputs[i], src, k)
                out.append(OutTensor(with_layer(name, layer), srcs, k, t))
            layer_sources.append((ref.config, piece[0].start + o))
            layer += 1
    for name in outside:
        if not EMBEDDING.search(name):
            out.append(_outside(name, slices, last, inputs, input_of))
    return out, layer_sources


def _outside(name: str, slices: tuple, k: int, inputs, input_of) -> OutTensor:
    srcs = tuple((input_of(k, j), name) for j in range(len(slices[k])))
    for i, src in srcs:
        _exists(inputs[i], src, k)
    return OutTensor(name, srcs, k, None)


def _exists(ck, name: str, k: int) -> None:
    if name not in ck.tensors:
        raise MergeError(
            f"slices[{k}]: {ck.path} has no tensor {name}; the sliced models must share an architecture"
        )


def output_config(config: dict, n_layers: int, layer_sources: list[tuple[dict, int]]) -> dict:
    """`config` with the output's layer count and per-layer lists (`layer_types`) from the source layers
    (`layer_sources`: the config and layer index each output layer comes from)."""
    config = dict(config)
    key = "n_layer" if "n_layer" in config and "num_hidden_layers" not in config else "num_hidden_layers"
    config[key] = n_layers
    for list_key in ("layer_types",):
        if isinstance(config.get(list_key), list):
            config[list_key] = [c.get(list_key, [None] * (i + 1))[i] for c, i in layer_sources]
    return config


__all__ = ["OutTensor", "Source", "layer_count", "layout", "parse_slices", "slice_models", "slices_to_data"]

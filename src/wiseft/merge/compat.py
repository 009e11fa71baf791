"""Can these checkpoints be merged? Architecture, vocabulary size, tied embeddings, tensor names, shapes
and dtype kinds agree (headers only, no tensor data read); the layer range of a mergekit slice is checked
here too."""

from __future__ import annotations

from collections.abc import Sequence

from wiseft.checkpoints import Checkpoint
from wiseft.errors import ConfigError, MergeError
from wiseft.merge.recipe import Recipe, layer_count


def check_compatible(inputs: Sequence[Checkpoint], remapped: frozenset[str] = frozenset()) -> list[str]:
    """Architecture, vocab size, tied embeddings, tensor names, shapes and dtype kinds agree.

    Returns the names every input holds, in the first input's file order. Raises MergeError naming the
    model and the first differing names/shapes. `remapped`: token matrices re-indexed to one vocabulary
    (merge/vocab.py), whose row counts may differ.
    """
    check_family(inputs, vocab=not remapped)
    ref = inputs[0]
    tied = ref.tied_embeddings
    names = [n for n in ref.tensors if not (tied and n == "lm_head.weight")]
    return _check_same_tensors(inputs, names, remapped)


def check_family(inputs: Sequence[Checkpoint], vocab: bool = True) -> None:
    """Architecture, vocab size and tied embeddings agree (what layer slices need: the layer counts may
    differ)."""
    ref = inputs[0]
    for ck in inputs[1:]:
        if ck.architecture != ref.architecture:
            raise MergeError(
                f"different architectures: {ref.path} is {ref.architecture} but {ck.path} is {ck.architecture}; "
                "only checkpoints of one architecture can be merged"
            )
        if vocab and ck.vocab_size != ref.vocab_size:
            raise MergeError(
                f"different vocab sizes: {ref.path} has {ref.vocab_size} but {ck.path} has {ck.vocab_size}; "
                "choose the output's vocabulary with a tokenizer policy (--copy-tokenizer-from BASE|INPUT, "
                "`tokenizer_from:`, mergekit's tokenizer_source) to re-index the embeddings by token"
            )
        if ck.tied_embeddings != ref.tied_embeddings:
            raise MergeError(
                f"tie_word_embeddings differs: {ref.path} is {'tied' if ref.tied_embeddings else 'untied'} but "
                f"{ck.path} is {'tied' if ck.tied_embeddings else 'untied'}"
            )


def _check_same_tensors(inputs: Sequence[Checkpoint], names: list[str], remapped=frozenset()) -> list[str]:
    ref = inputs[0]
    tied = ref.tied_embeddings
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
            if b.shape != a.shape and not (name in remapped and b.shape[1:] == a.shape[1:]):
                raise MergeError(
                    f"tensor {name} has shape {list(a.shape)} in {ref.path} but {list(b.shape)} in {ck.path}"
                )
            if a.is_float != b.is_float or (not a.is_float and a.dtype != b.dtype):
                raise MergeError(
                    f"tensor {name} is {a.dtype} in {ref.path} but {b.dtype} in {ck.path}; float tensors are "
                    "merged, integer/bool tensors must have one dtype and identical values"
                )
    return names


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

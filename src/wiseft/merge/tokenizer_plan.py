"""The merge plan's tokenizer: which input's tokenizer the output takes, and the output vocabulary.

`tokenizer_policy` reads the flag or the recipe (`base` is input 0); `output_vocabulary` builds the
vocabulary the embeddings are re-indexed to (merge/vocab.py) when a policy is given and the inputs'
vocabularies differ, with the recipe's `tokenizer_tokens` (merge/tokens.py) checked against every input;
`token_matrices` names the tensors re-indexed. merge/plan.py plans the tensors with them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from wiseft.checkpoints import Checkpoint
from wiseft.errors import ConfigError
from wiseft.merge import vocab as vocabs
from wiseft.merge.recipe import Recipe
from wiseft.merge.union import output_tokens


def tokenizer_policy(recipe: Recipe, tokenizer_from: str | int | None) -> str | int | None:
    """The flag's tokenizer policy, else the recipe's; mergekit's `base` is input 0 (the base)."""
    tokenizer_from = tokenizer_from if tokenizer_from is not None else recipe.tokenizer_from
    if tokenizer_from == "base":
        if not recipe.base:
            raise ConfigError("tokenizer_from: base needs a base model (--base or `base:`)")
        return 0
    return tokenizer_from


def output_vocabulary(tokenizer_from, names, inputs, recipe) -> vocabs.Vocabulary | None:
    """The output vocabulary when a tokenizer policy is given and the inputs' vocabularies differ (or
    `tokenizer_tokens`/`pad_to_multiple_of` ask for rows); without a policy, different vocabulary sizes
    are refused (check_family)."""
    building = bool(recipe.tokenizer_tokens) or recipe.pad_to_multiple_of is not None
    if tokenizer_from is None:
        if building:
            raise ConfigError(
                "tokenizer_tokens / pad_to_multiple_of need a tokenizer policy (tokenizer_from: union, base or "
                "an input; mergekit's tokenizer: {source: ...})"
            )
        return None
    if len(inputs) < 2 and not building:
        return None
    read = [vocabs.read_vocab(ck) for ck in inputs]
    if all(v == read[0] for v in read[1:]) and not building:
        return None
    union = tokenizer_from == "union"
    source = 0 if union else input_index(tokenizer_from, names, inputs)
    extra = [s.token for s in recipe.tokenizer_tokens]
    tokens, new = output_tokens(inputs, read, source, union, extra)
    limits = [ck.vocab_size or len(v) for ck, v in zip(inputs, read, strict=True)]
    specs = {s.token: _token_source(s, names, inputs, read, limits) for s in recipe.tokenizer_tokens}
    base = 0 if recipe.base else None
    vocab = vocabs.resolve(read, tokens, base, limits, specs, recipe.pad_to_multiple_of)
    return dataclasses.replace(vocab, source=source, new=new)


def _token_source(spec, names, inputs, read, limits) -> tuple[tuple[tuple[int, int], ...], bool]:
    """(donor rows, force) of one `tokenizer_tokens` entry, checked against the inputs' vocabularies."""
    where = f"tokenizer_tokens[{spec.token!r}]"
    if spec.kind == "zero":
        return (), spec.force
    i = input_index(spec.model, names, inputs, where=f"{where}: source model")
    if spec.kind == "model":
        row = read[i].get(spec.token, -1)
        if not 0 <= row < limits[i]:
            raise ConfigError(
                f"{where}: source {spec.model} has no token {spec.token!r}; name another model, or "
                "{kind: model_token, model, token} for another token's row"
            )
        return ((i, row),), spec.force
    row = spec.source_id if spec.source_id is not None else read[i].get(spec.source_token, -1)
    if not 0 <= row < limits[i]:
        what = f"token_id {spec.source_id}" if spec.source_id is not None else f"token {spec.source_token!r}"
        raise ConfigError(f"{where}: {what} is not in {spec.model} (it has {limits[i]} rows)")
    return ((i, row),), spec.force


def token_matrices(inputs) -> frozenset[str]:
    """Names that are one-row-per-token matrices in every input (re-indexed to the output vocabulary)."""
    names = None
    for ck in inputs:
        found = {n for n, info in ck.tensors.items() if vocabs.is_token_matrix(info, ck.vocab_size, n)}
        names = found if names is None else names & found
    return frozenset(names or ())


def input_index(
    which: str | int, names: list[str], inputs: Sequence[Checkpoint], where: str = "--copy-tokenizer-from"
) -> int:
    if isinstance(which, int) or str(which).isdigit():
        i = int(which)
        if not 0 <= i < len(inputs):
            raise ConfigError(f"{where} {which}: there are {len(inputs)} inputs (0..{len(inputs) - 1})")
        return i
    for i, (name, ck) in enumerate(zip(names, inputs, strict=True)):
        if str(which) == name or os.path.realpath(str(which)) == str(ck.path):
            return i
    raise ConfigError(f"{where} {which}: not one of the inputs ({', '.join(names)})")

"""The output tokenizer of a tokenizer policy: which tokens it has, and its files.

`tokenizer_source: union` (mergekit's default when a `tokenizer:` block is given) is the first input's
tokenizer (the base when there is one, as in mergekit) with every other input's tokens appended as added
tokens. mergekit appends them in the iteration order of Python dicts built from Rust hash maps, so its ids
of new tokens are not reproducible; here the order is fixed:

1. the first input's tokens keep their ids;
2. then, input by input (in order), the tokens of its model vocabulary the output lacks, by their id;
3. then, input by input, its added tokens (special tokens and the like) the output lacks, by their id,
   keeping their flags (special, normalized, lstrip, rstrip, single_word);
4. then the tokens named in `tokenizer_tokens` that are still missing, as plain added tokens.

A token whose id is at or past an input's embedding rows (config `vocab_size`) is ignored in that input,
as mergekit ignores it; the first input's own tokenizer must fit its rows (mergekit strips such tokens,
which needs rewriting BPE merges; refused here). The same appending (steps 4) applies when the output
tokenizer is one input's (`base` or a model) and `tokenizer_tokens` names new tokens.

The output directory gets the first input's tokenizer files with the new tokens added to tokenizer.json
(through the `tokenizers` library, which assigns the ids; checked against the plan) and to
tokenizer_config.json's `added_tokens_decoder` (and added_tokens.json when there is one).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wiseft.atomic import write_json
from wiseft.checkpoints import Checkpoint
from wiseft.errors import ConfigError, MergeError
from wiseft.merge.vocab import MAX_TOKENIZER_BYTES, read_vocab

FLAGS = ("single_word", "lstrip", "rstrip", "normalized", "special")


@dataclass(frozen=True)
class NewToken:
    """A token appended to the output tokenizer, with its added-token flags."""

    content: str
    special: bool = False
    normalized: bool = True  # transformers' add_tokens default for a plain token
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False

    def decoder_entry(self) -> dict:
        return {"content": self.content, **{f: getattr(self, f) for f in FLAGS}}


def added_tokens(ck: Checkpoint) -> dict[str, NewToken]:
    """content → flags of `ck`'s added tokens (tokenizer.json's added_tokens)."""
    path = ck.path / "tokenizer.json"
    if path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_TOKENIZER_BYTES >> 20} MiB; refusing to read it")
    entries = json.loads(path.read_text()).get("added_tokens") or []
    out = {}
    for e in entries:
        if isinstance(e, dict) and isinstance(e.get("content"), str):
            out[e["content"]] = NewToken(e["content"], **{f: bool(e.get(f, False)) for f in FLAGS})
    return out


def usable(vocab: dict[str, int], rows: int) -> dict[str, int]:
    """The tokens of a vocabulary that have an embedding row (id < rows)."""
    return {t: i for t, i in vocab.items() if i < rows}


def output_tokens(
    inputs: Sequence[Checkpoint],
    vocabs: Sequence[dict[str, int]],
    source: int,
    union: bool,
    extra: Sequence[str],
) -> tuple[tuple[str, ...], tuple[NewToken, ...]]:
    """(the output's tokens in id order, the tokens appended to input `source`'s tokenizer)."""
    own = vocabs[source]
    rows = inputs[source].vocab_size or len(own)
    if any(i >= rows for i in own.values()):
        raise ConfigError(
            f"the tokenizer of {inputs[source].path} has {len(own)} tokens but its config has vocab_size {rows}; "
            "a tokenizer with tokens past the embedding rows cannot be the output's tokenizer here"
        )
    by_id = sorted(own.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ConfigError(
            f"the tokenizer ids of {inputs[source].path} are not 0..n-1 without gaps; cannot extend it"
        )
    tokens = [t for t, _ in by_id]
    seen = set(tokens)
    new: list[NewToken] = []

    def append(token: NewToken) -> None:
        if token.content not in seen:
            seen.add(token.content)
            tokens.append(token.content)
            new.append(token)

    if union:
        flags = [added_tokens(ck) for ck in inputs]
        fit = [usable(v, ck.vocab_size or len(v)) for v, ck in zip(vocabs, inputs, strict=True)]
        for v, f in zip(fit, flags, strict=True):
            for t, _ in sorted(v.items(), key=lambda kv: kv[1]):
                if t not in f:
                    append(NewToken(t))
        for v, f in zip(fit, flags, strict=True):
            for t, _ in sorted(v.items(), key=lambda kv: kv[1]):
                if t in f:
                    append(f[t])
    for t in extra:
        append(NewToken(t))
    return tuple(tokens), tuple(new)


def write_tokenizer(out: Path, new: Sequence[NewToken], first_id: int) -> None:
    """Append `new` to the tokenizer files already copied into `out` (ids first_id, first_id + 1, …)."""
    from tokenizers import AddedToken, Tokenizer

    path = out / "tokenizer.json"
    if not path.is_file():
        raise MergeError(f"{out}: the output tokenizer has no tokenizer.json to add {len(new)} tokens to")
    tok = Tokenizer.from_file(str(path))
    # one call per run of equal specialness (each call rebuilds the added-token matcher)
    for special, run in itertools.groupby(new, key=lambda t: t.special):
        batch = [AddedToken(t.content, **{f: getattr(t, f) for f in FLAGS}) for t in run]
        (tok.add_special_tokens if special else tok.add_tokens)(batch)
    for j, t in enumerate(new):
        if tok.token_to_id(t.content) != first_id + j:
            raise MergeError(
                f"{path}: the tokenizers library gave {t.content!r} id {tok.token_to_id(t.content)}, "
                f"the merged embeddings have it at row {first_id + j}"
            )
    tok.save(str(path))
    _config_files(out, new, first_id)


def _config_files(out: Path, new: Sequence[NewToken], first_id: int) -> None:
    config = out / "tokenizer_config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        if isinstance(data.get("added_tokens_decoder"), dict):
            for j, t in enumerate(new):
                data["added_tokens_decoder"][str(first_id + j)] = t.decoder_entry()
            write_json(config, data)
    legacy = out / "added_tokens.json"
    if legacy.is_file():
        data = json.loads(legacy.read_text())
        data.update({t.content: first_id + j for j, t in enumerate(new)})
        write_json(legacy, data)


__all__ = ["NewToken", "added_tokens", "output_tokens", "read_vocab", "write_tokenizer"]

"""Tokenizer policy: embeddings re-indexed to one output vocabulary when the inputs' vocabularies differ.

mergekit users' most common failure is a merge of models whose tokenizers differ (a fine-tune that added
chat tokens, another vocabulary size). wiseft refuses different vocabulary sizes unless a tokenizer
policy says which vocabulary the output has (`tokenizer_from` / mergekit's `tokenizer_source`: `base`,
one of the inputs, or `union`: every input's tokens, merge/union.py). Then, as mergekit's
`PermutedEmbeddings` does, every input's embedding rows (`embed_tokens`, GPT-2's `wte`, an untied
`lm_head`: 2-D float tensors with one row per token) are re-indexed by token string to the output
vocabulary (read from each input's tokenizer.json, added tokens included), and a token an input lacks gets
a default row:

- a source named for it in `tokenizer_tokens` (merge/tokens.py): that row (or zeros); with `force`, every
  input takes it, even one that has the token;
- else present in exactly one input: that input's row;
- in none: zeros;
- in the base (and others): the base's row;
- otherwise: the mean of the rows of the inputs that have it (in float64, rounded once to the input's
  dtype).

The output has one row per token of the output vocabulary (config `vocab_size` updated; padding rows past
the tokenizer's length are dropped, as mergekit does without `pad_to_multiple_of`). With
`pad_to_multiple_of` the row count is rounded up and each input's padding rows are the mean of its
re-indexed token rows (mergekit's choice, after Hewitt's vocabulary-expansion note). The merge method then
runs on the re-indexed rows. Rows are gathered on the fly (`RowMap.read_into`, one read per run of
consecutive rows), so nothing model-sized is held.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch

from wiseft.checkpoints import Checkpoint, TensorInfo
from wiseft.checkpoints.safetensors_format import DTYPES
from wiseft.errors import ConfigError

MAX_TOKENIZER_BYTES = 256 * 2**20
MEAN_BLOCK = 4096  # rows per read when averaging a tensor's rows for padding


def read_vocab(ck: Checkpoint) -> dict[str, int]:
    """token → id of `ck`'s tokenizer.json (model vocabulary and added tokens)."""
    path = ck.path / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(
            f"{ck.path} has no tokenizer.json; re-indexing embeddings to another vocabulary needs every "
            "input's tokenizer.json"
        )
    if path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_TOKENIZER_BYTES >> 20} MiB; refusing to read it")
    from tokenizers import Tokenizer

    try:
        return dict(Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True))
    except Exception as exc:  # the tokenizers library raises its own exception types
        raise ConfigError(f"{path}: not a readable tokenizer.json ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class Vocabulary:
    """The output vocabulary and, per input, the source row of every output token (-1: missing, or
    `force`d to the default); `defaults`: the donor rows (input, row) averaged for a missing row (none:
    zeros); `padded`: the output's row count when rounded up past the tokens (padding rows: the mean
    row); `source`: the input whose tokenizer the output extends with `new` (merge/union.py); `named`:
    the output rows whose default a `tokenizer_tokens` entry gives; `base`: the base's input index."""

    tokens: tuple[str, ...]
    rows: tuple[tuple[int, ...], ...]
    defaults: Mapping[int, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    padded: int = 0
    source: int = 0
    new: tuple = ()
    named: frozenset[int] = frozenset()
    base: int | None = None

    @property
    def size(self) -> int:
        return max(len(self.tokens), self.padded)

    def among(self, keep: Sequence[int], tensor: str, names: Sequence[str]) -> Vocabulary:
        """This vocabulary for a tensor merged from the inputs `keep` only (a layer slice's sources):
        default rows from those inputs, as mergekit computes them from the tensors it gathers; a
        `tokenizer_tokens` donor outside them is a ConfigError naming the token and `tensor` (`names`:
        the inputs' names)."""
        keep = tuple(sorted(set(keep)))
        if len(keep) == len(self.rows):
            return self
        defaults = _defaults(self.rows, self.tokens, keep, self.base, self.named)
        for r in self.named:
            for i, _ in self.defaults.get(r, ()):
                if i not in keep:
                    raise ConfigError(
                        f"tokenizer_tokens[{self.tokens[r]!r}]: source {names[i]} is not among the models "
                        f"tensor {tensor} is taken from ({', '.join(names[k] for k in keep)}); name one of them"
                    )
            defaults[r] = self.defaults.get(r, ())
        return replace(self, defaults=defaults)


def _defaults(rows, tokens, keep, base, named) -> dict[int, tuple[tuple[int, int], ...]]:
    """mergekit's default rows of the tokens some input of `keep` lacks (`named` rows left out): the one
    input that has it, the base's row, or every input that has it (none: zeros)."""
    defaults: dict[int, tuple[tuple[int, int], ...]] = {}
    for r in range(len(tokens)):
        if r in named:
            continue
        present = [(i, rows[i][r]) for i in keep if rows[i][r] >= 0]
        if len(present) == len(keep):
            continue
        if len(present) > 1 and base in keep and rows[base][r] >= 0:
            defaults[r] = ((base, rows[base][r]),)
        else:
            defaults[r] = tuple(present)
    return defaults


def resolve(
    vocabs: Sequence[dict[str, int]],
    tokens: Sequence[str],
    base: int | None,
    limits: Sequence[int],
    specs: Mapping[str, tuple[tuple[tuple[int, int], ...], bool]] | None = None,
    pad: int | None = None,
) -> Vocabulary:
    """Rows of every input for the output `tokens` (an input's token at or past its `limits` rows counts
    as missing) and mergekit's default rows for tokens an input lacks; `specs`: token → (donor rows,
    force) from `tokenizer_tokens` (merge/tokens.py), which replace the default."""
    specs = specs or {}
    rows = tuple(
        tuple(i if (i := v.get(t, -1)) < limit else -1 for t in tokens)
        for v, limit in zip(vocabs, limits, strict=True)
    )
    named = frozenset(r for r, t in enumerate(tokens) if t in specs)
    defaults = _defaults(rows, tokens, range(len(vocabs)), base, named)
    forced = []
    for r in sorted(named):
        defaults[r], force = specs[tokens[r]]
        if force:
            forced.append(r)
    if forced:
        gone = set(forced)
        rows = tuple(tuple(-1 if r in gone else x for r, x in enumerate(rs)) for rs in rows)
    padded = -(-len(tokens) // pad) * pad if pad else 0
    return Vocabulary(tuple(tokens), rows, defaults, padded, named=named, base=base)


def is_token_matrix(info: TensorInfo, vocab_size: int | None, name: str) -> bool:
    """Embedding-like tensors: one row per token (input embeddings and an untied lm_head)."""
    return (
        info.is_float
        and len(info.shape) == 2
        and vocab_size is not None
        and info.shape[0] == vocab_size
        and ("embed" in name or name.endswith("wte.weight") or name.startswith("lm_head"))
    )


@dataclass(frozen=True, eq=False)
class RowMap:
    """Input `input`'s tensor re-indexed to the output vocabulary: a source the driver reads like a
    TensorInfo (`name`, `dtype`, `shape`, `nbytes`), gathering rows from `infos` (the tensor in every
    input, for default rows)."""

    input: int
    infos: tuple[TensorInfo, ...]
    vocab: Vocabulary
    cache: dict = field(default_factory=dict, compare=False, repr=False)  # the padding row, once computed

    @property
    def name(self) -> str:
        return self.infos[self.input].name

    @property
    def dtype(self) -> str:
        return self.infos[self.input].dtype

    @property
    def shape(self) -> tuple[int, int]:
        return (self.vocab.size, self.infos[self.input].shape[1])

    @property
    def nbytes(self) -> int:
        own = self.infos[self.input]
        return self.vocab.size * (own.nbytes // own.shape[0])

    @property
    def is_float(self) -> bool:
        return True

    def read_into(self, inputs: Sequence[Checkpoint], buf: memoryview, start: int) -> None:
        """`len(buf)` bytes of the re-indexed tensor from byte `start` (one read per run of rows)."""
        row_bytes = self.nbytes // self.vocab.size
        view = memoryview(buf).cast("B")
        pos, end = start, start + len(view)
        rows = self.vocab.rows[self.input]
        n_tokens = len(rows)
        while pos < end:
            r, off = divmod(pos, row_bytes)
            if r >= n_tokens or rows[r] < 0:
                data = self._mean(inputs) if r >= n_tokens else self._default(inputs, r)
                take = min(row_bytes - off, end - pos)
                view[pos - start : pos - start + take] = data[off : off + take]
                pos += take
                continue
            run = 1  # consecutive source rows: one read
            while r + run < n_tokens and (r + run) * row_bytes < end and rows[r + run] == rows[r] + run:
                run += 1
            take = min(run * row_bytes - off, end - pos)
            own = self.infos[self.input]
            inputs[self.input].read_into(
                own, view[pos - start : pos - start + take], rows[r] * row_bytes + off
            )
            pos += take

    def _mean(self, inputs: Sequence[Checkpoint]) -> bytes:
        """The padding row: the mean of this input's re-indexed token rows (float64 sums of MEAN_BLOCK
        rows added in order, rounded once to the input's dtype), computed once."""
        if "mean" not in self.cache:
            own = self.infos[self.input]
            row_bytes = own.nbytes // own.shape[0]
            n = len(self.vocab.tokens)
            acc = torch.zeros(own.shape[1], dtype=torch.float64)
            for first in range(0, n, MEAN_BLOCK):
                k = min(MEAN_BLOCK, n - first)
                raw = torch.empty(k * row_bytes, dtype=torch.uint8)
                self.read_into(inputs, memoryview(raw.numpy()), first * row_bytes)
                acc += raw.view(DTYPES[own.dtype]).view(k, -1).double().sum(dim=0)
            acc /= n
            self.cache["mean"] = acc.to(DTYPES[own.dtype]).view(torch.uint8).numpy().tobytes()
        return self.cache["mean"]

    def _default(self, inputs: Sequence[Checkpoint], r: int) -> bytes:
        own = self.infos[self.input]
        width = own.shape[1]
        acc = torch.zeros(width, dtype=torch.float64)
        donors = self.vocab.defaults.get(r, ())
        for i, row in donors:
            info = self.infos[i]
            size = info.nbytes // info.shape[0]
            raw = torch.empty(size, dtype=torch.uint8)
            inputs[i].read_into(info, memoryview(raw.numpy()), row * size)
            acc += raw.view(DTYPES[info.dtype]).double()
        if len(donors) > 1:
            acc /= len(donors)
        return acc.to(DTYPES[own.dtype]).view(torch.uint8).numpy().tobytes()


def describe(vocab: Vocabulary, names: Sequence[str]) -> str:
    """One line for the dry run: output size and how many tokens each input lacks."""
    missing = ", ".join(
        f"{n} lacks {sum(r < 0 for r in rows)}" for n, rows in zip(names, vocab.rows, strict=True)
    )
    extra = f" ({len(vocab.new)} appended to the tokenizer)" if vocab.new else ""
    padded = f", padded to {vocab.padded} rows" if vocab.padded > len(vocab.tokens) else ""
    return f"{len(vocab.tokens)} tokens{extra}{padded}; {missing}"


__all__ = ["RowMap", "Vocabulary", "describe", "is_token_matrix", "read_vocab", "resolve"]

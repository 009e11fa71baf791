"""The loop every verifier shares: encode, sort by length, batch under a memory budget, score, restore order.

A verifier turns each (problem, completion) item into token ids and the positions it reads (`encode`),
runs left-padded batches through its model (`_score_batch`) and returns one float per item. This module
does the rest, the same way for every kind:

1. every item is encoded and checked first (empty, longer than `max_tokens`), so a bad item fails before
   any model time is spent, with its id in the message;
2. items are sorted longest first (each batch pads little; the first, widest batch fails fast if memory
   is short) and grouped into batches whose estimated peak memory (`row_bytes` × rows) fits the budget:
   a share of free CUDA memory, or on CPU at most a quarter of available RAM and `budget_bytes`; rows
   and padded tokens per batch are capped too. On CPU, small models score one batch per core side by
   side (`cpu_workers`); the plan is the same whatever the number of workers;
3. each batch is left-padded (every row ends in the last column, so a row's last token and its
   completion are found at the same offsets from the end) with explicit position ids (so absolute
   position embeddings see the unpadded positions); scores come back in the input order;
4. a score that is NaN or infinite stops the run with an error naming the sample.
Identical (problem, completion) pairs are encoded and scored once (collapsed models repeat themselves;
scoring is deterministic for a given batch plan, so the copies get the same score).

Batched scores equal one-at-a-time scores up to float rounding, not bit for bit: padding changes the
shapes of the matrix products (a different summation order in the kernels) and the masked softmax adds
exact zeros in a different order. tests/test_verify.py bounds the difference.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import torch

from wiseft.batching import greedy_batches
from wiseft.errors import VerifierError
from wiseft.verify.load import open_model

# Bumped whenever the way a kind turns text into a score changes: stored scores of another format
# version are not comparable.
VERIFY_FORMAT = 1
CPU_BUDGET_BYTES = 1 << 30
CPU_MAX_ROWS = 256
CPU_MAX_BATCH_TOKENS = 16384
CUDA_MEMORY_FRACTION = 0.7
CUDA_MAX_ROWS = 1024
CUDA_MAX_BATCH_TOKENS = 1 << 18
DEFAULT_MAX_TOKENS = 32768  # when neither the config nor the tokenizer says how long inputs may be
SIDE_BY_SIDE_MAX_PARAMS = 20_000_000  # CPU: smaller models score one batch per core, side by side
CPU_PLAN_PARTS = 4  # CPU batches are budgeted as if this many were in memory at once

Progress = Callable[[int, int], None]


class ItemProblem(Exception):
    """Raised by `encode` for an item it cannot encode; the loop names the sample and raises VerifierError."""


@dataclass(frozen=True)
class Item:
    """One sample to score: the problem as the verifier should see it, the completion, and a name for
    error messages (e.g. "p17#3")."""

    prompt: str
    completion: str
    id: str | None = None


@dataclass(frozen=True)
class Encoded:
    """Token ids of one item and the positions (into `ids`) its verifier reads."""

    ids: list[int]
    marks: tuple[int, ...] = ()


@dataclass(frozen=True)
class Scores:
    """One score per item in input order, the verifier's identity, and (PRMs) the step scores."""

    scores: np.ndarray
    identity: dict[str, Any]
    steps: list[list[float]] | None = None


@dataclass(eq=False)
class Verifier:
    """Base of every verifier kind. Subclasses set `kind` and `vote_transform` and implement `encode`,
    `_score_batch` and `_options`; `row_bytes` adds the kind's output buffers."""

    model: Any
    tokenizer: Any
    max_tokens: int | None = None
    max_rows: int | None = None
    max_batch_tokens: int | None = None
    budget_bytes: int = CPU_BUDGET_BYTES
    workers: int | None = None  # CPU batches run side by side (see `cpu_workers`)
    source: dict[str, Any] = field(default_factory=dict)  # where the model came from (`identity`)

    kind = "?"
    vote_transform = "identity"

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        trust_remote_code: bool = False,
        **options: Any,
    ) -> Self:
        """Load a verifier of this kind from a model directory or Hub name (`load.open_model` checks the
        architecture against the kind); `options` are the kind's fields."""
        model, tokenizer, head, source = open_model(
            path, cls.kind, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        return cls(model, tokenizer, source=source, **cls._loaded_fields(head), **options)

    @classmethod
    def _loaded_fields(cls, head: Any) -> dict[str, Any]:
        """Fields a kind takes from what `open_model` found (the PRM its head); none by default."""
        return {}

    def __post_init__(self) -> None:
        self.device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        if self.max_tokens is None:
            self.max_tokens = context_length(self.model.config, self.tokenizer)

    # ---- what a kind provides ----------------------------------------------------------------------

    def encode(self, item: Item) -> Encoded:
        """Token ids and read positions of `item`; raises ItemProblem for an item it cannot score."""
        raise NotImplementedError

    def _score_batch(self, input_ids, mask, positions, batch: list[Encoded]) -> list[float | list[float]]:
        """Raw scores of a left-padded batch: a float per row, or a list of step scores (PRM)."""
        raise NotImplementedError

    def _finish(self, raw: float | list[float]) -> float:
        """The item's score from its raw output (a PRM aggregates its steps)."""
        return float(raw)  # type: ignore[arg-type]

    def _options(self) -> dict[str, Any]:
        return {}

    def _output_bytes(self, length: int) -> int:
        return 0

    # ---- identity ------------------------------------------------------------------------------------

    @property
    def identity(self) -> dict[str, Any]:
        """What produced the scores: kind, options, vote transform, weights/config/tokenizer hashes and a
        short `id` over everything that decides a score (not the path: a copy scores the same)."""
        if not self.source.get("sha256"):
            self.source["sha256"] = _memory_hashes(self.model, self.tokenizer)
        decided = {
            "kind": self.kind,
            "options": self._options(),
            "vote_transform": self.vote_transform,
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
            "format": VERIFY_FORMAT,
            "sha256": self.source.get("sha256", {}),
        }
        digest = hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()[:16]
        where = {"path": self.source.get("path"), "architecture": self.source.get("architecture")}
        return {"id": digest, **where, **decided}

    # ---- the shared loop -----------------------------------------------------------------------------

    def score(self, items: Sequence[Item], progress: Progress | None = None) -> Scores:
        """Score every item; `progress(done, total)` (in items) is called after each batch."""
        first: dict[tuple[str, str], int] = {}
        source = [first.setdefault((item.prompt, item.completion), i) for i, item in enumerate(items)]
        copies = Counter(source)
        encoded = self._encode_all(list(first.values()), items)
        order = sorted(encoded, key=lambda i: -len(encoded[i].ids))
        raws: dict[int, float | list[float]] = {}
        done = 0
        batches = [[order[j] for j in batch] for batch in self.plan([len(encoded[i].ids) for i in order])]
        for idx, out in self._run(batches, encoded):
            for i, raw in zip(idx, out, strict=True):
                _check_finite(raw, items[i], i, self.source.get("path"))
                raws[i] = raw
            done += sum(copies[i] for i in idx)
            if progress is not None:
                progress(done, len(items))
        finished = {i: self._finish(raw) for i, raw in raws.items()}
        scores = np.array([finished[j] for j in source], dtype=np.float64)
        steps = [list(raws[j]) for j in source] if self.kind == "prm" else None  # type: ignore[arg-type]
        return Scores(scores, self.identity, steps)

    def _run(self, batches: list[list[int]], encoded: dict[int, Encoded]) -> Iterator[tuple[list[int], list]]:
        """(item indices, raw scores) of each batch, as batches finish: one at a time, or on CPU
        `cpu_workers()` side by side, each on one core (torch releases the GIL inside its ops)."""

        def run(idx: list[int]) -> tuple[list[int], list]:
            rows = [encoded[i] for i in idx]
            with torch.inference_mode():
                return idx, self._score_batch(*self.pad(rows), rows)

        workers = self.cpu_workers() if self.device.type == "cpu" else 1
        if workers == 1 or len(batches) == 1:
            yield from (run(idx) for idx in batches)
            return
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(min(workers, len(batches))) as pool:
                futures = [pool.submit(run, idx) for idx in batches]
                try:
                    for future in as_completed(futures):
                        yield future.result()
                finally:
                    for future in futures:
                        future.cancel()
        finally:
            torch.set_num_threads(before)

    def cpu_workers(self) -> int:
        """Batches scored at once on CPU. Default: for models under SIDE_BY_SIDE_MAX_PARAMS parameters, one
        batch per torch thread, each single-threaded (a tiny model's ops are too small to split across
        cores); larger models run one batch at a time on all threads."""
        if self.workers:
            return min(self.workers, CPU_PLAN_PARTS)
        params = sum(p.numel() for p in self.model.parameters())
        return min(torch.get_num_threads(), CPU_PLAN_PARTS) if params < SIDE_BY_SIDE_MAX_PARAMS else 1

    def encode_many(self, items: Sequence[Item]) -> list[Encoded]:
        """`encode` of each item (a kind may tokenise them in one call: the same ids, faster)."""
        return [self.encode(item) for item in items]

    def _encode_all(self, indices: list[int], items: Sequence[Item]) -> dict[int, Encoded]:
        """The checked encoding of `items[i]` for each i in `indices`, by index; an item the kind cannot
        score is named by its index (`_encode_checked`)."""
        try:
            encs = self.encode_many([items[i] for i in indices])
        except ItemProblem:  # find and name the item, one at a time
            return {i: self._encode_checked(i, items[i]) for i in indices}
        return {i: self._check_encoded(i, items[i], enc) for i, enc in zip(indices, encs, strict=True)}

    def _encode_checked(self, index: int, item: Item) -> Encoded:
        try:
            enc = self.encode(item)
        except ItemProblem as exc:
            raise VerifierError(f"sample {_name(item, index)}: {exc}") from None
        return self._check_encoded(index, item, enc)

    def _check_encoded(self, index: int, item: Item, enc: Encoded) -> Encoded:
        if not enc.ids:
            raise VerifierError(f"sample {_name(item, index)} encodes to no tokens; nothing to score")
        if len(enc.ids) > self.max_tokens:
            raise VerifierError(
                f"sample {_name(item, index)} is {len(enc.ids)} tokens, over the verifier's limit of "
                f"{self.max_tokens}; raise max_tokens (up to the model's context) or leave long samples out"
            )
        return enc

    def pad(self, rows: list[Encoded]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, attention mask, position ids) of `rows`, left-padded, on the model's device."""
        width = max(len(r.ids) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r.ids) :] = torch.tensor(r.ids)
            mask[i, width - len(r.ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return input_ids.to(self.device), mask.to(self.device), positions.to(self.device)

    # ---- batching ------------------------------------------------------------------------------------

    def row_bytes(self, length: int) -> int:
        """Estimated peak bytes of one row of `length` tokens in a forward pass: one layer's activations
        (hidden states, MLP, float32 attention scores) plus the kind's outputs."""
        cfg = self.model.config.get_text_config()
        hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 256)
        inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden
        heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 1)
        elem = next(self.model.parameters()).element_size()
        per_token = (8 * hidden + 3 * inter) * elem + heads * length * 4
        return length * per_token + self._output_bytes(length)

    def _budget(self) -> tuple[int, int, int]:
        """(bytes for one batch, most rows per batch, most padded tokens per batch)."""
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(free * CUDA_MEMORY_FRACTION), CUDA_MAX_ROWS, CUDA_MAX_BATCH_TOKENS
        import psutil

        # Budgeted as if CPU_PLAN_PARTS batches were in memory at once (at most that many workers run), so
        # that the plan, and with it every score's arithmetic, does not depend on the number of workers.
        available = psutil.virtual_memory().available
        budget = min(self.budget_bytes, available // 4) // CPU_PLAN_PARTS
        return budget, CPU_MAX_ROWS, CPU_MAX_BATCH_TOKENS

    def plan(self, lengths: list[int]) -> list[list[int]]:
        """Group positions 0..N−1 of `lengths` (sorted longest first) into batches that fit the budget;
        a row that alone exceeds it still runs, alone."""
        budget, max_rows, max_tokens = self._budget()
        max_rows = self.max_rows or max_rows
        max_tokens = self.max_batch_tokens or max_tokens

        per_row: dict[int, int] = {}  # row_bytes reads the model's config: once per width, not per row

        def fits(rows: int, width: int) -> bool:
            if width not in per_row:
                per_row[width] = self.row_bytes(width)
            return rows <= max_rows and rows * width <= max_tokens and rows * per_row[width] <= budget

        return greedy_batches(lengths, fits)


def score_samples(verifier: Verifier, items: Sequence[Item], progress: Progress | None = None) -> Scores:
    """Score `items` with `verifier` (see `Verifier.score`)."""
    return verifier.score(items, progress)


def context_length(config, tokenizer) -> int:
    """The longest input the model takes: its position limit, else the tokenizer's, else a default."""
    cfg = config.get_text_config()
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**7:
        return value
    return DEFAULT_MAX_TOKENS


def _memory_hashes(model, tokenizer) -> dict[str, str]:
    """sha256 of a model held in memory (its parameters and buffers in state-dict order, its config) and of
    its tokenizer's definition; computed once, at the first `identity` (`source["sha256"]` keeps it)."""
    weights = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        weights.update(name.encode() + b"\0" + data.tobytes())
    config = hashlib.sha256(model.config.to_json_string(use_diff=False).encode()).hexdigest()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    tok = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return {
        "weights": weights.hexdigest(),
        "config": config,
        "tokenizer": hashlib.sha256(tok.encode()).hexdigest(),
    }


def _name(item: Item, index: int) -> str:
    return item.id if item.id is not None else f"#{index}"


def _check_finite(raw, item: Item, index: int, path) -> None:
    values = raw if isinstance(raw, list) else [raw]
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        what = "a step score" if isinstance(raw, list) else "the score"
        raise VerifierError(
            f"verifier {path or '(in memory)'} gave {bad[0]} as {what} of sample {_name(item, index)}; "
            "the model's weights or dtype are unusable for this input (try float32)"
        )

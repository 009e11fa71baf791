"""Training data: prompt/completion pairs, the batch of each step, and the collator.

- `load_pairs(data, ...)`: pairs from a JSONL file or a Hub dataset name (`read_jsonl_pairs`,
  `load_dataset_pairs`);
- `epoch_batches(pairs, batch_size, seed)`: the batch of step s is a pure function of (seed, s), so a
  resumed run sees exactly the batches an uninterrupted one would;
- `Collator`: tokenises pairs into padded tensors with labels on completion tokens only.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from wiseft.errors import TrainError
from wiseft.jsonl import iter_objects

Pair = tuple[str, str]


def read_jsonl_pairs(
    path: str | os.PathLike, prompt_field="prompt", completion_field="completion"
) -> list[Pair]:
    """Prompt/completion pairs from a JSONL file; every line must have both fields as strings."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"training data {path} does not exist; pass a JSONL file of prompt/completion lines")
    pairs = []
    for where, row in iter_objects(path, TrainError):
        for field in (prompt_field, completion_field):
            if not isinstance(row.get(field), str):
                raise TrainError(
                    f"{where}: field {field!r} is missing or not a string; "
                    f"set --prompt-field/--completion-field to the names your file uses"
                )
        pairs.append((row[prompt_field], row[completion_field]))
    if not pairs:
        raise TrainError(f"training data {path} holds no examples")
    return pairs


def load_dataset_pairs(
    name: str, split="train", prompt_field="prompt", completion_field="completion"
) -> list[Pair]:
    """Pairs from a dataset on the Hugging Face Hub (needs the `train` extra and a network)."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise TrainError(
            "loading a dataset by name needs the 'datasets' package: pip install 'wiseft[train]'"
        ) from exc
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; one message names the input
        raise TrainError(f"could not load dataset {name!r} (split {split!r}): {exc}") from exc
    missing = [f for f in (prompt_field, completion_field) if f not in ds.column_names]
    if missing:
        raise TrainError(
            f"dataset {name!r} has no column(s) {missing}; its columns are {ds.column_names}; "
            f"set --prompt-field/--completion-field"
        )
    return [(str(r[prompt_field]), str(r[completion_field])) for r in ds]


def epoch_batches(pairs: Sequence[Pair], batch_size: int, seed: int) -> Callable[[int], list[Pair]]:
    """Batch source for a fixed dataset: epochs in a seeded random order, the batch of step s fixed by s.

    Batches are cut from the concatenation of shuffled epochs, so every example is seen once per epoch.
    """
    n = len(pairs)
    orders: dict[int, list[int]] = {}

    def order(epoch: int) -> list[int]:
        if epoch not in orders:
            idx = list(range(n))
            random.Random(f"sft-order-{seed}-{epoch}").shuffle(idx)
            orders.clear()  # only the current and next epoch are ever needed
            orders[epoch] = idx
        return orders[epoch]

    def batch(step: int) -> list[Pair]:
        start = (step - 1) * batch_size
        out = []
        for pos in range(start, start + batch_size):
            epoch, i = divmod(pos, n)
            out.append(pairs[order(epoch)[i]])
        return out

    return batch


class Collator:
    """Tokenises pairs into padded tensors with labels on completion tokens only.

    The prompt is tokenised as the model's tokenizer does for generation (its special tokens included),
    the completion without special tokens and followed by EOS, so training matches what a sampler sees.
    Tokenisations are cached: a small SFT set is tokenised once.
    """

    def __init__(self, tokenizer, max_length: int = 0):
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
            raise TrainError(
                "the tokenizer has neither a pad nor an EOS token; add one to its tokenizer_config.json"
            )
        self.tok = tokenizer
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos = tokenizer.eos_token_id
        self.max_length = max_length
        self._cache: dict[Pair, tuple[list[int], int]] = {}

    def encode(self, pair: Pair) -> tuple[list[int], int]:
        """Token ids of prompt+completion(+EOS) and the number of prompt tokens."""
        return self.encode_all([pair])[0]

    def _join(self, p: list[int], c: list[int], pair: Pair) -> tuple[list[int], int]:
        """Prompt ids + completion ids (+ EOS), cut to max_length; cached by `pair` while the cache has room."""
        ids = p + c + ([self.eos] if self.eos is not None else [])
        if self.max_length:
            ids = ids[: self.max_length]
        if len(self._cache) < 200_000:
            self._cache[pair] = (ids, len(p))
        return ids, len(p)

    def learnable(self, pair: Pair) -> int:
        """Completion tokens of `pair` the loss can learn from: those with a token before them to predict
        them from (a completion at position 0, after an empty prompt, cannot be predicted)."""
        ids, n_prompt = self.encode(pair)
        return max(0, len(ids) - max(n_prompt, 1))

    def check_learnable(self, pairs: Sequence[Pair], source: str) -> None:
        """TrainError naming `source` when no pair has a completion token to learn from (empty prompts and
        completions, or everything cut by --max-length): the loss would be undefined, not the lr's fault."""
        if not any(self.learnable(pair) for pair in pairs):
            raise TrainError(
                f"training data {source}: no example has a completion token to learn from (empty prompts "
                "and completions, or --max-length cuts them all); give non-empty prompt/completion pairs"
            )

    def encode_all(self, pairs: Sequence[Pair]) -> list[tuple[list[int], int]]:
        """`encode` of each pair, the uncached ones tokenised in one batch call per side (the same ids as
        one call per text: no padding or truncation is asked of the tokenizer)."""
        todo = list(dict.fromkeys(p for p in pairs if p not in self._cache))
        if todo:
            prompts = self.tok([p for p, _ in todo], add_special_tokens=True)["input_ids"]
            completions = self.tok([c for _, c in todo], add_special_tokens=False)["input_ids"]
            fresh = {
                pair: self._join(p, c, pair) for pair, p, c in zip(todo, prompts, completions, strict=True)
            }
        else:
            fresh = {}
        return [self._cache.get(pair) or fresh[pair] for pair in pairs]

    def __call__(self, pairs: Sequence[Pair]):
        import torch

        encoded = self.encode_all(pairs)
        width = max(len(ids) for ids, _ in encoded)
        # Built as nested lists and converted once: one tensor per row costs more than the model on a
        # fresh batch of short texts (pretraining).
        input_ids = [ids + [self.pad] * (width - len(ids)) for ids, _ in encoded]
        mask = [[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in encoded]
        labels = [[-100] * min(n, len(ids)) + ids[n:] + [-100] * (width - len(ids)) for ids, n in encoded]
        input_ids, mask, labels = (torch.tensor(x, dtype=torch.long) for x in (input_ids, mask, labels))
        if not (labels[:, 1:] != -100).any():  # the first position is never predicted
            raise TrainError(
                "no completion tokens in this batch (empty or all truncated?); raise --max-length"
            )
        return input_ids, mask, labels


def load_pairs(
    data: str, split: str = "train", prompt_field="prompt", completion_field="completion"
) -> list[Pair]:
    """Pairs from `data`: a JSONL file (an existing path, or a name ending in .jsonl/.json), else a
    dataset name on the Hugging Face Hub."""
    if Path(data).exists() or data.endswith((".jsonl", ".json")):
        return read_jsonl_pairs(data, prompt_field, completion_field)
    return load_dataset_pairs(data, split, prompt_field, completion_field)

"""Outcome reward models: one score per (problem, completion), read from a sequence-classification head.

The checkpoint is a decoder `*ForSequenceClassification` (Skywork-Reward and most open ORMs): a base
model and a `score` head applied at one token. The pair is rendered by `text.encode_pair` (chat template
when the tokenizer has one). The token read is the one transformers' own forward pools: the last token
that is not the config's pad token (the last token when the config has none). Running the base model and
applying the head to that token ourselves, instead of calling the model's forward, keeps that choice
independent of how a batch is padded.

Score: the head's logit with one label; with two labels the log-odds logit[1] − logit[0] (class 1 is
"good"). Vote transform "sigmoid": the probability the logit stands for (a Bradley–Terry reward's
sigmoid is the chance it beats a reward of 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from wiseft.errors import VerifierError
from wiseft.verify.base import Encoded, Item, Verifier
from wiseft.verify.text import check_system, encode_pair, encode_pairs, resolve_template


def pool_index(ids: list[int], pad_id: int | None) -> int:
    """The position transformers' sequence classifiers pool: the last id that is not `pad_id`."""
    if pad_id is None:
        return len(ids) - 1
    for i in range(len(ids) - 1, -1, -1):
        if ids[i] != pad_id:
            return i
    return 0  # all pad: transformers' argmax over an all-zero mask picks the first position


@dataclass(eq=False)
class OutcomeRewardModel(Verifier):
    template: str = "auto"
    system: str | None = None

    kind = "orm"
    vote_transform = "sigmoid"

    def __post_init__(self) -> None:
        super().__post_init__()
        where = self.source.get("path") or type(self.model).__name__
        self.template = resolve_template(self.tokenizer, self.template, where)
        check_system(self.template, self.system, where)
        prefix = getattr(self.model, "base_model_prefix", "")
        self._base = getattr(self.model, prefix, None) if prefix else None
        self._head = getattr(self.model, "score", None)
        if not isinstance(self._base, torch.nn.Module) or not isinstance(self._head, torch.nn.Module):
            raise VerifierError(
                f"{where}: {type(self.model).__name__} has no `score` head over a base model; an outcome "
                "reward model must be a decoder *ForSequenceClassification (e.g. Skywork-Reward)"
            )
        self.labels = int(self.model.config.num_labels)
        if self.labels not in (1, 2):
            raise VerifierError(
                f"{where}: the classifier has {self.labels} labels; an outcome reward model has 1 (a reward) "
                "or 2 (bad/good)"
            )
        self._pool_pad = self.model.config.get_text_config().pad_token_id

    def encode(self, item: Item) -> Encoded:
        ids = encode_pair(self.tokenizer, item.prompt, item.completion, self.template, self.system)
        return Encoded(ids, (pool_index(ids, self._pool_pad),))

    def encode_many(self, items: Sequence[Item]) -> list[Encoded]:
        pairs = [(item.prompt, item.completion) for item in items]
        return [
            Encoded(ids, (pool_index(ids, self._pool_pad),))
            for ids in encode_pairs(self.tokenizer, pairs, self.template, self.system)
        ]

    def forward(self, input_ids, mask, positions, batch: list[Encoded]) -> torch.Tensor:
        """Scores (float32, one per row) of a left-padded batch; differentiable (used in training too)."""
        out = self._base(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False)
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
        width = input_ids.shape[1]
        at = torch.tensor([width - len(e.ids) + e.marks[0] for e in batch], device=hidden.device)
        logits = self._head(hidden[torch.arange(len(batch), device=hidden.device), at]).float()
        return logits[:, 1] - logits[:, 0] if self.labels == 2 else logits[:, 0]

    def _score_batch(self, input_ids, mask, positions, batch: list[Encoded]) -> list[float]:
        return self.forward(input_ids, mask, positions, batch).tolist()

    def _options(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "system": self.system,
            "labels": self.labels,
            "pooling": "last-non-pad",
        }

"""Process reward models: a probability per step, read at a separator token, aggregated per sample.

The completion is split into steps and a separator token written after each (`text.split_steps`,
`text.with_separators`); the pair is rendered like an ORM's (chat template when there is one). At each
separator position the model gives the probability that the step so far is good:
- a token-classification head, or Qwen2.5-Math-PRM's own head (`Qwen2ForProcessRewardModel`, code that
  ships with the checkpoint: needs trust_remote_code): two labels → softmax, class 1 (Qwen's model card
  reads `softmax(logits)[..., 1]` at `<extra_0>`); one label → sigmoid;
- a causal LM (Math-Shepherd style): softmax over the logits of `positive_token` and `negative_token`
  only, the positive one's share.
The step probabilities are aggregated by `min` (the weakest step), `last` (the final step, which sees the
whole solution) or `prod` (every step good), and the aggregate is the sample's score, in [0, 1]. Vote
transform "identity": it is already a probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from wiseft.errors import VerifierError
from wiseft.verify.base import Encoded, Item, ItemProblem, Verifier
from wiseft.verify.text import (
    check_system,
    encode_pair,
    resolve_template,
    single_token_id,
    split_steps,
    with_separators,
)

AGGREGATIONS = {"min": min, "last": lambda steps: steps[-1], "prod": math.prod}
HEADS = ("token-classification", "process-reward-model", "causal-lm")


def aggregate(steps: list[float], how: str) -> float:
    """One score from step probabilities: `min`, `last` or `prod` (see the module doc)."""
    if how not in AGGREGATIONS:
        raise VerifierError(f"PRM aggregation must be one of {', '.join(AGGREGATIONS)}, got {how!r}")
    if not steps:
        raise VerifierError("a PRM sample has no step scores to aggregate")
    return float(AGGREGATIONS[how](steps))


@dataclass(eq=False)
class ProcessRewardModel(Verifier):
    head: str = "token-classification"
    separator: str = "<extra_0>"
    step_delimiter: str = "\n\n"
    aggregation: str = "min"
    template: str = "auto"
    system: str | None = None
    positive_token: str | None = None
    negative_token: str | None = None

    kind = "prm"
    vote_transform = "identity"

    def __post_init__(self) -> None:
        super().__post_init__()
        where = self.source.get("path") or type(self.model).__name__
        if self.head not in HEADS:
            raise VerifierError(f"PRM head must be one of {', '.join(HEADS)}, got {self.head!r}")
        aggregate([1.0], self.aggregation)  # validates the name
        self.template = resolve_template(self.tokenizer, self.template, where)
        check_system(self.template, self.system, where)
        self.sep_id = single_token_id(self.tokenizer, self.separator, "step separator", where)
        self._label_ids = None
        if self.head == "causal-lm":
            if not (self.positive_token and self.negative_token):
                raise VerifierError(
                    f"{where} is a causal LM: as a PRM it is read at the positive and negative tokens "
                    "(Math-Shepherd: '+' and '-'); name both (positive_token, negative_token)"
                )
            self._label_ids = [
                single_token_id(self.tokenizer, self.positive_token, "positive token", where),
                single_token_id(self.tokenizer, self.negative_token, "negative token", where),
            ]

    @classmethod
    def _loaded_fields(cls, head: Any) -> dict[str, Any]:
        return {"head": head}

    def encode(self, item: Item) -> Encoded:
        steps = split_steps(item.completion, self.step_delimiter, self.separator)
        text = with_separators(steps, self.separator)
        ids = encode_pair(self.tokenizer, item.prompt, text, self.template, self.system)
        marks = tuple(i for i, t in enumerate(ids) if t == self.sep_id)
        if len(marks) != len(steps):
            raise ItemProblem(
                f"{len(steps)} steps but the separator {self.separator!r} appears {len(marks)} times in the "
                "encoded text (the problem or the chat template contains it); remove it from the problem"
            )
        return Encoded(ids, marks)

    def _score_batch(self, input_ids, mask, positions, batch: list[Encoded]) -> list[list[float]]:
        width = input_ids.shape[1]
        starts = [width - len(e.ids) for e in batch]
        kwargs: dict[str, Any] = {}
        first = width
        if self.head == "causal-lm":  # vocabulary logits only from the earliest separator on
            first = min(s + e.marks[0] for s, e in zip(starts, batch, strict=True))
            kwargs["logits_to_keep"] = width - first
        out = self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False, **kwargs
        )
        logits = out[0] if isinstance(out, tuple) else out.logits
        rows = torch.tensor([r for r, e in enumerate(batch) for _ in e.marks], device=logits.device)
        offset = width - logits.shape[1]
        cols = torch.tensor([s + m - offset for s, e in zip(starts, batch, strict=True) for m in e.marks])
        picked = logits[rows, cols.to(logits.device)].float()
        probs = self._positive(picked).tolist()
        out_rows, at = [], 0
        for e in batch:
            out_rows.append(probs[at : at + len(e.marks)])
            at += len(e.marks)
        return out_rows

    def _positive(self, logits: torch.Tensor) -> torch.Tensor:
        """The positive-class probability from the logits read at the separators (rows × labels)."""
        if self._label_ids is not None:
            return torch.softmax(logits[:, self._label_ids], dim=-1)[:, 0]
        if logits.shape[-1] == 2:
            return torch.softmax(logits, dim=-1)[:, 1]
        if logits.shape[-1] == 1:
            return torch.sigmoid(logits[:, 0])
        raise VerifierError(
            f"{self.source.get('path') or 'PRM'}: the head gives {logits.shape[-1]} values per token; a PRM "
            "head gives 2 (bad/good) or 1"
        )

    def _finish(self, raw) -> float:
        return aggregate(raw, self.aggregation)

    def _output_bytes(self, length: int) -> int:
        if self.head != "causal-lm":
            return 0
        vocab = self.model.config.get_text_config().vocab_size
        return length * vocab * (next(self.model.parameters()).element_size() + 8)

    def _options(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "separator": self.separator,
            "step_delimiter": self.step_delimiter,
            "aggregation": self.aggregation,
            "template": self.template,
            "system": self.system,
            "positive_token": self.positive_token,
            "negative_token": self.negative_token,
        }

"""The model's own likelihood: the mean log-probability of the completion's tokens given the prompt.

The baseline that needs no extra model: score each sample by how likely a causal LM (usually the model
that sampled it) finds its completion. The prompt is tokenized as the sampler tokenized it
(`add_special_tokens`, True by default as in `HFSampler`; pass False for prompts that already carry a chat
template), the completion separately without special tokens, and the two id lists are joined: the
completion's ids are then those a sampler emitting this text would most plausibly have produced
(decoding and re-encoding need not give back the exact sampled ids for every tokenizer). The stop
token is not scored (the text does not say whether the sample stopped or was cut).

Score: mean over the completion's tokens of log p(token | everything before it), ≤ 0. An empty
completion has no token to average and is refused. Vote transform "exp": the geometric-mean token
probability, in (0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from wiseft.verify.base import Encoded, Item, ItemProblem, Verifier


@dataclass(eq=False)
class LikelihoodVerifier(Verifier):
    add_special_tokens: bool = True

    kind = "likelihood"
    vote_transform = "exp"

    def encode(self, item: Item) -> Encoded:
        context = list(self.tokenizer(item.prompt, add_special_tokens=self.add_special_tokens)["input_ids"])
        completion = list(self.tokenizer(item.completion, add_special_tokens=False)["input_ids"])
        if not completion:
            raise ItemProblem("the completion is empty: it has no token whose likelihood could be averaged")
        if not context:
            raise ItemProblem(
                "the prompt encodes to no tokens, so the completion's first token has no context; "
                "use add_special_tokens=True where the tokenizer adds a BOS"
            )
        return Encoded(context + completion, (len(context),))

    def _score_batch(self, input_ids, mask, positions, batch: list[Encoded]) -> list[float]:
        lengths = torch.tensor([len(e.ids) - e.marks[0] for e in batch], device=input_ids.device)
        keep = int(lengths.max()) + 1  # logits from the last context token on (left padding)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=False,
            logits_to_keep=keep,
        )
        logp = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)  # predictions of the last keep−1 tokens
        targets = input_ids[:, input_ids.shape[1] - keep + 1 :]
        token_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        in_completion = (
            torch.arange(keep - 1, device=input_ids.device)[None, :] >= (keep - 1 - lengths)[:, None]
        )
        total = torch.where(in_completion, token_logp, torch.zeros_like(token_logp)).double().sum(dim=-1)
        return (total / lengths).tolist()

    def _output_bytes(self, length: int) -> int:
        vocab = self.model.config.get_text_config().vocab_size
        return length * vocab * (next(self.model.parameters()).element_size() + 8)

    def _options(self) -> dict[str, Any]:
        return {"add_special_tokens": self.add_special_tokens, "reduction": "mean-token-logprob"}

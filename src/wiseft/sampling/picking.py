"""Choosing the next token from logits and uniforms: temperature, top-k, top-p, inverse-CDF sampling.

A pure function of its inputs, so a draw depends only on the probabilities and the uniform the prompt's
own random stream supplies (`sampling.base.prompt_seed`), never on the batch.
"""

from __future__ import annotations

import torch

from wiseft.sampling.base import SamplingParams


def pick_tokens(logits: torch.Tensor, u: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Choose one token per row from float32 `logits` (rows x vocab) with uniforms `u` (rows,).

    Greedy when temperature is 0. Otherwise temperature, then top-k, then top-p (the smallest set of
    most likely tokens whose mass reaches top_p; the most likely token is always kept), then the token
    whose cumulative-probability interval contains u (inverse-CDF sampling, so the draw is a pure
    function of u and the probabilities).
    """
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / params.temperature
    vocab = logits.shape[-1]
    if 0 < params.top_k < vocab:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    order = None
    if params.top_p < 1.0:
        probs, order = torch.sort(probs, dim=-1, descending=True)
        mass_before = probs.cumsum(dim=-1) - probs
        probs = probs.masked_fill(mass_before >= params.top_p, 0.0)
    cdf = probs.cumsum(dim=-1)
    total = cdf[:, -1:]
    choice = torch.searchsorted(cdf, u.to(cdf.dtype).unsqueeze(1) * total, right=True)
    # u * total can round up to total itself; the first index where cdf reaches total has mass.
    choice = torch.minimum(choice, (cdf < total).sum(dim=-1, keepdim=True))
    if order is not None:
        return order.gather(1, choice).squeeze(1)
    return choice.squeeze(1)

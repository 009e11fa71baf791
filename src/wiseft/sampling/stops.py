"""Stop strings during decoding: which rows just completed one.

`StopChecker(tokenizer, vocab_size, stop)` is built once per request. Only rows whose new token's text
contains the last character of some stop string can have completed one; only those have their last few
tokens decoded. The final text is cut again at the earliest stop string when the completion is built, so
this is an early exit, not the authority.
"""

from __future__ import annotations

import torch


class StopChecker:
    def __init__(self, tokenizer, pieces: list[str], vocab_size: int, stop: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.stop = stop
        last_chars = {s[-1] for s in stop}
        self.candidate = torch.zeros(max(len(pieces), vocab_size), dtype=torch.bool)
        for i, piece in enumerate(pieces):
            if any(c in piece for c in last_chars):
                self.candidate[i] = True
        self.tail = max(len(s) for s in stop) + 2  # tokens: enough to cover the longest stop string

    def __call__(self, tokens, active, chosen, step: int, finished) -> torch.Tensor:
        """Rows (of the batch) whose text completed a stop string at `step` (`finished` rows excluded)."""
        hit = torch.zeros_like(finished)
        rows = (self.candidate[chosen] & ~finished).nonzero().squeeze(1).tolist()
        if not rows:
            return hit
        start = max(0, step + 1 - self.tail)
        tails = self.tokenizer.batch_decode(tokens[active[rows], start : step + 1].tolist())
        for r, text in zip(rows, tails, strict=True):
            if any(s in text for s in self.stop):
                hit[r] = True
        return hit

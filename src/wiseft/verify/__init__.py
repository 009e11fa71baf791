"""Verifiers: score (problem, completion) pairs for Best@k and weighted majority vote.

Three kinds, one loop (`base.Verifier.score`: length-sorted batches under a memory budget, CPU or CUDA,
progress, scores in input order, the verifier's identity beside them):
- "orm": outcome reward models, `*ForSequenceClassification` (orm.py);
- "prm": process reward models, step probabilities at a separator token, aggregated by min/last/prod
  (prm.py);
- "likelihood": mean token log-probability of the completion under a causal LM (likelihood.py).
Each kind names the transform that turns its scores into votes ≥ 0 for weighted maj@k
(`Verifier.vote_transform`, `metrics.VOTE_TRANSFORMS`). `toy.train_toy_verifier` trains the demo's ORM.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from wiseft.errors import VerifierError
from wiseft.verify.base import VERIFY_FORMAT, Item, Scores, Verifier, score_samples
from wiseft.verify.likelihood import LikelihoodVerifier
from wiseft.verify.orm import OutcomeRewardModel
from wiseft.verify.prm import AGGREGATIONS, ProcessRewardModel, aggregate

KINDS: dict[str, type[Verifier]] = {
    "orm": OutcomeRewardModel,
    "prm": ProcessRewardModel,
    "likelihood": LikelihoodVerifier,
}


def load_verifier(path: str | os.PathLike, kind: str, **options: Any) -> Verifier:
    """Open the verifier of `kind` stored at `path` (a directory or Hub name). Options: device, dtype,
    trust_remote_code (off by default), and the kind's own (template, system, separator, aggregation,
    step_delimiter, positive_token, negative_token, add_special_tokens, max_tokens, max_rows, ...)."""
    if kind not in KINDS:
        raise VerifierError(f"verifier kind must be one of {', '.join(KINDS)}, got {kind!r}")
    cls = KINDS[kind]
    known = {f.name for f in dataclasses.fields(cls)} - {"model", "tokenizer", "source", "head"}
    known |= {"device", "dtype", "trust_remote_code"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise VerifierError(
            f"unknown option {', '.join(unknown)} for a {kind!r} verifier; known: {', '.join(sorted(known))}"
        )
    return cls.from_pretrained(path, **options)


__all__ = [
    "AGGREGATIONS",
    "KINDS",
    "VERIFY_FORMAT",
    "Item",
    "LikelihoodVerifier",
    "OutcomeRewardModel",
    "ProcessRewardModel",
    "Scores",
    "Verifier",
    "aggregate",
    "load_verifier",
    "score_samples",
]

"""Typed rows of the store's tables, the variant key, and small value helpers shared by the store's parts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProblemRow:
    """A row of `problems`: what the store knows of one problem of a task (None where unknown)."""

    problem_id: str
    gold: str | None
    prompt: str | None
    meta: dict | None


@dataclass(frozen=True)
class VariantRow:
    """A row of `variants`: what one set of samples was drawn from."""

    id: int
    key: str
    name: str
    kind: str
    task: str
    recipe: dict | None
    temperature: float | None
    seed: int | None
    step: int | None
    model_hashes: dict
    sampling: dict


@dataclass(frozen=True)
class VerifierRow:
    """A row of `verifiers`: a verifier that scored samples (kind and vote transform None when unknown,
    e.g. scores imported from JSONL that named only the verifier's id)."""

    id: str
    kind: str | None
    vote_transform: str | None
    identity: dict

    def describe(self) -> str:
        """The kind ("orm") and where the verifier was loaded from, as far as known."""
        parts = [self.kind or "unknown kind"]
        if self.identity.get("path"):
            parts.append(str(self.identity["path"]))
        elif self.identity.get("imported_from"):
            parts.append(f"imported from {self.identity['imported_from']}")
        return ", ".join(parts)


def variant_key(**fields: Any) -> str:
    """A stable hash of everything that determines a variant's samples."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def variant_id(variant: VariantRow | int) -> int:
    return variant.id if isinstance(variant, VariantRow) else int(variant)


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {}

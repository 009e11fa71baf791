"""Per-token embedding sources of a tokenizer policy (mergekit's `tokenizer: {tokens: ...}`).

    tokenizer_tokens:                         # mergekit: tokenizer.tokens
      "<|im_start|>": {source: MODEL}         # that model's row of the same token
      "<tool>": {source: {kind: zero}}        # a zero row
      "<think>": {source: {kind: model_token, model: MODEL, token: "<s>"}, force: true}
                                              # MODEL's row of another token (or token_id: N, MODEL's id)
    pad_to_multiple_of: 64                    # output rows rounded up; padding rows are each model's mean row

A token listed here is added to the output tokenizer when it lacks it. Its row in a model that has the
token is the model's own row unless `force` is true; in a model that lacks it (or with `force`), the
source's row. `source` is required (mergekit fails without one).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from wiseft.errors import ConfigError

SPEC_KEYS = ("source", "force")
SOURCE_KEYS = ("kind", "model", "token", "token_id")


@dataclass(frozen=True)
class TokenSource:
    """Where the default row of one token comes from."""

    token: str
    kind: str  # "model" (the same token in `model`), "zero", or "model_token" (another token of `model`)
    model: str | None = None
    source_token: str | None = None
    source_id: int | None = None
    force: bool = False

    def to_data(self) -> dict[str, Any]:
        if self.kind == "model":
            source: Any = self.model
        elif self.kind == "zero":
            source = {"kind": "zero"}
        else:
            source = {"kind": "model_token", "model": self.model}
            source.update(
                {"token": self.source_token} if self.source_id is None else {"token_id": self.source_id}
            )
        out: dict[str, Any] = {"source": source}
        if self.force:
            out["force"] = True
        return out


def parse_tokens(raw: Any, where: str = "tokenizer_tokens") -> tuple[TokenSource, ...]:
    """The `tokenizer_tokens` mapping as TokenSources (in the order given); ConfigError naming the key."""
    if raw is None:
        return ()
    if isinstance(raw, (tuple, list)) and all(isinstance(t, TokenSource) for t in raw):
        return tuple(raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping TOKEN: {{source: ..., force: ...}}, got {raw!r}")
    return tuple(_spec(str(token), spec, f"{where}[{token!r}]") for token, spec in raw.items())


def _unknown(key: str, known: tuple[str, ...], where: str) -> ConfigError:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint} (known: {', '.join(known)})")


def _spec(token: str, spec: Any, where: str) -> TokenSource:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping {{source: ..., force: ...}}, got {spec!r}")
    for key in spec:
        if key not in SPEC_KEYS:
            raise _unknown(key, SPEC_KEYS, where)
    force = spec.get("force", False)
    if not isinstance(force, bool):
        raise ConfigError(f"{where}.force must be true or false, got {force!r}")
    source = spec.get("source")
    if source is None:
        raise ConfigError(
            f"{where} needs source: a model, {{kind: zero}} or {{kind: model_token, model, token}}"
        )
    if isinstance(source, str) and source:
        return TokenSource(token, "model", model=source, force=force)
    if not isinstance(source, dict):
        raise ConfigError(f"{where}.source must be a model or a {{kind: ...}} mapping, got {source!r}")
    for key in source:
        if key not in SOURCE_KEYS:
            raise _unknown(key, SOURCE_KEYS, f"{where}.source")
    kind = source.get("kind")
    if kind == "zero":
        return TokenSource(token, "zero", force=force)
    if kind != "model_token":
        raise ConfigError(f"{where}.source.kind {kind!r} is not one of zero, model_token")
    return _model_token(token, source, force, where)


def _model_token(token: str, source: dict, force: bool, where: str) -> TokenSource:
    model, name, index = source.get("model"), source.get("token"), source.get("token_id")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{where}.source: model_token needs model (one of the merged models)")
    if (name is None) == (index is None):
        raise ConfigError(f"{where}.source: give exactly one of token and token_id")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise ConfigError(f"{where}.source.token_id must be a non-negative integer, got {index!r}")
    return TokenSource(
        token,
        "model_token",
        model=model,
        source_token=None if name is None else str(name),
        source_id=index,
        force=force,
    )


def parse_pad(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ConfigError(f"pad_to_multiple_of must be a positive integer, got {raw!r}")
    return raw


def tokens_to_data(specs: tuple[TokenSource, ...]) -> dict[str, Any]:
    return {s.token: s.to_data() for s in specs}


__all__ = ["TokenSource", "parse_pad", "parse_tokens", "tokens_to_data"]

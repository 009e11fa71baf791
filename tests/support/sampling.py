"""Helpers for the sampling, store, sweep and CLI tests."""

from __future__ import annotations

from pathlib import Path

import torch

from wiseft.testing import save_tiny_model


def tiny_model_dir(root: Path, name: str = "m", seed: int = 0, **kwargs) -> Path:
    """A tiny Llama with the char tokenizer, saved once per directory."""
    path = root / name
    if not (path / "config.json").is_file():
        save_tiny_model(path, seed=seed, **kwargs)
    return path


def forbid_tokens(model, token_ids):
    """Make `model` unable to emit `token_ids` (their logits are -inf), e.g. a model that never stops by
    itself. Returns the hook handle; call `.remove()` to undo."""
    token_ids = list(token_ids)

    def hook(_module, _inputs, output):
        output[..., token_ids] = float("-inf")
        return output

    return model.lm_head.register_forward_hook(hook)


def reference_logits(model, tokenizer, prompt: str, continuation_ids: list[int]) -> torch.Tensor:
    """float64 next-token logits after `prompt` + `continuation_ids`, computed without any cache."""
    ids = tokenizer(prompt)["input_ids"] + continuation_ids
    with torch.no_grad():
        out = model.double()(torch.tensor([ids])).logits[0, -1]
    model.float()
    return out


class CountingSampler:
    """Wraps a sampler and records which prompts it was asked for (to check what a resume redoes)."""

    def __init__(self, inner):
        self.inner = inner
        self.prompts: list[str] = []

    def generate(self, prompts, n, params):
        self.prompts.extend(prompts)
        return self.inner.generate(prompts, n, params)

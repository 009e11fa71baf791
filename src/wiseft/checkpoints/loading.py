"""The one way wiseft hands a model directory to transformers.

`load_causal_lm(path, dtype)` and `load_tokenizer(path)` first check the directory (config.json, the
index and every safetensors header: `validate_model_dir`), then let transformers load it with remote code
off unless the caller turns it on, and turn transformers' failures (a config asking for remote code, an
unknown architecture, a tokenizer that will not load) into one CheckpointError naming the directory and
what to do, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from wiseft.checkpoints.checkpoint import validate_model_dir
from wiseft.errors import CheckpointError

_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, ImportError, AttributeError)


def remote_code_wanted(path: Path) -> bool:
    """Whether the model's config names code of its own (`auto_map`), which loading would have to run."""
    import json

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("auto_map"))


def load_causal_lm(path: str | os.PathLike, dtype=None, trust_remote_code: bool = False):
    """The causal LM of `path` (checked first), in `dtype` (default float32), eval mode, on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    path = validate_model_dir(path)
    if remote_code_wanted(path) and not trust_remote_code:
        raise CheckpointError(
            f"model {path} asks to run its own code (auto_map in config.json); wiseft does not run remote "
            "code: use a model whose architecture transformers knows"
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype or torch.float32, trust_remote_code=trust_remote_code
        )
    except _LOAD_ERRORS as exc:
        raise CheckpointError(f"cannot load model {path}: {_one_line(exc)}") from exc
    return model.eval()


def load_tokenizer(path: str | os.PathLike, trust_remote_code: bool = False):
    """The tokenizer saved in `path` (remote code off unless asked)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except _LOAD_ERRORS as exc:
        raise CheckpointError(f"cannot load the tokenizer of {path}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")

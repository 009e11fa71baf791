"""Open a verifier directory safely: safetensors only, the right kind of head, no foreign code unless asked.

`open_model(path, kind, ...)` checks, before transformers reads a byte of weights:
- the directory (or Hub name, fetched as safetensors only) has config.json and safetensors weights
  (`Checkpoint.open` refuses a directory with only .bin/pickle weights and says how to convert it);
- `config.architectures` names a head the kind can read (`HEADS`), else the error names the architecture
  found and what is expected;
- an architecture that transformers does not ship (its code comes with the checkpoint, `auto_map`) is
  loaded only with `trust_remote_code=True`.
It then loads tokenizer and model with `use_safetensors=True` and hashes what decides a score: the
weight bytes, config.json and the tokenizer files (`source["sha256"]`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from wiseft.checkpoints import TOKENIZER_FILES, Checkpoint
from wiseft.errors import VerifierError

# For each kind: architecture-name suffix → (head, transformers Auto class).
HEADS: dict[str, dict[str, tuple[str, str]]] = {
    "orm": {"ForSequenceClassification": ("sequence-classification", "AutoModelForSequenceClassification")},
    "prm": {
        "ForTokenClassification": ("token-classification", "AutoModelForTokenClassification"),
        "ForProcessRewardModel": ("process-reward-model", "AutoModel"),
        "ForCausalLM": ("causal-lm", "AutoModelForCausalLM"),
    },
    "likelihood": {"ForCausalLM": ("causal-lm", "AutoModelForCausalLM")},
}
EXPECTED = {
    "orm": "a *ForSequenceClassification checkpoint with one score per sequence (e.g. Skywork-Reward); use "
    "kind 'prm' for step-level models or 'likelihood' for a causal LM",
    "prm": "a *ForTokenClassification checkpoint, a process reward model (e.g. Qwen2.5-Math-PRM, "
    "*ForProcessRewardModel) or a *ForCausalLM read at positive/negative tokens",
    "likelihood": "a *ForCausalLM checkpoint (a language model whose own likelihood scores the samples)",
}
HASH_CHUNK = 16 << 20


def architecture_head(path: Path, config: dict[str, Any], kind: str) -> tuple[str, str, str]:
    """(architecture, head, Auto class name) for `kind`, or a VerifierError naming what was found.

    An architecture matches a head by its name's suffix, or, for language models, by being one of
    transformers' causal-LM classes (GPT2LMHeadModel, ...ForConditionalGeneration).
    """
    archs = config.get("architectures") or []
    if not archs:
        raise VerifierError(
            f"{path}/config.json has no 'architectures', so its head is unknown; expected {EXPECTED[kind]}"
        )
    arch = str(archs[0])
    for suffix, (head, auto) in HEADS[kind].items():
        if arch.endswith(suffix) or (suffix == "ForCausalLM" and arch in _causal_lm_classes()):
            return arch, head, auto
    what = {"orm": "not a sequence classifier", "prm": "not a process reward model"}.get(
        kind, "not a causal LM"
    )
    raise VerifierError(f"{path} is {what}: config.architectures is {archs}; expected {EXPECTED[kind]}")


def _causal_lm_classes() -> set[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names: set[str] = set()
    for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        names.update([value] if isinstance(value, str) else value)
    return names


def check_remote_code(path: Path, config: dict[str, Any], arch: str, trust_remote_code: bool) -> None:
    import transformers

    if hasattr(transformers, arch):
        return
    if not trust_remote_code:
        where = "its config auto_map" if config.get("auto_map") else "code that is not in this directory"
        raise VerifierError(
            f"{path}: architecture {arch} is not part of transformers and runs {where}; pass "
            "trust_remote_code=True (--trust-remote-code) only if you trust that code"
        )
    if not config.get("auto_map"):
        raise VerifierError(
            f"{path}: architecture {arch} is not part of transformers and config.json has no auto_map "
            "pointing at its code; upgrade transformers or use a checkpoint of a supported architecture"
        )


def open_model(
    path: str | os.PathLike,
    kind: str,
    *,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any, str, dict[str, Any]]:
    """(model, tokenizer, head, source) for a verifier of `kind` stored at `path` (see the module doc)."""
    import transformers

    ckpt = Checkpoint.open(path)
    try:
        arch, head, auto = architecture_head(ckpt.path, ckpt.config, kind)
        check_remote_code(ckpt.path, ckpt.config, arch, trust_remote_code)
        source = {"path": str(ckpt.path), "architecture": arch, "sha256": _hashes(ckpt)}
    finally:
        ckpt.close()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VerifierError(f"device {device!r} asked for, but CUDA is not available; use device 'cpu'")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        with quiet_transformers():
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(ckpt.path), trust_remote_code=trust_remote_code
            )
            model = getattr(transformers, auto).from_pretrained(
                str(ckpt.path), dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
            )
    except (OSError, ValueError, KeyError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VerifierError(f"cannot load verifier {ckpt.path}: {first}") from exc
    model.to(device).eval()
    return model, tokenizer, head, source


@contextlib.contextmanager
def quiet_transformers():
    """No transformers progress bars for the duration (the library never prints; callers show progress)."""
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def _hashes(ckpt: Checkpoint) -> dict[str, str]:
    """sha256 of the weight bytes (every safetensors file, in order), config.json and the tokenizer files."""
    weights = hashlib.sha256()
    for file in ckpt.files:
        with open(file, "rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                weights.update(chunk)
    tok = hashlib.sha256()
    for name in TOKENIZER_FILES:
        file = ckpt.path / name
        if file.is_file() and name != "generation_config.json":
            tok.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    config = hashlib.sha256((ckpt.path / "config.json").read_bytes()).hexdigest()
    return {"weights": weights.hexdigest(), "config": config, "tokenizer": tok.hexdigest()}

"""Training checkpoints: standard Hugging Face `checkpoint-STEP/` directories, written atomically.

A checkpoint holds the safetensors weights, config and generation config, the tokenizer,
`trainer_state.json` (step, config, loss history, how the run was resumed) and, when asked, the optimizer
state. Which directories count as checkpoints is `wiseft.checkpoints.find_checkpoints`'s one rule.
"""

from __future__ import annotations

import json
from pathlib import Path

from wiseft.atomic import atomic_dir, write_json
from wiseft.checkpoints import validate_model_dir
from wiseft.errors import TrainError

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"


def save_checkpoint(model, tokenizer, out_dir: Path, step: int, state: dict, optimizer=None) -> Path:
    """Write `checkpoint-STEP/` atomically: it appears complete or not at all."""
    import torch
    from transformers.utils import logging as hf_logging

    target = Path(out_dir) / f"checkpoint-{step}"
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' own "Writing model shards" bar would break ours
    with atomic_dir(target, force=True) as tmp:
        try:
            model.save_pretrained(str(tmp), safe_serialization=True)
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        tokenizer.save_pretrained(str(tmp))
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        write_json(tmp / STATE_FILE, state)
    return target


def load_weights(model, ckpt: Path):
    """Load the safetensors weights of `ckpt` into `model` (tied weights may be absent from the files)."""
    from safetensors.torch import load_file

    files = sorted(ckpt.glob("*.safetensors"))
    if not files:
        raise TrainError(
            f"{ckpt} holds no .safetensors weights; delete it to restart from the previous checkpoint"
        )
    validate_model_dir(ckpt)  # every header checked before safetensors reads the tensors
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = getattr(model, "_tied_weights_keys", None) or {}
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise TrainError(
            f"{ckpt} does not match the model being trained (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model


def load_optimizer(optimizer, ckpt: Path, device) -> bool:
    """Restore the optimizer state saved in `ckpt`; False when it holds none."""
    import torch

    path = ckpt / OPTIMIZER_FILE
    if not path.is_file():
        return False
    optimizer.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return True


def read_history(ckpt: Path) -> list[float]:
    """The loss of every step up to `ckpt`, from its trainer_state.json."""
    try:
        return list(json.loads((ckpt / STATE_FILE).read_text())["loss_history"])
    except (OSError, ValueError, KeyError) as exc:
        raise TrainError(
            f"{ckpt / STATE_FILE} is unreadable ({exc}); delete {ckpt} to resume from an earlier one"
        ) from exc

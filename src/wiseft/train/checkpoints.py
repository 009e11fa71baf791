"""Training checkpoints: standard Hugging Face `checkpoint-STEP/` directories, written atomically.

A checkpoint holds the safetensors weights, config and generation config, the tokenizer,
`trainer_state.json` (step, config, the step history, how the run was resumed) and, when asked, the
optimizer state as `optimizer.safetensors` + `optimizer.json` (`train.optim_state`: never a pickle, since
a checkpoint is untrusted input). Which directories count as checkpoints is
`wiseft.checkpoints.find_checkpoints`'s one rule. SFT and GRPO write and read checkpoints through here.
"""

from __future__ import annotations

from pathlib import Path

from wiseft.atomic import atomic_dir, write_json
from wiseft.checkpoints import Checkpoint
from wiseft.errors import ConfigError, TrainError
from wiseft.jsonl import loads
from wiseft.train import optim_state

STATE_FILE = "trainer_state.json"


def save_checkpoint(model, tokenizer, out_dir: Path, step: int, state: dict, optimizer=None) -> Path:
    """Write `checkpoint-STEP/` atomically: it appears complete or not at all."""
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
            optim_state.save_optimizer_state(optimizer, tmp)
        write_json(tmp / STATE_FILE, state)
    return target


def load_weights(model, ckpt: Path):
    """Load the safetensors weights of `ckpt` into `model` (tied weights may be absent from the files)."""
    from safetensors.torch import load_file

    if not any(ckpt.glob("*.safetensors")):
        raise TrainError(
            f"{ckpt} holds no .safetensors weights; delete it to restart from the previous checkpoint"
        )
    stored = Checkpoint.open(ckpt)  # every header checked before safetensors reads the tensors
    files = stored.files  # the model's weight files (not the optimizer state beside them)
    stored.close()
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


def load_optimizer(optimizer, ckpt: Path) -> bool:
    """Restore the optimizer state saved in `ckpt`; False when it holds none."""
    if not optim_state.has_optimizer_state(ckpt):
        return False
    optim_state.load_optimizer_state(optimizer, ckpt)
    return True


def make_adamw(model, lr: float, betas: tuple[float, float], weight_decay: float):
    """AdamW with weight decay on matrices only (biases and norms are not decayed)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


def read_state(ckpt: Path, key: str) -> dict:
    """The trainer_state.json of `ckpt`, which must hold the list `key` (the step history)."""
    path = ckpt / STATE_FILE
    try:
        state = loads(path.read_bytes(), str(path), TrainError)
        if not isinstance(state, dict) or not isinstance(state.get(key), list):
            raise TrainError(f"{path}: no {key!r} list")
    except (OSError, TrainError) as exc:
        raise TrainError(
            f"{path} is unreadable ({exc}); delete {ckpt} to resume from an earlier one"
        ) from exc
    return state


def read_history(ckpt: Path) -> list[float]:
    """The loss of every step up to `ckpt`, from its trainer_state.json."""
    return list(read_state(ckpt, "loss_history")["loss_history"])


def check_save_steps(save_steps, steps: int) -> None:
    """Every --save-steps value is a step of the run (1..steps)."""
    bad = [s for s in save_steps if not 1 <= s <= steps]
    if bad:
        raise ConfigError(f"--save-steps {bad} lie outside 1..{steps} (the --steps of this run)")


def checkpoint_steps(steps: int, save_every: int, save_steps) -> list[int]:
    """Steps at which a checkpoint is written: every `save_every`, the `save_steps`, and the last step."""
    chosen = set(save_steps) | {steps}
    if save_every:
        chosen |= set(range(save_every, steps + 1, save_every))
    return sorted(chosen)

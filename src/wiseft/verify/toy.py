"""The demo's outcome verifier: a tiny sequence classifier trained on graded samples, saved as a standard
Hugging Face checkpoint so that `OutcomeRewardModel` (the path real reward models take) scores with it.

`train_toy_verifier(samples, out_dir, tokenizer)` takes (prompt, completion, correct) triples, e.g. the
toy world's base-model samples graded against their problems (never the held-out test problems), and
trains a GPT-2-style `GPT2ForSequenceClassification` of one label over the given tokenizer (the toy
world's character tokenizer). Texts are encoded exactly as the ORM path encodes them at scoring time
(`OutcomeRewardModel.encode`: plain `prompt + completion`, the score read at the last token), and the
logit is trained with a logistic loss whose classes are weighted equally, so that `sigmoid(score)`
reads as the chance that the sample is correct under a balanced prior.

What it can learn in the demo's budget (a few hundred steps): the shape of a solution (a partial sum
missing, repeated or cut short), not arithmetic. A slip of ±1 or ±10 in a partial sum looks like any
other digit to a classifier trained from scratch on a few thousand labels, and starting from the toy
language model (`init_from`) did not change that within a few hundred steps either; the language
model's own likelihood (`LikelihoodVerifier`) does see slips, since they are unlikely digits to it.

Determinism: the initial weights come from `seed`, the batches from `seed` and the step (shuffled
epochs), and training runs on `threads` CPU threads (1 by default), so the same samples and seed write
the same bytes. The output directory is written atomically: safetensors, config.json, the tokenizer,
and `wiseft_verifier.json` (the config and the training record).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from wiseft.atomic import atomic_dir, write_json
from wiseft.config import to_dict
from wiseft.errors import ConfigError, VerifierError
from wiseft.verify.base import Encoded, Item
from wiseft.verify.load import quiet_transformers
from wiseft.verify.orm import OutcomeRewardModel

RECORD_FILE = "wiseft_verifier.json"


@dataclasses.dataclass(frozen=True)
class ToyVerifierConfig:
    """The classifier and its training: small, because the demo trains it and scores every sample with
    it within seconds on two cores, and because what it can learn there (see the module doc) needs no
    more."""

    hidden: int = 32
    layers: int = 2
    heads: int = 4
    intermediate: int = 128
    max_positions: int = 64
    activation: str = "gelu_pytorch_tanh"
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 1

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(
                f"toy verifier steps and batch size must be ≥ 1, got {self.steps}, {self.batch_size}"
            )
        if self.hidden % self.heads:
            raise ConfigError(f"toy verifier width {self.hidden} is not a multiple of its {self.heads} heads")
        if not self.lr > 0 or self.threads < 1:
            raise ConfigError(f"toy verifier needs lr > 0 and threads ≥ 1, got {self.lr}, {self.threads}")

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine from lr to min_lr (step is 1-based)."""
        if step <= self.warmup_steps:
            return self.lr * step / max(1, self.warmup_steps)
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def toy_classifier(tokenizer: Any, cfg: ToyVerifierConfig, init_from: str | os.PathLike | None = None):
    """A GPT2ForSequenceClassification (one label, no dropout) over `tokenizer`, seeded by cfg.seed: fresh
    from cfg's shape, or with the transformer of the GPT-2 language model at `init_from` (e.g. the toy base
    model) and a fresh score head, as reward models are usually started from a language model."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    special = dict(
        num_labels=1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    if init_from is not None:
        return _from_language_model(Path(init_from), tokenizer, special)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=cfg.hidden,
        n_layer=cfg.layers,
        n_head=cfg.heads,
        n_inner=cfg.intermediate,
        n_positions=cfg.max_positions,
        activation_function=cfg.activation,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        **special,
    )
    return GPT2ForSequenceClassification(config).float()


def _from_language_model(path: Path, tokenizer: Any, special: dict[str, Any]):
    from transformers import AutoConfig, GPT2ForSequenceClassification

    from wiseft.verify.load import architecture_head

    config = AutoConfig.from_pretrained(str(path))
    arch, _, _ = architecture_head(path, {"architectures": config.architectures}, "likelihood")
    if config.model_type != "gpt2" or config.vocab_size != len(tokenizer):
        raise VerifierError(
            f"{path}: the toy verifier starts from a GPT-2 language model over the same tokenizer "
            f"({len(tokenizer)} tokens); found {arch} with a vocabulary of {config.vocab_size}"
        )
    for name, value in special.items():
        setattr(config, name, value)
    for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout"):
        setattr(config, name, 0.0)
    with quiet_transformers():
        model = GPT2ForSequenceClassification.from_pretrained(
            str(path), config=config, dtype=torch.float32, use_safetensors=True
        )
    return model


def train_toy_verifier(
    samples: Sequence[tuple[str, str, bool]],
    out_dir: str | os.PathLike,
    tokenizer: Any,
    cfg: ToyVerifierConfig = ToyVerifierConfig(),
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    init_from: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train the toy ORM on (prompt, completion, correct) triples and save it to `out_dir`; return the
    training record (also written to `wiseft_verifier.json`). `progress(step, steps)` after each step;
    `init_from`: a GPT-2 language model over the same tokenizer to start from (see `toy_classifier`)."""
    labels = torch.tensor([bool(c) for _, _, c in samples], dtype=torch.float32)
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(samples):
        raise VerifierError(
            f"the toy verifier needs correct and incorrect samples, got {n_pos} correct of {len(samples)}; "
            "grade more (or more varied) samples"
        )
    model = toy_classifier(tokenizer, cfg, init_from)
    ver = OutcomeRewardModel(model, tokenizer, template="plain")
    encoded = [ver._encode_checked(i, Item(p, c, f"#{i}")) for i, (p, c, _) in enumerate(samples)]
    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        losses = _train(ver, encoded, labels, cfg, progress)
    finally:
        torch.set_num_threads(before)
    model.eval()
    with torch.inference_mode():
        scores = ver.score([Item(p, c) for p, c, _ in samples]).scores
    record = {
        "config": to_dict(cfg),
        "init_from": str(init_from) if init_from is not None else None,
        "n_samples": len(samples),
        "n_correct": n_pos,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "train_accuracy": float(((scores > 0) == labels.numpy().astype(bool)).mean()),
    }
    _save(model, tokenizer, Path(out_dir), record, force)
    return record


def _train(
    ver: OutcomeRewardModel, encoded: list[Encoded], labels, cfg: ToyVerifierConfig, progress
) -> list[float]:
    model = ver.model
    model.train()
    n_pos = float(labels.sum())
    pos_weight = torch.tensor((len(labels) - n_pos) / n_pos)  # both classes weigh the same in the loss
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    order = _batches(len(encoded), cfg.batch_size, cfg.seed)
    losses = []
    for step in range(1, cfg.steps + 1):
        idx = next(order)
        rows = [encoded[i] for i in idx]
        scores = ver.forward(*ver.pad(rows), rows)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            scores, labels[idx], pos_weight=pos_weight
        )
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step, cfg.steps)
    return losses


def _batches(n: int, batch_size: int, seed: int):
    """Batches of indices: shuffled epochs from a seeded generator, cut into `batch_size` pieces."""
    rng = random.Random(f"toy-verifier-{seed}")
    size = min(batch_size, n)
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        for start in range(0, n - size + 1, size):
            yield perm[start : start + size]


def _save(model, tokenizer, out: Path, record: dict[str, Any], force: bool) -> None:
    with atomic_dir(out, force=force) as tmp:
        with quiet_transformers():
            model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / RECORD_FILE, record)

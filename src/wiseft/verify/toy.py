"""The demo's outcome verifier: a tiny sequence classifier trained on graded samples, saved as a standard
Hugging Face checkpoint so that `OutcomeRewardModel` (the path real reward models take) scores with it.

`train_toy_verifier(samples, out_dir, tokenizer)` takes (prompt, completion, correct) triples, e.g. the
toy world's base-model samples graded against their problems (never the held-out test problems), and
trains a GPT-2-style `GPT2ForSequenceClassification` of one label over the given tokenizer (the toy
world's character tokenizer). Texts are encoded exactly as the ORM path encodes them at scoring time
(`OutcomeRewardModel.encode`: plain `prompt + completion`, the score read at the last token), and the
logit is trained with a logistic loss whose classes are weighted equally, so that `sigmoid(score)`
reads as the chance that the sample is correct under a balanced prior.

What an outcome label alone teaches in the demo's budget (a few hundred steps): the shape of a solution
(a partial sum missing, repeated or cut short), not arithmetic: a slip of ±1 or ±10 in a partial sum looks
like any other digit to a classifier trained from scratch on one bit per sample, and starting from the
toy language model (`init_from`) did not change that (docs/TOY-LOG.md). Samples may therefore carry a
*reference* completion (the problem's correct solution), which turns each sample into dense, token-level
supervision, used in training only (the saved model is still a plain sequence classifier):
- `process_weight`: the score head is trained at every completion token on "the text so far is still a
  prefix of the reference" (a process label; at the last token the outcome label as before), so the
  score read at the last token learns to mean "no step went wrong";
- `lm_weight`: a next-token loss (through the tied input embeddings) on the reference's next token while
  the completion is still on its track, meant to teach the arithmetic itself.
Process labels need one token per character (the toy world's tokenizer); that is checked. Both weights
are 0 by default: within the demo's budget neither has yet been shown to give a verifier that ranks
held-out samples better than chance, from scratch or from the toy base model.

What it does not learn: to rank the samples of *one* problem, which is what Best@k needs. The training
record's `train_within_auc` (the AUC within each problem that has right and wrong samples, averaged)
says how far it gets on its own training samples; on the demo's held-out samples it was ≈ 0.5 or below
(docs/TOY-LOG.md, round 7), while its pooled AUC (0.6–0.8) comes from telling hard problems from easy
ones. Round 7 also tried, within ~150–600 steps: starting from the final SFT model, per-character step
labels that check each step against the completion's own previous sum (`tasks.toy.step_labels`), the
final model's own samples of fresh problems, and its most probable one-digit errors as hard negatives;
none ranked within a problem better than the generator's own likelihood (within-problem AUC 0.6–0.7,
Best@32 ≈ Pass@1): the fine-tuned model's mistakes are the ones its arithmetic finds plausible, and a
verifier built from it must learn to add better than it does, which this budget does not buy.

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

import numpy as np
import torch

from wiseft.atomic import atomic_dir, write_json
from wiseft.config import to_dict
from wiseft.errors import ConfigError, VerifierError
from wiseft.verify.base import Encoded, Item
from wiseft.verify.load import architecture_head, quiet_transformers
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
    process_weight: float = 0.0  # dense "still on the reference's track" labels (samples with a reference)
    lm_weight: float = 0.0  # next-token loss on the reference's tokens while on track (training only)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(
                f"toy verifier steps and batch size must be ≥ 1, got {self.steps}, {self.batch_size}"
            )
        if self.hidden % self.heads:
            raise ConfigError(f"toy verifier width {self.hidden} is not a multiple of its {self.heads} heads")
        if self.process_weight < 0 or self.lm_weight < 0:
            raise ConfigError(
                f"toy verifier loss weights must be ≥ 0, got process {self.process_weight}, lm {self.lm_weight}"
            )
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


Sample = tuple[str, str, bool] | tuple[str, str, bool, str | None]


@dataclasses.dataclass(frozen=True)
class _Row:
    """One training sample: its encoding, outcome label, and (with a reference) per-completion-token process
    labels and next-token targets, both indexed by the completion token (-1: no target)."""

    enc: Encoded
    label: float
    process: tuple[float, ...] = ()
    targets: tuple[int, ...] = ()


def train_toy_verifier(
    samples: Sequence[Sample],
    out_dir: str | os.PathLike,
    tokenizer: Any,
    cfg: ToyVerifierConfig = ToyVerifierConfig(),
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    init_from: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train the toy ORM on (prompt, completion, correct[, reference]) samples and save it to `out_dir`;
    return the training record (also written to `wiseft_verifier.json`). `reference`: the problem's
    correct completion, for the dense losses (see the module doc); `progress(step, steps)` after each
    step; `init_from`: a GPT-2 language model over the same tokenizer to start from (`toy_classifier`)."""
    labels = torch.tensor([bool(s[2]) for s in samples], dtype=torch.float32)
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(samples):
        raise VerifierError(
            f"the toy verifier needs correct and incorrect samples, got {n_pos} correct of {len(samples)}; "
            "grade more (or more varied) samples"
        )
    model = toy_classifier(tokenizer, cfg, init_from)
    ver = OutcomeRewardModel(model, tokenizer, template="plain")
    rows = [_row(ver, i, s) for i, s in enumerate(samples)]
    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        losses = _train(ver, rows, labels, cfg, progress)
        model.eval()
        with torch.inference_mode():
            scores = ver.score([Item(s[0], s[1]) for s in samples]).scores
    finally:
        torch.set_num_threads(before)
    truth = labels.numpy().astype(bool)
    ranked = ranking_within(scores, truth, [s[0] for s in samples])
    record = {
        "config": to_dict(cfg),
        "init_from": str(init_from) if init_from is not None else None,
        "n_samples": len(samples),
        "n_correct": n_pos,
        "n_with_reference": sum(1 for r in rows if r.process),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "train_accuracy": float(((scores > 0) == truth).mean()),
        "train_auc": _auc(scores, truth),
        "train_within_auc": ranked["within_auc"],
        "n_mixed_prompts": ranked["n_mixed_problems"],
    }
    _save(model, tokenizer, Path(out_dir), record, force)
    return record


def _row(ver: OutcomeRewardModel, index: int, sample: Sample) -> _Row:
    prompt, completion, correct = sample[0], sample[1], bool(sample[2])
    enc = ver._encode_checked(index, Item(prompt, completion, f"#{index}"))
    reference = sample[3] if len(sample) > 3 else None
    if reference is None or not completion:
        return _Row(enc, float(correct))
    tok = ver.tokenizer
    chars = tok.convert_ids_to_tokens(enc.ids[len(enc.ids) - len(completion) :])
    if "".join(chars) != completion or len(enc.ids) < len(completion):
        raise VerifierError(
            f"sample #{index}: process labels need one token per character of the completion (the toy "
            f"world's tokenizer); {type(tok).__name__} splits {completion!r} otherwise; give no reference"
        )
    process = tuple(float(reference.startswith(completion[: j + 1])) for j in range(len(completion)))
    targets = []
    for j in range(len(completion)):  # the next token of the reference while the text is on its track
        on_track = j < len(reference) and completion[:j] == reference[:j]
        targets.append(int(tok.convert_tokens_to_ids(reference[j])) if on_track else -1)
    return _Row(enc, float(correct), process, tuple(targets))


def _auc(scores, truth) -> float:
    """ROC-AUC: the chance that a right sample outscores a wrong one (ties count half)."""
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=bool)
    pos, neg = scores[truth], np.sort(scores[~truth])
    if not len(pos) or not len(neg):
        return float("nan")
    below, upto = np.searchsorted(neg, pos, side="left"), np.searchsorted(neg, pos, side="right")
    return float((below + 0.5 * (upto - below)).sum() / (len(pos) * len(neg)))


def within_auc(scores, truth, groups: Sequence[str]) -> float:
    """The mean over groups (problems) with right and wrong samples of the AUC within the group: how well
    the scores rank the samples of one problem, which is what Best@k needs (a pooled AUC also rewards
    telling easy problems from hard ones). NaN when no group has both."""
    return _within(scores, truth, groups)[0]


def ranking_within(scores, truth, groups: Sequence[str]) -> dict:
    """`within_auc` (None when no group has both classes) and how many groups it averages over."""
    auc, n = _within(scores, truth, groups)
    return {"within_auc": _finite_or_none(auc), "n_mixed_problems": n}


def heldout_ranking(per_problem) -> dict:
    """`ranking_within` of a verifier's stored scores over problems it never saw (`records.ProblemSamples`
    with scores, one group each). 0.5 is a random pick among a problem's samples, where Best@k is about
    Pass@1; above it Best@k climbs towards Pass@k."""
    scores = np.concatenate([p.scores for p in per_problem]) if per_problem else np.zeros(0)
    truth = np.concatenate([p.correct for p in per_problem]) if per_problem else np.zeros(0, dtype=bool)
    groups = [str(i) for i, p in enumerate(per_problem) for _ in range(len(p.correct))]
    return ranking_within(scores, truth, groups)


def _within(scores, truth, groups: Sequence[str]) -> tuple[float, int]:
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=bool)
    mixed = _mixed_groups(truth, groups)
    aucs = [_auc(scores[idx], truth[idx]) for idx in mixed]
    return (float(np.mean(aucs)) if aucs else float("nan")), len(mixed)


def _mixed_groups(truth, groups: Sequence[str]) -> list[list[int]]:
    """The indices of each group (problem) that has both right and wrong samples."""
    truth = np.asarray(truth, dtype=bool)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    return [idx for idx in members.values() if 0 < truth[idx].sum() < len(idx)]


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _train(
    ver: OutcomeRewardModel, rows: list[_Row], labels, cfg: ToyVerifierConfig, progress
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
    order = _batches(len(rows), cfg.batch_size, cfg.seed)
    losses = []
    for step in range(1, cfg.steps + 1):
        batch = [rows[i] for i in next(order)]
        loss = _loss(ver, batch, pos_weight, cfg)
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


def _loss(ver: OutcomeRewardModel, batch: list[_Row], pos_weight, cfg: ToyVerifierConfig):
    """The outcome loss at the last token (classes weighed equally), plus the dense losses of the rows
    with a reference."""
    encs = [r.enc for r in batch]
    input_ids, mask, positions = ver.pad(encs)
    out = ver._base(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False)
    hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
    scores = ver._head(hidden[:, -1]).float()[:, 0]  # left-padded: every row ends in the last column
    labels = torch.tensor([r.label for r in batch])
    loss = torch.nn.functional.binary_cross_entropy_with_logits(scores, labels, pos_weight=pos_weight)
    if not (cfg.process_weight or cfg.lm_weight) or not any(r.process for r in batch):
        return loss
    width = input_ids.shape[1]
    process = torch.full((len(batch), width), -1.0)
    targets = torch.full((len(batch), width), -100, dtype=torch.long)
    for i, r in enumerate(batch):
        n = len(r.process)
        if n:  # completion token j sits at width - n + j and is predicted at the position before it
            process[i, width - n : width - 1] = torch.tensor(r.process[:-1])
            targets[i, width - n - 1 : width - 1] = torch.tensor([t if t >= 0 else -100 for t in r.targets])
    if cfg.process_weight:
        dense = ver._head(hidden).float()[..., 0]
        known = process >= 0
        loss = loss + cfg.process_weight * torch.nn.functional.binary_cross_entropy_with_logits(
            dense[known], process[known]
        )
    if cfg.lm_weight and bool((targets >= 0).any()):
        logits = hidden @ ver._base.get_input_embeddings().weight.T
        loss = loss + cfg.lm_weight * torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
        )
    return loss


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

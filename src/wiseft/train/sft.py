"""Supervised fine-tuning of a causal LM on prompt/completion pairs, with a checkpoint schedule.

The loop below is the whole algorithm: AdamW, warm-up then cosine (or constant) learning rate, loss on
completion tokens only, gradient clipping, and standard Hugging Face checkpoint directories
(`train.checkpoints`). Why a plain loop and not `transformers.Trainer`/TRL's `SFTTrainer` (the per-step
cost is the same; the README's performance section has the figures): checkpoints appear atomically;
resuming without optimizer state keeps the learning-rate schedule and the data order (the batch of step
s is a pure function of (seed, s), `train.data`); the pretraining stage draws fresh data per step from
the same function; and with micro-batches the weights are the same bytes for any thread count.

Determinism and resume: a run resumed from `checkpoint-S` sees exactly the batches an uninterrupted run
would. With the optimizer state saved the resumed run is identical to the uninterrupted one; without
it, AdamW's moments restart from zero at S (recorded in `trainer_state.json` as `optimizer_restored`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from wiseft.checkpoints import find_checkpoints, load_causal_lm, load_tokenizer
from wiseft.config import to_dict, write_resolved
from wiseft.devices import resolve_device
from wiseft.errors import ConfigError, TrainError
from wiseft.train.checkpoints import (
    check_save_steps,
    checkpoint_steps,
    load_optimizer,
    load_weights,
    make_adamw,
    read_history,
    read_state,
    save_checkpoint,
)
from wiseft.train.data import Collator, Pair, epoch_batches, load_pairs
from wiseft.train.parts import length_parts, split_rows

MICRO_SPLITS = ("length", "rows")


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    """Everything that decides a training run (written into every checkpoint's trainer_state.json)."""

    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 1e-4
    schedule: str = "cosine"  # "cosine" (warm-up then cosine to min_lr) or "constant" (warm-up then lr)
    warmup_steps: int = 50
    beta1: float = 0.9
    beta2: float = 0.98
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    save_every: int = 0  # 0: no periodic checkpoints
    save_steps: tuple[int, ...] = ()  # explicit steps, in addition to save_every
    save_optimizer: bool = False
    max_length: int = 0  # 0: no truncation
    seed: int = 0
    device: str | None = None  # None: CUDA when available; "cpu", "cuda", "cuda:1", ...
    threads: int | None = None  # CPU threads; None leaves torch's default
    # Split each batch into this many micro-batches whose gradients are summed in a fixed order. On CPU
    # they run side by side, one core each (`_MicroBatches`); the result is the same for any --threads.
    micro_batches: int = 1
    # How: "length" (rows sorted by length, even padded sizes: `parts.length_parts`, less padding) or
    # "rows" (consecutive rows, equal counts: `parts.split_rows`, the toy recipe's rule since round 2)
    micro_split: str = "length"

    def __post_init__(self):
        if self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and self.min_lr >= 0):
            raise ConfigError(f"--lr must be > 0 and --min-lr >= 0, got {self.lr} and {self.min_lr}")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"--schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.warmup_steps < 0 or self.save_every < 0:
            raise ConfigError("--warmup-steps and --save-every must be non-negative")
        if self.micro_split not in MICRO_SPLITS:
            raise ConfigError(
                f"--micro-split must be one of {', '.join(MICRO_SPLITS)}, got {self.micro_split!r}"
            )
        if not 1 <= self.micro_batches <= self.batch_size:
            raise ConfigError(
                f"--micro-batches must be between 1 and --batch-size ({self.batch_size}), got {self.micro_batches}"
            )
        check_save_steps(self.save_steps, self.steps)

    def checkpoint_steps(self) -> list[int]:
        """Steps at which a checkpoint is written; the last step always is."""
        return checkpoint_steps(self.steps, self.save_every, self.save_steps)

    def lr_at(self, step: int) -> float:
        """Learning rate used for optimizer step `step` (1-based)."""
        if self.warmup_steps and step <= self.warmup_steps:
            return self.lr * step / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))


@dataclasses.dataclass
class TrainStep:
    """What the loop reports after every step (the CLI turns it into a progress bar)."""

    step: int
    steps: int
    loss: float
    lr: float
    elapsed: float
    saved: Path | None = None


@dataclasses.dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    checkpoints: dict[int, Path]
    resumed_from: int
    losses: tuple[float, ...]  # per step of this invocation
    seconds: float


def train(
    model,
    tokenizer,
    batch_at: Callable[[int], list[Pair]],
    cfg: SFTConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = True,
    meta: dict[str, Any] | None = None,
    on_step: Callable[[TrainStep], None] | None = None,
    stop_when: Callable[[int, Any], bool] | None = None,
) -> TrainResult:
    """Train `model` for `cfg.steps` optimizer steps on `batch_at(step)`, writing the checkpoint schedule.

    `stop_when(step, model)`, asked after every step, may end the run early: a checkpoint is written at
    that step and marked `stopped_early`, and `cfg.steps` is then the most the run could take. It must
    leave the model and the random state as it found them (an evaluation under `torch.no_grad()`).
    With `resume`, the weights (and optimizer state, when saved) of the last checkpoint in `out_dir` are
    loaded and training continues after it; a run already complete (or stopped early) returns at once.
    """
    out = Path(out_dir)
    start, last = _resume_point(out, cfg, resume)
    model, device, optimizer, restored = _start(model, cfg, last)
    batches = _Prefetch(batch_at, Collator(tokenizer, cfg.max_length), cfg.steps)
    stepper = _MicroBatches(model, cfg, device) if cfg.micro_batches > 1 else _WholeBatch(model, cfg)
    schedule = set(cfg.checkpoint_steps())
    history = read_history(last) if last is not None else []
    losses: list[float] = []
    t0 = time.perf_counter()
    try:  # the micro-batch pool's and the prefetch's threads end with the run, also when it fails
        for step in range(start + 1, cfg.steps + 1):
            batch = [t.to(device) for t in batches.get(step)]
            lr = cfg.lr_at(step)
            value = _optimizer_step(stepper, optimizer, batch, lr, step)
            losses.append(value)
            history.append(value)
            saved = None
            stop = stop_when is not None and stop_when(step, model)
            if step in schedule or stop:
                state = _checkpoint_state(cfg, step, history, start, restored, meta, stopped_early=stop)
                saved = save_checkpoint(
                    model, tokenizer, out, step, state, optimizer if cfg.save_optimizer else None
                )
            if on_step:
                on_step(TrainStep(step, cfg.steps, value, lr, time.perf_counter() - t0, saved))
            if stop:
                break
    finally:
        stepper.close()
        batches.close()
    model.eval()
    found = find_checkpoints(out, strict=False)
    return TrainResult(out, found, start, tuple(losses), time.perf_counter() - t0)


class _Prefetch:
    """The collated batch of each step, the next one made in a background thread while the current step
    trains (as a DataLoader's worker would): making a pretraining batch of 128 fresh problems and
    tokenising it took ~6 ms of a ~100 ms step on the project's 2-core VM, on one core while the other
    waited. `batch_at` is called once per step, in step order, from that one thread, so a source with
    state (`epoch_batches`' epoch orders) and the collator's cache see what they saw before; the tensors
    are the same. An error in making a batch is raised at the step that needs it."""

    def __init__(self, batch_at: Callable[[int], list[Pair]], collate: Collator, last_step: int):
        self.make = lambda step: collate(batch_at(step))
        self.last_step = last_step
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="wiseft-batches")
        self.pending: tuple[int, Any] | None = None

    def get(self, step: int) -> list:
        if self.pending is not None and self.pending[0] == step:
            batch = self.pending[1].result()
        else:
            batch = self.make(step)
        self.pending = (step + 1, self.pool.submit(self.make, step + 1)) if step < self.last_step else None
        return batch

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _start(model, cfg: SFTConfig, last: Path | None):
    """The model seeded, with the weights of checkpoint `last` (if any), on its device in train mode, and
    its AdamW, restored from `last` where it was saved: (model, device, optimizer, restored state)."""
    import torch

    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if last is not None:
        model = load_weights(model, last)
    model.to(device)
    model.train()
    optimizer = make_adamw(model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay)
    restored = load_optimizer(optimizer, last) if last is not None else None
    return model, device, optimizer, restored


def _optimizer_step(stepper, optimizer, batch: list, lr: float, step: int) -> float:
    """One optimizer step at learning rate `lr` on `batch` (input ids, mask, labels); its loss. A loss that
    is not finite stops the run."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    value = float(stepper.step(*batch, optimizer).detach())
    if not math.isfinite(value):
        raise TrainError(f"loss became {value} at step {step}; lower --lr or check the data")
    return value


def _resume_point(out: Path, cfg: SFTConfig, resume: bool) -> tuple[int, Path | None]:
    """(the step training continues after, the checkpoint to load or None)."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"output {out} exists and is not a directory; choose another -o/--output")
    existing = find_checkpoints(out, strict=False)
    if not existing:
        return 0, None
    if not resume:
        raise TrainError(
            f"output {out} already holds checkpoints {list(existing)}; pass --resume to continue or choose "
            f"another -o/--output"
        )
    start = max(existing)
    if read_state(existing[start], "loss_history").get("stopped_early") is True:
        return cfg.steps, existing[start]  # the run ended at its stop rule: nothing left to train
    if start > cfg.steps:
        raise TrainError(
            f"{existing[start]} is beyond --steps {cfg.steps}; raise --steps to continue training"
        )
    return start, existing[start]


def _checkpoint_state(cfg, step, history, start, restored, meta, stopped_early: bool = False) -> dict:
    """The trainer_state.json of the checkpoint at `step` (`stopped_early`: the stop rule ended the run)."""
    return {
        "step": step,
        "stopped_early": stopped_early,
        "config": to_dict(cfg),
        "seed": cfg.seed,
        "loss_history": history,
        "resumed_from": start,
        "optimizer_restored": restored,
        "meta": meta or {},
    }


class _WholeBatch:
    """One optimizer step over the whole batch (`micro_batches` = 1), with `_MicroBatches`' interface."""

    def __init__(self, model, cfg: SFTConfig):
        self.model = model
        self.cfg = cfg

    def step(self, input_ids, mask, labels, optimizer):
        import torch

        # Rows are right-padded, and causal attention never lets a real token see the pads after it, so no
        # attention mask is needed; without one, attention takes its fast causal path.
        loss = completion_loss(self.model(input_ids=input_ids).logits, labels)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        optimizer.step()
        return loss

    def close(self) -> None:
        pass


class _MicroBatches:
    """One optimizer step over a batch split into `cfg.micro_batches` parts by `cfg.micro_split` ("length"
    pads less and keeps the threads evenly busy; "rows": consecutive rows, equal counts).

    Each part's loss is its summed token cross-entropy divided by the whole batch's completion tokens, so
    the parts' losses add up to the batch's mean loss; each part's gradients come from its own
    `torch.autograd.grad` and are added in part order. On CPU the parts run in a pool of up to `threads`
    Python threads (torch releases the GIL inside ops), and the whole step runs with one intra-op thread,
    so every sum is taken in the same order whatever the thread count: the weights are bit-identical for
    1 or N threads (tested).
    """

    def __init__(self, model, cfg: SFTConfig, device: str):
        import torch

        self.model = model
        self.cfg = cfg
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.cpu = not str(device).startswith("cuda")
        threads = cfg.threads or torch.get_num_threads()
        workers = min(cfg.micro_batches, threads) if self.cpu else 1
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def _part(self, input_ids, mask, labels, total):
        import torch

        width = max(1, int(mask.sum(dim=1).max()))  # right padding beyond the part's longest row
        ids, labels = input_ids[:, :width], labels[:, :width]
        loss = completion_loss(self.model(input_ids=ids).logits, labels, reduction="sum") / total
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        return loss.detach(), grads

    def step(self, input_ids, mask, labels, optimizer):
        import torch

        total = max(1, int((labels[:, 1:] != -100).sum()))
        if self.cfg.micro_split == "length":
            rows = length_parts(mask.sum(dim=1).tolist(), self.cfg.micro_batches)
            parts = [(input_ids[idx], mask[idx], labels[idx]) for idx in map(torch.tensor, rows)]
        else:
            spans = split_rows(len(input_ids), self.cfg.micro_batches)
            parts = [
                (input_ids[r.start : r.stop], mask[r.start : r.stop], labels[r.start : r.stop]) for r in spans
            ]
        threads = torch.get_num_threads()
        if self.cpu:
            torch.set_num_threads(1)
        try:
            if self.pool is None:
                results = [self._part(*part, total) for part in parts]
            else:
                results = list(self.pool.map(lambda part: self._part(*part, total), parts))
            loss = results[0][0]
            for part_loss, _ in results[1:]:
                loss = loss + part_loss
            for param, grad in zip(self.params, sum_part_grads([g for _, g in results]), strict=True):
                param.grad = grad
            if self.cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
            optimizer.step()
        finally:
            torch.set_num_threads(threads)
        return loss

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def sum_part_grads(per_part: list) -> list:
    """Per parameter, the parts' gradients added in part order (None where no part has one): the same
    bits as adding them one parameter at a time, in two multi-tensor adds instead of two small ops per
    parameter (a step's serial time on CPU)."""
    import torch

    n = len(per_part[0])
    whole = [j for j in range(n) if all(grads[j] is not None for grads in per_part)]
    out: list = [None] * n
    if whole:
        acc = [per_part[0][j] for j in whole]
        acc = (
            torch._foreach_add(acc, [per_part[1][j] for j in whole])
            if len(per_part) > 1
            else [g.clone() for g in acc]
        )
        for grads in per_part[2:]:
            torch._foreach_add_(acc, [grads[j] for j in whole])
        for j, g in zip(whole, acc, strict=True):
            out[j] = g
    for j in sorted(set(range(n)) - set(whole)):
        for grads in per_part:
            g = grads[j]
            if g is not None:
                out[j] = g.clone() if out[j] is None else out[j].add_(g)
    return out


def completion_loss(logits, labels, reduction: str = "mean"):
    """Next-token cross-entropy over completion tokens (labels = -100 elsewhere), mean or sum."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=-100,
        reduction=reduction,
    )


def finetune_from_files(
    model_dir: str | os.PathLike,
    data: str,
    out_dir: str | os.PathLike,
    cfg: SFTConfig,
    *,
    split: str = "train",
    prompt_field: str = "prompt",
    completion_field: str = "completion",
    resume: bool = False,
    on_step: Callable[[TrainStep], None] | None = None,
) -> TrainResult:
    """`wiseft train sft`: fine-tune the Hugging Face model in `model_dir` on `data` (a JSONL file or a
    dataset name) into `out_dir`, which gets the resolved config beside its checkpoints."""
    out = Path(out_dir)
    if find_checkpoints(out, strict=False) and not resume:
        raise TrainError(
            f"output {out} already holds checkpoints; pass --resume to continue or choose another -o/--output"
        )
    if not (Path(model_dir) / "config.json").is_file():
        raise TrainError(f"--model {model_dir} is not a Hugging Face model directory (no config.json)")
    pairs = load_pairs(data, split, prompt_field, completion_field)
    tokenizer = load_tokenizer(model_dir)
    Collator(tokenizer, cfg.max_length).check_learnable(pairs, data)  # before anything is written
    model = load_causal_lm(model_dir)  # every header checked before transformers reads the files
    out.mkdir(parents=True, exist_ok=True)
    write_resolved(out, cfg, name="train_config.yaml")
    meta = {"stage": "sft", "model": str(model_dir), "data": data, "n_examples": len(pairs)}
    batches = epoch_batches(pairs, cfg.batch_size, cfg.seed)
    return train(model, tokenizer, batches, cfg, out, resume=resume, meta=meta, on_step=on_step)

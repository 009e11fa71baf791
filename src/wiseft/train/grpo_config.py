"""The settings of a GRPO run (`GRPOConfig`, checked when built), what the loop reports per step and at the
end, and the seeds of each step's sampling."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

from wiseft.errors import ConfigError
from wiseft.prompts import STYLES
from wiseft.train import grpo_loss
from wiseft.train.checkpoints import check_save_steps, checkpoint_steps

SCHEDULES = ("constant", "linear", "cosine")
# Settings that may change between a run and its resumption without changing what is computed.
RESUME_FREE = ("steps", "save_every", "save_steps", "save_optimizer", "device", "threads", "warn_zero_reward_after",
               "grade_timeout", "grade_workers")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """Everything that decides a GRPO run (stored in every checkpoint). Defaults follow TRL's GRPOConfig
    where it has one (group 8, β 0, lr 1e-6 decaying linearly, loss "dapo", group-scaled rewards)."""

    steps: int = 100
    prompts_per_step: int = 8
    group_size: int = 8
    beta: float = 0.0  # KL coefficient; 0: no reference model
    lr: float = 1e-6
    min_lr: float = 0.0
    schedule: str = "linear"  # after warm-up: "constant", "linear" or "cosine" down to min_lr
    warmup_steps: int = 0
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    max_completion_length: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    format_reward: float = 0.0  # added when a final answer is found
    prompt_style: str = "plain"  # or "chat"
    save_every: int = 0
    save_steps: tuple[int, ...] = ()
    save_optimizer: bool = True
    seed: int = 0
    device: str | None = None  # None: CUDA when available
    threads: int = 0  # CPU threads; 0 leaves torch's default
    micro_batches: int = 2
    warn_zero_reward_after: int = 10  # steps of all-zero reward before a warning; 0: never
    grade_timeout: float = 5.0
    grade_workers: int = 0  # 0: automatic

    def __post_init__(self):
        _check_positive(self, ("steps", "prompts_per_step", "max_completion_length", "micro_batches"))
        if self.group_size < 2:
            raise ConfigError(
                f"--group-size must be at least 2 (advantages compare a group), got {self.group_size}"
            )
        if not self.temperature > 0:
            raise ConfigError(f"--temperature must be > 0 for RL sampling, got {self.temperature}")
        if not (self.lr > 0 and self.min_lr >= 0 and self.beta >= 0):
            raise ConfigError(
                f"--lr must be > 0, --min-lr and --beta >= 0 (got {self.lr}, {self.min_lr}, {self.beta})"
            )
        for flag, value, allowed in (
            ("--schedule", self.schedule, SCHEDULES),
            ("--loss-type", self.loss_type, grpo_loss.LOSS_TYPES),
            ("--scale-rewards", self.scale_rewards, grpo_loss.SCALES),
            ("--prompt", self.prompt_style, STYLES),
        ):
            if value not in allowed:
                raise ConfigError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
        if min(self.warmup_steps, self.save_every, self.threads, self.warn_zero_reward_after) < 0:
            raise ConfigError(
                "--warmup-steps, --save-every, --threads and --warn-zero-reward-after must be >= 0"
            )
        check_save_steps(self.save_steps, self.steps)

    def checkpoint_steps(self) -> list[int]:
        """Steps at which a checkpoint is written; the last step always is."""
        return checkpoint_steps(self.steps, self.save_every, self.save_steps)

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step `step` (1-based): linear warm-up to lr, then the schedule from lr
        towards min_lr as transformers' schedules do (the first step after warm-up uses lr, step s uses
        progress (s − 1 − warmup)/(steps − warmup), so no step is spent at min_lr = 0)."""
        if self.warmup_steps and step <= self.warmup_steps:
            return self.lr * step / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        progress = min(1.0, (step - 1 - self.warmup_steps) / max(1, self.steps - self.warmup_steps))
        if self.schedule == "linear":
            return self.lr + (self.min_lr - self.lr) * progress
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))


def _check_positive(cfg, names) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")


def step_seed(seed: int, step: int, occurrence: int = 0) -> int:
    """The sampling seed of step `step` (and of the `occurrence`-th copy of a prompt within the step)."""
    digest = hashlib.sha256(f"grpo\x00{seed}\x00{step}\x00{occurrence}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclasses.dataclass
class GRPOStep:
    """What the loop reports after every step; `warning` is set once when the reward stays 0."""

    step: int
    steps: int
    record: dict
    elapsed: float
    saved: Path | None = None
    warning: str | None = None


@dataclasses.dataclass(frozen=True)
class GRPOResult:
    out_dir: Path
    checkpoints: dict[int, Path]
    resumed_from: int
    records: tuple[dict, ...]  # the steps of this invocation
    seconds: float

"""The toy world's Instruct and Thinking models: two fine-tunes of one base that differ only in format.

Both are trained from the same base (the toy world's sloppy pretrained model, `train.toy.build_base`, with
its vocabulary extended by the two thinking tags `<think>` and `</think>`, each one token as in Qwen3's
vocabulary) on the same fresh clean problems, step by step:

- **Instruct** answers directly: `32+85+19+71=` → `981$` (the sum, digits reversed as in the toy task);
- **Thinking** writes its running sums inside a thinking block before the answer:
  `32+85+19+71=` → `<think>18,271,981</think>981$`.

The batch of step s is a pure function of (seed, s) (fresh problems, the held-out test problems excluded),
so a run resumes exactly and the two styles see the same problems in the same order. Everything is seeded:
the same inputs and seeds give the same bytes. `wiseft demo --thinking` (`wiseft.demo_thinking`) sweeps
the interpolation between the two.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path

from wiseft.atomic import atomic_dir
from wiseft.checkpoints import load_causal_lm
from wiseft.errors import ConfigError
from wiseft.tasks.toy import END, SEP, partial_sums, prompt_text, rev
from wiseft.train.sft import SFTConfig, TrainResult, train
from wiseft.train.toy import toy_tokenizer

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
STYLES = ("instruct", "thinking")


def thinking_tokenizer():
    """The toy character tokenizer plus `<think>` and `</think>` as single (non-special) tokens."""
    tok = toy_tokenizer()
    tok.add_tokens([THINK_OPEN, THINK_CLOSE])
    return tok


def completion(style: str, numbers: tuple[int, ...]) -> str:
    """The completion of `style` for a problem: `981$` or `<think>18,271,981</think>981$`."""
    sums = partial_sums(numbers)
    answer = rev(sums[-1]) + END
    if style == "instruct":
        return answer
    if style == "thinking":
        return THINK_OPEN + SEP.join(rev(s) for s in sums) + THINK_CLOSE + answer
    raise ConfigError(f"toy style must be one of {', '.join(STYLES)}, got {style!r}")


@dataclasses.dataclass(frozen=True)
class StyleSFT:
    """How each style is fine-tuned (the same for both): fresh problems of `n_numbers` numbers in lo..hi,
    `steps` steps of `batch` at `lr` (warm-up, cosine to lr/10), two micro-batches (same bytes for any
    thread count)."""

    seed: int = 0
    steps: int = 600
    batch: int = 32
    lr: float = 1e-3
    warmup_steps: int = 50
    n_numbers: int = 4
    lo: int = 10
    hi: int = 99
    micro_batches: int = 2
    threads: int = 0

    def sft_config(self) -> SFTConfig:
        return SFTConfig(
            steps=self.steps, batch_size=self.batch, lr=self.lr, min_lr=self.lr / 10, schedule="cosine",
            warmup_steps=self.warmup_steps, seed=self.seed, device="cpu", threads=self.threads,
            micro_batches=self.micro_batches,
        )  # fmt: skip


def style_batches(style: str, cfg: StyleSFT, exclude: frozenset) -> Callable[[int], list[tuple[str, str]]]:
    """`batch_at(step)`: `cfg.batch` fresh (prompt, completion) pairs of `style`; the problems depend on
    (seed, step) only, not on the style, and never include `exclude` (the test problems)."""

    def batch_at(step: int) -> list[tuple[str, str]]:
        rng = random.Random(f"toy-think-{cfg.seed}-{step}")
        out = []
        while len(out) < cfg.batch:
            nums = tuple(rng.randint(cfg.lo, cfg.hi) for _ in range(cfg.n_numbers))
            if nums not in exclude:
                out.append((prompt_text(nums), completion(style, nums)))
        return out

    return batch_at


def extend_base(base_dir: str | Path, target: str | Path, seed: int = 0, force: bool = True) -> Path:
    """The base with its vocabulary extended by the thinking tags (new embedding rows drawn from the
    model's own initialisation, seeded), saved with the extended tokenizer as a model directory."""
    import torch

    tok = thinking_tokenizer()
    model = load_causal_lm(base_dir)
    torch.manual_seed(seed)
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    with atomic_dir(target, force=force) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
    return Path(target)


def finetune_style(
    style: str, base_dir: str | Path, out_dir: str | Path, cfg: StyleSFT, exclude: frozenset, on_step=None
) -> TrainResult:
    """Fine-tune the extended base in `style`; the model is the run's last checkpoint."""
    if style not in STYLES:
        raise ConfigError(f"toy style must be one of {', '.join(STYLES)}, got {style!r}")
    tok = thinking_tokenizer()
    model = load_causal_lm(base_dir)
    meta = {"stage": f"toy-{style}", "base": str(base_dir), "sft": dataclasses.asdict(cfg)}
    return train(model, tok, style_batches(style, cfg, exclude), cfg.sft_config(), out_dir, meta=meta,
                 on_step=on_step)  # fmt: skip

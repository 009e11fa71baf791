"""The toy world of the demo: summing a list of numbers with a written chain of thought.

A problem is a list of numbers written least-significant digit first, e.g. ``32+85+19+71=`` means
23+58+91+17. The completion is the running partial sums (from the second number on), also reversed and
comma-separated, ending with the end marker ``$``: ``18,271,981$`` (81, 172, 189). The answer is the last
partial sum. Reversed digits let a tiny model add left to right, the way it writes.

Two kinds of data come out of this module:
- *sloppy* pretraining text: fresh random problems whose partial sums slip now and then (±1, ±2 or ±10),
  the slip carrying forward like a careless solver's. It gives a broad, diverse, imperfect base model.
- *clean* problems for SFT and test, from a seeded generator, with the test problems disjoint from the SFT
  ones and filtered out of pretraining.

Everything random takes a seed. The tokenizer is `wiseft.chartok` (character level, Hugging Face format),
and the model a standard transformers Llama config, so every checkpoint is a normal HF directory.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence

from wiseft.errors import ConfigError

ALPHABET = "0123456789+=,$"
END = "$"
SEP = ","


def rev(n: int) -> str:
    """The decimal digits of a non-negative integer, least significant first: 172 -> '271'."""
    if n < 0:
        raise ValueError(f"toy numbers are non-negative, got {n}")
    return str(n)[::-1]


def unrev(text: str) -> int:
    """Inverse of `rev`: '271' -> 172."""
    if not text or not text.isdigit():
        raise ValueError(f"not a reversed number: {text!r}")
    return int(text[::-1])


def partial_sums(numbers: Sequence[int]) -> list[int]:
    """Running sums from the second number on: [23, 58, 91, 17] -> [81, 172, 189]."""
    if len(numbers) < 2:
        raise ValueError("a toy problem has at least two numbers")
    out, acc = [], numbers[0]
    for x in numbers[1:]:
        acc += x
        out.append(acc)
    return out


def prompt_text(numbers: Sequence[int]) -> str:
    """'32+85+19+71=' for [23, 58, 91, 17]."""
    return "+".join(rev(x) for x in numbers) + "="


def completion_text(sums: Sequence[int]) -> str:
    """'18,271,981$' for [81, 172, 189]."""
    return SEP.join(rev(s) for s in sums) + END


def parse_prompt(prompt: str) -> list[int]:
    """Inverse of `prompt_text` (used to filter test problems out of pretraining text)."""
    body = prompt[:-1] if prompt.endswith("=") else prompt
    return [unrev(part) for part in body.split("+")]


def extract_answer(completion: str) -> str | None:
    """The final answer of a completion, in ordinary digit order, or None when there is none.

    Reads up to the end marker (or the whole text when the model never wrote it), takes the last
    comma-separated field, and un-reverses it. '18,271,981$' -> '189'.
    """
    text = completion.split(END, 1)[0].strip()
    if not text:
        return None
    last = text.split(SEP)[-1].strip()
    if not last.isdigit():
        return None
    return str(unrev(last))


@dataclasses.dataclass(frozen=True)
class ToyProblem:
    """One clean problem: its numbers (ordinary order), prompt, gold completion and gold answer."""

    id: str
    numbers: tuple[int, ...]

    @property
    def prompt(self) -> str:
        return prompt_text(self.numbers)

    @property
    def completion(self) -> str:
        return completion_text(partial_sums(self.numbers))

    @property
    def answer(self) -> str:
        return str(sum(self.numbers))


@dataclasses.dataclass(frozen=True)
class ToySplits:
    """The SFT problems and the held-out test problems; disjoint by construction."""

    sft: tuple[ToyProblem, ...]
    test: tuple[ToyProblem, ...]
    seed: int

    @property
    def test_keys(self) -> frozenset[tuple[int, ...]]:
        return frozenset(p.numbers for p in self.test)


def make_splits(
    seed: int, n_sft: int = 32, n_test: int = 400, n_numbers: int = 4, lo: int = 10, hi: int = 99
):
    """Draw `n_test` test problems, then `n_sft` SFT problems not among them; all numbers distinct tuples.

    Four two-digit numbers by default (answers 40..396, so guessing is negligible even at k = 32).
    """
    if n_sft < 0 or n_test < 0:
        raise ConfigError(f"toy split sizes must be non-negative (n_sft={n_sft}, n_test={n_test})")
    if not 1 <= lo <= hi:
        raise ConfigError(f"toy numbers need 1 <= lo <= hi, got lo={lo}, hi={hi}")
    space = (hi - lo + 1) ** n_numbers
    if n_sft + n_test > space // 2:
        raise ConfigError(
            f"asked for {n_sft + n_test} distinct toy problems but only {space} exist with "
            f"{n_numbers} numbers in {lo}..{hi}; lower --n-sft/--n-test"
        )
    rng = random.Random(f"toy-splits-{seed}")
    seen: set[tuple[int, ...]] = set()
    drawn: list[tuple[int, ...]] = []
    while len(drawn) < n_test + n_sft:
        nums = tuple(rng.randint(lo, hi) for _ in range(n_numbers))
        if nums in seen:
            continue
        seen.add(nums)
        drawn.append(nums)
    test = tuple(ToyProblem(f"toy-{seed}-test-{i:04d}", nums) for i, nums in enumerate(drawn[:n_test]))
    sft = tuple(ToyProblem(f"toy-{seed}-sft-{i:04d}", nums) for i, nums in enumerate(drawn[n_test:]))
    return ToySplits(sft=sft, test=test, seed=seed)


SLIPS = (-10, -2, -1, 1, 2, 10)


@dataclasses.dataclass(frozen=True)
class SloppyConfig:
    """How pretraining text is drawn: 2-4 numbers in 1..99, each partial sum slipping with `slip_prob`."""

    min_numbers: int = 2
    max_numbers: int = 4
    lo: int = 1
    hi: int = 99
    slip_prob: float = 0.3


def sloppy_example(
    rng: random.Random, cfg: SloppyConfig, exclude: frozenset = frozenset()
) -> tuple[str, str]:
    """One (prompt, completion) pair of pretraining text; problems in `exclude` are redrawn.

    A slip changes the running sum by one of ±1, ±2, ±10 and the error carries into later sums, as when a
    person miscarries a digit. Slips that would make a sum negative are not drawn.
    """
    while True:
        count = rng.randint(cfg.min_numbers, cfg.max_numbers)
        nums = tuple(rng.randint(cfg.lo, cfg.hi) for _ in range(count))
        if nums not in exclude:
            break
    sums, acc = [], nums[0]
    for x in nums[1:]:
        acc += x
        if rng.random() < cfg.slip_prob:
            acc += rng.choice([s for s in SLIPS if acc + s >= 0])
        sums.append(acc)
    return prompt_text(nums), completion_text(sums)


def sloppy_batches(seed: int, batch_size: int, cfg: SloppyConfig, exclude: Iterable[tuple[int, ...]] = ()):
    """Batch source for pretraining: `batch_at(step)` is a fresh batch of sloppy pairs fixed by (seed, step).

    Fixing each batch by its step (not by a running stream) makes an interrupted run resume exactly.
    """
    excluded = frozenset(tuple(x) for x in exclude)

    def batch_at(step: int) -> list[tuple[str, str]]:
        rng = random.Random(f"toy-pretrain-{seed}-{step}")
        return [sloppy_example(rng, cfg, excluded) for _ in range(batch_size)]

    return batch_at


# --- tokenizer and model: standard Hugging Face pieces ------------------------------------------------


def toy_tokenizer():
    """The character tokenizer of the toy world (Hugging Face format; 4 special tokens + 14 characters)."""
    from wiseft.chartok import char_tokenizer

    return char_tokenizer(ALPHABET, model_max_length=64)


@dataclasses.dataclass(frozen=True)
class ToyModelConfig:
    """A standard transformers causal LM of ~0.6 M parameters: width 128, 3 layers, 4 heads, MLP 4x.

    `arch` "gpt2" (learned absolute positions, GELU MLP of 4x width) or "llama" (RoPE, SwiGLU; its MLP has
    three matrices, so `intermediate` 352, about 8/3 of the width, matches the parameter count of a 4x
    two-matrix MLP). Width 128 ran faster than 64 or 96 on 2 CPU threads. GPT-2's activation is
    `gelu_pytorch_tanh`, the same tanh approximation as GPT-2's `gelu_new` in one fused op: `gelu_new` is
    eight element-wise passes and cost more than the largest matrix product of a decode step (measured
    8.0 ms vs 2.7 ms on a 2400x512 activation); pretraining steps ran 1.2x faster.
    """

    arch: str = "gpt2"
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    intermediate: int = 512
    max_positions: int = 64
    activation: str = "gelu_pytorch_tanh"  # GPT-2 only

    def __post_init__(self):
        if self.arch not in ("gpt2", "llama"):
            raise ConfigError(f"toy model arch must be 'gpt2' or 'llama', got {self.arch!r}")


def toy_model(cfg: ToyModelConfig, tokenizer, seed: int):
    """A freshly initialised causal LM for the toy vocabulary (seeded), with no dropout."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    special = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    if cfg.arch == "gpt2":
        config = GPT2Config(
            n_embd=cfg.hidden,
            n_layer=cfg.layers,
            n_head=cfg.heads,
            n_inner=cfg.intermediate,
            n_positions=cfg.max_positions,
            activation_function=cfg.activation,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **special,
        )
    else:
        config = LlamaConfig(
            hidden_size=cfg.hidden,
            intermediate_size=cfg.intermediate,
            num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            num_key_value_heads=cfg.heads,
            max_position_embeddings=cfg.max_positions,
            **special,
        )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Generation stops at the end marker as well as at EOS, so plain `generate` needs no stop strings.
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END)]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


# --- the two-stage recipe ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ToyRecipe:
    """The demo's two stages, all seeded: sloppy pretraining, then small over-trained clean SFT.

    Defaults follow the measured prototype (docs/TOY.md): pretraining 800 steps of 128 fresh sloppy
    problems at lr 2e-3 (constant after warm-up); SFT for 600 steps of 32 at lr 1e-3 with cosine decay to
    1e-4, a checkpoint every 75 steps. One change, measured: 96 SFT problems instead of 32 (200 epochs).
    With this project's GPT-2 base (greedy 0.33 on the test problems), 32 or 64 problems made Pass@1 peak
    at the first checkpoint and then fall (32: 0.34 -> 0.29 by step 300; 64: 0.45 -> 0.40 -> 0.46), i.e.
    memorisation; 96 gives Pass@1 0.46 -> 0.56 while Pass@8 falls 0.78 -> 0.68 (128 problems needed 1050
    steps for a clear Pass@8 decline).

    The pretraining seed is 2. Whether a base shows the effect depends on where pretraining leaves it,
    which depends on the seed and on the arithmetic's rounding: with the current recipe (two micro-batches,
    fused GELU) seed 0 left SFT still learning at the early checkpoint (claim (a) failed) and seed 1 gave
    a base that SFT lifted to Pass@1 0.83 with no collapse (claims (a), (b) failed); seed 2 shows all three
    claims (measured; the demo checks them on every run rather than assuming them).
    """

    data_seed: int = 5
    n_sft: int = 96
    n_test: int = 400
    model: ToyModelConfig = ToyModelConfig()
    sloppy: SloppyConfig = SloppyConfig()
    pretrain_seed: int = 2
    pretrain_steps: int = 800
    pretrain_batch: int = 128
    pretrain_lr: float = 2e-3
    sft_seed: int = 0
    sft_steps: int = 600
    sft_batch: int = 32
    sft_lr: float = 1e-3
    sft_min_lr: float = 1e-4
    sft_save_every: int = 75
    warmup_steps: int = 50
    threads: int = 0
    # Both stages split each batch in two whose gradients are summed in a fixed order: the two halves run
    # on two cores, and the weights are the same bytes whatever the thread count (sft._MicroBatches).
    micro_batches: int = 2

    def splits(self) -> ToySplits:
        return make_splits(self.data_seed, n_sft=self.n_sft, n_test=self.n_test)

    def pretrain_config(self):
        from wiseft.train.sft import SFTConfig

        return SFTConfig(
            steps=self.pretrain_steps,
            batch_size=self.pretrain_batch,
            lr=self.pretrain_lr,
            schedule="constant",
            warmup_steps=self.warmup_steps,
            seed=self.pretrain_seed,
            device="cpu",
            threads=self.threads,
            micro_batches=self.micro_batches,
        )

    def sft_config(self):
        from wiseft.train.sft import SFTConfig

        return SFTConfig(
            steps=self.sft_steps,
            batch_size=self.sft_batch,
            lr=self.sft_lr,
            min_lr=self.sft_min_lr,
            schedule="cosine",
            warmup_steps=self.warmup_steps,
            save_every=self.sft_save_every,
            seed=self.sft_seed,
            device="cpu",
            threads=self.threads,
            micro_batches=self.micro_batches,
        )

    def base_key(self) -> str:
        """A short name for everything that decides the base model (the cache key of `wiseft demo`)."""
        import hashlib
        import json

        from wiseft.config import to_dict

        parts = {
            "data_seed": self.data_seed,  # with n_test: the test problems kept out of pretraining
            "n_test": self.n_test,
            "model": to_dict(self.model),
            "sloppy": to_dict(self.sloppy),
            "pretrain": [self.pretrain_seed, self.pretrain_steps, self.pretrain_batch, self.pretrain_lr],
            "micro_batches": self.micro_batches,
            "warmup": self.warmup_steps,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def pretrain(recipe: ToyRecipe, out_dir, on_step=None, resume: bool = True):
    """Stage 1: train a fresh toy model on sloppy text (test problems excluded); checkpoints in `out_dir`.

    Returns the `TrainResult`; the base model is its last checkpoint.
    """
    from wiseft.train.sft import train

    tok = toy_tokenizer()
    model = toy_model(recipe.model, tok, recipe.pretrain_seed)
    batches = sloppy_batches(
        recipe.pretrain_seed, recipe.pretrain_batch, recipe.sloppy, exclude=recipe.splits().test_keys
    )
    meta = {"stage": "toy-pretrain", "recipe": _recipe_dict(recipe)}
    return train(
        model, tok, batches, recipe.pretrain_config(), out_dir, resume=resume, meta=meta, on_step=on_step
    )


def sft_pairs(splits: ToySplits) -> list[tuple[str, str]]:
    return [(p.prompt, p.completion) for p in splits.sft]


def finetune(recipe: ToyRecipe, base_dir, out_dir, on_step=None, resume: bool = True):
    """Stage 2: SFT of the base on the clean SFT problems, with the recipe's checkpoint schedule."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wiseft.train.sft import epoch_batches, train

    tok = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype="float32")
    cfg = recipe.sft_config()
    batches = epoch_batches(sft_pairs(recipe.splits()), cfg.batch_size, cfg.seed)
    meta = {"stage": "toy-sft", "base": str(base_dir), "recipe": _recipe_dict(recipe)}
    return train(model, tok, batches, cfg, out_dir, resume=resume, meta=meta, on_step=on_step)


def _recipe_dict(recipe: ToyRecipe) -> dict:
    from wiseft.config import to_dict

    return to_dict(recipe)


def write_split_jsonl(splits: ToySplits, directory) -> dict[str, str]:
    """Write `sft.jsonl` and `test.jsonl` (id, prompt, completion, answer per line) into `directory`."""
    import json
    from pathlib import Path

    from wiseft.atomic import atomic_write_text

    paths = {}
    for name, problems in (("sft", splits.sft), ("test", splits.test)):
        lines = [
            json.dumps({"id": p.id, "prompt": p.prompt, "completion": p.completion, "answer": p.answer})
            for p in problems
        ]
        path = Path(directory) / f"{name}.jsonl"
        atomic_write_text(path, "\n".join(lines) + "\n")
        paths[name] = str(path)
    return paths

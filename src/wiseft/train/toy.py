"""The toy world's model and its two training stages (the data and the task are `wiseft.tasks.toy`).

- `toy_tokenizer()` / `toy_model(cfg, tokenizer, seed)`: a character tokenizer (`wiseft.chartok`) and a
  standard transformers causal LM (~0.6 M parameters with three layers; the demo's recipe uses two, ~0.4 M),
  so every checkpoint is a normal HF directory;
- `ToyRecipe`: everything that decides the demo's base and SFT run, seeded;
- `pretrain(recipe, out)`: stage 1, a fresh model on sloppy text (the test problems excluded);
- `finetune(recipe, base, out)`: stage 2, SFT on the clean problems with a checkpoint schedule.

How the recipe's values were chosen, and what other seeds did, is in docs/TOY-LOG.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

from wiseft.atomic import atomic_dir
from wiseft.chartok import char_tokenizer
from wiseft.checkpoints import load_causal_lm, load_tokenizer
from wiseft.config import to_dict
from wiseft.errors import ConfigError
from wiseft.tasks.toy import (
    ALPHABET,
    DATA_SEED,
    END,
    N_SFT,
    N_TEST,
    SloppyConfig,
    ToySplits,
    gate_problems,
    make_splits,
    sft_pairs,
    sloppy_batches,
    write_split_jsonl,
)
from wiseft.train.checkpoints import read_state
from wiseft.train.data import Collator
from wiseft.train.parts import PartPool, length_parts
from wiseft.train.sft import SFTConfig, epoch_batches, train

# --- tokenizer and model: standard Hugging Face pieces ------------------------------------------------


def toy_tokenizer():
    """The character tokenizer of the toy world (Hugging Face format; 4 special tokens + 14 characters)."""
    return char_tokenizer(ALPHABET, model_max_length=64)


@dataclasses.dataclass(frozen=True)
class ToyModelConfig:
    """A standard transformers causal LM of ~0.6 M parameters: width 128, 3 layers, 4 heads, MLP 4x (the
    demo's `ToyRecipe` takes 2 layers, ~0.4 M, since round 11; the thinking demo keeps 3).

    `arch` "gpt2" (learned absolute positions, GELU MLP of 4x width; the activation is the fused tanh
    approximation `gelu_pytorch_tanh`) or "llama" (RoPE, SwiGLU; `intermediate` 352, about 8/3 of the
    width, matches the parameter count of a 4x two-matrix MLP). Choices are logged in docs/TOY-LOG.md.
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

    Pretraining: steps of `pretrain_batch` fresh sloppy problems at `pretrain_lr` (constant after
    warm-up) until the gate passes, at most `pretrain_steps`: every `gate_every` steps the base's mean
    probability of writing the gold chain of `n_gate` clean problems (never test ones) is compared with
    `pretrain_gate`, so every seed's base stops at the same competence, however long its plateau lasts.
    A run that never leaves its plateau within `pretrain_steps` (it happens: docs/TOY-LOG.md, round 9)
    starts again from a fresh initialisation, seeded by (`pretrain_seed`, attempt), at most
    `pretrain_attempts` times in all; the first attempt is the seed itself, so a base that passes the
    gate on it is the same bytes as without the rule.
    SFT: `sft_steps` steps of `sft_batch` of the `n_sft` clean problems at `sft_lr` with cosine decay
    to `sft_min_lr`; checkpoints at `sft_steps`/2^i for i = `sft_halvings`…0, dense early, and the first
    of them is the early checkpoint of the mixes (a rule fixed in advance). Both stages split each batch
    into `micro_batches` parts (consecutive rows: `micro_split`) whose gradients are summed in a fixed
    order, so the weights are the same bytes for any thread count (`train.sft`). docs/TOY-LOG.md says how
    the values were chosen.
    """

    data_seed: int = DATA_SEED
    n_sft: int = N_SFT
    n_test: int = N_TEST
    # Two layers (round 11): two thirds of every pass of round 10's three, what the demo's time targets
    # need; `ToyModelConfig()` (three layers) stays the thinking demo's base (docs/TOY-LOG.md, round 11).
    model: ToyModelConfig = ToyModelConfig(layers=2)
    sloppy: SloppyConfig = SloppyConfig()
    pretrain_seed: int = 0
    pretrain_steps: int = 1600  # the most one attempt may take; the gate ends it sooner (round 9)
    pretrain_attempts: int = 3  # fresh starts while the gate is not passed (a stuck plateau; round 9)
    pretrain_batch: int = 128
    pretrain_lr: float = 4e-3
    pretrain_gate: float = 0.08  # > 0: end pretraining once the base writes the gold chain this often
    gate_every: int = 25
    n_gate: int = 256
    sft_seed: int = 0
    sft_steps: int = 1280  # twice round 9's, so SFT overshoots its Pass@1 peak (docs/TOY-LOG.md, round 10)
    sft_batch: int = 16  # half of round 10's 32: half the cost of every SFT step (round 11)
    sft_lr: float = 1e-3
    sft_min_lr: float = 1e-4
    sft_halvings: int = 6  # checkpoints 20, 40, …, 1280: the early one stays step 20
    warmup_steps: int = 50
    threads: int = 0
    micro_batches: int = 2
    micro_split: str = "rows"  # consecutive rows (round 8 measured "length": docs/TOY-LOG.md)

    def __post_init__(self):
        if self.sft_halvings < 1 or self.sft_steps % 2**self.sft_halvings:
            raise ConfigError(
                f"the SFT steps ({self.sft_steps}) must be a multiple of 2^sft_halvings "
                f"(2^{self.sft_halvings}), and sft_halvings at least 1, to place the checkpoints"
            )

        if self.pretrain_attempts < 1:
            raise ConfigError(f"pretrain_attempts must be at least 1, got {self.pretrain_attempts}")
        if not 0 <= self.pretrain_gate < 1 or self.gate_every < 1 or self.n_gate < 1:
            raise ConfigError(
                f"the pretraining gate must lie in [0, 1) with gate_every and n_gate >= 1, got "
                f"{self.pretrain_gate}, {self.gate_every} and {self.n_gate}"
            )

    def checkpoint_steps(self) -> list[int]:
        """The SFT checkpoints: `sft_steps`/2^i for i = `sft_halvings`…0 (1280, 6: 20, 40, 80, …, 1280)."""
        return [self.sft_steps >> i for i in range(self.sft_halvings, -1, -1)]

    @property
    def early_step(self) -> int:
        """The early checkpoint: the first one, at 1/2^`sft_halvings` of SFT."""
        return self.checkpoint_steps()[0]

    def splits(self) -> ToySplits:
        return make_splits(self.data_seed, n_sft=self.n_sft, n_test=self.n_test)

    @property
    def pretrain_ceiling(self) -> int:
        """The most steps pretraining can take over all its attempts (the gate usually ends it sooner)."""
        return self.pretrain_steps * self.pretrain_attempts

    def pretrain_config(self, attempt: int = 1) -> SFTConfig:
        return SFTConfig(
            steps=self.pretrain_steps,
            batch_size=self.pretrain_batch,
            lr=self.pretrain_lr,
            schedule="constant",
            warmup_steps=self.warmup_steps,
            seed=attempt_seed(self.pretrain_seed, attempt),
            device="cpu",
            threads=self.threads,
            micro_batches=self.micro_batches,
            micro_split=self.micro_split,
        )

    def sft_config(self) -> SFTConfig:
        return SFTConfig(
            steps=self.sft_steps,
            batch_size=self.sft_batch,
            lr=self.sft_lr,
            min_lr=self.sft_min_lr,
            schedule="cosine",
            warmup_steps=self.warmup_steps,
            save_steps=tuple(self.checkpoint_steps()),
            seed=self.sft_seed,
            device="cpu",
            threads=self.threads,
            micro_batches=self.micro_batches,
            micro_split=self.micro_split,
        )

    def base_key(self) -> str:
        """A short name for everything that decides the base model (the cache key of `wiseft demo`)."""
        parts = {
            "data_seed": self.data_seed,  # with n_test: the test problems kept out of pretraining
            "n_test": self.n_test,
            "model": to_dict(self.model),
            "sloppy": to_dict(self.sloppy),
            "pretrain": [self.pretrain_seed, self.pretrain_steps, self.pretrain_batch, self.pretrain_lr],
            "micro_batches": self.micro_batches,
            "warmup": self.warmup_steps,
        }
        if self.pretrain_gate:  # (a key without the gate stays the key of the bases built before it)
            parts["gate"] = [self.pretrain_gate, self.gate_every, self.n_gate]
        if self.micro_split != "rows":  # (likewise for the split of round 2's recipe)
            parts["micro_split"] = self.micro_split
        if self.pretrain_gate and self.pretrain_attempts != 1:  # (likewise for round 9's restarts; without a
            parts["attempts"] = self.pretrain_attempts  # gate the first attempt is the only one)
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


# The chains are scored in this many fixed parts (`length_parts`), side by side on up to as many cores.
CHAIN_PARTS = 2


def chain_probability(model, tokenizer, pairs) -> float:
    """Mean over `pairs` of the model's probability of writing each completion exactly and then stopping,
    from one teacher-forced forward pass: the expected Pass@1 at T=1 of the gold chain itself, a lower
    bound of Pass@1 (slips that cancel also end right). The rows go in CHAIN_PARTS fixed parts, each on
    one thread, so the result is the same bits for any thread count."""
    return _chain_probability(model, *Collator(tokenizer)(pairs))


def _chain_probability(model, input_ids, mask, labels) -> float:
    import torch

    def part(rows: list[int]):
        idx = torch.tensor(rows)
        width = max(1, int(mask[idx].sum(dim=1).max()))  # right-padded: the pads after it never matter
        with torch.no_grad():  # and causal attention needs no mask (train.sft)
            logits = model(input_ids=input_ids[idx, :width], use_cache=False).logits[:, :-1].float()
        target = labels[idx, 1:width]
        logp = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (logp * (target != -100)).double().sum(1)

    pool = PartPool(CHAIN_PARTS, torch.get_num_threads(), cpu=True)
    try:
        per_chain = torch.cat(pool.map(part, length_parts(mask.sum(dim=1).tolist(), CHAIN_PARTS)))
    finally:
        pool.close()
    return float(per_chain.exp().mean())


def _gate_pairs(recipe: ToyRecipe) -> list[tuple[str, str]]:
    gate = gate_problems(recipe.data_seed, recipe.n_gate, exclude=recipe.splits().test_keys)
    return [(p.prompt, p.completion) for p in gate]


def pretraining_gate(recipe: ToyRecipe, tokenizer):
    """The `stop_when` of pretraining: every `gate_every` steps, end once the model writes the gold chain
    of the recipe's gate problems (clean, never a test problem) with mean probability ≥ the gate.
    A rule on the base alone, fixed before any SFT or test outcome is seen; None without a gate."""
    if not recipe.pretrain_gate:
        return None
    batch = Collator(tokenizer)(_gate_pairs(recipe))  # tokenised once, checked often

    def stop_when(step: int, model) -> bool:
        return step % recipe.gate_every == 0 and _chain_probability(model, *batch) >= recipe.pretrain_gate

    return stop_when


def describe_base(recipe: ToyRecipe, base_dir) -> dict:
    """How pretraining ended for the base in `base_dir`: its step, whether the gate ended it, on which
    attempt, and its gold-chain probability on the gate problems (what the gate compares with
    `pretrain_gate`)."""
    state = read_state(Path(base_dir), "loss_history")
    attempt = (state.get("meta") or {}).get("attempt", 1)
    info = {"pretrain_steps": state.get("step"), "max_steps": recipe.pretrain_steps,
            "stopped_at_gate": state.get("stopped_early") is True, "gate": recipe.pretrain_gate,
            "gate_every": recipe.gate_every, "attempt": attempt,
            "attempts": recipe.pretrain_attempts}  # fmt: skip
    if recipe.pretrain_gate:
        model, tok = load_causal_lm(base_dir), load_tokenizer(base_dir)
        info["gate_probability"] = round(chain_probability(model, tok, _gate_pairs(recipe)), 4)
    return info


def attempt_seed(seed: int, attempt: int) -> int:
    """The seed of pretraining attempt `attempt` (initialisation and batches): the recipe's seed for the
    first, then one derived from (seed, attempt) that no plain seed a user picks is likely to equal."""
    if attempt == 1:
        return seed
    digest = hashlib.sha256(f"toy-pretrain-attempt-{seed}-{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def pretrain(recipe: ToyRecipe, out_dir, on_step=None, resume: bool = True):
    """Stage 1: train a fresh toy model on sloppy text (test problems excluded); checkpoints in `out_dir`
    (a restart's in `out_dir/attempt-N`).

    Returns the `TrainResult` of the attempt that passed the gate, else of the last attempt; the base model
    is its last checkpoint. `on_step` sees every attempt's steps, numbered on from the attempts before.
    """
    tok = toy_tokenizer()
    stop_when = pretraining_gate(recipe, tok)
    test_keys = recipe.splits().test_keys
    meta = {"stage": "toy-pretrain", "recipe": to_dict(recipe)}
    for attempt in range(1, recipe.pretrain_attempts + 1):
        seed = attempt_seed(recipe.pretrain_seed, attempt)
        model = toy_model(recipe.model, tok, seed)
        batches = sloppy_batches(seed, recipe.pretrain_batch, recipe.sloppy, exclude=test_keys)
        offset = (attempt - 1) * recipe.pretrain_steps
        report = _offset_steps(on_step, offset) if on_step and offset else on_step
        run_dir = Path(out_dir) if attempt == 1 else Path(out_dir) / f"attempt-{attempt}"
        result = train(model, tok, batches, recipe.pretrain_config(attempt), run_dir, resume=resume,
                       meta=meta if attempt == 1 else {**meta, "attempt": attempt, "attempt_seed": seed},
                       on_step=report,
                       stop_when=stop_when)  # fmt: skip
        last = result.checkpoints[max(result.checkpoints)]
        if stop_when is None or read_state(last, "loss_history").get("stopped_early") is True:
            break
    return result


def _offset_steps(on_step, offset: int):
    return lambda p: on_step(dataclasses.replace(p, step=p.step + offset))


def finetune(recipe: ToyRecipe, base_dir, out_dir, on_step=None, resume: bool = True):
    """Stage 2: SFT of the base on the clean SFT problems, with the recipe's checkpoint schedule."""
    tok = load_tokenizer(base_dir)
    model = load_causal_lm(base_dir)
    cfg = recipe.sft_config()
    batches = epoch_batches(sft_pairs(recipe.splits()), cfg.batch_size, cfg.seed)
    meta = {"stage": "toy-sft", "base": str(base_dir), "recipe": to_dict(recipe)}
    return train(model, tok, batches, cfg, out_dir, resume=resume, meta=meta, on_step=on_step)


def build_base(recipe: ToyRecipe, target, on_step=None, force: bool = True) -> Path:
    """Pretrain and keep only the last checkpoint: the base model directory `target`, written atomically."""
    with atomic_dir(target, force=force) as tmp:
        result = pretrain(recipe, tmp / "run", on_step=on_step)
        last = result.checkpoints[max(result.checkpoints)]
        for entry in last.iterdir():
            shutil.move(str(entry), str(tmp / entry.name))
        shutil.rmtree(tmp / "run")
    return Path(target)


def write_toy_world(recipe: ToyRecipe, out_dir, on_step=None, force: bool = False) -> Path:
    """`wiseft train toy-base`: OUT/base (the pretrained base), OUT/sft.jsonl and OUT/test.jsonl (the
    recipe's clean problems), written atomically as one directory."""
    with atomic_dir(out_dir, force=force) as tmp:
        build_base(recipe, tmp / "base", on_step)
        write_split_jsonl(recipe.splits(), tmp)
    return Path(out_dir)

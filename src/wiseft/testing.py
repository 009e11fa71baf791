"""Tiny, locally built Hugging Face checkpoints for tests and benchmarks (nothing is downloaded).

`save_tiny_model(path, arch="llama"|"qwen2"|"gemma"|"gpt2"|"qwen2_moe"|"qwen3_moe", ...)` writes a random-init
causal LM of a few layers with a character-level tokenizer: a normal HF directory that transformers and every
wiseft command load. The mixture-of-experts shapes have 4 experts (2 per token); Qwen2-MoE adds a shared
expert and its gate. They are saved with one tensor per expert (`mlp.experts.E.gate_proj.weight`), the Hub's
layout.
`save_tiny_verifier(path, head="sequence"|"token"|"causal", ...)` writes the same kind of model with a
sequence- or token-classification head (reward-model and PRM shapes), optionally with extra whole tokens
(a PRM's step separator) and a chat template.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    GemmaConfig,
    GPT2Config,
    LlamaConfig,
    Qwen2Config,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
)

from wiseft.chartok import char_tokenizer, save_char_tokenizer

ALPHABET = "0123456789+-*/=,.$ ()abcdefghijklmnopqrstuvwxyz\\{}#:\n"
ARCHES = {"llama": LlamaConfig, "qwen2": Qwen2Config, "gemma": GemmaConfig, "gpt2": GPT2Config,
          "qwen2_moe": Qwen2MoeConfig, "qwen3_moe": Qwen3MoeConfig}  # fmt: skip


def tiny_config(
    arch: str = "llama",
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 64,
    vocab: int = 64,
    tied: bool = False,
    max_pos: int = 256,
):
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHES)}")
    kwargs = dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        vocab_size=vocab,
        tie_word_embeddings=tied,
        max_position_embeddings=max_pos,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    if arch in ("gemma", "qwen3_moe"):
        kwargs["head_dim"] = hidden // heads
    if arch in ("qwen2_moe", "qwen3_moe"):
        kwargs.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=intermediate // 4)
    if arch == "qwen2_moe":
        kwargs["shared_expert_intermediate_size"] = intermediate // 2
    if arch == "gpt2":  # GPT-2's own names; no grouped-query attention
        renames = dict(hidden_size="n_embd", num_hidden_layers="n_layer", num_attention_heads="n_head",
                       intermediate_size="n_inner", max_position_embeddings="n_positions")  # fmt: skip
        kwargs = {renames.get(k, k): v for k, v in kwargs.items() if k != "num_key_value_heads"}
    return ARCHES[arch](**kwargs)


def save_tiny_model(
    path: str | os.PathLike,
    arch: str = "llama",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    tied: bool = False,
    shard_size: str | None = None,
    tokenizer: bool = True,
    **config_kwargs,
) -> Path:
    """Build a random tiny model and save it as a Hugging Face directory; return the path."""
    path = Path(path)
    config = tiny_config(arch, tied=tied, **config_kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # random init is tiny-std; make weights sizeable so merges are not trivially equal
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    model = model.to(dtype)
    kwargs = {"max_shard_size": shard_size} if shard_size else {}
    model.save_pretrained(str(path), **kwargs)
    if tokenizer:
        save_char_tokenizer(path, ALPHABET)
    return path


VERIFIER_HEADS = {
    "sequence": AutoModelForSequenceClassification,
    "token": AutoModelForTokenClassification,
    "causal": AutoModelForCausalLM,
}
# A minimal chat template (role tags and newlines) for tests of the chat path.
TINY_CHAT_TEMPLATE = "{% for m in messages %}#{{ m.role }}:{{ m.content }}\n{% endfor %}"


def save_tiny_verifier(
    path: str | os.PathLike,
    head: str = "sequence",
    arch: str = "llama",
    seed: int = 0,
    num_labels: int | None = None,
    extra_tokens: tuple[str, ...] = (),
    chat_template: str | None = None,
    std: float = 0.5,
    **config_kwargs,
) -> Path:
    """A random tiny model with a classification (or LM) head and the character tokenizer; return the path.

    `num_labels` defaults to 1 for "sequence" (a reward) and 2 for "token" (a PRM's bad/good).
    `extra_tokens` are added as whole special tokens (ids after the alphabet; the vocabulary of 64 has room).
    """
    path = Path(path)
    config = tiny_config(arch, **config_kwargs)
    if head != "causal":
        config.num_labels = num_labels or (1 if head == "sequence" else 2)
    torch.manual_seed(seed)
    model = VERIFIER_HEADS[head].from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    model.save_pretrained(str(path))
    tok = char_tokenizer(ALPHABET)
    if extra_tokens:
        tok.add_special_tokens({"additional_special_tokens": list(extra_tokens)})
    if len(tok) > config.vocab_size:
        raise ValueError(f"{len(tok)} tokens do not fit the vocabulary of {config.vocab_size}")
    if chat_template:
        tok.chat_template = chat_template
    tok.save_pretrained(str(path))
    return path


# The benches' toy-shaped pair (bench/sweep.py, bench/ray.py): random, so only their speed means anything.
TOY_SHAPE = dict(hidden=128, layers=3, heads=4, kv_heads=4, intermediate=512, vocab=64)


def toy_shape_pair(cache: str | os.PathLike) -> tuple[Path, Path]:
    """Two random toy-shaped checkpoints ("early", "final") under `cache`, built once."""
    out = []
    for which, seed in (("early", 1), ("final", 2)):
        path = Path(cache) / f"toy-shape-{which}"
        if not (path / "config.json").is_file():
            save_tiny_model(path, seed=seed, **TOY_SHAPE)
        out.append(path)
    return out[0], out[1]

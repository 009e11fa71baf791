"""`wiseft fisher`: a model's diagonal Fisher information, for Fisher merging (merge/methods/fisher.py).

As in Matena & Raffel (2022), the Fisher is the expected squared gradient of the log-likelihood of the
model's own predictions: for each example (a JSONL line with `text`, or `prompt` and `completion`), the
model reads the text, at every scored position a token y_t is drawn from its own predictive distribution
(a CPU generator seeded by (seed, example index)), and the gradient g of Σ_t log p(y_t | x_<t) is taken;
F = mean over examples of g² (element by element). Scored positions: the completion's tokens, or every
token after the first of a `text`. Examples are truncated to `max_length` tokens.

The output is a directory like a model's: config.json (the model's, so the merge can check it), one
float32 `model.safetensors` with a tensor for every float tensor of the model (named and shaped as in its
checkpoint; zeros where the model has no gradient), and fisher.json: the model path and content hash,
the number of examples, the seed and the global L2 norm of F (what `normalize_fishers` divides by).
Memory: the model, its gradients and one float32 accumulator per parameter.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from pathlib import Path

from wiseft.atomic import atomic_dir, write_json
from wiseft.checkpoints import Checkpoint, content_hash, load_causal_lm, load_tokenizer
from wiseft.errors import TrainError
from wiseft.jsonl import iter_objects

MAX_EXAMPLES = 100_000


def read_examples(path: str | os.PathLike, limit: int | None = None) -> list[tuple[str, str]]:
    """(prompt, continuation) per JSONL line: `text` gives ("", text); `prompt`+`completion` the pair."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(
            f"--data {path} does not exist; pass a JSONL file of {{text}} or {{prompt, completion}} lines"
        )
    out = []
    for where, row in iter_objects(path, TrainError):
        if isinstance(row.get("text"), str):
            out.append(("", row["text"]))
        elif isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
            out.append((row["prompt"], row["completion"]))
        else:
            raise TrainError(f"{where}: expected a string field text, or prompt and completion")
        if len(out) >= min(limit or MAX_EXAMPLES, MAX_EXAMPLES):
            break
    if not out:
        raise TrainError(f"--data {path} holds no examples")
    return out


def example_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"wiseft-fisher/{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def encode(tokenizer, prompt: str, continuation: str, max_length: int) -> tuple[list[int], int]:
    """Token ids and the index of the first scored token (≥ 1)."""
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    tail = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    ids = (head + tail)[:max_length]
    return ids, max(1, len(head))


def sampled_log_likelihood(model, ids, first: int, seed: int):
    """Σ_t log p(y_t | x_<t) over the scored positions, y_t drawn from the model (seeded)."""
    import torch

    logits = model(torch.tensor([ids])).logits[0, first - 1 : len(ids) - 1].float()
    logp = torch.log_softmax(logits, dim=-1)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        targets = torch.multinomial(logp.exp(), 1, generator=g)
    return logp.gather(1, targets).sum()


def diagonal_fisher(model, tokenizer, examples, seed: int = 0, max_length: int = 512) -> tuple[dict, int]:
    """({parameter name: float32 mean squared sampled-likelihood gradient}, examples used)."""
    import torch

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    acc = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    used = 0
    for i, (prompt, text) in enumerate(examples):
        ids, first = encode(tokenizer, prompt, text, max_length)
        if len(ids) <= first:
            continue  # nothing to score (empty or truncated away)
        model.zero_grad(set_to_none=True)
        sampled_log_likelihood(model, ids, first, example_seed(seed, i)).backward()
        for name, p in params.items():
            if p.grad is not None:
                acc[name].add_(p.grad.float().square())
        used += 1
    if used == 0:
        raise TrainError("no example has a token to score (all empty, or prompts longer than --max-length)")
    for a in acc.values():
        a.div_(used)
    return acc, used


def compute_fisher(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    max_examples: int | None = None,
    max_length: int = 512,
    force: bool = False,
) -> dict:
    """Compute and write the Fisher directory `out` (atomically); returns its fisher.json."""
    import torch
    from safetensors.torch import save_file

    examples = read_examples(data, max_examples)
    ckpt = Checkpoint.open(model_dir)
    model = load_causal_lm(ckpt.path, dtype=torch.float32)
    tokenizer = load_tokenizer(ckpt.path)
    with torch.enable_grad():
        fisher, used = diagonal_fisher(model, tokenizer, examples, seed, max_length)
    tensors = {}
    for name, info in ckpt.tensors.items():
        if info.is_float:
            value = fisher.get(name)
            tensors[name] = (
                value.contiguous() if value is not None else torch.zeros(info.shape, dtype=torch.float32)
            )
    norm = math.sqrt(math.fsum(float(t.double().square().sum()) for t in tensors.values()))
    meta = {
        "model": str(ckpt.path),
        "model_content_hash": content_hash(ckpt),
        "examples": used,
        "seed": seed,
        "max_length": max_length,
        "norm": norm if norm > 0 else 1.0,
        "definition": "mean over examples of (d/dθ Σ_t log p(y_t|x_<t))², y_t sampled from the model",
    }
    with atomic_dir(out, force=force) as tmp:
        shutil.copyfile(ckpt.path / "config.json", tmp / "config.json")
        save_file(
            tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"}
        )  # one key: the header bytes are reproducible
        write_json(tmp / "fisher.json", meta)
    return meta

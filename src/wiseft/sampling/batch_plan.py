"""How many rows (prompts × n) go into one forward batch of the transformers sampler.

Rows per batch are sized from an estimate of the bytes one row needs (the KV cache of prompt +
max_new_tokens, the logits work buffers) against free CUDA memory, or on CPU against a byte budget (at most
a quarter of available RAM) and a row cap beyond which bigger batches stop paying. With `parts` > 1 the rows
are split into a multiple of `parts` batches of similar size, each budgeted as if that many were in memory
at once, so the plan does not depend on how many workers actually run (`cpu_plan_parts`). A large model
is not split below LARGE_MODEL_ROWS rows per batch: every batch reads every weight at each step, and a
batch of a few rows leaves its matrix products waiting on memory.
"""

from __future__ import annotations

from collections.abc import Callable

import psutil
import torch

from wiseft.batching import greedy_batches

CPU_BUDGET_BYTES = 1 << 30
CPU_MAX_ROWS = 4096
CUDA_MEMORY_FRACTION = 0.7
# CPU plans are split into a multiple of this many batches (so 1 to 4 workers decode the same batches)...
CPU_PLAN_PARTS = 4
# ...except that a model of at least LARGE_MODEL_PARAMS parameters keeps LARGE_MODEL_ROWS rows per batch.
LARGE_MODEL_PARAMS = 20_000_000
LARGE_MODEL_ROWS = 64


def cpu_plan_parts(workers: int, rows: int, params: int) -> int:
    """How many parts a CPU plan of `rows` rows (prompts x n) is split into for `workers` workers and a
    model of `params` parameters: at least CPU_PLAN_PARTS whatever the workers (up to that many), fewer
    for a large model so that each part keeps LARGE_MODEL_ROWS rows. Never depends on `workers` below
    CPU_PLAN_PARTS."""
    parts = max(workers, CPU_PLAN_PARTS)
    if params >= LARGE_MODEL_PARAMS:
        parts = min(parts, max(1, rows // LARGE_MODEL_ROWS))
    return parts


def row_bytes(model, seq_len: int) -> int:
    """Estimated bytes one sampled row needs at `seq_len` tokens: the KV cache (twice, since copying it
    for the n samples or dropping finished rows briefly holds two copies) and float32 work buffers over
    the vocabulary."""
    cfg = model.config.get_text_config()
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    elem = next(model.parameters()).element_size()
    kv = 2 * cfg.num_hidden_layers * kv_heads * head_dim * seq_len * elem
    vocab_work = cfg.vocab_size * 4 * 6  # logits, probabilities, sort values/indices, cumulative sums
    activations = (4 * cfg.hidden_size + 3 * getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)) * elem
    return 2 * kv + vocab_work + activations


def budget(device: torch.device, cpu_budget_bytes: int) -> tuple[int, int]:
    """(bytes available for one batch, most rows worth putting in one batch)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_MEMORY_FRACTION), 1 << 16
    return min(cpu_budget_bytes, psutil.virtual_memory().available // 4), CPU_MAX_ROWS


def plan_batches(
    lengths: list[int], n: int, max_new_tokens: int, *, bytes_per_row: Callable[[int], int],
    available: tuple[int, int], prompt_tokens: Callable[[int], int], max_rows: int | None = None,
    parts: int = 1,
) -> list[list[int]]:  # fmt: skip
    """Group positions 0..P-1 (prompts sorted longest first) into batches of whole prompts.

    `bytes_per_row(seq_len)` is a row's cost, `available` the (byte budget, row cap) of `budget`,
    `prompt_tokens(width)` the prompt tokens a row holds for prompts `width` wide (fewer when the n
    samples share one copy), `max_rows` a caller's cap on rows per batch."""
    total, cap = available
    total //= max(1, parts)
    if max_rows:
        cap = max_rows
    if parts > 1 and len(lengths) > 1:
        count = -(-len(lengths) * n // max(cap, n))  # batches needed anyway
        count = -(-count // parts) * parts
        cap = min(cap, max(n, -(-len(lengths) // count) * n))

    def fits(prompts: int, longest: int) -> bool:
        rows = prompts * n
        return rows <= cap and rows * bytes_per_row(prompt_tokens(longest) + max_new_tokens) <= total

    return greedy_batches(lengths, fits)

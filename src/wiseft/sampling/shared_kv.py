"""Shared-prompt attention for decoding: the n samples of a prompt read one copy of its keys and values.

When a prompt is sampled n times, every sample attends to the same prompt tokens. A plain KV cache copies
the prompt's keys and values n times and each decode step reads all n copies; here the cache keeps

- the prompt part once per prompt: `(prompts, kv_heads, prompt_len, head_dim)`, written by the prefill;
- the generated part per row (sample): `(rows, kv_heads, capacity, head_dim)`, allocated once and written
  one position per step (no growth, no copies, nothing zero-filled).

A decode step's attention (`shared_prompt_attention`, registered with transformers' `AttentionInterface`
under `IMPLEMENTATION`) then computes, per layer:

1. prompt scores as one matrix product per (prompt, kv head): the queries of all n samples of a prompt
   (and all query heads of a kv head group) against that prompt's keys;
2. generated-part scores per row, against its own keys;
3. one softmax over both parts (float32), then the weighted sum of values, split the same way.

This is exact attention (the same sums as over a concatenated cache, in another order), so greedy output
matches `generate` (tested). The prompt part turns n matrix-vector products into one matrix product and
reads 1/n of the memory; the cache also needs n times less memory for the prompt. The prefill (several
query positions) goes to transformers' SDPA attention unchanged.

Rows that finish are dropped from the generated part (`batch_select_indices`) and from `SharedPrompt`
(`select`); the prompt part keeps all prompts, so a row's prompt is found by index (`row_prompt`) and its
place among the prompt's samples by `row_sample`. Queries are scattered into a (prompts, n) grid before the
product and scores gathered back after it; slots of dropped rows hold stale values that are computed but
never read (the rows of a matrix product are independent).

Used for models whose every layer is full attention without logit soft-capping and whose attention goes
through `AttentionInterface` (Llama, Qwen2, Mistral, Gemma, GPT-2, ...); `supports_shared_prompt` says so,
and other models keep the plain cache.
"""

from __future__ import annotations

import functools

import torch

IMPLEMENTATION = "wiseft_shared_prompt"
_registered = False


def register() -> None:
    """Register the attention function and its mask function (SDPA's, for the prefill) with transformers."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, shared_prompt_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, sdpa_mask)
    _registered = True


def supports_shared_prompt(model) -> bool:
    """Whether `model` can decode with shared-prompt attention (see the module docstring)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cfg = model.config.get_text_config()
    if getattr(cfg, "attn_logit_softcapping", None) or getattr(model.config, "is_encoder_decoder", False):
        return False
    if not getattr(model, "_supports_attention_backend", False):
        return False
    layers = DynamicCache(config=model.config).layers
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


@functools.cache
def _layer_class():
    from transformers.cache_utils import DynamicLayer

    class SharedPromptLayer(DynamicLayer):
        """One layer's cache: the prompt part (from the prefill) and a preallocated generated part."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity  # most generated positions
            self.prompt_keys = self.prompt_values = None
            self.keys = self.values = None  # generated part, (rows, kv_heads, capacity, head_dim)
            self.length = 0  # generated positions written

        def update(self, key_states, value_states, *args, **kwargs):
            if self.prompt_keys is None:  # the prefill
                self.dtype, self.device = key_states.dtype, key_states.device
                self.prompt_keys, self.prompt_values = key_states.contiguous(), value_states.contiguous()
                self.is_initialized = True
                return self.prompt_keys, self.prompt_values
            if key_states.shape[-2] != 1:
                raise ValueError("shared-prompt cache: decode steps feed one token per row")
            if self.keys is None:
                rows, heads, _, dim = key_states.shape
                shape = (rows, heads, self.capacity, dim)
                self.keys = key_states.new_empty(shape)
                self.values = value_states.new_empty(shape)
            if self.length >= self.capacity:
                raise ValueError(f"shared-prompt cache is full ({self.capacity} generated positions)")
            self.keys[:, :, self.length] = key_states[:, :, 0]
            self.values[:, :, self.length] = value_states[:, :, 0]
            self.length += 1
            return key_states, value_states

        def get_seq_length(self) -> int:
            prompt = 0 if self.prompt_keys is None else self.prompt_keys.shape[-2]
            return prompt + self.length

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.get_seq_length() + query_length, 0

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.keys is not None:
                self.keys, self.values = self.keys[indices], self.values[indices]

        def batch_repeat_interleave(self, repeats: int) -> None:
            raise NotImplementedError("the shared-prompt cache never copies the prompt")

    return SharedPromptLayer


def make_shared_cache(model, capacity: int):
    """A `DynamicCache` for `model` whose layers are `SharedPromptLayer`s holding up to `capacity`
    generated positions per row."""
    from transformers import DynamicCache

    layer_cls = _layer_class()
    cache = DynamicCache(config=model.config)
    cache.layers = [layer_cls(capacity) for _ in cache.layers]
    return cache


class SharedPrompt:
    """What a decode step's attention needs beside the cache: which prompt and sample each row is, and
    the prompt padding as an additive bias. Passed to the model as the `wiseft_shared` keyword, which
    transformers forwards to the attention function."""

    def __init__(self, cache, prompt_mask: torch.Tensor, n: int):
        """`prompt_mask`: (prompts, prompt_len), 1 for tokens, 0 for left padding."""
        self.cache = cache
        self.n = n
        prompts = prompt_mask.shape[0]
        device = prompt_mask.device
        bias = torch.zeros(prompt_mask.shape, dtype=torch.float32, device=device)
        self.prompt_bias = bias.masked_fill_(prompt_mask == 0, float("-inf"))[:, None, None, :]
        self.prompts = prompts
        self.row_prompt = torch.arange(prompts, device=device).repeat_interleave(n)
        self.row_sample = torch.arange(n, device=device).repeat(prompts)
        self.dense = True  # rows are exactly (prompt, sample) in order, nothing dropped yet
        self._grid: dict[tuple, torch.Tensor] = {}

    def select(self, keep: torch.Tensor) -> None:
        """Keep only rows `keep` (indices into the current rows)."""
        self.row_prompt, self.row_sample = self.row_prompt[keep], self.row_sample[keep]
        self.dense = False

    def grid(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A reused (prompts, kv_heads, n, group, X) buffer for scattering rows into."""
        key = (name, shape, like.dtype, like.device)
        buf = self._grid.get(key)
        if buf is None:
            buf = self._grid[key] = like.new_zeros(shape)
        return buf


def shared_prompt_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: shared-prompt attention for decode steps, SDPA otherwise."""
    shared: SharedPrompt | None = kwargs.get("wiseft_shared")
    layer = None if shared is None else shared.cache.layers[module.layer_idx]
    if layer is None or layer.keys is None or query.shape[2] != 1:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        kwargs.pop("wiseft_shared", None)
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    return _decode(shared, layer, query, scaling), None


def _to_grid(shared: SharedPrompt, rows_tensor: torch.Tensor, name: str) -> torch.Tensor:
    """(rows, kv_heads, group, X) -> (prompts, kv_heads, n * group, X), rows placed at (prompt, sample)."""
    rows, kv_heads, group, x = rows_tensor.shape
    if shared.dense:
        grid = rows_tensor.view(shared.prompts, shared.n, kv_heads, group, x).transpose(1, 2)
        return grid.reshape(shared.prompts, kv_heads, shared.n * group, x)
    grid = shared.grid(name, (shared.prompts, kv_heads, shared.n, group, x), rows_tensor)
    grid[shared.row_prompt, :, shared.row_sample] = rows_tensor
    return grid.view(shared.prompts, kv_heads, shared.n * group, x)


def _from_grid(shared: SharedPrompt, grid: torch.Tensor, group: int) -> torch.Tensor:
    """(prompts, kv_heads, n * group, X) -> (rows, kv_heads, group, X)."""
    prompts, kv_heads, _, x = grid.shape
    grid = grid.view(prompts, kv_heads, shared.n, group, x)
    if shared.dense:
        return grid.transpose(1, 2).reshape(prompts * shared.n, kv_heads, group, x)
    return grid[shared.row_prompt, :, shared.row_sample]


def _decode(shared: SharedPrompt, layer, query: torch.Tensor, scaling: float) -> torch.Tensor:
    rows, heads, _, dim = query.shape
    kv_heads = layer.prompt_keys.shape[1]
    group = heads // kv_heads
    prompt_len = layer.prompt_keys.shape[2]
    q = query.reshape(rows, kv_heads, group, dim)

    # Scores against the prompt: one product per (prompt, kv head) for all its samples and query heads.
    prompt_scores = torch.matmul(_to_grid(shared, q, "q"), layer.prompt_keys.transpose(-1, -2))
    prompt_scores = prompt_scores.float().mul_(scaling).add_(shared.prompt_bias)
    # Scores against each row's own generated tokens (the current one included).
    gen_keys = layer.keys[:, :, : layer.length]
    gen_scores = torch.matmul(q, gen_keys.transpose(-1, -2)).float().mul_(scaling)

    scores = torch.cat([_from_grid(shared, prompt_scores, group), gen_scores], dim=-1)
    probs = torch.softmax(scores, dim=-1).to(query.dtype)
    prompt_probs, gen_probs = probs[..., :prompt_len], probs[..., prompt_len:]

    out = torch.matmul(_to_grid(shared, prompt_probs.contiguous(), "p"), layer.prompt_values)
    out = _from_grid(shared, out, group)
    out = out + torch.matmul(gen_probs, layer.values[:, :, : layer.length])
    # transformers expects (batch, query_len, heads, head_dim).
    return out.reshape(rows, 1, heads, dim)

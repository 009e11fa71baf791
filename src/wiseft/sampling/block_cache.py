"""A KV cache that grows in blocks: the plain (not shared-prompt) cache of the transformers sampler.

`make_cache(model, capacity)` is a transformers `DynamicCache` whose full-attention layers are `BlockLayer`s:
keys and values live in one contiguous buffer that grows `KV_BLOCK` positions at a time, instead of
growing by `torch.cat` every step (which copies the whole cache per token).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

KV_BLOCK = 16  # the KV cache grows this many positions at a time


class BlockLayer(DynamicLayer):
    """A `DynamicLayer` whose keys/values live in one contiguous buffer grown `KV_BLOCK` positions at a time.

    Attention gets the whole buffer, as with transformers' static cache: positions not written yet hold
    zeros and are excluded by the causal mask (their index is past the query's position) and the padding
    mask (transformers pads the 2D mask with zeros up to `get_mask_sizes`). Handing attention a strided
    view of a larger preallocated buffer instead was slower in CPU attention.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0  # positions written
        self.size = 0  # positions allocated

    def _size_for(self, end: int) -> int:
        if end <= self.size:
            return self.size
        return max(end, min(self.capacity, -(-end // KV_BLOCK) * KV_BLOCK))

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        size = self._size_for(end)
        if size != self.size:
            self.dtype, self.device = key_states.dtype, key_states.device
            keys = key_states.new_zeros((*key_states.shape[:2], size, key_states.shape[3]))
            values = value_states.new_zeros((*value_states.shape[:2], size, value_states.shape[3]))
            if self.is_initialized:
                keys[:, :, : self.length] = self.keys[:, :, : self.length]
                values[:, :, : self.length] = self.values[:, :, : self.length]
            self.keys, self.values, self.size = keys, values, size
            self.is_initialized = True
        self.keys[:, :, self.length : end] = key_states
        self.values[:, :, self.length : end] = value_states
        self.length = end
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self._size_for(self.length + query_length), 0

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.keys = self.keys.repeat_interleave(repeats, dim=0)
        self.values = self.values.repeat_interleave(repeats, dim=0)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.keys, self.values = self.keys[indices], self.values[indices]


def make_cache(model, capacity: int):
    """A transformers `DynamicCache` for `model` whose full-attention layers grow in blocks up to
    `capacity` tokens (sliding-window and other special layers keep transformers' own classes)."""
    cache = DynamicCache(config=model.config)
    cache.layers = [BlockLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache

"""Sampling: `SamplingParams`, `Completion`, the `Sampler` protocol and its backends.

- `wiseft.sampling.hf.HFSampler`: transformers models on CPU (float32) or CUDA (bf16), batched with a KV
  cache, from a path or from a model already in memory (the sweep changes its weights in place).
- `wiseft.sampling.fake.ScriptedSampler`: completions scripted per prompt, for tests.
"""

from wiseft.sampling.base import Completion, FinishReason, Sampler, SamplingParams, cut_at_stop, prompt_seed

__all__ = ["Completion", "FinishReason", "Sampler", "SamplingParams", "cut_at_stop", "prompt_seed"]

"""The transformers backend: batched sampling with a KV cache, written as a plain decoding loop.

Why a loop of our own instead of `model.generate`: at the demo's scale (a 0.6 M-parameter model, 12 800
completions of ~26 tokens per variant) `generate`'s per-step machinery (logits processors, stopping
criteria, stop-string tables, cache bookkeeping) weighs as much as the model, it cannot drop finished
rows from the batch, and its random draws depend on the batch, so a resumed run would not reproduce.
Measured (bench/sweep.py, 1 thread, a busy 2-core machine): 2-4x the tokens/s of a `generate` call per
prompt with num_return_sequences=n, and 1.1-2x batched `generate` over the same rows. The loop below is
still the transformers model and its `DynamicCache`; it only does what sampling needs, in the order a
reader expects:

1. encode each prompt once, left-pad a batch of prompts and run one prefill forward;
2. copy the cache `n` times (`batch_repeat_interleave`), so the prompt is never re-encoded per sample;
3. step: filter the last logits (temperature, top-k, top-p), pick a token by inverse-CDF sampling with
   uniforms from the prompt's own random stream, append it, retire rows that produced an end-of-sequence
   token or completed a stop string, drop retired rows from the cache, and feed the rest back.

Reproducibility: each prompt has its own CPU `torch.Generator`, seeded from (seed, prompt text)
(`base.prompt_seed`), that draws a fixed block of uniforms per step for all `n` samples whether or not
they are still running. What a prompt gets therefore does not depend on which other prompts share its
batch, on the batch size, or on how a resumed run splits the work; only the model's numerics could, and
those are fixed for a given device and batch plan.

Batch size is automatic: rows (prompts x n) per batch are sized from an estimate of the bytes one row
needs (KV cache for prompt + max_new_tokens, the logits work buffers) against free CUDA memory, or on
CPU against a byte budget (at most a quarter of available RAM, 1 GiB by default) and a row cap beyond
which bigger batches stop paying.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import torch

from wiseft.errors import SamplingError
from wiseft.sampling.base import (
    Completion,
    SamplingParams,
    check_request,
    cut_at_stop,
    prompt_seed,
)

UNIFORM_BLOCK = 32  # steps of uniforms drawn at once per prompt (a fixed block keeps streams reproducible)
CPU_BUDGET_BYTES = 1 << 30
CPU_MAX_ROWS = 4096
CUDA_MEMORY_FRACTION = 0.7


KV_BLOCK = 16  # the KV cache grows this many positions at a time


def _block_layer_class():
    """A `DynamicLayer` whose keys/values live in one contiguous buffer that grows `KV_BLOCK` positions
    at a time, instead of growing by `torch.cat` every step (which copies the whole cache per token).

    Attention gets the whole buffer, as with transformers' static cache: positions not written yet hold
    zeros and are excluded by the causal mask (their index is past the query's position) and the padding
    mask (transformers pads the 2D mask with zeros up to `get_mask_sizes`). Handing attention a strided
    view of a larger preallocated buffer instead was measured twice as slow in CPU attention.
    """
    from transformers.cache_utils import DynamicLayer

    class BlockLayer(DynamicLayer):
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

    return BlockLayer


def make_cache(model, capacity: int):
    """A transformers `DynamicCache` for `model` whose full-attention layers grow in blocks up to
    `capacity` tokens (sliding-window and other special layers keep transformers' own classes)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layer_cls = _block_layer_class()
    cache = DynamicCache(config=model.config)
    cache.layers = [layer_cls(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model_and_tokenizer(
    path: str | os.PathLike,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
):
    """Load a causal LM (bf16 on CUDA, float32 on CPU unless `dtype` says otherwise) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SamplingError(f"device {device!r} asked for, but CUDA is not available; use --device cpu")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if not (path / "config.json").is_file():
        raise SamplingError(f"model {path} has no config.json; point at a Hugging Face model directory")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError) as exc:
        raise SamplingError(f"cannot load model {path}: {exc}") from exc
    model.to(device).eval()
    return model, tokenizer


class HFSampler:
    """Sample from a transformers causal LM held in memory.

    `HFSampler(model, tokenizer)` samples from the given model object, so a caller may change its weights
    in place between calls (the sweep does); `HFSampler.from_pretrained(path)` loads one. `max_rows`
    caps rows per forward batch (default: automatic). `add_special_tokens` is passed to the tokenizer
    (set False when prompts already carry a chat template with its BOS). `threads` sets torch's CPU
    threads while generating (restored after): on a busy 2-core machine one thread is several times
    faster for tiny models, whose ops are too small to split.
    """

    def __init__(
        self,
        model,
        tokenizer,
        max_rows: int | None = None,
        add_special_tokens: bool = True,
        cpu_budget_bytes: int = CPU_BUDGET_BYTES,
        threads: int | None = None,
    ):
        self.threads = threads
        self.model = model
        self.tokenizer = tokenizer
        self.max_rows = max_rows
        self.add_special_tokens = add_special_tokens
        self.cpu_budget_bytes = cpu_budget_bytes
        self.device = next(model.parameters()).device
        self.eos_ids = self._eos_ids()
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)
        self._pieces: list[str] | None = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        trust_remote_code: bool = False,
        **kwargs,
    ) -> HFSampler:
        model, tokenizer = load_model_and_tokenizer(path, device, dtype, trust_remote_code)
        return cls(model, tokenizer, **kwargs)

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for source in (
            self.tokenizer.eos_token_id,
            getattr(self.model.generation_config, "eos_token_id", None),
        ):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, (list, tuple)):
                ids.update(int(i) for i in source)
        if not ids:
            raise SamplingError(
                "the tokenizer and generation config define no end-of-sequence token; set eos_token_id"
            )
        return sorted(ids)

    # ---- public API -----------------------------------------------------------------------------

    def generate(
        self,
        prompts: list[str],
        n: int,
        params: SamplingParams,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[Completion]]:
        """Return `n` completions for each prompt, in prompt order. `progress(k)` is called after each
        batch with the number of prompts it finished."""
        check_request(prompts, n)
        if not prompts:
            return []
        encoded = self.tokenizer(list(prompts), add_special_tokens=self.add_special_tokens)["input_ids"]
        for i, ids in enumerate(encoded):
            if not ids:
                raise SamplingError(f"prompt {i} encodes to no tokens; prompts must be non-empty")
        # Longest first, so each batch pads little and the first (largest) batch fails fast if too big.
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        results: list[list[Completion] | None] = [None] * len(prompts)
        with _threads(self.threads):
            self._run_batches(prompts, encoded, order, n, params, results, progress)
        return results  # type: ignore[return-value]

    def _run_batches(self, prompts, encoded, order, n, params, results, progress) -> None:
        for batch in self._plan_batches([len(encoded[i]) for i in order], n, params):
            idx = [order[j] for j in batch]
            seeds = [prompt_seed(params.seed, prompts[i]) for i in idx]
            with torch.inference_mode():
                outs = self._generate_batch([encoded[i] for i in idx], seeds, n, params)
            for i, comps in zip(idx, outs, strict=True):
                results[i] = comps
            if progress is not None:
                progress(len(idx))

    # ---- batching ---------------------------------------------------------------------------------

    def row_bytes(self, seq_len: int) -> int:
        """Estimated bytes one sampled row needs at `seq_len` tokens: the KV cache (twice, since copying
        it for the n samples or dropping finished rows briefly holds two copies) and float32 work
        buffers over the vocabulary."""
        cfg = self.model.config.get_text_config()
        heads = cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        elem = next(self.model.parameters()).element_size()
        kv = 2 * cfg.num_hidden_layers * kv_heads * head_dim * seq_len * elem
        vocab_work = cfg.vocab_size * 4 * 6  # logits, probabilities, sort values/indices, cumulative sums
        activations = (
            4 * cfg.hidden_size + 3 * getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)
        ) * elem
        return 2 * kv + vocab_work + activations

    def _budget(self) -> tuple[int, int]:
        """(bytes available for one batch, most rows worth putting in one batch)."""
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(free * CUDA_MEMORY_FRACTION), 1 << 16
        import psutil

        available = psutil.virtual_memory().available
        return min(self.cpu_budget_bytes, available // 4), CPU_MAX_ROWS

    def _plan_batches(self, lengths: list[int], n: int, params: SamplingParams) -> list[list[int]]:
        """Group positions 0..P-1 (prompts sorted longest first) into batches of whole prompts."""
        budget, max_rows = self._budget()
        if self.max_rows:
            max_rows = self.max_rows
        batches: list[list[int]] = []
        current: list[int] = []
        for j, length in enumerate(lengths):
            longest = lengths[current[0]] if current else length
            rows = (len(current) + 1) * n
            fits = rows <= max_rows and rows * self.row_bytes(longest + params.max_new_tokens) <= budget
            if current and not fits:
                batches.append(current)
                current = []
            current.append(j)
        if current:
            batches.append(current)
        return batches

    # ---- the decoding loop -----------------------------------------------------------------------

    def _generate_batch(
        self, ids_list: list[list[int]], seeds: list[int], n: int, params: SamplingParams
    ) -> list[list[Completion]]:
        device = self.device
        n_prompts = len(ids_list)
        width = max(len(ids) for ids in ids_list)
        input_ids = torch.full((n_prompts, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n_prompts, width), dtype=torch.long)
        for i, ids in enumerate(ids_list):  # left padding: every prompt ends at the last column
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            mask[i, width - len(ids) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)

        cache = make_cache(self.model, width + params.max_new_tokens)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        # One prefill per prompt; its cache is copied for the n samples.
        logits = out.logits[:, -1, :].float().repeat_interleave(n, dim=0)
        cache.batch_repeat_interleave(n)
        mask = mask.repeat_interleave(n, dim=0)
        next_pos = positions[:, -1].repeat_interleave(n) + 1

        rows = n_prompts * n
        row_prompt = torch.arange(n_prompts).repeat_interleave(n)
        row_sample = torch.arange(n).repeat(n_prompts)
        active = torch.arange(rows)  # which original rows are in the batch, in batch order
        retired = torch.zeros(rows, dtype=torch.bool)  # rows in the batch that have already finished
        tokens = torch.full((rows, params.max_new_tokens), self.pad_id, dtype=torch.long)
        n_tokens = torch.full((rows,), params.max_new_tokens, dtype=torch.long)
        eos = torch.tensor(self.eos_ids, device=device)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        stop_check = self._stop_checker(params.stop)

        uniforms = None
        for step in range(params.max_new_tokens):
            if step % UNIFORM_BLOCK == 0:
                block = min(UNIFORM_BLOCK, params.max_new_tokens - step)
                uniforms = torch.stack([torch.rand((block, n), generator=g) for g in generators])
            u = uniforms[row_prompt[active], step % UNIFORM_BLOCK, row_sample[active]].to(device)
            chosen = pick_tokens(logits, u, params)
            chosen_cpu = chosen.cpu()
            tokens[active[~retired], step] = chosen_cpu[~retired]
            finished = torch.isin(chosen, eos).cpu()
            if stop_check is not None:
                finished |= stop_check(tokens, active, chosen_cpu, step, finished | retired)
            done_now = finished & ~retired
            if done_now.any():
                n_tokens[active[done_now]] = step + 1
                retired |= done_now
                if bool(retired.all()):
                    break
                # Drop retired rows once they are half the batch: fewer cache copies than dropping them
                # every step, and at most twice the compute of a batch with no retired rows.
                if 2 * int(retired.sum()) >= retired.numel():
                    keep = (~retired).nonzero().squeeze(1)
                    active, retired = active[keep], retired[keep]
                    keep_dev = keep.to(device)
                    cache.batch_select_indices(keep_dev)
                    mask, next_pos, chosen = mask[keep_dev], next_pos[keep_dev], chosen[keep_dev]
            if step == params.max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            out = self.model(
                input_ids=chosen[:, None],
                attention_mask=mask,
                position_ids=next_pos[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            logits = out.logits[:, -1, :].float()
            next_pos = next_pos + 1
        return self._completions(tokens, n_tokens, n_prompts, n, params)

    def _completions(
        self, tokens: torch.Tensor, n_tokens: torch.Tensor, n_prompts: int, n: int, params: SamplingParams
    ) -> list[list[Completion]]:
        eos = set(self.eos_ids)
        seqs, ended_by_eos = [], []
        for row, count in zip(tokens.tolist(), n_tokens.tolist(), strict=True):
            row = row[:count]
            by_eos = bool(row) and row[-1] in eos
            seqs.append(row[:-1] if by_eos else row)
            ended_by_eos.append(by_eos)
        texts = self.tokenizer.batch_decode(seqs, skip_special_tokens=True)
        comps = []
        for text, count, by_eos in zip(texts, n_tokens.tolist(), ended_by_eos, strict=True):
            text, by_stop = cut_at_stop(text, params.stop)
            comps.append(Completion(text, count, "stop" if by_eos or by_stop else "length"))
        return [comps[i * n : (i + 1) * n] for i in range(n_prompts)]

    # ---- stop strings ----------------------------------------------------------------------------

    def _token_pieces(self) -> list[str]:
        if self._pieces is None:
            vocab = len(self.tokenizer)
            self._pieces = self.tokenizer.batch_decode([[i] for i in range(vocab)])
        return self._pieces

    def _stop_checker(self, stop: tuple[str, ...]):
        """A function telling which rows just completed a stop string, or None without stop strings.

        Only rows whose new token's text contains the last character of some stop string can have
        completed one; only those have their last few tokens decoded. The final text is cut again at
        the earliest stop string (`_completions`), so this is an early exit, not the authority.
        """
        if not stop:
            return None
        pieces = self._token_pieces()
        last_chars = {s[-1] for s in stop}
        vocab = max(len(pieces), self.model.config.get_text_config().vocab_size)
        candidate = torch.zeros(vocab, dtype=torch.bool)
        for i, piece in enumerate(pieces):
            if any(c in piece for c in last_chars):
                candidate[i] = True
        tail = max(len(s) for s in stop) + 2  # tokens: enough to cover the longest stop string

        def check(tokens, active, chosen, step, finished):
            hit = torch.zeros_like(finished)
            rows = (candidate[chosen] & ~finished).nonzero().squeeze(1).tolist()
            if not rows:
                return hit
            start = max(0, step + 1 - tail)
            tails = self.tokenizer.batch_decode(tokens[active[rows], start : step + 1].tolist())
            for r, text in zip(rows, tails, strict=True):
                if any(s in text for s in stop):
                    hit[r] = True
            return hit

        return check


@contextlib.contextmanager
def _threads(count: int | None):
    if not count:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pick_tokens(logits: torch.Tensor, u: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Choose one token per row from float32 `logits` (rows x vocab) with uniforms `u` (rows,).

    Greedy when temperature is 0. Otherwise temperature, then top-k, then top-p (the smallest set of
    most likely tokens whose mass reaches top_p; the most likely token is always kept), then the token
    whose cumulative-probability interval contains u (inverse-CDF sampling, so the draw is a pure
    function of u and the probabilities).
    """
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / params.temperature
    vocab = logits.shape[-1]
    if 0 < params.top_k < vocab:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    order = None
    if params.top_p < 1.0:
        probs, order = torch.sort(probs, dim=-1, descending=True)
        mass_before = probs.cumsum(dim=-1) - probs
        probs = probs.masked_fill(mass_before >= params.top_p, 0.0)
    cdf = probs.cumsum(dim=-1)
    total = cdf[:, -1:]
    choice = torch.searchsorted(cdf, u.to(cdf.dtype).unsqueeze(1) * total, right=True)
    # u * total can round up to total itself; the first index where cdf reaches total has mass.
    choice = torch.minimum(choice, (cdf < total).sum(dim=-1, keepdim=True))
    if order is not None:
        return order.gather(1, choice).squeeze(1)
    return choice.squeeze(1)

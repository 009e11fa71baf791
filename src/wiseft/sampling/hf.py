"""The transformers backend: batched sampling with a KV cache, written as a plain decoding loop.

Why a loop of our own instead of `model.generate`: at the demo's scale (a 0.6 M-parameter model, 12 800
completions of ~26 tokens per variant) `generate`'s per-step machinery (logits processors, stopping
criteria, stop-string tables, cache bookkeeping) weighs as much as the model, it cannot drop finished
rows from the batch, and its random draws depend on the batch, so a resumed run would not reproduce.
The loop below is still the transformers model and its cache API; it only does what sampling needs, in
the order a reader expects:

1. encode each prompt once, left-pad a batch of prompts and run one prefill forward;
2. share the prompt's cache among its `n` samples: for prompts of at least SHARED_MIN_PROMPT tokens the
   samples read one copy of it (`shared_kv`), for shorter ones it is copied `n` times into a cache that
   grows in blocks (`BlockLayer`, cheaper when the prompt is short);
3. step: filter the last logits (temperature, top-k, top-p), pick a token by inverse-CDF sampling with
   uniforms from the prompt's own random stream, append it, retire rows that produced an end-of-sequence
   token or completed a stop string, drop retired rows from the cache once they are DROP_FRACTION of
   the batch, and feed the rest back.

On CPU, `threads` batches are decoded side by side, each on one core (`HFSampler.workers`); on CUDA one
batch at a time. Measured with bench/sweep.py on the toy shape (2 cores, n=32): 5.4-7.1x the tokens/s of
a `generate` call per prompt with num_return_sequences=n (seven runs; that baseline itself varies by
half between runs), 2.0-2.3x batched `generate` over the same rows.

Reproducibility: each prompt has its own CPU `torch.Generator`, seeded from (seed, prompt text)
(`base.prompt_seed`), that draws a fixed block of uniforms per step for all `n` samples whether or not
they are still running. What a prompt gets therefore does not depend on which other prompts share its
batch, on the batch size, or on how a resumed run splits the work; only the model's numerics could, and
those are fixed for a given device and batch plan. On CPU the plan is the same for 1 to 4 threads
(CPU_PLAN_PARTS), so those give the same samples.

Batch size is automatic: rows (prompts x n) per batch are sized from an estimate of the bytes one row
needs (KV cache for prompt + max_new_tokens, the logits work buffers) against free CUDA memory, or on
CPU against a byte budget (at most a quarter of available RAM, 1 GiB by default) and a row cap beyond
which bigger batches stop paying. On CPU the rows are split into a multiple of CPU_PLAN_PARTS batches
(or of the worker count, if larger), each budgeted as if that many were in memory at once.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
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
from wiseft.sampling.shared_kv import (
    IMPLEMENTATION,
    SharedPrompt,
    make_shared_cache,
    register,
    supports_shared_prompt,
)

UNIFORM_BLOCK = 32  # steps of uniforms drawn at once per prompt (a fixed block keeps streams reproducible)
CPU_BUDGET_BYTES = 1 << 30
CPU_MAX_ROWS = 4096
CUDA_MEMORY_FRACTION = 0.7


# Finished rows are dropped from the batch (a copy of the cache) once they are this fraction of it. Measured
# on the toy shape (bench/sweep.py, one thread): 1/2 -> 16.6k tokens/s, 1/4 -> 19.9k, 1/8 -> 19.3k,
# 1/16 -> 19.4k, 1/100 -> 14.0k: computing retired rows costs more than copying the cache a few times.
DROP_FRACTION = 0.125
# Prompts at least this many tokens wide decode with shared-prompt attention (`shared_kv`). Measured on the
# toy shape, n=32, one thread, tokens/s plain vs shared: 12-token prompts 19.4k vs 16.6k, 30 tokens 16.0k
# vs 18.9k, 57 tokens 14.0k vs 16.8k, 120 tokens 6.9k vs 14.4k.
SHARED_MIN_PROMPT = 24
# CPU batch plans are split into a multiple of this many batches (see `_run_batches`). Measured on the toy
# shape, one thread: 1024-row batches ran as fast as 4096-row ones (14.7k vs 13.5k tokens/s).
CPU_PLAN_PARTS = 4
KV_BLOCK = 16  # the KV cache grows this many positions at a time


@functools.cache
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
    (set False when prompts already carry a chat template with its BOS). `threads` is how many CPU
    cores to use (default: torch's thread count): that many batches are decoded at once, one core each
    (see `workers`). `shared_prompt` forces shared-prompt attention on (True) or off (False); by default
    it is used for prompts of at least SHARED_MIN_PROMPT tokens where the model supports it.
    """

    def __init__(
        self,
        model,
        tokenizer,
        max_rows: int | None = None,
        add_special_tokens: bool = True,
        cpu_budget_bytes: int = CPU_BUDGET_BYTES,
        threads: int | None = None,
        shared_prompt: bool | None = None,
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
        supported = supports_shared_prompt(model)
        if shared_prompt and not supported:
            raise SamplingError(
                f"shared-prompt attention does not support this model ({model.config.model_type}: "
                "sliding-window or soft-capped attention); leave shared_prompt unset"
            )
        self.shared_prompt = shared_prompt
        self._shared_supported = shared_prompt is not False and supported

    def _use_shared(self, prompt_width: int) -> bool:
        """Whether a batch whose prompts are `prompt_width` tokens wide decodes with shared-prompt
        attention (`shared_kv`): always or never when `shared_prompt` says so, else for prompts of at
        least SHARED_MIN_PROMPT tokens."""
        if not self._shared_supported:
            return False
        return bool(self.shared_prompt) or prompt_width >= SHARED_MIN_PROMPT

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
        attention = (
            _attention(self.model, IMPLEMENTATION) if self._shared_supported else contextlib.nullcontext()
        )
        with _threads(self.threads), attention:
            self._run_batches(prompts, encoded, order, n, params, results, progress)
        return results  # type: ignore[return-value]

    def workers(self) -> int:
        """Batches decoded at once: on CPU one per thread (each batch single-threaded), on CUDA one.

        A tiny model's ops are too small to split well across cores (measured on 2 cores: 1.3x from a
        second intra-op thread), while two batches decoded side by side, each on one core, scale almost
        linearly; torch releases the GIL inside each op, so plain Python threads suffice.
        """
        if self.device.type != "cpu":
            return 1
        return max(1, self.threads or torch.get_num_threads())

    def _run_batches(self, prompts, encoded, order, n, params, results, progress) -> None:
        workers = self.workers()
        # On CPU the plan is split for at least CPU_PLAN_PARTS workers whatever their number, so 1 to 4
        # threads decode the same batches and draw the same samples (row numerics depend on the batch).
        parts = max(workers, CPU_PLAN_PARTS) if self.device.type == "cpu" else 1
        batches = self._plan_batches([len(encoded[i]) for i in order], n, params, parts=parts)

        def run(batch: list[int]) -> tuple[list[int], list[list[Completion]]]:
            idx = [order[j] for j in batch]
            seeds = [prompt_seed(params.seed, prompts[i]) for i in idx]
            with torch.inference_mode():
                return idx, self._generate_batch([encoded[i] for i in idx], seeds, n, params)

        def done(idx: list[int], outs: list[list[Completion]]) -> None:
            for i, comps in zip(idx, outs, strict=True):
                results[i] = comps
            if progress is not None:
                progress(len(idx))

        if workers == 1 or len(batches) == 1:
            for batch in batches:
                done(*run(batch))
            return
        with _threads(1), ThreadPoolExecutor(min(workers, len(batches))) as pool:
            futures = [pool.submit(run, batch) for batch in batches]
            try:
                for future in as_completed(futures):
                    done(*future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

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

    def _plan_batches(
        self, lengths: list[int], n: int, params: SamplingParams, parts: int = 1
    ) -> list[list[int]]:
        """Group positions 0..P-1 (prompts sorted longest first) into batches of whole prompts. With
        `parts` > 1 the rows are split into a multiple of `parts` batches of similar size, so that
        `parts` workers finish together."""
        budget, max_rows = self._budget()
        # Budgeted as if `parts` batches were in memory at once (at most that many are), so that the plan
        # does not depend on how many workers actually run.
        budget //= max(1, parts)
        if self.max_rows:
            max_rows = self.max_rows
        if parts > 1 and len(lengths) > 1:
            rows = len(lengths) * n
            count = -(-rows // max(max_rows, n))  # batches needed anyway
            count = -(-count // parts) * parts
            max_rows = min(max_rows, max(n, -(-len(lengths) // count) * n))
        batches: list[list[int]] = []
        current: list[int] = []
        for j, length in enumerate(lengths):
            longest = lengths[current[0]] if current else length
            rows = (len(current) + 1) * n
            # A row's cache: its generated tokens, plus the prompt (shared by the n samples, or copied).
            prompt = -(-longest // n) if self._use_shared(longest) else longest
            fits = rows <= max_rows and rows * self.row_bytes(prompt + params.max_new_tokens) <= budget
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

        use_shared = self._use_shared(width)
        if use_shared:
            cache = make_shared_cache(self.model, params.max_new_tokens)
        else:
            cache = make_cache(self.model, width + params.max_new_tokens)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        # One prefill per prompt; its samples share its cache, or get copies of it (short prompts).
        logits = out.logits[:, -1, :].float().repeat_interleave(n, dim=0)
        if use_shared:  # the samples share the prompt's cache; no attention mask from here on
            shared = SharedPrompt(cache, mask, n)
            extra, mask = {"wiseft_shared": shared}, None
        else:
            shared, extra = None, {}
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
                # Drop retired rows once they are a fraction of the batch (see DROP_FRACTION).
                if int(retired.sum()) >= DROP_FRACTION * retired.numel():
                    keep = (~retired).nonzero().squeeze(1)
                    active, retired = active[keep], retired[keep]
                    keep_dev = keep.to(device)
                    cache.batch_select_indices(keep_dev)
                    next_pos, chosen = next_pos[keep_dev], chosen[keep_dev]
                    if shared is not None:
                        shared.select(keep_dev)
                    else:
                        mask = mask[keep_dev]
            if step == params.max_new_tokens - 1:
                break
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            out = self.model(
                input_ids=chosen[:, None],
                attention_mask=mask,
                position_ids=next_pos[:, None],
                past_key_values=cache,
                use_cache=True,
                **extra,
            )
            logits = out.logits[:, -1, :].float()
            next_pos = next_pos + 1
        return self._completions(tokens, n_tokens, n_prompts, n, params)

    def _completions(
        self, tokens: torch.Tensor, n_tokens: torch.Tensor, n_prompts: int, n: int, params: SamplingParams
    ) -> list[list[Completion]]:
        eos = set(self.eos_ids)
        rows, seqs, ended_by_eos = [], [], []
        for row, count in zip(tokens.tolist(), n_tokens.tolist(), strict=True):
            row = row[:count]
            by_eos = bool(row) and row[-1] in eos
            rows.append(tuple(row))
            seqs.append(row[:-1] if by_eos else row)
            ended_by_eos.append(by_eos)
        texts = self.tokenizer.batch_decode(seqs, skip_special_tokens=True)
        comps = []
        for text, row, by_eos in zip(texts, rows, ended_by_eos, strict=True):
            text, by_stop = cut_at_stop(text, params.stop)
            comps.append(Completion(text, len(row), "stop" if by_eos or by_stop else "length", row))
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
def _attention(model, implementation: str):
    """Use attention `implementation` in `model` for the duration, then restore the model's own."""
    register()
    before = model.config._attn_implementation
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


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

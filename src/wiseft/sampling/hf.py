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

On CPU, `threads` batches are decoded side by side, each on one core (`HFSampler.workers`); a large
model whose rows fit one batch decodes it with torch single-threaded and its linear layers split by
output features over `threads` Python threads (`cpu_linear`), never with OpenMP's spinning threads; on
CUDA one batch at a time. The measurements behind these choices and constants are in bench/RESULTS.md.

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
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

import torch

from wiseft.checkpoints import load_causal_lm, load_tokenizer
from wiseft.devices import resolve_device
from wiseft.errors import SamplingError
from wiseft.sampling import batch_plan, cpu_linear
from wiseft.sampling.base import (
    Completion,
    SamplingParams,
    check_request,
    cut_at_stop,
    prompt_seed,
)
from wiseft.sampling.batch_plan import CPU_BUDGET_BYTES, budget, plan_batches, row_bytes
from wiseft.sampling.block_cache import make_cache
from wiseft.sampling.cpu_linear import packed_linears
from wiseft.sampling.picking import pick_tokens
from wiseft.sampling.shared_kv import (
    IMPLEMENTATION,
    SharedPrompt,
    make_shared_cache,
    register,
    supports_shared_prompt,
)
from wiseft.sampling.stops import StopChecker

UNIFORM_BLOCK = 32  # steps of uniforms drawn at once per prompt (a fixed block keeps streams reproducible)


# Finished rows are dropped from the batch (a copy of the cache) once they are this fraction of it.
DROP_FRACTION = 0.125
# Prompts at least this many tokens wide decode with shared-prompt attention (`shared_kv`).
SHARED_MIN_PROMPT = 24


def load_model_and_tokenizer(
    path: str | os.PathLike,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
):
    """Load a causal LM (bf16 on CUDA, float32 on CPU unless `dtype` says otherwise) and its tokenizer."""
    device = resolve_device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = load_causal_lm(path, dtype, trust_remote_code)  # checks the directory first
    return model.to(device).eval(), load_tokenizer(path, trust_remote_code)


class _Decoding:
    """What the decoding loop carries from step to step for the rows still in the batch."""

    def __init__(self, cache, logits: torch.Tensor, next_pos: torch.Tensor, rows: int):
        self.cache = cache
        self.logits = logits
        self.next_pos = next_pos
        self.active = torch.arange(rows)  # which original rows are in the batch, in batch order
        self.retired = torch.zeros(rows, dtype=torch.bool)  # rows in the batch that have finished
        self.mask: torch.Tensor | None = None  # the attention mask (without shared-prompt attention)
        self.shared: SharedPrompt | None = None

    def drop_retired(self, chosen: torch.Tensor) -> torch.Tensor:
        """Remove finished rows from the batch (a copy of the cache); return the rest's chosen tokens."""
        keep = (~self.retired).nonzero().squeeze(1)
        self.active, self.retired = self.active[keep], self.retired[keep]
        keep_dev = keep.to(self.next_pos.device)
        self.cache.batch_select_indices(keep_dev)
        self.next_pos = self.next_pos[keep_dev]
        if self.shared is not None:
            self.shared.select(keep_dev)
        else:
            self.mask = self.mask[keep_dev]
        return chosen[keep_dev]

    def step(self, model, chosen: torch.Tensor) -> None:
        """One forward of the chosen tokens; the next logits."""
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        extra = {"wiseft_shared": self.shared} if self.shared is not None else {}
        out = model(
            input_ids=chosen[:, None], attention_mask=self.mask, position_ids=self.next_pos[:, None],
            past_key_values=self.cache, use_cache=True, **extra,
        )  # fmt: skip
        self.logits = out.logits[:, -1, :].float()
        self.next_pos = self.next_pos + 1


class HFSampler:
    """Sample from a transformers causal LM held in memory.

    `HFSampler(model, tokenizer)` samples from the given model object, so a caller may change its weights
    in place between calls (the sweep does); `HFSampler.from_pretrained(path)` loads one. `max_rows`
    caps rows per forward batch (default: automatic). `add_special_tokens` is passed to the tokenizer
    (set False when prompts already carry a chat template with its BOS). `threads` is how many CPU
    cores to use (default: torch's thread count): that many batches are decoded at once, one core each
    (see `workers`). `shared_prompt` forces shared-prompt attention on (True) or off (False); by default
    it is used for prompts of at least SHARED_MIN_PROMPT tokens where the model supports it.
    `pack_linears`: on CPU in float32, run the linear layers on weights prepacked for oneDNN during each
    `generate` (`cpu_linear`; a copy of the weights for the call's duration); False keeps torch's default.
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
        pack_linears: bool = True,
    ):
        self.threads = threads
        self.pack_linears = pack_linears
        self.n_params = sum(p.numel() for p in model.parameters())
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

    def row_bytes(self, seq_len: int) -> int:
        """Estimated bytes one sampled row of this model needs at `seq_len` tokens (`batch_plan.row_bytes`)."""
        return row_bytes(self.model, seq_len)

    def plan_batches(
        self, lengths: list[int], n: int, params: SamplingParams, parts: int = 1
    ) -> list[list[int]]:
        """Batches of whole prompts (positions into `lengths`, longest first) for this model and device
        (`batch_plan.plan_batches`); a row of a shared prompt holds its share of the prompt's keys."""

        def prompt_tokens(width: int) -> int:
            return -(-width // n) if self._use_shared(width) else width

        return plan_batches(
            lengths, n, params.max_new_tokens, bytes_per_row=lambda seq: row_bytes(self.model, seq),
            available=budget(self.device, self.cpu_budget_bytes), prompt_tokens=prompt_tokens,
            max_rows=self.max_rows, parts=parts,
        )  # fmt: skip

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

        A tiny model's ops are too small to split well across cores, while two batches decoded side by
        side, each on one core, scale almost linearly; torch releases the GIL inside each op, so plain
        Python threads suffice.
        """
        if self.device.type != "cpu":
            return 1
        return max(1, self.threads or torch.get_num_threads())

    def _run_batches(self, prompts, encoded, order, n, params, results, progress) -> None:
        workers = self.workers()
        # On CPU the plan does not depend on 1 to 4 workers, so those threads decode the same batches and
        # draw the same samples (row numerics depend on the batch); see `batch_plan.cpu_plan_parts`.
        parts = 1
        if self.device.type == "cpu":
            parts = batch_plan.cpu_plan_parts(workers, len(order) * n, self.n_params)
        batches = self.plan_batches([len(encoded[i]) for i in order], n, params, parts=parts)
        with self._packing(len(batches), workers):
            self._decode_batches(batches, prompts, encoded, order, n, params, results, progress)

    def _packing(self, batches: int, workers: int):
        """Prepacked linear layers (`cpu_linear`) for a large model, or for a plan of one batch, which
        runs on all threads at once and must not draw differently with their number. A large model's
        single batch runs single-threaded torch with its linear layers column-parallel over `workers`
        Python threads (`cpu_linear`: no OpenMP threads spinning while they wait for each other)."""
        large = self.n_params >= batch_plan.LARGE_MODEL_PARAMS
        if not (self.pack_linears and self.device.type == "cpu" and (large or batches == 1)):
            return contextlib.nullcontext()
        if not (large and batches == 1 and workers > 1 and cpu_linear.eligible(self.model)):
            return packed_linears(self.model)
        return _column_parallel(self.model, workers)

    def _decode_batches(self, batches, prompts, encoded, order, n, params, results, progress) -> None:
        workers = self.workers()

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

    # ---- the decoding loop -----------------------------------------------------------------------

    def _generate_batch(
        self, ids_list: list[list[int]], seeds: list[int], n: int, params: SamplingParams
    ) -> list[list[Completion]]:
        """The decoding loop of one batch of prompts, n samples each."""
        # 1) One prefill per prompt; its n samples share its cache (long prompts) or get copies of it.
        state = self._prefill(ids_list, n, params)
        n_prompts, rows = len(ids_list), len(ids_list) * n
        row_prompt = torch.arange(n_prompts).repeat_interleave(n)
        row_sample = torch.arange(n).repeat(n_prompts)
        tokens = torch.full((rows, params.max_new_tokens), self.pad_id, dtype=torch.long)
        n_tokens = torch.full((rows,), params.max_new_tokens, dtype=torch.long)
        eos = torch.tensor(self.eos_ids, device=self.device)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        stop_check = (
            StopChecker(self.tokenizer, self._token_pieces(), self._vocab_size(), params.stop)
            if params.stop
            else None
        )
        uniforms = None
        for step in range(params.max_new_tokens):
            # 2) Pick each running row's token with a uniform from its prompt's own random stream.
            if step % UNIFORM_BLOCK == 0:
                block = min(UNIFORM_BLOCK, params.max_new_tokens - step)
                uniforms = torch.stack([torch.rand((block, n), generator=g) for g in generators])
            u = uniforms[row_prompt[state.active], step % UNIFORM_BLOCK, row_sample[state.active]].to(
                self.device
            )
            chosen = pick_tokens(state.logits, u, params)
            chosen_cpu = chosen.cpu()
            tokens[state.active[~state.retired], step] = chosen_cpu[~state.retired]
            # 3) Retire rows that produced an end-of-sequence token or completed a stop string.
            finished = torch.isin(chosen, eos).cpu()
            if stop_check is not None:
                finished |= stop_check(tokens, state.active, chosen_cpu, step, finished | state.retired)
            done_now = finished & ~state.retired
            if done_now.any():
                n_tokens[state.active[done_now]] = step + 1
                state.retired |= done_now
                if bool(state.retired.all()):
                    break
                if int(state.retired.sum()) >= DROP_FRACTION * state.retired.numel():
                    chosen = state.drop_retired(chosen)
            if step == params.max_new_tokens - 1:
                break
            # 4) Feed the chosen tokens back.
            state.step(self.model, chosen)
        return self._completions(tokens, n_tokens, n_prompts, n, params)

    def _prefill(self, ids_list: list[list[int]], n: int, params: SamplingParams) -> _Decoding:
        """Left-pad the prompts, run one forward over them, and set up the n rows of each prompt."""
        n_prompts = len(ids_list)
        width = max(len(ids) for ids in ids_list)
        input_ids = torch.full((n_prompts, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n_prompts, width), dtype=torch.long)
        for i, ids in enumerate(ids_list):  # left padding: every prompt ends at the last column
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            mask[i, width - len(ids) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        use_shared = self._use_shared(width)
        if use_shared:
            cache = make_shared_cache(self.model, params.max_new_tokens)
        else:
            cache = make_cache(self.model, width + params.max_new_tokens)
        out = self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
            use_cache=True, logits_to_keep=1,
        )  # fmt: skip
        logits = out.logits[:, -1, :].float().repeat_interleave(n, dim=0)
        state = _Decoding(cache, logits, positions[:, -1].repeat_interleave(n) + 1, n_prompts * n)
        if use_shared:  # the samples share the prompt's cache; no attention mask from here on
            state.shared = SharedPrompt(cache, mask, n)
        else:
            cache.batch_repeat_interleave(n)
            state.mask = mask.repeat_interleave(n, dim=0)
        return state

    def _token_pieces(self) -> list[str]:
        """The text of every token id (for the stop-string check), decoded once per sampler."""
        if self._pieces is None:
            self._pieces = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        return self._pieces

    def _vocab_size(self) -> int:
        return self.model.config.get_text_config().vocab_size

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
def _column_parallel(model, workers: int):
    """torch single-threaded, `model`'s linear layers packed and column-parallel over `workers` threads."""
    with _threads(1), packed_linears(model, parts=workers):
        yield


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

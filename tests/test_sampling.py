"""Sampling: parameters, the scripted fake, inverse-CDF token choice, and the transformers backend."""

from __future__ import annotations

import math

import pytest
import torch
from support.sampling import forbid_tokens, tiny_model_dir
from transformers import AutoTokenizer

from wiseft.errors import CheckpointError, SamplingError
from wiseft.sampling import Completion, Sampler, SamplingParams, batch_plan, cpu_linear
from wiseft.sampling.fake import ScriptedSampler
from wiseft.sampling.hf import HFSampler
from wiseft.sampling.picking import pick_tokens

PROMPTS = ["12+34=", "7+8=", "99+1+2=", "5=", "31+13+55+4="]


# ---- parameters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"top_p": 0.0}, "top_p must be in (0, 1]"),
        ({"top_p": 1.5}, "top_p must be in (0, 1]"),
        ({"top_k": -1}, "top_k must be >= 0"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"stop": ("",)}, "stop strings must be non-empty"),
    ],
)
def test_bad_params_are_rejected(kwargs, message):
    with pytest.raises(SamplingError) as err:
        SamplingParams(**kwargs)
    assert message in str(err.value)


def test_bare_stop_string_is_one_stop_string():
    assert SamplingParams(stop="$").stop == ("$",)


# ---- scripted fake ---------------------------------------------------------------------------------


def test_scripted_sampler_applies_stop_and_length():
    s = ScriptedSampler({"a": ["12$34", "abcdefgh", "xy"]})
    assert isinstance(s, Sampler)
    out = s.generate(["a"], 4, SamplingParams(max_new_tokens=5, stop=("$",)))
    assert out == [
        [
            Completion("12", 3, "stop"),
            Completion("abcde", 5, "length"),
            Completion("xy", 3, "stop"),
            Completion("12", 3, "stop"),
        ]
    ]
    assert s.calls == ["a"]


def test_scripted_sampler_callable_and_unknown_prompt():
    s = ScriptedSampler(lambda p, i, params: f"{p}{i}")
    assert [c.text for c in s.generate(["q"], 3, SamplingParams())[0]] == ["q0", "q1", "q2"]
    with pytest.raises(SamplingError, match="no script for prompt 'zz'"):
        ScriptedSampler({"a": ["x"]}).generate(["zz"], 1, SamplingParams())
    with pytest.raises(SamplingError, match="n \\(samples per prompt\\) must be >= 1"):
        s.generate(["q"], 0, SamplingParams())


# ---- token choice ----------------------------------------------------------------------------------


def _reference_choice(logits: torch.Tensor, u: float, temperature: float, top_k: int, top_p: float) -> int:
    """Brute force in float64: filter, renormalise, walk the tokens in order until the mass exceeds u."""
    x = logits.double() / temperature
    order = sorted(range(len(x)), key=lambda i: -x[i].item())
    keep = set(order[:top_k]) if top_k else set(order)
    p = torch.softmax(x, 0)
    p = {i: p[i].item() / sum(p[j].item() for j in keep) for i in keep}  # renormalised after top-k
    if top_p < 1:
        mass, nucleus = 0.0, set()
        for i in order:
            if i in keep and mass < top_p:
                nucleus.add(i)
                mass += p[i]
        keep = nucleus
        walk = order  # the nucleus is walked most likely first
    else:
        walk = range(len(x))
    z = sum(p[i] for i in keep)
    acc = 0.0
    last = None
    for i in walk:
        if i not in keep:
            continue
        acc += p[i] / z
        last = i
        if u < acc:
            return i
    return last


@pytest.mark.parametrize(
    "temperature, top_k, top_p", [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (1.0, 8, 0.6)]
)
def test_pick_tokens_matches_brute_force(temperature, top_k, top_p):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(40, 17, generator=g) * 2
    u = torch.rand(40, generator=g)
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    got = pick_tokens(logits, u, params).tolist()
    want = [_reference_choice(logits[r], u[r].item(), temperature, top_k, top_p) for r in range(40)]
    # float32 vs float64 can disagree only when u sits on an interval boundary; none does here.
    assert got == want


def test_pick_tokens_greedy_and_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]])
    assert pick_tokens(logits, torch.tensor([0.99]), SamplingParams(temperature=0)).item() == 2
    # A fine grid of u reproduces the probabilities exactly (up to the grid step).
    grid = (torch.arange(20000) + 0.5) / 20000
    picks = pick_tokens(logits.expand(20000, 4), grid, SamplingParams())
    freq = torch.bincount(picks, minlength=4).double() / 20000
    assert torch.allclose(freq, torch.softmax(logits[0].double(), 0), atol=1e-3)
    # u at (or rounding to) the top of the CDF never lands on a token with no mass.
    filtered = pick_tokens(logits, torch.tensor([1.0]), SamplingParams(top_k=2))
    assert filtered.item() in (1, 2)


# ---- transformers backend --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tiny_model_dir(tmp_path_factory.mktemp("sampling"))
    return path, HFSampler.from_pretrained(path, device="cpu")


def test_greedy_matches_transformers_generate_per_prompt(tiny):
    """Left padding, position ids, the prefill copy and the preallocated cache must not change the
    model's greedy output: compare with `generate` run on each prompt alone."""
    path, sampler = tiny
    params = SamplingParams(temperature=0, max_new_tokens=12)
    ours = sampler.generate(PROMPTS, 2, params)
    tok = AutoTokenizer.from_pretrained(path)
    for prompt, comps in zip(PROMPTS, ours, strict=True):
        ids = torch.tensor([tok(prompt)["input_ids"]])
        ref = sampler.model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12, pad_token_id=0
        )[0, ids.shape[1] :].tolist()
        eos = tok.eos_token_id
        if eos in ref:
            ref = ref[: ref.index(eos) + 1]
        want_text = tok.decode([t for t in ref if t != eos], skip_special_tokens=True)
        assert comps[0] == comps[1]
        assert comps[0].text == want_text
        assert comps[0].n_tokens == len(ref)
        assert comps[0].finish_reason == ("stop" if ref[-1] == eos else "length")


def test_first_token_distribution_matches_model(tiny):
    """At T=1 the first sampled token follows softmax(logits) of a float64 forward pass."""
    _, sampler = tiny
    n = 3000
    comps = sampler.generate(["12+34="], n, SamplingParams(max_new_tokens=1, seed=7))[0]
    tok = sampler.tokenizer
    ids = tok("12+34=")["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(sampler.model.double()(torch.tensor([ids])).logits[0, -1], 0)
    sampler.model.float()
    # Special tokens (ids 0-3) and the model's ids beyond the tokenizer decode to nothing: one "" bucket.
    counts: dict[str, int] = {}
    for c in comps:
        counts[c.text[:1]] = counts.get(c.text[:1], 0) + 1
    assert len(counts) > 5
    for piece, count in counts.items():
        silent = probs[:4].sum() + probs[len(tok) :].sum()
        p = silent.item() if piece == "" else probs[tok.convert_tokens_to_ids(piece)].item()
        sd = math.sqrt(p * (1 - p) / n)
        assert abs(count / n - p) < 5 * sd + 1e-3, piece


def test_same_seed_same_completions_regardless_of_batching(tiny):
    path, sampler = tiny
    params = SamplingParams(temperature=1.0, max_new_tokens=10, seed=11)
    full = sampler.generate(PROMPTS, 4, params)
    again = sampler.generate(PROMPTS, 4, params)
    assert full == again
    # A resumed run that samples only some prompts, in another order and in tiny batches, draws the same.
    small = HFSampler(sampler.model, sampler.tokenizer, max_rows=4)
    part = small.generate([PROMPTS[3], PROMPTS[1]], 4, params)
    assert part == [full[3], full[1]]
    other_seed = sampler.generate(PROMPTS, 4, SamplingParams(temperature=1.0, max_new_tokens=10, seed=12))
    assert other_seed != full


def test_stop_string_cuts_what_the_unstopped_run_produced(tiny):
    """The random stream does not depend on when a row stops, so a stop string must cut exactly the text
    the same seed produces without it (char tokenizer: one token per character)."""
    _, sampler = tiny
    base = SamplingParams(temperature=1.0, max_new_tokens=16, seed=5)
    stop = ("1",)
    tok = sampler.tokenizer
    silent = [i for i in range(sampler.model.config.vocab_size) if i >= len(tok) or i in (0, 1, 3)]
    handle = forbid_tokens(sampler.model, silent)  # every token but EOS is then exactly one character
    try:
        free = sampler.generate(PROMPTS, 8, base)
        cut = sampler.generate(
            PROMPTS, 8, SamplingParams(temperature=1.0, max_new_tokens=16, seed=5, stop=stop)
        )
    finally:
        handle.remove()
    seen_stop = 0
    for free_row, cut_row in zip(free, cut, strict=True):
        for f, c in zip(free_row, cut_row, strict=True):
            if "1" in f.text:
                seen_stop += 1
                idx = f.text.index("1")
                assert c == Completion(f.text[:idx], idx + 1, "stop")
            else:
                assert c == f
    assert seen_stop > 0


def test_model_that_never_stops_ends_at_length(tiny):
    _, sampler = tiny
    handle = forbid_tokens(sampler.model, [sampler.tokenizer.eos_token_id])
    try:
        out = sampler.generate(PROMPTS[:2], 3, SamplingParams(max_new_tokens=7, seed=1))
    finally:
        handle.remove()
    for row in out:
        for c in row:
            assert c.finish_reason == "length"
            assert c.n_tokens == 7


def test_batch_plan_respects_budget(tiny):
    _, sampler = tiny
    capped = HFSampler(sampler.model, sampler.tokenizer, max_rows=6)
    batches = capped.plan_batches([5, 5, 4, 4, 3], 3, SamplingParams(max_new_tokens=4))
    assert batches == [[0, 1], [2, 3], [4]]
    one_row = sampler.row_bytes(9)
    tight = HFSampler(sampler.model, sampler.tokenizer, cpu_budget_bytes=one_row * 7)
    assert tight.plan_batches([5, 5, 5], 3, SamplingParams(max_new_tokens=4)) == [[0, 1], [2]]


def test_shared_prompts_let_more_rows_into_a_batch(tiny):
    """With shared-prompt attention a long prompt is held once for its n samples, so a memory budget fits
    more rows of it than with a copied cache."""
    _, sampler = tiny
    params = SamplingParams(max_new_tokens=4)
    n, long_prompt = 8, 200
    budget = sampler.row_bytes(long_prompt + 4) * n * 2  # two prompts' rows with copied caches
    plain = HFSampler(sampler.model, sampler.tokenizer, cpu_budget_bytes=budget, shared_prompt=False)
    shared = HFSampler(sampler.model, sampler.tokenizer, cpu_budget_bytes=budget, shared_prompt=True)
    assert plain.plan_batches([long_prompt] * 6, n, params) == [[0, 1], [2, 3], [4, 5]]
    assert shared.plan_batches([long_prompt] * 6, n, params) == [[0, 1, 2, 3, 4, 5]]


def test_bad_model_path_is_a_one_line_error_naming_it(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path} has no config.json"):
        HFSampler.from_pretrained(tmp_path, device="cpu")


@pytest.mark.parametrize("shared", [False, True, None], ids=["plain-cache", "shared-prompt", "auto"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma", "gpt2"])
def test_greedy_matches_generate_on_every_architecture(arch, shared, tmp_path):
    """Both caches (the block-grown one and the shared-prompt one) with left padding work for Llama,
    Qwen2 (biases, grouped-query attention), Gemma (tied and scaled embeddings) and GPT-2 (learned
    positions): greedy output equals `generate` on each prompt alone. Prompts differ in length, so the
    shorter ones are left-padded, and the long one makes the automatic choice the shared cache."""
    path = tiny_model_dir(tmp_path, arch=arch, tied=arch == "gemma")
    sampler = HFSampler.from_pretrained(path, device="cpu", shared_prompt=shared)
    prompts = ["12+34=", "99+1+2=", "5=", "1+2+3+4+5+6+7+8+9+10+11+12+13="]
    ours = sampler.generate(prompts, 2, SamplingParams(temperature=0, max_new_tokens=8))
    tok = sampler.tokenizer
    for prompt, comps in zip(prompts, ours, strict=True):
        ids = torch.tensor([tok(prompt)["input_ids"]])
        ref = sampler.model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8, pad_token_id=0
        )[0, ids.shape[1] :].tolist()
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id)]
        assert comps[0] == comps[1]
        assert comps[0].text == tok.decode(ref, skip_special_tokens=True)
    assert sampler.model.config._attn_implementation == "sdpa"  # restored after sampling


def test_shared_prompt_attention_equals_attention_over_the_whole_cache():
    """One decode step of shared-prompt attention, after some rows were dropped, equals float64 softmax
    attention over each row's prompt (padding excluded) followed by its generated tokens."""
    from types import SimpleNamespace

    from wiseft.sampling.shared_kv import SharedPrompt, _layer_class, shared_prompt_attention

    g = torch.Generator().manual_seed(0)
    prompts, n, kv_heads, group, dim, width, steps = 3, 4, 2, 3, 8, 5, 6
    layer = _layer_class()(capacity=10)
    cache = SimpleNamespace(layers=[layer])
    mask = torch.ones(prompts, width, dtype=torch.long)
    mask[1, :2] = 0  # left padding of prompt 1
    mask[2, :4] = 0
    layer.update(
        torch.randn(prompts, kv_heads, width, dim, generator=g),
        torch.randn(prompts, kv_heads, width, dim, generator=g),
    )
    shared = SharedPrompt(cache, mask, n)
    rows = prompts * n
    for step in range(steps):
        layer.update(
            torch.randn(rows, kv_heads, 1, dim, generator=g), torch.randn(rows, kv_heads, 1, dim, generator=g)
        )
        if step == 2:  # drop some rows, as finished rows are dropped
            keep = torch.tensor([0, 2, 3, 5, 8, 9, 11])
            layer.batch_select_indices(keep)
            shared.select(keep)
            rows = len(keep)
    query = torch.randn(rows, kv_heads * group, 1, dim, generator=g)
    scaling = 0.3
    out, _ = shared_prompt_attention(
        SimpleNamespace(layer_idx=0), query, None, None, None, scaling=scaling, wiseft_shared=shared
    )
    assert out.shape == (rows, 1, kv_heads * group, dim)
    for r in range(rows):
        p = int(shared.row_prompt[r])
        valid = mask[p].bool()
        for h in range(kv_heads * group):
            keys = torch.cat(
                [layer.prompt_keys[p, h // group][valid], layer.keys[r, h // group, :steps]]
            ).double()
            values = torch.cat(
                [layer.prompt_values[p, h // group][valid], layer.values[r, h // group, :steps]]
            ).double()
            weights = torch.softmax(keys @ query[r, h, 0].double() * scaling, dim=0)
            torch.testing.assert_close(out[r, 0, h].double(), weights @ values, rtol=1e-5, atol=1e-6)


def test_parallel_workers_give_the_same_completions(tiny):
    """On CPU, `threads` batches are decoded side by side (one core each); for the same batch plan the
    completions are those of one worker, in prompt order, with progress reported per batch."""
    _, sampler = tiny
    params = SamplingParams(temperature=1.0, max_new_tokens=10, seed=3, stop=("1",))
    one = HFSampler(sampler.model, sampler.tokenizer, max_rows=8, threads=1)
    two = HFSampler(sampler.model, sampler.tokenizer, max_rows=8, threads=2)
    assert two.workers() == 2
    seen: list[int] = []
    assert two.generate(PROMPTS, 4, params, progress=seen.append) == one.generate(PROMPTS, 4, params)
    assert sorted(seen) == [1, 2, 2]


def test_one_to_four_threads_draw_the_same_samples(tiny):
    """The CPU batch plan does not depend on the thread count (up to CPU_PLAN_PARTS), so neither do the
    samples: here with the automatic plan, no row cap."""
    _, sampler = tiny
    params = SamplingParams(temperature=1.0, max_new_tokens=10, seed=9, stop=("1",))
    prompts = [p + str(i) for i in range(3) for p in PROMPTS]
    runs, plans = [], []
    for threads in (1, 2, 4):
        s = HFSampler(sampler.model, sampler.tokenizer, threads=threads)
        plan: list[tuple] = []
        original = s._generate_batch

        def record(ids, *args, _original=original, _plan=plan):
            _plan.append(tuple(map(tuple, ids)))
            return _original(ids, *args)

        s._generate_batch = record
        runs.append(s.generate(prompts, 4, params))
        plans.append(sorted(plan))
    assert len(plans[0]) == 4  # split for four workers even on one thread
    assert plans[0] == plans[1] == plans[2]
    assert runs[0] == runs[1] == runs[2]


def test_batches_split_evenly_among_workers(tiny):
    _, sampler = tiny
    params = SamplingParams(max_new_tokens=4)
    assert sampler.plan_batches([5] * 6, 2, params, parts=2) == [[0, 1, 2], [3, 4, 5]]
    assert sampler.plan_batches([5] * 6, 2, params, parts=1) == [[0, 1, 2, 3, 4, 5]]
    capped = HFSampler(sampler.model, sampler.tokenizer, max_rows=4)
    plan = capped.plan_batches([5] * 7, 2, params, parts=2)  # 4 batches: a multiple of the workers
    assert plan == [[0, 1], [2, 3], [4, 5], [6]]
    # The memory budget is shared by the batches in flight at once.
    tight = HFSampler(sampler.model, sampler.tokenizer, cpu_budget_bytes=sampler.row_bytes(9) * 4)
    assert tight.plan_batches([5] * 4, 2, params, parts=1) == [[0, 1], [2, 3]]
    assert tight.plan_batches([5] * 4, 2, params, parts=2) == [[0], [1], [2], [3]]


def test_a_failing_worker_fails_the_call_and_restores_the_model(tiny, monkeypatch):
    _, sampler = tiny
    two = HFSampler(sampler.model, sampler.tokenizer, max_rows=4, threads=2)
    original = two._generate_batch

    def flaky(ids_list, *args):
        if len(ids_list) == 1:
            raise SamplingError("boom")
        return original(ids_list, *args)

    monkeypatch.setattr(two, "_generate_batch", flaky)
    threads = torch.get_num_threads()
    with pytest.raises(SamplingError, match="boom"):
        two.generate(PROMPTS, 2, SamplingParams(max_new_tokens=4, seed=1))
    assert torch.get_num_threads() == threads
    assert sampler.model.config._attn_implementation == "sdpa"


# ---- prepacked linear layers and the CPU plan for large models -------------------------------------


@pytest.mark.skipif(not cpu_linear.available(), reason="this torch build has no oneDNN linear")
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_packed_linears_compute_the_same_layers_and_are_undone(arch, tmp_path):
    """Inside `packed_linears` every linear layer (nn.Linear, GPT-2's Conv1D) runs on oneDNN's packed
    weights: the logits equal a float64 forward to float32 accuracy, the layers' own forward is back
    afterwards, and weights rewritten in place between two contexts are used (nothing is kept)."""
    model = HFSampler.from_pretrained(tiny_model_dir(tmp_path, arch=arch), device="cpu").model
    ids = torch.tensor([[1, 5, 9, 13, 7, 30]])
    with torch.no_grad():
        want = model.double()(ids).logits
        model.float()
        with cpu_linear.packed_linears(model) as count:
            got = model(ids).logits
        linears = [
            m for m in model.modules() if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"
        ]
        assert count == len(linears) > 0
        assert all("forward" not in vars(m) for m in linears)
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
        for p in model.parameters():
            p.data.mul_(0.5)
        with cpu_linear.packed_linears(model):
            halved = model(ids).logits
        torch.testing.assert_close(halved, model(ids).logits, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(halved, got)


def test_packed_linears_leave_other_models_alone(tmp_path):
    model = HFSampler.from_pretrained(tiny_model_dir(tmp_path), device="cpu", dtype=torch.bfloat16).model
    with cpu_linear.packed_linears(model) as count:
        assert count == 0


@pytest.mark.skipif(not cpu_linear.available(), reason="this torch build has no oneDNN linear")
def test_packed_linears_do_not_depend_on_the_thread_count(tmp_path):
    """Layers wide enough for torch to split them across threads: with packed weights the logits are
    the same bits on 1, 2 and 4 threads (MKL's own sgemm does not promise that)."""
    path = tiny_model_dir(tmp_path, hidden=512, intermediate=2048, heads=4, kv_heads=2, layers=2)
    model = HFSampler.from_pretrained(path, device="cpu").model
    ids = torch.randint(4, 60, (24, 9), generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    outs = []
    try:
        with torch.no_grad(), cpu_linear.packed_linears(model):
            for threads in (1, 2, 4):
                torch.set_num_threads(threads)
                outs.append(model(ids).logits)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize(
    "out_features, in_features, parts, want",
    [
        (4864, 896, 2, [(0, 2432), (2432, 4864)]),
        (896, 4864, 2, [(0, 448), (448, 896)]),
        (896, 896, 3, [(0, 256), (256, 576), (576, 896)]),
        (640, 4096, 4, [(0, 320), (320, 640)]),  # slices of at least MIN_SLICE features
        (4864, 896, 64, [(i * 256, i * 256 + 256) for i in range(19)]),
        (64, 4096, 2, [(0, 64)]),  # one block: not split
        (256, 256, 2, [(0, 256)]),  # too few multiply-adds to pay for a hand-off
        (4864, 896, 1, [(0, 4864)]),
    ],
)
def test_column_slices(out_features, in_features, parts, want):
    assert cpu_linear.slices(out_features, in_features, parts) == want


@pytest.mark.skipif(not cpu_linear.available(), reason="this torch build has no oneDNN linear")
@pytest.mark.parametrize("arch", ["qwen2", "gpt2"])
def test_column_parallel_linears_give_the_same_bits(arch, tmp_path, monkeypatch):
    """Column-parallel packed layers (slices on 2 or 3 threads) give the same logits, bit for bit, as
    one packed layer, for batches of 1 to 33 rows; the layers are undone and torch's threads kept."""
    monkeypatch.setattr(cpu_linear, "SPLIT_MIN_MACS", 0)
    monkeypatch.setattr(cpu_linear, "SLICE_ALIGN", 16)
    monkeypatch.setattr(cpu_linear, "MIN_SLICE", 16)
    path = tiny_model_dir(tmp_path, arch=arch, hidden=128, intermediate=352, heads=4, kv_heads=2, layers=2)
    model = HFSampler.from_pretrained(path, device="cpu").model
    threads = torch.get_num_threads()
    with torch.no_grad():
        for rows in (1, 7, 33):
            ids = torch.randint(4, 60, (rows, 5), generator=torch.Generator().manual_seed(rows))
            with cpu_linear.packed_linears(model) as count:
                want = model(ids).logits
            for parts in (2, 3):
                with cpu_linear.packed_linears(model, parts=parts) as split_count:
                    got = model(ids).logits
                assert split_count == count > 0
                assert torch.equal(got, want)
    assert torch.get_num_threads() == threads
    assert all("forward" not in vars(m) for m in model.modules())


def test_a_large_model_on_two_threads_uses_column_parallel_layers(tiny, monkeypatch):
    """A large model's single batch on 2 threads: torch single-threaded inside, linear layers split over
    two threads, and the same samples as on one thread."""
    _, sampler = tiny
    monkeypatch.setattr(batch_plan, "LARGE_MODEL_PARAMS", 1)
    monkeypatch.setattr(cpu_linear, "SPLIT_MIN_MACS", 0)
    monkeypatch.setattr(cpu_linear, "SLICE_ALIGN", 16)
    monkeypatch.setattr(cpu_linear, "MIN_SLICE", 16)
    seen = []
    original = cpu_linear.packed_linears

    def spy(model, parts=1):
        seen.append((parts, torch.get_num_threads()))
        return original(model, parts)

    monkeypatch.setattr("wiseft.sampling.hf.packed_linears", spy)
    params = SamplingParams(temperature=1.0, max_new_tokens=8, seed=3)
    one = HFSampler(sampler.model, sampler.tokenizer, threads=1).generate(PROMPTS, 4, params)
    two = HFSampler(sampler.model, sampler.tokenizer, threads=2).generate(PROMPTS, 4, params)
    assert one == two
    assert seen == [(1, 1), (2, 1)]


@pytest.mark.parametrize(
    "workers, rows, params, parts",
    [
        (1, 32, 10**6, 4),  # a small model: always four parts (one batch per core pays)
        (2, 4096, 10**6, 4),
        (8, 64, 10**6, 8),
        (1, 32, 3 * 10**8, 1),  # a large model keeps LARGE_MODEL_ROWS rows per batch
        (2, 32, 3 * 10**8, 1),
        (4, 32, 3 * 10**8, 1),
        (2, 128, 3 * 10**8, 2),
        (1, 1024, 3 * 10**8, 4),
    ],
)
def test_cpu_plan_parts(workers, rows, params, parts):
    assert batch_plan.cpu_plan_parts(workers, rows, params) == parts


def test_one_to_four_threads_draw_the_same_samples_of_a_large_model(tiny, monkeypatch):
    """A large model's plan keeps its rows together: one batch decoded on all threads (intra-op), whose
    samples still do not depend on the thread count (packed linear layers)."""
    _, sampler = tiny
    monkeypatch.setattr(batch_plan, "LARGE_MODEL_PARAMS", 1)
    params = SamplingParams(temperature=1.0, max_new_tokens=10, seed=9, stop=("1",))
    runs = []
    for threads in (1, 2, 4):
        s = HFSampler(sampler.model, sampler.tokenizer, threads=threads)
        assert s.plan_batches(
            [6] * 5, 4, params, parts=batch_plan.cpu_plan_parts(threads, 20, s.n_params)
        ) == [[0, 1, 2, 3, 4]]
        runs.append(s.generate(PROMPTS, 4, params))
    assert runs[0] == runs[1] == runs[2]

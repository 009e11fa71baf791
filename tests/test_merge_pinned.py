"""The bytes of the sparsifying methods, pinned: the same inputs and seed give these exact outputs on the
compiled path, the torch path and in the weight space, whatever is optimised underneath (issue 14).

The digests are sha256 over the output tensors (name, then raw bytes, in name order). They were recorded
before the kernels were optimised; a change to them changes what users' seeds produce."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
import torch
from support.merge import bits_equal, load_dir

from wiseft import weightspace as weightspace_module
from wiseft.merge import Recipe, compiled, driver, rng, select, tensorwise
from wiseft.merge import plan as plan_module
from wiseft.merge.compute import Scratch
from wiseft.merge.driver import merge
from wiseft.merge.plan import plan
from wiseft.merge.sparsify import della_probabilities
from wiseft.weightspace import WeightSpace

SEED = 1234
CASES = {  # method -> parameters (dare_linear and della: l1 rescale, their default)
    "ties": {"density": 0.5},
    "breadcrumbs_ties": {"density": 0.8, "gamma": 0.05},
    "dare_linear": {"density": 0.6},
    "dare_ties": {"density": 0.6, "rescale": "inverse"},
    "della": {"density": 0.6, "epsilon": 0.2},
    "della_linear": {"density": 0.5, "epsilon": 0.1, "rescale": "inverse"},
    "sce": {"select_topk": 0.5},  # no weights: sce weighs the models by their mean squared task vector
}
PINNED = {
    "ties": "320321eedd64f59f01eccc21deb3ab4d1228b32e40318368beda76fd2ca9eb08",
    "breadcrumbs_ties": "b939f76fe5d5ab1d5ed7963b0fe7aa2c85dc25c3f3d94c44746a6c09aea31279",
    "dare_linear": "3e33cb203b0492b77fb18c42ee594e05b7bea95085be24d943d72a0bbd2bb90a",
    "dare_ties": "bdff490f58c7ccf7d8036d5767c40064cb84f153c82fda7522aeb1f55e2415c6",
    "della": "5fadfdb2ab39087b6719a8bfd90518ad1f7f086bb2a5cdd17c86c7ea8e91bd5a",
    "della_linear": "8fd168d2248a904fbc608bb2f7ae20fb68d5bdc6ba6d4cd7131356de504b1364",
    "sce": "758c2540d6c59d97b1f822a1dddfa866ac3cf7c111620629702dd2a40f65510e",
}
# (seed, tensor, model, start, n) -> sha256 of the float64 uniform numbers: crosses block boundaries
DRAWS = [
    (0, "w", 0, 0, 70000),
    (7, "model.layers.0.mlp.up_proj.weight", 2, 60000, 140000),
    (2**40, "x", 1, 5, 3),
]
PINNED_DRAWS = [
    "b665d4e8f74d9d2908f6845e433b8c576cd6804f22bb845ffc3199c968ed98b4",
    "cff6f7c09842d89d12c6d8a5636d80e7080d1b4e09c102d64ab5256c22583a56",
    "417655c219f672c2f304fb9e7ad453b8b26df0713e51630bebe4fbf61d00efc0",
]


def _recipe(models, method):
    params = CASES[method]
    m = [str(models.get(seed=s, dtype=torch.bfloat16)) for s in (11, 12, 13)]
    weights = None if method == "sce" else (1.0, 0.7)
    return Recipe(method, (m[1], m[2]), base=m[0], weights=weights, parameters=params, seed=SEED)


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("path", ["compiled", "parts", "torch"])
@pytest.mark.parametrize("method", list(CASES))
def test_the_merged_bytes_are_pinned(models, tmp_path, monkeypatch, method, path):
    """`parts`: the compiled loops cut every span into three parts of as few as 64 elements (on threads),
    so the cuts fall inside tensors, across RNG blocks' worth of draws and inside rows."""
    if path != "torch" and not compiled.available():
        pytest.skip("numba is not installed: the compiled path is not available")
    if path == "torch":
        monkeypatch.setattr(compiled, "_K", False)
    if path == "parts":
        monkeypatch.setattr(compiled, "MIN_PART", 64)
        monkeypatch.setattr(compiled, "parts_wanted", lambda: 3)
    merge(plan(_recipe(models, method)), tmp_path / "out")
    assert _digest(load_dir(tmp_path / "out")) == PINNED[method]


@pytest.mark.parametrize("method", ["dare_ties", "della_linear"])
def test_the_weight_space_gives_the_pinned_bytes(models, method):
    recipe = _recipe(models, method)
    ws = WeightSpace.from_recipe(recipe, dtype=torch.bfloat16)
    assert _digest({n: p.data for n, p in ws.model.named_parameters()}) == PINNED[method]


@pytest.mark.parametrize("case, digest", list(zip(DRAWS, PINNED_DRAWS, strict=True)))
def test_the_uniform_draws_are_pinned(case, digest):
    values = rng.uniform(*case)
    assert values.dtype == torch.float64 and values.numel() == case[4]
    assert hashlib.sha256(values.numpy().tobytes()).hexdigest() == digest


@pytest.mark.parametrize("seed, start, n", [(0, 0, 1 << 16), (2**64 - 1, 65535, 3), (99, 1000, 200_000)])
def test_the_compiled_draws_are_torchs_generator(monkeypatch, seed, start, n):
    if not compiled.available():
        pytest.skip("numba is not installed: the compiled path is not available")
    fast = rng.uniform(seed, "t", 3, start, n).clone()
    monkeypatch.setattr(compiled, "_K", False)
    assert torch.equal(rng.uniform(seed, "t", 3, start, n), fast)


@pytest.mark.parametrize("cols", [1, 2, 7, 1536])
def test_the_compiled_della_ranks_equal_the_torch_sort(monkeypatch, cols):
    if not compiled.available():
        pytest.skip("numba is not installed: the compiled path is not available")
    gen = torch.Generator().manual_seed(cols)
    delta = torch.randn(cols * 9, generator=gen).to(torch.bfloat16).double()
    delta -= torch.randn(cols * 9, generator=gen).to(torch.bfloat16).double()
    delta[::3] = delta[1]  # many equal magnitudes, of both signs
    delta[::5] = -delta[1]
    delta[::11] = 0.0
    scratch = Scratch(1 << 12)
    scratch.ensure(delta.numel())
    fast = della_probabilities(delta, cols, 0.4, 0.15, scratch).clone()
    monkeypatch.setattr(compiled, "_K", False)
    assert bits_equal(della_probabilities(delta, cols, 0.4, 0.15, scratch), fast)


def _cut_three_ways(recipe, tmp_path, monkeypatch, after=lambda parts: None) -> None:
    """Merge `recipe` uncut, cut in two (the default part size) and in three small parts, then on the torch
    path: every output has the torch path's bytes, and the loops were cut as asked. `after(parts)` checks
    more after each compiled merge."""
    cut, run_parts = [], compiled.run_parts
    monkeypatch.setattr(
        compiled, "run_parts", lambda call, parts: (cut.append(len(parts)), run_parts(call, parts))
    )
    digests = []
    for parts, min_part in [(1, compiled.MIN_PART), (2, compiled.MIN_PART), (3, 64)]:
        monkeypatch.setattr(compiled, "parts_wanted", lambda parts=parts: parts)
        monkeypatch.setattr(compiled, "MIN_PART", min_part)
        cut.clear()
        merge(plan(recipe), tmp_path / f"out-{parts}")
        digests.append(_digest(load_dir(tmp_path / f"out-{parts}")))
        assert max(cut) == parts
        after(parts)
    monkeypatch.setattr(compiled, "_K", False)
    merge(plan(recipe), tmp_path / "out-torch")
    assert digests == [_digest(load_dir(tmp_path / "out-torch"))] * 3


def _long_models(models) -> list[str]:
    return [str(models.get(seed=s, dtype=torch.bfloat16, layers=1, intermediate=6000)) for s in (21, 22, 23)]


@pytest.mark.parametrize("method", list(CASES))
def test_cutting_the_loops_into_parts_keeps_the_bytes_on_long_tensors(models, tmp_path, monkeypatch, method):
    """MLP tensors of 192,000 elements: several RNG blocks and l1 blocks (the last one partial), so the
    parts of the compiled loops (compiled.run_parts) start inside tensors, on block boundaries and mid-row.
    Uncut, cut in two (the default size) and cut in three small parts all give the torch path's bytes."""
    if not compiled.available():
        pytest.skip("numba is not installed: the compiled path is not available")
    m = _long_models(models)
    weights = None if method == "sce" else (1.0, 0.7)
    recipe = Recipe(method, (m[1], m[2]), base=m[0], weights=weights, parameters=CASES[method], seed=SEED)
    used, kernel = set(), compiled.kernel
    monkeypatch.setattr(compiled, "kernel", lambda name: (used.add(name), kernel(name))[1])

    def tie_ranks_continue(parts: int) -> None:
        # ties and breadcrumbs' bfloat16 magnitudes tie at the threshold: each part's tie ranks start
        # from the ties counted before it
        assert ("tie_counts" in used) == (parts > 1 and method in ("ties", "breadcrumbs_ties"))
        used.clear()

    _cut_three_ways(recipe, tmp_path, monkeypatch, tie_ranks_continue)


# the methods of the Gram-matrix family (merge/spherical.GramJob, model_stock's StockJob): block sums of
# inner products, then a weighted sum of the inputs; both compiled loops run in parts
GRAM_CASES = {
    "slerp": ({"t": 0.3}, None, None),
    "nuslerp": ({}, (0.7, 0.3), None),
    "multislerp": ({}, (0.6, 0.4), "base"),
    "karcher": ({}, (0.7, 0.3), None),
    "model_stock": ({}, None, "base"),
}


@pytest.mark.parametrize("method", list(GRAM_CASES))
def test_cutting_the_gram_loops_into_parts_keeps_the_bytes(models, tmp_path, monkeypatch, method):
    """The Gram family's block sums are cut on block boundaries and its weighted sum anywhere: uncut, in two
    and in three small parts, the bytes are the torch path's (192,000-element tensors: 12 blocks)."""
    if not compiled.available():
        pytest.skip("numba is not installed: the compiled path is not available")
    params, weights, base = GRAM_CASES[method]
    m = _long_models(models)
    recipe = Recipe(method, (m[1], m[2]), base=m[0] if base else None, weights=weights, parameters=params)
    _cut_three_ways(recipe, tmp_path, monkeypatch)


@pytest.mark.parametrize("held", ["all", "none", "some"])
@pytest.mark.parametrize("method", list(CASES))
def test_held_and_streamed_tensors_give_the_pinned_bytes(models, tmp_path, monkeypatch, method, held):
    """A per-tensor job's tensor whose inputs fit RESIDENT_BYTES is read once and held for all its
    passes; a larger one is read again in every pass. Held, streamed, or some of each (the limit between
    the tensors' sizes), in chunks of 448 elements: the pinned bytes, each held chunk read once, each
    streamed one once per pass."""
    p = plan(_recipe(models, method), chunk=192, io_chunk=448)
    sizes = sorted(sum(s.nbytes for s in t.sources) for t in p.tensors if t.kind == "merge")
    limit = {"all": sizes[-1], "none": 0, "some": sizes[len(sizes) // 2]}[held]
    monkeypatch.setattr(plan_module, "RESIDENT_BYTES", limit)
    reads, read = Counter(), driver._read
    monkeypatch.setattr(
        driver, "_read", lambda p_, step, buf, hashes: (reads.update([(step.index, step.start)]), read(p_, step, buf, hashes))[1]
    )  # fmt: skip
    merge(p, tmp_path / "out")
    assert _digest(load_dir(tmp_path / "out")) == PINNED[method]
    passes = {i for i, t in enumerate(p.tensors) if p.job(t) is not None and p.job(t).needs_observation()}
    kept = {i for i in passes if p.holds_resident(p.tensors[i])}
    assert all(reads[k] == 1 for k in reads if k[0] in kept)
    assert all(reads[k] > 1 for k in reads if k[0] in passes - kept)
    if passes:  # (dare_ties and della_linear here rescale by the keep probability: one pass, nothing held)
        assert bool(kept) == (held != "none") and bool(passes - kept) == (held != "all")


def test_a_whole_tensor_in_memory_is_observed_in_bounded_calls(models, tmp_path, monkeypatch):
    """WeightSpace hands a job whole tensors: a compiled loop that needs no scratch takes up to LONG_STEP
    elements per call, never the whole tensor (a selection part may gather every key of its part, so the
    parts' buffers would grow with the tensor: 0.9 GB for a 1.5B model's embeddings). Same bytes as
    `wiseft merge`."""
    if not compiled.available():
        pytest.skip("numba is not installed: the compiled path is not available")
    m = _long_models(models)
    recipe = Recipe("ties", (m[1], m[2]), base=m[0], weights=(1.0, 0.7), parameters=CASES["ties"], seed=SEED)
    merge(plan(recipe), tmp_path / "out")
    monkeypatch.setattr(weightspace_module, "CHUNK", 1024)
    monkeypatch.setattr(tensorwise, "LONG_STEP", 4096)
    calls, observe = [], select.Selector.observe_compiled
    monkeypatch.setattr(
        select.Selector, "observe_compiled", lambda s, arrays, model: (calls.append(arrays[0].shape[0]), observe(s, arrays, model))[1]
    )  # fmt: skip
    ws = WeightSpace.from_recipe(recipe, dtype=torch.bfloat16)
    assert max(calls) == 4096
    assert _digest({n: p.data for n, p in ws.model.named_parameters()}) == _digest(load_dir(tmp_path / "out"))

"""Every merge method against its float64 reference (tests/support/merge_references.py), its identities, its
reproducibility, and WeightSpace giving the same bits as `wiseft merge`."""

import json
import shutil
from types import SimpleNamespace

import pytest
import support.merge_references as ref
import torch
from safetensors.torch import save_file
from support.merge import bits_equal, float64_sum, load_dir, reference

from wiseft.merge import Recipe, compiled, rng, select, tensorwise
from wiseft.merge.driver import merge
from wiseft.merge.plan import plan
from wiseft.testing import save_tiny_model
from wiseft.weightspace import WeightSpace

F32 = torch.float32


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """A, B, C: independent random models (far apart). base, f1, f2, f3: fine-tunes of base (task vectors
    small against the weights; f3 equals the base on about a third of its elements)."""
    root = tmp_path_factory.mktemp("methods")
    p = {
        k: save_tiny_model(root / k, arch="qwen2", seed=s, dtype=torch.bfloat16)
        for k, s in (("A", 1), ("B", 2), ("C", 3))
    }
    p["base"] = save_tiny_model(root / "base", arch="qwen2", seed=11, dtype=torch.bfloat16)
    base = load_dir(p["base"])
    g = torch.Generator().manual_seed(5)
    for k, scale in (("f1", 0.05), ("f2", 0.08), ("f3", 0.05)):
        shutil.copytree(p["base"], root / k)
        tensors = {
            n: (t.double() + scale * torch.randn(t.shape, generator=g, dtype=torch.float64)).to(t.dtype)
            for n, t in base.items()
        }
        if k == "f3":
            for n, t in tensors.items():
                keep = torch.rand(t.shape, generator=g) < 0.33
                t[keep] = base[n][keep]
        save_file(tensors, str(root / k / "model.safetensors"), metadata={"format": "pt"})
        p[k] = root / k
    return SimpleNamespace(**{k: str(v) for k, v in p.items()})


@pytest.fixture
def small_blocks(monkeypatch):
    """Tiny blocks and caps, so the tiny test tensors span many reduction blocks, many random-number
    blocks, and top-k selection needs several histogram passes before gathering."""
    monkeypatch.setattr(tensorwise, "REDUCE_BLOCK", 64)
    monkeypatch.setattr(rng, "RNG_BLOCK", 128)
    monkeypatch.setattr(select, "MIN_CAP", 4)
    monkeypatch.setattr(select, "TOTAL_CAP", 16)


def _gta(
    kind,
    consensus,
    weights,
    density,
    lam=1.0,
    normalize=False,
    rescale="none",
    gamma=0.01,
    epsilon=0.15,
    seed=0,
):
    def run(x, name, shape):
        base, models = x[0], x[1:]
        sparse = []
        for i, m in enumerate(models):
            u = ref.uniform(seed, name, i, m.numel(), rng.RNG_BLOCK) if kind in ("random", "della") else None
            d = density[i] if isinstance(density, list) else density
            sparse.append(ref.sparsify(m - base, kind, d, shape, rescale, gamma, epsilon, u))
        return ref.task_vector_merge(base, sparse, weights, lam, normalize, consensus)

    return run


def _linear(weights):
    return lambda x, name, shape: float64_sum([w * t for w, t in zip(weights, x, strict=True)])


W3 = [1.0, 0.5, 0.7]
# (id, recipe from paths, reference(inputs float64 [base?, models…], tensor name, shape), bit-exact?)
CASES = [
    ("slerp-far", lambda p: Recipe("slerp", (p.A, p.B), parameters={"t": 0.3}),
     lambda x, n, s: ref.slerp(x[0], x[1], 0.3), False),
    ("slerp-near-lerp", lambda p: Recipe("slerp", (p.f1, p.f2), parameters={"t": 0.7}),
     lambda x, n, s: ref.slerp(x[0], x[1], 0.7), False),
    ("nuslerp-flat", lambda p: Recipe("nuslerp", (p.A, p.B), weights=[1.0, 3.0]),
     lambda x, n, s: ref.nuslerp(x, None, [1.0, 3.0], s), False),
    ("nuslerp-rows-base", lambda p: Recipe("nuslerp", (p.f1, p.f2), base=p.base, weights=[2.0, 1.0], parameters={"nuslerp_flatten": False}),
     lambda x, n, s: ref.nuslerp(x[1:], x[0], [2.0, 1.0], s, flatten=False), False),
    ("nuslerp-columns", lambda p: Recipe("nuslerp", (p.A, p.B), weights=[1.0, 1.0], parameters={"nuslerp_flatten": False, "nuslerp_row_wise": True}),
     lambda x, n, s: ref.nuslerp(x, None, [1.0, 1.0], s, flatten=False, row_wise=True), False),
    ("multislerp", lambda p: Recipe("multislerp", (p.A, p.B, p.C), weights=[1.0, 2.0, 3.0]),
     lambda x, n, s: ref.multislerp(x, None, [1.0, 2.0, 3.0]), False),
    ("multislerp-base", lambda p: Recipe("multislerp", (p.f1, p.f2, p.f3), base=p.base, weights=[1.0, 1.0, 2.0]),
     lambda x, n, s: ref.multislerp(x[1:], x[0], [1.0, 1.0, 2.0]), False),
    ("karcher", lambda p: Recipe("karcher", (p.A, p.B, p.C), weights=[1.0, 2.0, 3.0]),
     lambda x, n, s: ref.karcher(x, [1.0, 2.0, 3.0]), False),
    ("model_stock", lambda p: Recipe("model_stock", (p.f1, p.f2, p.f3), base=p.base),
     lambda x, n, s: ref.model_stock(x[1:], x[0], s), False),
    ("model_stock-rows", lambda p: Recipe("model_stock", (p.f1, p.f2), base=p.base, parameters={"filter_wise": True}),
     lambda x, n, s: ref.model_stock(x[1:], x[0], s, filter_wise=True), False),
    ("ties", lambda p: Recipe("ties", (p.f1, p.f2, p.f3), base=p.base, weights=W3, parameters={"density": [0.5, 0.3, 0.7]}),
     _gta("magnitude", True, W3, [0.5, 0.3, 0.7], normalize=True), True),
    ("ties-lambda-sum", lambda p: Recipe("ties", (p.f1, p.f2), base=p.base, weights=[1.0, 1.0], parameters={"density": 0.2, "lambda": 0.6, "normalize": False}),
     _gta("magnitude", True, [1.0, 1.0], 0.2, lam=0.6), True),
    ("dare_linear-inverse", lambda p: Recipe("dare_linear", (p.f1, p.f2), base=p.base, weights=[0.6, 0.4], parameters={"density": 0.4, "rescale": "inverse"}, seed=3),
     _gta("random", False, [0.6, 0.4], 0.4, rescale="inverse", seed=3), True),
    ("dare_ties-l1", lambda p: Recipe("dare_ties", (p.f1, p.f2, p.f3), base=p.base, weights=W3, parameters={"density": 0.5}),
     _gta("random", True, W3, 0.5, rescale="l1"), False),
    ("dare_linear-none-normalize", lambda p: Recipe("dare_linear", (p.f1, p.f2), base=p.base, weights=[1.0, 3.0], parameters={"density": 0.7, "rescale": False, "normalize": True}, seed=1),
     _gta("random", False, [1.0, 3.0], 0.7, normalize=True, seed=1), True),
    ("breadcrumbs", lambda p: Recipe("breadcrumbs", (p.f1, p.f2), base=p.base, weights=[1.0, 0.5], parameters={"density": 0.7, "gamma": 0.05}),
     _gta("outliers", False, [1.0, 0.5], 0.7, gamma=0.05), True),
    ("breadcrumbs_ties-gamma-cut", lambda p: Recipe("breadcrumbs_ties", (p.f1, p.f2, p.f3), base=p.base, weights=W3, parameters={"density": 0.8, "gamma": 0.3}),
     _gta("outliers", True, W3, 0.8, gamma=0.3), True),
    ("della-l1", lambda p: Recipe("della", (p.f1, p.f2), base=p.base, weights=[1.0, 0.5], parameters={"density": 0.5, "epsilon": 0.1}),
     _gta("della", True, [1.0, 0.5], 0.5, normalize=True, rescale="l1", epsilon=0.1), False),
    ("della_linear-inverse", lambda p: Recipe("della_linear", (p.f1, p.f2, p.f3), base=p.base, weights=W3, parameters={"density": 0.6, "epsilon": 0.2, "rescale": "inverse"}),
     _gta("della", False, W3, 0.6, rescale="inverse", epsilon=0.2), True),
    ("sce-topk", lambda p: Recipe("sce", (p.f1, p.f2, p.f3), base=p.base, parameters={"select_topk": 0.4}),
     lambda x, n, s: ref.sce(x[1:], x[0], 0.4), False),
    ("sce-all", lambda p: Recipe("sce", (p.f1, p.f2), base=p.base),
     lambda x, n, s: ref.sce(x[1:], x[0], 1.0), False),
    ("task_arithmetic-lambda-normalize", lambda p: Recipe("task_arithmetic", (p.f1, p.f2), base=p.base, weights=[1.0, 3.0], parameters={"lambda": 0.5, "normalize": True}),
     _gta(None, False, [1.0, 3.0], 1.0, lam=0.5, normalize=True), True),
    ("linear-normalize", lambda p: Recipe("linear", (p.A, p.B, p.C), weights=[1.0, 2.0, 5.0], parameters={"normalize": True}),
     _linear([1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0]), True),
    ("nearswap", lambda p: Recipe("nearswap", (p.f1,), base=p.base, parameters={"t": 0.03}),
     lambda x, n, s: ref.nearswap(x[0], x[1], 0.03), True),
    ("nearswap-far", lambda p: Recipe("nearswap", (p.B,), base=p.A, parameters={"t": 0.4}),
     lambda x, n, s: ref.nearswap(x[0], x[1], 0.4), True),
    ("arcee_fusion", lambda p: Recipe("arcee_fusion", (p.f3,), base=p.base),
     lambda x, n, s: ref.arcee_fusion(x[0], x[1], s), True),
    ("arcee_fusion-far", lambda p: Recipe("arcee_fusion", (p.B,), base=p.A),
     lambda x, n, s: ref.arcee_fusion(x[0], x[1], s), True),
]  # fmt: skip


def _inputs(recipe):
    names = ([recipe.base] if recipe.base else []) + list(recipe.models)
    return [load_dir(n) for n in names]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_method_equals_its_float64_reference(paths, tmp_path, small_blocks, case):
    _, build, reference_fn, exact = case
    recipe = build(paths)
    merge(plan(recipe, out_dtype=F32, chunk=192, io_chunk=448), tmp_path / "out")
    got, ins = load_dir(tmp_path / "out"), _inputs(recipe)
    for name, t in got.items():
        expected = reference_fn([i[name].double().view(-1) for i in ins], name, tuple(t.shape))
        ref.assert_matches(t, expected, exact, name)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_weightspace_variant_is_bit_identical_to_wiseft_merge(paths, tmp_path, case):
    recipe = case[1](paths)
    merge(plan(recipe, out_dtype=F32), tmp_path / "out")
    written = load_dir(tmp_path / "out")
    ws = WeightSpace.load(list(recipe.models), base=recipe.base, dtype=F32)
    ws.apply(recipe)
    for name, p in ws.model.named_parameters():
        assert bits_equal(p.data, written[name]), name


def test_arcee_fusion_computes_each_rows_kl_once(paths, tmp_path, small_blocks, monkeypatch):
    """The selection takes several passes here (tiny caps); each row's kl is computed in the first only."""
    from wiseft.merge.methods import arcee_fusion

    computed, real = [], arcee_fusion.row_kl

    def counting(a, b, cols, scratch):
        out = real(a, b, cols, scratch)
        computed.append(out.shape[0])
        return out

    monkeypatch.setattr(arcee_fusion, "row_kl", counting)
    merge(plan(Recipe("arcee_fusion", (paths.B,), base=paths.A), out_dtype=F32, chunk=192, io_chunk=448),
          tmp_path / "out")  # fmt: skip
    got = load_dir(tmp_path / "out")
    rows = sum(t.numel() // t.shape[-1] if t.dim() >= 2 else 1 for t in got.values())
    assert sum(computed) == rows


def test_output_does_not_depend_on_the_chunk_size(paths, tmp_path, small_blocks):
    for build in (CASES[0][1], CASES[10][1], CASES[13][1], CASES[17][1], CASES[19][1]):
        recipe = build(paths)
        merge(plan(recipe, chunk=128, io_chunk=256), tmp_path / "a")
        merge(plan(recipe, chunk=4096, io_chunk=8192), tmp_path / "b")
        a, b = load_dir(tmp_path / "a"), load_dir(tmp_path / "b")
        assert all(bits_equal(a[n], b[n]) for n in a), recipe.method
        shutil.rmtree(tmp_path / "a")
        shutil.rmtree(tmp_path / "b")


# --- identities ------------------------------------------------------------------------------------------
ENDPOINTS = [
    ("slerp", lambda p, e: Recipe("slerp", (p.A, p.B), parameters={"t": float(e)})),
    ("slerp-lerp", lambda p, e: Recipe("slerp", (p.f1, p.f2), parameters={"t": float(e)})),
    ("nuslerp", lambda p, e: Recipe("nuslerp", (p.A, p.B), weights=[1.0 - e, float(e)])),
    ("nuslerp-rows", lambda p, e: Recipe("nuslerp", (p.A, p.B), weights=[1.0 - e, float(e)], parameters={"nuslerp_flatten": False})),
    # t = 0 gives the base; a t beyond every |a − b| gives the model
    ("nearswap", lambda p, e: Recipe("nearswap", (p.B,), base=p.A, parameters={"t": 1e3 * e})),
]  # fmt: skip


@pytest.mark.parametrize("case", ENDPOINTS, ids=[c[0] for c in ENDPOINTS])
def test_endpoints_give_a_model_bit_for_bit(paths, tmp_path, case):
    for end, model in ((0, 0), (1, 1)):
        recipe = case[1](paths, end)
        merge(plan(recipe), tmp_path / f"e{end}")
        names = ([recipe.base] if recipe.base else []) + list(recipe.models)  # the base is model 0
        got, expected = load_dir(tmp_path / f"e{end}"), load_dir(names[model])
        assert all(torch.equal(got[n], expected[n]) for n in expected), (case[0], end)


SELF = [
    ("linear", lambda p: Recipe("linear", (p.A, p.A), weights=[0.3, 0.7])),
    ("slerp", lambda p: Recipe("slerp", (p.A, p.A), parameters={"t": 0.3})),
    ("nuslerp", lambda p: Recipe("nuslerp", (p.A, p.A), weights=[1.0, 2.0])),
    ("multislerp", lambda p: Recipe("multislerp", (p.A, p.A, p.A), weights=[1.0, 2.0, 3.0])),
    ("karcher", lambda p: Recipe("karcher", (p.A, p.A), weights=[1.0, 3.0])),
    ("model_stock", lambda p: Recipe("model_stock", (p.f1, p.f1), base=p.base)),
    ("nearswap", lambda p: Recipe("nearswap", (p.A,), base=p.A, parameters={"t": 0.3})),
    ("arcee_fusion", lambda p: Recipe("arcee_fusion", (p.A,), base=p.A)),
]  # fmt: skip


@pytest.mark.parametrize("case", SELF, ids=[c[0] for c in SELF])
def test_merging_a_model_with_itself_gives_it_back(paths, tmp_path, case):
    recipe = case[1](paths)
    merge(plan(recipe), tmp_path / "out")
    got, expected = load_dir(tmp_path / "out"), load_dir(recipe.models[0])
    assert all(torch.equal(got[n], expected[n]) for n in expected), case[0]


BASE_ONLY = [
    "task_arithmetic",
    "ties",
    "dare_linear",
    "dare_ties",
    "breadcrumbs",
    "breadcrumbs_ties",
    "della",
    "della_linear",
    "sce",
]


@pytest.mark.parametrize("method", BASE_ONLY)
def test_task_vectors_of_the_base_itself_give_the_base(paths, tmp_path, method):
    params = {} if method in ("sce", "task_arithmetic") else {"density": 0.5}
    weights = None if method == "sce" else [0.7, 0.4]
    recipe = Recipe(method, (paths.base, paths.base), base=paths.base, weights=weights, parameters=params)
    merge(plan(recipe), tmp_path / "out")
    got, base = load_dir(tmp_path / "out"), load_dir(paths.base)
    assert all(bits_equal(got[n], base[n]) for n in base), method


PERMUTABLE = [
    ("linear", lambda p, o: Recipe("linear", _at(o, p.A, p.B, p.C), weights=_at(o, 0.2, 0.3, 0.5))),
    ("ties", lambda p, o: Recipe("ties", _at(o, p.f1, p.f2, p.f3), base=p.base, weights=_at(o, *W3), parameters={"density": _at(o, 0.5, 0.3, 0.7)})),
    ("breadcrumbs_ties", lambda p, o: Recipe("breadcrumbs_ties", _at(o, p.f1, p.f2, p.f3), base=p.base, weights=_at(o, *W3), parameters={"density": 0.8})),
    ("model_stock", lambda p, o: Recipe("model_stock", _at(o, p.f1, p.f2, p.f3), base=p.base)),
    ("multislerp", lambda p, o: Recipe("multislerp", _at(o, p.A, p.B, p.C), weights=_at(o, 1.0, 2.0, 3.0))),
    ("karcher", lambda p, o: Recipe("karcher", _at(o, p.A, p.B, p.C), weights=_at(o, 1.0, 2.0, 3.0))),
    ("sce", lambda p, o: Recipe("sce", _at(o, p.f1, p.f2, p.f3), base=p.base, parameters={"select_topk": 0.5})),
]  # fmt: skip


def _at(order, *values):
    return tuple(values[i] for i in order) if isinstance(values[0], str) else [values[i] for i in order]


@pytest.mark.parametrize("case", PERMUTABLE, ids=[c[0] for c in PERMUTABLE])
def test_symmetric_methods_do_not_depend_on_the_order_of_the_models(paths, tmp_path, case):
    merge(plan(case[1](paths, (0, 1, 2))), tmp_path / "a")
    merge(plan(case[1](paths, (2, 0, 1))), tmp_path / "b")
    a, b = load_dir(tmp_path / "a"), load_dir(tmp_path / "b")
    assert all(bits_equal(a[n], b[n]) for n in a), case[0]


def test_the_same_model_listed_twice_is_two_inputs(paths, tmp_path):
    recipe = Recipe("linear", (paths.A, paths.A, paths.B), weights=[0.25, 0.25, 0.5])
    p = plan(recipe)
    assert any("the same model is given twice" in w for w in p.warnings)
    merge(p, tmp_path / "out")
    got, a, b = load_dir(tmp_path / "out"), load_dir(paths.A), load_dir(paths.B)
    for name, t in got.items():
        assert torch.equal(t, reference([0.25, 0.25, 0.5], [a[name], a[name], b[name]], t.dtype)), name
    ties = Recipe(
        "ties", (paths.f1, paths.f1), base=paths.base, weights=[1.0, 1.0], parameters={"density": 0.5}
    )
    merge(plan(ties, out_dtype=F32), tmp_path / "ties")
    got, ins = load_dir(tmp_path / "ties"), _inputs(ties)
    fn = _gta("magnitude", True, [1.0, 1.0], 0.5, normalize=True)
    for name, t in got.items():
        ref.assert_matches(t, fn([i[name].double().view(-1) for i in ins], name, tuple(t.shape)), True, name)


# --- randomised methods ----------------------------------------------------------------------------------
def test_random_methods_are_the_same_bytes_for_a_seed_and_record_it(paths, tmp_path):
    def run(seed, out):
        recipe = Recipe(
            "dare_ties",
            (paths.f1, paths.f2),
            base=paths.base,
            weights=[1.0, 1.0],
            parameters={"density": 0.3},
            seed=seed,
        )
        merge(plan(recipe), out)
        return b"".join(f.read_bytes() for f in sorted(out.glob("*.safetensors")))

    assert run(7, tmp_path / "a") == run(7, tmp_path / "b")
    assert run(7, tmp_path / "a2") != run(8, tmp_path / "c")
    assert json.loads((tmp_path / "a" / "wiseft.json").read_text())["recipe"]["seed"] == 7
    assert "seed: 7" in (tmp_path / "a" / "recipe.yaml").read_text()
    default = Recipe("della", (paths.f1,), base=paths.base, weights=[1.0], parameters={"density": 0.5})
    assert default.seed == 0  # recorded as 0 when not given


def test_random_numbers_do_not_depend_on_threads_or_order(monkeypatch):
    monkeypatch.setattr(rng, "RNG_BLOCK", 128)
    whole = rng.uniform(3, "x.weight", 1, 0, 1000)
    torch.set_num_threads(2)
    parts = torch.cat(
        [rng.uniform(3, "x.weight", 1, s, min(77, 1000 - s)) for s in reversed(range(0, 1000, 77))][::-1]
    )
    assert torch.equal(whole, parts)
    assert torch.equal(whole, ref.uniform(3, "x.weight", 1, 1000, 128))
    assert not torch.equal(whole, rng.uniform(3, "x.weight", 0, 0, 1000))


# --- exact selection ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cap", [4, 64, 1 << 20])
@pytest.mark.parametrize("seed", [0, 1])
def test_selector_finds_exact_ranks_with_ties_in_few_passes(cap, seed):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(5000, generator=g, dtype=torch.float64).abs()
    values[::3] = values[7]  # many exact ties
    values[::11] = 0.0
    keys = values.view(torch.int64)
    order = ref.rank_order(values)
    for first, last in ((0, 4000), (1234, 5000), (10, 4990), (2500, 2501)):
        sels = [select.Selector(first, cap), select.Selector(last - 1, cap)]
        passes = 0
        while True:
            for s in sels:
                for start in range(0, 5000, 999):
                    s.observe(keys[start : start + 999])
            passes += 1
            if not any([s.end_pass() for s in sels]):
                break
        assert passes <= 5
        keep = select.Keep(
            first, last, sels[0].result if first else None, sels[1].result if last < 5000 else None
        )
        got = torch.cat(
            [
                keep.mask(keys[s : s + 999], torch.empty(len(keys[s : s + 999]), dtype=torch.bool))
                for s in range(0, 5000, 999)
            ]
        )
        expected = torch.zeros(5000, dtype=torch.bool)
        expected[order[first:last]] = True
        assert torch.equal(got, expected), (first, last)


@pytest.mark.parametrize("cap", [4, 64, 1 << 20])
def test_observe_array_finds_the_torch_paths_ranks(cap):
    """The compiled loop over a key array (arcee_fusion's selection) against observe: the same Rank (value,
    below, equal) at every position asked, pass for pass, with exact ties and zeros."""
    if not compiled.available():
        pytest.skip("numba is not installed: the compiled path is not available")
    g = torch.Generator().manual_seed(cap)
    values = torch.randn(20000, generator=g, dtype=torch.float64).abs()
    values[::3] = values[7]
    values[::11] = 0.0
    keys = values.view(torch.int64)
    for position in (0, 1, 6000, 13333, 19999):
        fast, slow = select.Selector(position, cap), select.Selector(position, cap)
        passes = 0
        while True:
            for start in range(0, 20000, 4999):
                fast.observe_array(keys[start : start + 4999])
                slow.observe(keys[start : start + 4999])
            passes += 1
            more = [fast.end_pass(), slow.end_pass()]
            assert more[0] == more[1] and fast.zeros == slow.zeros, (position, passes)
            if not more[0]:
                break
        assert fast.result == slow.result, position


@pytest.mark.parametrize("cap", [4, 64, 1 << 20])
@pytest.mark.parametrize("parts", [1, 3])
def test_the_compiled_selection_finds_the_torch_paths_ranks(monkeypatch, cap, parts):
    """observe_compiled (branch-free loops, optionally in parts side by side) against observe: the same
    Rank at every position asked, over chunks whose gathers end exactly at the buffer's size."""
    if not compiled.available():
        pytest.skip("numba is not installed: the compiled path is not available")
    monkeypatch.setattr(compiled, "parts_wanted", lambda: parts)
    monkeypatch.setattr(compiled, "MIN_PART", 64)
    g = torch.Generator().manual_seed(cap)
    x = torch.randn(20000, generator=g, dtype=torch.float32)
    x[::3] = x[7]  # ties, of both signs
    x[::5] = -x[7]
    x[::11] = 0.0
    base = torch.zeros_like(x)
    keys = x.double().abs().view(torch.int64)
    for position in (0, 1, 6000, 13333, 19999):
        fast, slow = select.Selector(position, cap), select.Selector(position, cap)
        while True:
            for start in range(0, 20000, 4999):
                fast.observe_compiled(
                    (base[start : start + 4999].numpy(), x[start : start + 4999].numpy()), 0
                )
                slow.observe(keys[start : start + 4999])
            more = [fast.end_pass(), slow.end_pass()]
            assert more[0] == more[1]
            if not more[0]:
                break
        assert fast.result == slow.result, position


# --- in-memory sweeps --------------------------------------------------------------------------------------
def test_a_grid_over_a_parameter_reuses_what_did_not_change(paths, tmp_path, monkeypatch):
    from wiseft.merge import spherical

    calls = []
    original = spherical.GramJob.observe
    monkeypatch.setattr(spherical.GramJob, "observe", lambda self, *a: calls.append(1) or original(self, *a))
    recipe = Recipe("slerp", (paths.A, paths.B), parameters={"t": 0.2})
    ws = WeightSpace.load([paths.A, paths.B], dtype=F32)
    ws.apply(recipe)
    first = len(calls)
    assert first > 0
    for t in (0.4, 0.9):
        variant = recipe.with_parameter("t", t)
        before = len(calls)
        ws.apply(variant)
        assert len(calls) == before  # the norms and the angle were computed once, for t = 0.2
        merge(plan(variant, out_dtype=F32), tmp_path / f"t{t}")
        written = load_dir(tmp_path / f"t{t}")
        assert all(bits_equal(p.data, written[n]) for n, p in ws.model.named_parameters())
    ties = Recipe(
        "ties", (paths.f1, paths.f2), base=paths.base, weights=[1.0, 1.0], parameters={"density": 0.3}
    )
    ws = WeightSpace.load([paths.f1, paths.f2], base=paths.base, dtype=F32)
    for variant in (ties, ties.with_parameter("lambda", 0.5), ties.with_parameter("density", 0.6), ties):
        ws.apply(variant)
        merge(plan(variant, out_dtype=F32), tmp_path / "ties")
        written = load_dir(tmp_path / "ties")
        assert all(bits_equal(p.data, written[n]) for n, p in ws.model.named_parameters())
        shutil.rmtree(tmp_path / "ties")


# --- the compiled loops (merge/compiled.py) against the torch path --------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_compiled_loops_have_the_bits_of_the_torch_path(paths, tmp_path, small_blocks, monkeypatch, case):
    from wiseft.merge import compiled

    if not compiled.available():
        pytest.skip("numba is not installed")
    recipe = case[1](paths)
    for dtype in (torch.bfloat16, F32):
        merge(plan(recipe, out_dtype=dtype, chunk=192, io_chunk=448), tmp_path / f"fast-{dtype}")
    monkeypatch.setattr(compiled, "_K", False)
    for dtype in (torch.bfloat16, F32):
        merge(plan(recipe, out_dtype=dtype, chunk=192, io_chunk=448), tmp_path / f"torch-{dtype}")
        fast, slow = load_dir(tmp_path / f"fast-{dtype}"), load_dir(tmp_path / f"torch-{dtype}")
        assert all(bits_equal(fast[n], slow[n]) for n in fast), (case[0], dtype)


@pytest.mark.parametrize("method,params", [
    ("slerp", {"t": 0.4}), ("model_stock", {}), ("ties", {"density": 0.3}), ("dare_ties", {"density": 0.5}),
    ("breadcrumbs_ties", {"density": 0.8, "gamma": 0.05}), ("della", {"density": 0.5, "epsilon": 0.2}),
    ("multislerp", {}), ("dare_linear", {"density": 0.5, "rescale": "inverse"}),
])  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.bfloat16, F32])
def test_compiled_loops_on_float32_and_bfloat16_inputs(monkeypatch, method, params, dtype):
    from wiseft.merge import compiled
    from wiseft.merge.compute import Scratch
    from wiseft.merge.methods import TensorContext, get_method

    if not compiled.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(tensorwise, "REDUCE_BLOCK", 256)
    monkeypatch.setattr(rng, "RNG_BLOCK", 512)
    g = torch.Generator().manual_seed(9)
    shape = (37, 64)
    base = torch.randn(shape, generator=g).view(-1)
    xs = [
        base,
        base + 0.1 * torch.randn(shape, generator=g).view(-1),
        base + 0.1 * torch.randn(shape, generator=g).view(-1),
    ]
    xs[2][::5] = xs[0][::5]
    xs = [x.to(dtype) for x in xs]
    m = get_method(method)
    has_base = m.needs_base is True
    inputs = xs if has_base else xs[1:]
    weights = [1.0, 0.6] if m.param("weight") is not None else None
    recipe = Recipe(method, ("a", "b"), base="c" if has_base else None, weights=weights, parameters=params)
    coeffs, _ = recipe.coefficients("model.layers.0.mlp.up_proj.weight", 2)
    ctx = TensorContext("model.layers.0.mlp.up_proj.weight", shape, 2, has_base, 0)
    outs = []
    for on in (True, False):
        if not on:
            monkeypatch.setattr(compiled, "_K", False)
        out = torch.empty(xs[0].numel(), dtype=dtype)
        tensorwise.run_job(out, inputs, m.job(ctx, coeffs), Scratch(1024))
        outs.append(out)
    assert bits_equal(outs[0], outs[1])


def test_whole_tensor_methods_in_weightspace_are_cpu_only_for_now(paths):
    from wiseft.errors import ConfigError

    ws = WeightSpace.load([paths.A, paths.B], dtype=F32)
    ws.device = torch.device("meta")  # stands for a GPU: the per-tensor jobs compute on CPU
    with pytest.raises(ConfigError, match="slerp needs whole-tensor statistics.*device='cpu'"):
        ws.apply(Recipe("slerp", (paths.A, paths.B), parameters={"t": 0.5}))

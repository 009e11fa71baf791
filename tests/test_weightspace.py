"""WeightSpace: anchors held once; variants materialised in place, equal to the float64 reference."""

import pytest
import torch

from wiseft.checkpoints import Checkpoint
from wiseft.errors import ConfigError, MergeError
from wiseft.merge import Recipe
from wiseft.testing import save_tiny_model
from wiseft.weightspace import WeightSpace


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("ws")
    early = save_tiny_model(d / "early", arch="qwen2", seed=1, dtype=torch.bfloat16)
    final = save_tiny_model(d / "final", arch="qwen2", seed=2, dtype=torch.bfloat16)
    return early, final


def _reference(early, final, delta, name, dtype):
    e, f = Checkpoint.open(early).load(name), Checkpoint.open(final).load(name)
    return (delta * e.double() + (1 - delta) * f.double()).to(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_set_delta_equals_float64_reference(pair, dtype):
    early, final = pair
    ws = WeightSpace.load([early, final], dtype=dtype)
    for delta in (0.3, 0.0, 1.0, 0.71):
        ws.set_delta(delta)
        for name, p in ws.model.named_parameters():
            assert p.dtype == dtype
            assert torch.equal(p.data, _reference(early, final, delta, name, dtype)), (delta, name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_variants_are_bit_identical_to_wiseft_merge_output(pair, tmp_path, dtype):
    """The same recipe through `wiseft merge --dtype D` and through WeightSpace gives the same bits."""
    from support.merge import bits_equal, load_dir

    from wiseft.merge.driver import merge
    from wiseft.merge.plan import plan

    early, final = pair
    scheduled = Recipe(
        models=(str(early), str(final)),
        delta=0.35,
        rules=(
            {"match": r"model\.embed_tokens\.weight", "delta": 0.9},
            {"match": r".*\.mlp\..*", "delta": {"gradient": [0.1, 0.6]}},
        ),
    )
    ws = WeightSpace.load([early, final], dtype=dtype)
    for i, recipe in enumerate([scheduled, Recipe(models=(str(early), str(final)), delta=0.6)]):
        out = tmp_path / f"m{i}"
        merge(plan(recipe, out_dtype=dtype), out)
        written = load_dir(out)
        ws.apply(recipe)
        for name, p in ws.model.named_parameters():
            assert bits_equal(p.data, written[name]), (i, name)


def test_linear_and_task_arithmetic_variants(pair, tmp_path):
    from support.merge import float64_sum

    early, final = pair
    third = save_tiny_model(tmp_path / "third", arch="qwen2", seed=5, dtype=torch.bfloat16, tokenizer=False)
    ws = WeightSpace.load([early, final, third], dtype=torch.float32)
    cks = [Checkpoint.open(p) for p in (early, final, third)]
    ws.apply([0.2, 0.3, 0.5])
    for name, p in ws.model.named_parameters():
        terms = [w * ck.load(name).double() for w, ck in zip((0.2, 0.3, 0.5), cks, strict=True)]
        assert torch.equal(p.data, float64_sum(terms).to(torch.float32)), name
    ta = WeightSpace.load([early, third], base=final, dtype=torch.float32)
    ta.apply([1.0, 0.0])
    for name, p in ta.model.named_parameters():
        assert torch.equal(p.data, cks[0].load(name).float()), name


def test_switch_reuses_parameter_storage(pair):
    ws = WeightSpace.load(list(pair), dtype=torch.float32)
    before = {n: p.data_ptr() for n, p in ws.model.named_parameters()}
    ws.set_delta(0.2)
    ws.apply(0.9)
    ws.apply([0.4, 0.6])
    assert {n: p.data_ptr() for n, p in ws.model.named_parameters()} == before


def test_bad_coefficients_are_rejected(pair):
    ws = WeightSpace.load(list(pair), dtype=torch.float32)
    with pytest.raises(ConfigError, match=r"delta 1.5 is outside \[0, 1\].*--extrapolate"):
        ws.set_delta(1.5)
    ws.set_delta(1.5, extrapolate=True)
    with pytest.raises(ConfigError, match="sum to 0.9"):
        ws.apply([0.4, 0.5])


def test_model_that_does_not_match_is_rejected(pair, tmp_path):
    other = save_tiny_model(tmp_path / "other", arch="qwen2", seed=3, hidden=64, tokenizer=False)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(other))
    with pytest.raises(MergeError, match="has shape .* but the anchors store"):
        WeightSpace.load(list(pair), model=model)


def test_switching_reads_nothing_from_disk(pair, monkeypatch):
    ws = WeightSpace.load(list(pair), dtype=torch.float32)

    def no_reads(*args, **kwargs):
        raise AssertionError("a variant switch read from disk")

    monkeypatch.setattr(Checkpoint, "read_into", no_reads)
    monkeypatch.setattr(Checkpoint, "load", no_reads)
    ws.set_delta(0.4)
    ws.apply([0.1, 0.9])


def test_nonfinite_anchor_is_rejected_at_load(pair, tmp_path):
    import shutil

    from safetensors.torch import save_file
    from support.merge import load_dir

    bad = tmp_path / "bad"
    shutil.copytree(pair[0], bad)
    tensors = load_dir(pair[0])
    tensors["model.norm.weight"][1] = float("nan")
    save_file(tensors, str(bad / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MergeError, match="model.norm.weight of .*bad contains non-finite"):
        WeightSpace.load([bad, pair[1]], dtype=torch.float32)


# --- the exact float32 shortcut (merge/compute.py) ----------------------------------------------------


def _spread(n, dtype, seed):
    """Values over a wide exponent range (2^-120 … 2^60, float16 its own: products stay normal for
    weights ≥ 2^-6), both signs, some zeros and exact ties."""
    g = torch.Generator().manual_seed(seed)
    mant = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    lo, hi = (-14, 15) if dtype == torch.float16 else (-120, 60)
    exps = torch.randint(lo, hi, (n,), generator=g).double()
    x = mant * torch.pow(2.0, exps) * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double()
    x[::97] = 0.0
    x[1::89] = 1.0  # with a tiny partner below: sums on a float32 rounding midpoint
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("delta", [0.0, 0.125, 0.25, 0.5, 0.625, 0.875, 1.0, 0.3, 2**-20])
def test_float32_shortcut_has_the_bits_of_the_float64_kernel(dtype, delta):
    from wiseft.merge.compute import Scratch, combine_float32, combine_into, exact_in_float32, magnitude_range
    from wiseft.merge.methods import get_method

    n = 300_000
    a, b = _spread(n, dtype, 1), _spread(n, dtype, 2)
    if dtype == torch.bfloat16:
        b[1::89] = 2.0**-24  # 1.0·w0 + 2^-24·w1 lands on ties for many δ
    method = get_method("wise-ft")
    weights = method.weights((delta,))
    ranges = [magnitude_range(a), magnitude_range(b)]
    exact = exact_in_float32(weights, [dtype, dtype], ranges)
    reference = torch.empty(n, dtype=torch.float32)
    combine_into(reference, [a, b], method, (delta,), Scratch(1 << 14))
    fast = torch.empty(n, dtype=torch.float32)
    combine_float32(fast, [a, b], weights)
    if exact:
        assert torch.equal(fast, reference)
    few_bits = delta in (0.0, 0.125, 0.25, 0.5, 0.625, 0.875, 1.0)
    assert exact == (few_bits if dtype != torch.float32 else delta in (0.0, 0.5, 1.0))


def test_float32_shortcut_is_taken_for_a_dyadic_grid_only():
    from wiseft.merge.compute import exact_in_float32

    bf = [torch.bfloat16] * 2
    normal = [(1e-8, 10.0)] * 2
    for delta in (0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0):
        assert exact_in_float32((delta, 1.0 - delta), bf, normal)
    assert not exact_in_float32((0.3, 0.7), bf, normal)  # 53-bit weights
    assert not exact_in_float32((0.25, 0.75), [torch.float32] * 2, normal)  # 24 + 2 bits
    assert exact_in_float32((0.5, 0.5), [torch.float32] * 2, normal)  # powers of two scale exactly
    assert not exact_in_float32((0.25, 0.75), bf, [(2.0**-125, 1.0)] * 2)  # subnormal product
    assert not exact_in_float32((0.2, 0.3, 0.5), [torch.bfloat16] * 3, [(1e-8, 1.0)] * 3)  # three terms


def test_switching_on_a_dyadic_grid_takes_the_shortcut_with_the_same_bits(pair, monkeypatch):
    """Without the compiled kernel (no numba), a k/8 grid takes the float32 shortcut."""
    import wiseft.weightspace as wsm
    from wiseft.merge import fused

    monkeypatch.setattr(fused, "_KERNELS", False)
    early, final = pair
    calls = []
    original = wsm.combine_float32
    monkeypatch.setattr(wsm, "combine_float32", lambda *a: calls.append(1) or original(*a))
    ws = WeightSpace.load([early, final], dtype=torch.float32)
    for delta in (0.125, 0.25, 0.5, 0.875):
        ws.set_delta(delta)
        for name, p in ws.model.named_parameters():
            assert torch.equal(p.data, _reference(early, final, delta, name, torch.float32)), (delta, name)
    assert calls
    calls.clear()
    ws.set_delta(0.3)
    assert not calls


# --- the compiled one-pass float64 kernel (merge/fused.py) --------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    "weights", [(0.3, 0.7), (0.123456789, 1 - 0.123456789), (1.5, -0.5), (0.0, 1.0), (0.7, 0.0)]
)
def test_fused_kernel_has_the_bits_of_the_float64_kernel(dtype, weights):
    from wiseft.merge import fused
    from wiseft.merge.compute import Scratch, combine_into
    from wiseft.merge.methods import get_method

    if not fused.available():
        pytest.skip("numba is not installed")
    n = 200_003
    a, b = _spread(n, dtype, 3), _spread(n, dtype, 4)
    a[:4] = torch.tensor(
        [0.0, -0.0, -0.0, 1.0], dtype=dtype
    )  # signed zeros survive as the reference has them
    b[:4] = torch.tensor([-0.0, -0.0, 0.0, -1.0], dtype=dtype)
    assert fused.supports([a, b], weights, torch.float32)
    reference = torch.empty(n)
    combine_into(reference, [a, b], get_method("linear"), (*weights, 0.0), Scratch(1 << 14))  # normalize off
    out = torch.empty(n)
    fused.combine(out, [a, b], weights)
    assert torch.equal(out, reference)
    assert torch.equal(torch.signbit(out), torch.signbit(reference))


def test_switch_uses_the_fused_kernel_for_any_delta_and_the_torch_kernel_without_numba(pair, monkeypatch):
    import wiseft.weightspace as wsm
    from wiseft.merge import fused

    early, final = pair
    ws = WeightSpace.load([early, final], dtype=torch.float32)
    if fused.available():
        calls = []
        original = fused.combine
        monkeypatch.setattr(fused, "combine", lambda *a: calls.append(1) or original(*a))
        ws.set_delta(0.3)
        assert calls
    monkeypatch.setattr(fused, "_KERNELS", False)  # as on a machine without numba
    monkeypatch.setattr(wsm, "combine_into", _counting(wsm.combine_into, seen := []))
    ws.set_delta(0.71)
    assert seen
    for name, p in ws.model.named_parameters():
        assert torch.equal(p.data, _reference(early, final, 0.71, name, torch.float32)), name


def _counting(fn, seen):
    def wrapper(*args):
        seen.append(1)
        return fn(*args)

    return wrapper


def test_warming_loads_the_code_of_every_signature_a_switch_uses():
    """`fused.warm` (run in the background by engines and the demo, so a first switch does not wait for
    numba's import and cache) must load the signatures `combine` calls: after it, no switch adds one."""
    import threading

    from wiseft.merge import fused

    if not fused.available():
        pytest.skip("numba is not installed")
    thread = fused.warm_in_background()
    assert thread.daemon and thread.name == "wiseft-fused-warm"
    thread.join(120)
    kernels = fused._build()
    loaded = {key: list(k.signatures) for key, k in kernels.items()}
    assert all(loaded.values())
    for dtype in (torch.float32, torch.bfloat16):
        a, b = _spread(1000, dtype, 1), _spread(1000, dtype, 2)
        fused.combine(torch.empty(1000), [a, b], (0.25, 0.75))
        fused.combine(torch.empty(1000), [a, b], (0.0, 1.0))
    assert {key: list(k.signatures) for key, k in kernels.items()} == loaded
    built = []
    threads = [threading.Thread(target=lambda: built.append(fused._build())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(k is kernels for k in built)

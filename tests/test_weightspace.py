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
    from _merge_fixtures import bits_equal, load_dir

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
    from _merge_fixtures import float64_sum

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

    from _merge_fixtures import load_dir
    from safetensors.torch import save_file

    bad = tmp_path / "bad"
    shutil.copytree(pair[0], bad)
    tensors = load_dir(pair[0])
    tensors["model.norm.weight"][1] = float("nan")
    save_file(tensors, str(bad / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MergeError, match="model.norm.weight of .*bad contains non-finite"):
        WeightSpace.load([bad, pair[1]], dtype=torch.float32)

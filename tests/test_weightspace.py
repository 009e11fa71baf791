"""WeightSpace: anchors held once; variants materialised in place, equal to the float64 reference."""

import pytest
import torch

from wiseft.checkpoints import Checkpoint
from wiseft.errors import ConfigError, MergeError
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

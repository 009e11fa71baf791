"""Content hashes identify weights, not files: the same tensors in any shard layout, order or metadata
hash the same; any changed byte, dtype, shape or name hashes differently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from wiseft.checkpoints import ContentHash, TensorDigest, content_hash, model_fingerprint
from wiseft.errors import CheckpointError

CONFIG = {"model_type": "gpt2", "n_layer": 1}


def tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "wte.weight": torch.randn(50, 8, generator=g),
        "h.0.attn.weight": torch.randn(8, 24, generator=g).to(torch.bfloat16),
        "ln_f.bias": torch.zeros(8),
        "h.0.mlp.fc.weight": torch.randn(700, 9, generator=g),  # larger than the test's read block
    }


def write(root: Path, name: str, weights: dict, shards: int = 1, metadata=None, config=None) -> Path:
    d = root / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config or CONFIG))
    names = list(weights)
    if shards == 1:
        save_file(weights, str(d / "model.safetensors"), metadata=metadata)
        return d
    weight_map = {}
    for i in range(shards):
        part = {n: weights[n] for n in names[i::shards]}
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file(part, str(d / fname), metadata=metadata)
        weight_map.update(dict.fromkeys(part, fname))
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return d


def test_the_same_weights_hash_the_same_whatever_the_files(tmp_path):
    w = tensors()
    one = write(tmp_path, "one", w)
    sharded = write(tmp_path, "sharded", w, shards=3)
    reordered = write(tmp_path, "reordered", dict(reversed(w.items())), metadata={"format": "pt", "x": "y"})
    h = content_hash(one)
    assert content_hash(sharded) == h == content_hash(reordered)
    assert content_hash(one, block=64) == h  # read in small pieces: the same digest
    assert len(h) == 32


@pytest.mark.parametrize(
    "change",
    [
        lambda w: w["h.0.mlp.fc.weight"].view(-1)[-1].add_(1e-3),  # the last element, past a block
        lambda w: w["wte.weight"].view(-1)[0].copy_(-w["wte.weight"].view(-1)[0]),  # a sign bit
        lambda w: w.__setitem__("ln_f.bias", w["ln_f.bias"].reshape(2, 4)),  # same bytes, other shape
        lambda w: w.__setitem__("ln_f.bias", w["ln_f.bias"].view(torch.int32)),  # same bytes, other dtype
        lambda w: w.__setitem__("ln_f.weight", w.pop("ln_f.bias")),  # same bytes, other name
        lambda w: w.pop("ln_f.bias"),  # a tensor fewer
    ],
)
def test_any_change_to_the_weights_changes_the_hash(tmp_path, change):
    base = write(tmp_path, "base", tensors())
    w = tensors()
    change(w)
    other = write(tmp_path, "other", w)
    assert content_hash(other) != content_hash(base)


def test_two_checkpoints_of_one_run_differ(tmp_path):
    assert content_hash(write(tmp_path, "a", tensors(1))) != content_hash(write(tmp_path, "b", tensors(2)))


def test_fingerprint_adds_the_config_in_canonical_form(tmp_path):
    w = tensors()
    a = write(tmp_path, "a", w)
    spaced = write(tmp_path, "spaced", w)
    (spaced / "config.json").write_text(json.dumps(dict(reversed(CONFIG.items())), indent=4))
    other = write(tmp_path, "other", w, config={**CONFIG, "rope_theta": 1e6})
    assert model_fingerprint(a) == model_fingerprint(spaced) != model_fingerprint(other)


def test_streamed_digests_equal_the_read_back_hash(tmp_path):
    """What a writer computes from the bytes it streams (any piece sizes, any tensor order) is the hash
    of the written directory."""
    w = tensors()
    total = ContentHash()
    for name in sorted(w, reverse=True):
        t = w[name].contiguous()
        raw = t.view(torch.uint8).reshape(-1).numpy().tobytes() if t.numel() else b""
        dtype = {torch.float32: "F32", torch.bfloat16: "BF16"}[t.dtype]
        digest = TensorDigest(name, dtype, t.shape)
        for i in range(0, len(raw), 100):
            digest.update(raw[i : i + 100])
        total.add(name, digest.hexdigest())
    assert total.hexdigest() == content_hash(write(tmp_path, "m", w))
    with pytest.raises(CheckpointError, match="hashed twice"):
        total.add("wte.weight", "0" * 32)

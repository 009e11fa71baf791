"""Issue 13 for merges: provenance that identifies the weights, unmatched rules, recipe-relative paths."""

import json

import pytest
import torch
from safetensors.torch import save_file
from support.merge import load_dir

from wiseft.checkpoints import content_hash, model_fingerprint
from wiseft.merge import Recipe
from wiseft.merge.driver import merge
from wiseft.merge.plan import plan


def _with_tied_head(models, tmp_path):
    """A tied qwen2 checkpoint that also stores lm_head.weight (the merge drops it, the hash must not)."""
    src = models.get("qwen2", 1, torch.float32, True)
    copy = tmp_path / "with-head"
    copy.mkdir()
    (copy / "config.json").write_bytes((src / "config.json").read_bytes())
    tensors = load_dir(src)
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    save_file(tensors, str(copy / "model.safetensors"), metadata={"format": "pt"})
    return copy, models.get("qwen2", 2, torch.float32, True)


CASES = {
    "wise-ft sharded": lambda m, _: Recipe(
        models=(str(m.get("llama", 1, sharded=True)), str(m.get("llama", 2))), delta=0.25
    ),
    "ties (observation passes)": lambda m, _: Recipe(
        method="ties",
        base=str(m.get("llama", 3)),
        models=(str(m.get("llama", 1)), str(m.get("llama", 2))),
        weights=(1.0, 0.5),
        parameters={"density": 0.5},
    ),
    "tied head not read": lambda m, tmp: Recipe(models=tuple(map(str, _with_tied_head(m, tmp))), delta=0.5),
}


@pytest.mark.parametrize("case", CASES)
def test_wiseft_json_has_content_hashes_of_inputs_and_output(models, tmp_path, case):
    recipe = CASES[case](models, tmp_path)
    p = plan(recipe, io_chunk=1 << 12, chunk=1 << 10)  # several chunks per tensor
    out = tmp_path / "out"
    merge(p, out, shard_size=40_000)
    prov = json.loads((out / "wiseft.json").read_text())
    for entry, ck in zip(prov["inputs"], p.inputs, strict=True):
        assert entry["path"] == str(ck.path)
        assert entry["content_hash"] == content_hash(ck.path)
        assert entry["fingerprint"] == model_fingerprint(ck.path)
    assert prov["output"]["hash"] == "xxh3_128"
    assert prov["output"]["content_hash"] == content_hash(out)
    assert prov["output"]["fingerprint"] == model_fingerprint(out)
    assert prov["recipe"]["method"] == recipe.method and prov["wiseft_version"]


def test_two_checkpoints_of_one_run_get_different_hashes(models, tmp_path):
    a, b = models.get("llama", 1), models.get("llama", 2)
    merge(plan(Recipe(models=(str(a), str(b)), delta=0.5)), tmp_path / "o")
    prov = json.loads((tmp_path / "o" / "wiseft.json").read_text())
    hashes = [i["content_hash"] for i in prov["inputs"]] + [prov["output"]["content_hash"]]
    assert len(set(hashes)) == 3

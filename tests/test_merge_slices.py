"""Layer slices (mergekit's `slices:`): passthrough frankenmerges and per-slice merges, against plain
float64 references built from the source layers as mergekit's planner maps them."""

import json
import re

import pytest
import support.merge_references as ref
import torch
import yaml
from support.merge import bits_equal, load_dir
from transformers import AutoModelForCausalLM

from wiseft.checkpoints import content_hash
from wiseft.merge import Recipe
from wiseft.merge.driver import merge
from wiseft.merge.plan import plan
from wiseft.merge.recipe_file import read_recipe
from wiseft.testing import save_tiny_model

LAYER = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("slices")
    out = {}
    for arch, tied in (("llama", False), ("qwen2", True), ("gpt2", False)):
        for k, seed, layers in (("A", 1, 3), ("B", 2, 3), ("C", 3, 4)):
            out[arch, k] = save_tiny_model(
                root / f"{arch}-{k}", arch=arch, seed=seed, dtype=torch.bfloat16, layers=layers, tied=tied
            )
    return out


def source_of(name: str, spans: list[tuple[str, int, int]]) -> tuple[str, str]:
    """mergekit's planner: output layer L is layer start + offset of the slice holding L; tensors before
    the layers come from the first slice's model, the others from the last slice's."""
    m = LAYER.search(name)
    if not m:
        first = "embed" in name or ".wte." in f".{name}" or ".wpe." in f".{name}"
        return (spans[0][0] if first else spans[-1][0]), name
    layer = int(m.group(1))
    for model, start, end in spans:
        if layer < end - start:
            return model, name[: m.start(1)] + str(start + layer) + name[m.end(1) :]
        layer -= end - start
    raise AssertionError(name)


def write(tmp_path, config, name="mergekit.yml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_passthrough_frankenmerge_stacks_the_source_layers(tiny, tmp_path, arch):
    spans = [("A", 0, 2), ("C", 1, 4), ("B", 2, 3)]  # 2 + 3 + 1 = 6 layers from 3- and 4-layer models
    config = {
        "slices": [{"sources": [{"model": str(tiny[arch, m]), "layer_range": [a, b]}]} for m, a, b in spans],
        "merge_method": "passthrough",
        "dtype": "bfloat16",
    }
    recipe, schema, _ = read_recipe(str(write(tmp_path, config)))
    assert schema == "mergekit" and recipe.method == "passthrough"
    out = tmp_path / "out"
    p = plan(recipe)
    merge(p, out)
    got = load_dir(out)
    inputs = {m: load_dir(tiny[arch, m]) for m in "ABC"}
    assert len({LAYER.search(n).group(1) for n in got if LAYER.search(n)}) == 6
    for name, value in got.items():
        model, src = source_of(name, spans)
        assert bits_equal(value, inputs[model][src]), (name, model, src)
    config_out = json.loads((out / "config.json").read_text())
    assert config_out["n_layer" if arch == "gpt2" else "num_hidden_layers"] == 6
    if isinstance(config_out.get("layer_types"), list):
        assert len(config_out["layer_types"]) == 6
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model(torch.tensor([[1, 2, 3]])).logits.shape[-1] == model.config.vocab_size
    prov = json.loads((out / "wiseft.json").read_text())  # inputs only partly read: still their own hash
    assert [i["content_hash"] for i in prov["inputs"]] == [content_hash(ck.path) for ck in p.inputs]
    assert prov["output"]["content_hash"] == content_hash(out)


def test_passthrough_scale_per_source_and_slice(tiny, tmp_path):
    a, b = str(tiny["llama", "A"]), str(tiny["llama", "B"])
    config = {
        "slices": [
            {"sources": [{"model": a, "layer_range": [0, 2], "parameters": {"scale": 0.5}}]},
            {
                "sources": [{"model": b, "layer_range": [1, 3]}],
                "parameters": {"scale": [{"filter": "mlp", "value": 3.0}, {"value": 1.0}]},
            },
        ],
        "merge_method": "passthrough",
    }
    p = plan(read_recipe(str(write(tmp_path, config)))[0])
    merge(p, tmp_path / "out")
    got, inputs = load_dir(tmp_path / "out"), {"A": load_dir(a), "B": load_dir(b)}
    spans = [("A", 0, 2), ("B", 1, 3)]
    for name, value in got.items():
        model, src = source_of(name, spans)
        m = LAYER.search(name)
        in_second = bool(m) and int(m.group(1)) >= 2 or (not m and "embed" not in name)
        scale = (3.0 if "mlp" in name else 1.0) if in_second else 0.5
        expected = inputs[model][src].double() * scale
        ref.assert_matches(value, expected, True, name)


def test_slerp_over_slices_with_offset_ranges_and_per_slice_gradients(tiny, tmp_path):
    a, b = str(tiny["qwen2", "A"]), str(tiny["qwen2", "C"])  # 3 and 4 layers
    config = {
        "slices": [
            {"sources": [{"model": a, "layer_range": [0, 2]}, {"model": b, "layer_range": [1, 3]}],
             "parameters": {"t": [0.2, 0.8]}},
            {"sources": [{"model": a, "layer_range": [2, 3]}, {"model": b, "layer_range": [3, 4]}],
             "parameters": {"t": 0.4}},
        ],
        "merge_method": "slerp",
        "base_model": a,
        "dtype": "float32",
    }  # fmt: skip
    p = plan(read_recipe(str(write(tmp_path, config)))[0])
    merge(p, tmp_path / "out")
    got, ia, ib = load_dir(tmp_path / "out"), load_dir(a), load_dir(b)
    for t in p.tensors:
        m = LAYER.search(t.name)
        layer = int(m.group(1)) if m else None
        # mergekit: per slice, layer o of m at o/(m−1) (m = 1: t = 1); the embeddings take the first
        # slice's parameters at t = 0, the final norm the last slice's
        if layer is None:
            expected_t = 0.2 if "embed" in t.name else 0.4
        else:
            expected_t = {0: 0.2, 1: 0.8, 2: 0.4}[layer]
        assert t.coeffs == pytest.approx((expected_t,)), t.name
        src_a = t.name  # A's layers 0, 1 | 2 are output layers 0, 1 | 2
        src_b = t.name if m is None else t.name[: m.start(1)] + str(layer + 1) + t.name[m.end(1) :]
        expected = ref.slerp(ia[src_a].double().view(-1), ib[src_b].double().view(-1), t.coeffs[0])
        ref.assert_matches(got[t.name], expected, False, t.name)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_hidden_layers"] == 3


def test_one_slice_over_every_layer_is_the_plain_merge(tiny, tmp_path):
    a, b = str(tiny["llama", "A"]), str(tiny["llama", "B"])
    sliced = Recipe(
        method="linear",
        models=(a, b),
        weights=(0.3, 0.7),
        slices=[{"sources": [{"model": a, "layer_range": [0, 3]}, {"model": b, "layer_range": [0, 3]}]}],
    )
    merge(plan(sliced), tmp_path / "s")
    merge(plan(Recipe(method="linear", models=(a, b), weights=(0.3, 0.7))), tmp_path / "w")
    assert content_hash(tmp_path / "s") == content_hash(tmp_path / "w")


BAD = [
    ("range beyond the model", [[("A", 0, 2)], [("B", 2, 5)]], "passthrough",
     r"slices\[1\]\.sources\[0\]: layer_range \[2, 5\] of .* does not exist: it has 3 layers"),
    ("two sources for passthrough", [[("A", 0, 2), ("B", 0, 2)]], "passthrough",
     r"slices\[0\]: passthrough takes one source per slice, got 2"),
    ("unequal spans", [[("A", 0, 2), ("B", 0, 3)]], "linear",
     r"slices\[0\]: every source must span the same number of layers"),
    ("empty range", [[("A", 2, 2)]], "passthrough", r"slices\[0\]\.sources\[0\]: layer_range \[2, 2\] must be"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "spans", "method", "pattern"), BAD, ids=[b[0] for b in BAD])
def test_bad_slices_are_one_line_errors_and_nothing_is_written(
    tiny, tmp_path, cli, capsys, what, spans, method, pattern
):
    config = {
        "slices": [
            {"sources": [{"model": str(tiny["llama", m]), "layer_range": [a, b]} for m, a, b in piece]}
            for piece in spans
        ],
        "merge_method": method,
    }
    capsys.readouterr()
    out = tmp_path / "out"
    code, err = cli(["merge", "--config", write(tmp_path, config), "-o", out])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(pattern, err), err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_slice_missing_a_model_of_the_merge_is_refused(tiny, tmp_path, cli, capsys):
    a, b = str(tiny["llama", "A"]), str(tiny["llama", "B"])
    config = {
        "slices": [
            {"sources": [{"model": a, "layer_range": [0, 2]}, {"model": b, "layer_range": [0, 2]}]},
            {"sources": [{"model": a, "layer_range": [2, 3]}]},
        ],
        "merge_method": "linear",
    }
    capsys.readouterr()
    code, err = cli(["merge", "--config", write(tmp_path, config), "--dry-run"])
    assert code == 2 and "slices[1]: linear merges every input layer by layer" in err, err


def test_dry_run_shows_where_each_passthrough_tensor_comes_from(tiny, tmp_path, cli, capsys):
    a, b = str(tiny["gpt2", "A"]), str(tiny["gpt2", "B"])
    config = {
        "slices": [
            {"sources": [{"model": a, "layer_range": [0, 2]}]},
            {"sources": [{"model": b, "layer_range": [2, 3]}]},
        ],
        "merge_method": "passthrough",
    }
    capsys.readouterr()
    code, err = cli(["merge", "--config", write(tmp_path, config), "--dry-run"])
    assert code == 0, err
    assert re.search(
        r"transformer\.h\.2\.attn\.c_attn\.weight\s+scale\[0\]=1\s+← transformer\.h\.2\.attn\.c_attn\.weight of input 1",
        cli.out,
    )
    assert re.search(
        r"transformer\.wte\.weight\s+scale\[0\]=1\s+← transformer\.wte\.weight of input 0", cli.out
    )


def test_weightspace_takes_a_whole_slice_and_refuses_stacking(tiny):
    from wiseft.errors import ConfigError
    from wiseft.weightspace import WeightSpace

    a, b = str(tiny["llama", "A"]), str(tiny["llama", "B"])
    ws = WeightSpace.load([a, b])
    whole = [{"sources": [{"model": a, "layer_range": [0, 3]}, {"model": b, "layer_range": [0, 3]}]}]
    ws.apply(Recipe(method="slerp", models=(a, b), parameters={"t": 0.5}, slices=whole))
    stacked = [{"sources": [{"model": a, "layer_range": [0, 2]}, {"model": b, "layer_range": [1, 3]}]}]
    with pytest.raises(ConfigError, match="slices select or stack layers"):
        ws.apply(Recipe(method="slerp", models=(a, b), parameters={"t": 0.5}, slices=stacked))

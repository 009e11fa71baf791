"""mergekit configuration files read as they are: parameters resolved per tensor exactly as mergekit's
`evaluate_setting` and planner would (written out plainly below), merged with the same methods."""

import json
import re

import pytest
import support.merge_references as ref
import torch
import yaml
from support.merge import load_dir, reference

from wiseft.cli import main
from wiseft.merge.driver import merge
from wiseft.merge.plan import plan
from wiseft.merge.recipe_file import read_recipe
from wiseft.testing import save_tiny_model

LAYERS = 4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("mergekit")
    return {
        k: save_tiny_model(root / k, arch="qwen2", seed=s, dtype=torch.bfloat16, layers=LAYERS)
        for k, s in (("A", 1), ("B", 2), ("C", 3))
    }


def mergekit_setting(setting, name, t):
    """mergekit's evaluate_setting: a value, a gradient (list of numbers) or [{filter, value}]."""
    if isinstance(setting, (int, float, bool, str)):
        return setting
    if all(isinstance(e, (int, float)) for e in setting):
        scaled = t * (len(setting) - 1)
        i0 = int(scaled)
        i1 = min(len(setting) - 1, i0 + 1)
        frac = scaled - i0
        return (1 - frac) * setting[i0] + frac * setting[i1]
    for cond in setting:
        if cond.get("filter") in (None, "*") or cond["filter"] in name:
            return mergekit_setting(cond["value"], name, t)
    return None


def mergekit_t(name):
    """mergekit's planner: layer i of n at i/(n−1); embeddings, final norm and lm_head at t = 0."""
    m = re.search(r"\.layers\.(\d+)\.", name)
    return int(m.group(1)) / (LAYERS - 1) if m else 0.0


def lookup(name, model_params, global_params, key, default=None):
    for source in (model_params or {}, global_params or {}):
        if key in source:
            value = mergekit_setting(source[key], name, mergekit_t(name))
            if value is not None:
                return value
    return default


def write(tmp_path, config):
    path = tmp_path / "mergekit.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


SLERP_T = [
    {"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
    {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
    {"value": 0.5},
]


def test_slerp_slices_config_resolves_t_per_tensor_as_mergekit(models, tmp_path):
    config = {
        "slices": [{"sources": [{"model": str(models["B"]), "layer_range": [0, LAYERS]},
                                {"model": str(models["A"]), "layer_range": [0, LAYERS]}]}],
        "merge_method": "slerp",
        "base_model": str(models["A"]),
        "parameters": {"t": SLERP_T},
        "dtype": "float32",
    }  # fmt: skip
    recipe, schema, _ = read_recipe(str(write(tmp_path, config)))
    assert schema == "mergekit" and recipe.models == (str(models["A"]), str(models["B"]))  # base first: t=0
    p = plan(recipe)
    assert p.out_dtype == "F32"
    seen = set()
    for t in p.tensors:
        expected = mergekit_setting(SLERP_T, t.name, mergekit_t(t.name))
        assert t.coeffs == (expected,), t.name
        seen.add(expected)
    assert len(seen) >= 5  # gradients between their points, and the catch-all
    merge(p, tmp_path / "out")
    got, a, b = load_dir(tmp_path / "out"), load_dir(models["A"]), load_dir(models["B"])
    for t in p.tensors:
        expected = ref.slerp(a[t.name].double().view(-1), b[t.name].double().view(-1), t.coeffs[0])
        ref.assert_matches(got[t.name], expected, False, t.name)


def test_ties_config_with_the_base_among_models_and_per_model_gradients(models, tmp_path):
    f1 = {"density": [1, 0.7, 0.1], "weight": 1.0}
    f2 = {"density": 0.5, "weight": [0, 0.3, 0.7, 1]}
    glob = {"normalize": True, "int8_mask": True, "lambda": 0.9}
    config = {
        "models": [{"model": str(models["C"])}, {"model": str(models["A"]), "parameters": f1},
                   {"model": str(models["B"]), "parameters": f2}],
        "merge_method": "ties",
        "base_model": str(models["C"]),
        "parameters": glob,
        "dtype": "bfloat16",
    }  # fmt: skip
    recipe, _, _ = read_recipe(str(write(tmp_path, config)))
    assert recipe.base == str(models["C"]) and recipe.models == (str(models["A"]), str(models["B"]))
    p = plan(recipe)
    layout = p.method.layout(2)
    for t in p.tensors:
        values = dict(zip(layout, t.coeffs, strict=True))
        for i, params in enumerate((f1, f2)):
            assert values[("weight", i)] == lookup(t.name, params, glob, "weight"), t.name
            assert values[("density", i)] == lookup(t.name, params, glob, "density", 1.0), t.name
        assert values[("lambda", None)] == 0.9 and values[("normalize", None)] == 1.0
    merge(p, tmp_path / "out")
    assert load_dir(tmp_path / "out")["model.norm.weight"].dtype == torch.bfloat16


def test_a_model_filter_falls_through_to_the_global_value_and_linear_normalizes(models, tmp_path):
    config = {
        "models": [{"model": str(models["A"]), "parameters": {"weight": [{"filter": "mlp", "value": 3.0}]}},
                   {"model": str(models["B"])}],
        "merge_method": "linear",
        "parameters": {"weight": 1.0},
    }  # fmt: skip
    recipe, _, _ = read_recipe(str(write(tmp_path, config)))
    p = plan(recipe)
    merge(p, tmp_path / "out")
    got, a, b = load_dir(tmp_path / "out"), load_dir(models["A"]), load_dir(models["B"])
    for name, t in got.items():
        wa = 3.0 if "mlp" in name else 1.0
        total = wa + 1.0
        assert torch.equal(t, reference([wa / total, 1.0 / total], [a[name], b[name]], t.dtype)), name


def test_slices_and_models_forms_resolve_alike(models, tmp_path):
    params = {"weight": [1.0, 0.2], "density": 0.6}
    as_models = {"models": [{"model": str(models["A"]), "parameters": params}, {"model": str(models["B"]), "parameters": params}],
                 "merge_method": "dare_ties", "base_model": str(models["C"])}  # fmt: skip
    as_slices = {"slices": [{"sources": [{"model": str(models["A"]), "layer_range": [0, LAYERS], "parameters": params},
                                         {"model": str(models["B"]), "layer_range": [0, LAYERS], "parameters": params}]}],
                 "merge_method": "dare_ties", "base_model": str(models["C"])}  # fmt: skip
    one = plan(read_recipe(str(write(tmp_path, as_models)))[0])
    two = plan(read_recipe(str(write(tmp_path, as_slices)))[0])
    assert [t.coeffs for t in one.tensors] == [t.coeffs for t in two.tensors]


def test_cli_says_which_schema_it_read_and_dry_run_shows_every_tensor(models, tmp_path, capsys):
    config = {
        "models": [{"model": str(models["A"])}, {"model": str(models["B"]), "parameters": {"density": 0.3}}],
        "merge_method": "slerp",
        "base_model": str(models["A"]),
        "parameters": {"t": SLERP_T},
        "tokenizer_source": "base",
        "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    }
    path = write(tmp_path, config)
    capsys.readouterr()
    assert main(["merge", "--config", str(path), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "as a mergekit configuration" in captured.err
    assert "models[1].parameters.density is not one of a model's parameters" not in captured.err
    assert "density" in captured.err and "mergekit ignores it" in captured.err
    table = captured.out
    assert "model.layers.1.self_attn.q_proj.weight" in table and "resolved parameters per tensor" in table
    out = tmp_path / "out"
    assert main(["merge", "--config", str(path), "-o", str(out)]) == 0
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == config["chat_template"]
    assert json.loads((out / "wiseft.json").read_text())["tokenizer_from"] == str(models["A"])
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["schedule"] == "mergekit" and recipe["rules"][0]["filter"] == "self_attn"
    assert main(["merge", "--config", str(out / "recipe.yaml"), "-o", str(tmp_path / "again")]) == 0
    first, again = load_dir(out), load_dir(tmp_path / "again")
    assert all(torch.equal(first[n], again[n]) for n in first)  # the written recipe reproduces the merge
    assert "read" in capsys.readouterr().err


def test_nearswap_and_arcee_fusion_configs_merge_as_their_references(models, tmp_path):
    a, b = str(models["A"]), str(models["B"])
    nearswap = {"merge_method": "nearswap", "base_model": a, "models": [{"model": a}, {"model": b}],
                "parameters": {"t": [0.0, 0.5]}, "dtype": "float32"}  # fmt: skip
    recipe, _, warnings = read_recipe(str(write(tmp_path, nearswap)))
    assert recipe.base == a and recipe.models == (b,) and not warnings
    p = plan(recipe)
    merge(p, tmp_path / "ns")
    got, ta, tb = load_dir(tmp_path / "ns"), load_dir(models["A"]), load_dir(models["B"])
    for t in p.tensors:
        assert t.coeffs == (lookup(t.name, None, nearswap["parameters"], "t"),), t.name
        expected = ref.nearswap(ta[t.name].double().view(-1), tb[t.name].double().view(-1), t.coeffs[0])
        ref.assert_matches(got[t.name], expected, True, t.name)
    fusion = {"merge_method": "arcee_fusion", "base_model": a,
              "models": [{"model": b, "parameters": {"weight": 0.5}}]}  # fmt: skip
    recipe, _, warnings = read_recipe(str(write(tmp_path, fusion)))
    assert any("weight is not one of arcee_fusion's parameters" in w for w in warnings), warnings
    merge(plan(recipe), tmp_path / "af")
    got = load_dir(tmp_path / "af")
    for name, t in got.items():
        expected = ref.arcee_fusion(ta[name].double().view(-1), tb[name].double().view(-1), tuple(t.shape))
        ref.assert_matches(t, expected, True, name)


def test_residual_weight_is_ignored_as_mergekit_ignores_it(models, tmp_path):
    a = str(models["A"])
    config = {"merge_method": "passthrough",
              "slices": [{"sources": [{"model": a, "layer_range": [0, 2]}], "residual_weight": 0.3},
                         {"sources": [{"model": a, "layer_range": [1, LAYERS]}]}]}  # fmt: skip
    recipe, _, warnings = read_recipe(str(write(tmp_path, config)))
    assert any("slices[0].residual_weight" in w and "never reads it" in w for w in warnings), warnings
    del config["slices"][0]["residual_weight"]
    plain, _, _ = read_recipe(str(write(tmp_path, config)))
    assert recipe == plain

"""Issue 13 for merges: provenance that identifies the weights, unmatched rules, recipe-relative paths."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from support.merge import load_dir

from wiseft.checkpoints import content_hash, model_fingerprint
from wiseft.errors import ConfigError
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


def _recipe_file(tmp_path, text: str, name: str = "recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_rule_matching_no_tensor_is_an_error_naming_it(models, tmp_path, cli, capsys):
    a, b = models.get("gpt2", 1, torch.float32), models.get("gpt2", 2, torch.float32)
    capsys.readouterr()  # what building the fixtures printed
    recipe = _recipe_file(
        tmp_path,
        f"method: wise-ft\nmodels: [{a}, {b}]\ndelta: 0.5\n"
        "rules:\n  - match: 'transformer\\.h\\.\\d+\\.mlp\\..*'\n    delta: 0.1\n"
        "  - match: 'model\\.layers\\.\\d+\\.mlp\\..*'\n    delta: 0.2\n",
    )
    out = tmp_path / "out"
    code, err = cli(["merge", "--config", recipe, "-o", out])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "recipe rule rules[1] model\\.layers\\.\\d+\\.mlp\\..* matches no tensor of" in err
    assert "transformer.wte.weight" in err and "--allow-unmatched" in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    code, err = cli(["merge", "--config", recipe, "-o", out, "--allow-unmatched"])
    assert code == 0 and "warning:" in err and "rules[1]" in err and "has no effect" in err
    assert json.loads((out / "wiseft.json").read_text())["recipe"]["allow_unmatched"] is True
    keyed = _recipe_file(tmp_path, recipe.read_text() + "allow_unmatched: true\n", "keyed.yaml")
    code, err = cli(["merge", "--config", keyed, "--dry-run"])
    assert code == 0 and "rules[1]" in err and "has no effect" in err


def test_allow_unmatched_as_a_recipe_key_and_mergekit_filters(models, tmp_path, cli):
    a, b = models.get("gpt2", 1, torch.float32), models.get("gpt2", 2, torch.float32)
    recipe = _recipe_file(
        tmp_path,
        f"merge_method: linear\nmodels:\n  - model: {a}\n  - model: {b}\n"
        "parameters:\n  weight:\n    - filter: self_attn\n      value: 0.3\n    - value: 0.5\n",
    )
    code, err = cli(["merge", "--config", recipe, "--dry-run"])
    assert code == 2 and "rules[0] filter=self_attn matches no tensor" in err, err
    text = recipe.read_text() + "allow_unmatched: true\n"
    code, err = cli(["merge", "--config", _recipe_file(tmp_path, text, "with-key.yaml"), "--dry-run"])
    assert code == 2 and "unknown key 'allow_unmatched'" in err  # not a mergekit key; the flag works
    code, err = cli(["merge", "--config", recipe, "--dry-run", "--allow-unmatched"])
    assert code == 0 and "filter=self_attn matches no tensor" in err, err


def test_weightspace_refuses_an_unmatched_rule(models):
    from wiseft.errors import ConfigError
    from wiseft.weightspace import WeightSpace

    a, b = models.get("gpt2", 1, torch.float32), models.get("gpt2", 2, torch.float32)
    ws = WeightSpace.load([str(a), str(b)])
    bad = Recipe(models=(str(a), str(b)), delta=0.5, rules=({"match": "nothing", "delta": 0.1},))
    with pytest.raises(ConfigError, match="recipe rule rules\\[0\\] nothing matches no tensor"):
        ws.apply(bad)


@pytest.fixture
def layout(models, tmp_path, monkeypatch):
    """tmp/project/{recipes/, models/a, models/b} and the current directory elsewhere."""
    import shutil

    project = tmp_path / "project"
    (project / "recipes").mkdir(parents=True)
    for name, seed in (("a", 1), ("b", 2)):
        shutil.copytree(models.get("gpt2", seed, torch.float32), project / "models" / name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return project


@pytest.mark.parametrize(
    "text",
    [
        "method: wise-ft\nmodels: [../models/a, ../models/b]\ndelta: 0.5\ntokenizer_from: ../models/a\n",
        "merge_method: linear\nmodels:\n  - model: ../models/a\n  - model: ../models/b\n"
        "tokenizer_source: ../models/a\n",
    ],
    ids=["wiseft", "mergekit"],
)
def test_recipe_paths_are_relative_to_the_recipe_file(layout, text, cli):
    from wiseft.merge.recipe_file import read_recipe

    path = layout / "recipes" / "r.yaml"
    path.write_text(text)
    recipe = read_recipe(str(path))[0]
    want = [str((layout / "models" / n).resolve()) for n in "ab"]
    assert list(recipe.models) == want and recipe.tokenizer_from == want[0]
    code, err = cli(["merge", "--config", path, "-o", "out"])  # -o stays relative to the current directory
    assert code == 0, err
    prov = json.loads((Path("out") / "wiseft.json").read_text())
    assert [i["path"] for i in prov["inputs"]] == want and prov["tokenizer_from"] == want[0]


def test_hub_names_in_a_recipe_stay_names(layout):
    from wiseft.merge.recipe_file import read_recipe

    path = layout / "recipes" / "r.yaml"
    path.write_text("method: wise-ft\nmodels: [org/early, org/final]\ndelta: 0.5\n")
    assert read_recipe(str(path))[0].models == ("org/early", "org/final")


def test_a_path_only_valid_from_the_current_directory_is_refused(layout, cli, capsys):
    import shutil

    shutil.copytree(layout / "models", Path("models"))  # the same names, relative to the current directory
    path = layout / "recipes" / "r.yaml"
    path.write_text("method: wise-ft\nmodels: [models/a, models/b]\ndelta: 0.5\n")
    capsys.readouterr()
    code, err = cli(["merge", "--config", path, "-o", "out"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (
        "models[0]: 'models/a' is not a directory beside the recipe" in err
        and "relative to the recipe" in err
    )
    assert not Path("out").exists()


README = Path(__file__).resolve().parents[1] / "README.md"
ARCHES = {  # README tag: (tiny architecture, tied embeddings)
    "llama": ("llama", False),
    "qwen2": ("qwen2", True),
    "qwen2-untied": ("qwen2", False),
    "gemma": ("gemma", True),
    "gpt2": ("gpt2", False),
}


def _readme_recipes() -> list[tuple[str, str, str]]:
    """(example number, architecture tag, YAML text) of every README YAML block tagged `# names of:`."""
    import re

    blocks = re.findall(r"```yaml\n(# names of: ([^\n]+)\n.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    return [(f"ex{i}", tag.strip(), text) for i, (text, tags) in enumerate(blocks) for tag in tags.split(",")]


@pytest.mark.parametrize(("n", "tag", "text"), _readme_recipes(), ids=lambda v: v if len(v) < 20 else "")
def test_readme_recipe_examples_plan_on_the_architectures_they_name(models, tmp_path, n, tag, text):
    from wiseft.merge.recipe_file import read_recipe

    arch, tied = ARCHES[tag]
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    parsed = read_recipe(str(path))[0]
    tiny = [str(models.get(arch, seed, torch.float32, tied)) for seed in (1, 2, 3)]
    overrides = {"models": tiny[: len(parsed.models)], "base": tiny[2] if parsed.base else None}
    p = plan(read_recipe(str(path), overrides)[0])
    assert p.warnings == ()
    rules = {t.rule for t in p.tensors if t.kind == "merge"}
    assert all(any(f"rules[{i}]" in r for r in rules) for i in range(len(parsed.rules)))
    if arch == "gpt2":  # the GPT-2 example merges
        merge(p, tmp_path / "out")
        assert (tmp_path / "out" / "model.safetensors").is_file()


def test_provenance_extra_is_written_with_the_rest_in_one_write(models, tmp_path, monkeypatch):
    """`wiseft soup`'s section goes into wiseft.json through the driver (issue 14): one write of the file,
    the driver's own sections intact; a key the driver writes is refused before anything is written."""
    import wiseft.merge.driver as driver

    recipe = Recipe(models=(str(models.get("llama", 1)), str(models.get("llama", 2))), delta=0.5)
    writes = []
    real = driver.write_json
    monkeypatch.setattr(
        driver, "write_json", lambda path, data: (writes.append(Path(path).name), real(path, data))
    )
    out = tmp_path / "out"
    merge(plan(recipe), out, provenance_extra={"soup": {"kept": [0, 1]}})
    prov = json.loads((out / "wiseft.json").read_text())
    assert prov["soup"] == {"kept": [0, 1]} and writes.count("wiseft.json") == 1
    assert prov["output"]["content_hash"] == content_hash(out) and prov["recipe"]["delta"] == 0.5
    for key in ("recipe", "output", "inputs"):
        with pytest.raises(
            ConfigError, match=f"provenance_extra key '{key}' is a section wiseft.json already"
        ):
            merge(plan(recipe), tmp_path / key, provenance_extra={key: 1})
        assert not (tmp_path / key).exists()


def test_soup_output_is_written_by_one_driver_merge(models, tmp_path, monkeypatch):
    import wiseft.evaluate.soup as soup

    calls = []
    monkeypatch.setattr(soup, "merge", lambda *a, **k: calls.append(k))
    soup.write_soup(
        plan(Recipe(models=(str(models.get("llama", 1)),) * 2, delta=0.5)),
        tmp_path / "o",
        {"a": 1},
        False,
        10**9,
    )
    assert calls == [{"force": False, "shard_size": 10**9, "provenance_extra": {"soup": {"a": 1}}}]

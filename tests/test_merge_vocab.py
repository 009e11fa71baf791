"""Tokenizer policy: embeddings re-indexed by token to the chosen input's vocabulary, with mergekit's
default rows for tokens an input lacks, against a plain float64 reference."""

import json

import pytest
import torch
import yaml
from support.merge import float64_sum, load_dir
from support.vocab import ALPHABETS as VOCAB_ALPHABETS
from support.vocab import vocab_models
from transformers import AutoModelForCausalLM

from wiseft.checkpoints import content_hash
from wiseft.merge import Recipe
from wiseft.merge.driver import merge
from wiseft.merge.plan import plan
from wiseft.testing import ALPHABET, save_tiny_model

# as support.vocab.ALPHABETS, but C has only Ä beyond A's letters (no ß)
ALPHABETS = {**VOCAB_ALPHABETS, "C": ALPHABET.replace("z", "") + "Ä"}
VOCAB_ROWS = {"A": 64, "B": 66, "C": 64}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return vocab_models(tmp_path_factory.mktemp("vocab"), VOCAB_ROWS, alphabets=ALPHABETS)


def vocab_of(path):
    return json.loads((path / "tokenizer.json").read_text())["model"]["vocab"]


def reindexed(models, order, out, name, base=None):
    """mergekit's PermutedEmbeddings written plainly: per model, row of each output token (float64)."""
    vocabs = {k: vocab_of(models[k]) for k in order}
    tensors = {k: load_dir(models[k])[name].double() for k in order}
    tokens = sorted(vocabs[out], key=vocabs[out].get)
    result = {}
    for k in order:
        rows = []
        for tok in tokens:
            if tok in vocabs[k]:
                rows.append(tensors[k][vocabs[k][tok]])
                continue
            have = [j for j in order if tok in vocabs[j]]
            if len(have) == 1:
                donors = have
            elif base is not None and tok in vocabs[base]:
                donors = [base]
            else:
                donors = have
            mean = sum(tensors[j][vocabs[j][tok]] for j in donors) / len(donors)
            rows.append(mean.to(torch.bfloat16).double())  # the default row is stored in the input's dtype
        result[k] = torch.stack(rows)
    return result


def test_linear_merge_reindexes_embeddings_to_the_chosen_vocabulary(models, tmp_path):
    order = ["A", "B", "C"]
    recipe = Recipe(method="linear", models=tuple(str(models[k]) for k in order), weights=(0.5, 0.25, 0.25))
    p = plan(recipe, tokenizer_from=str(models["A"]))
    n = len(vocab_of(models["A"]))
    assert p.vocabulary.startswith(f"{n} tokens") and n < VOCAB_ROWS["A"]  # padding rows dropped
    out = tmp_path / "out"
    merge(p, out)
    got = load_dir(out)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        per_model = reindexed(models, order, "A", name)
        expected = float64_sum([w * per_model[k] for w, k in zip((0.5, 0.25, 0.25), order, strict=True)])
        assert got[name].shape == (n, 32)
        assert torch.equal(got[name], expected.to(torch.bfloat16)), name
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == n
    assert (out / "tokenizer.json").read_bytes() == (models["A"] / "tokenizer.json").read_bytes()
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model(torch.tensor([[4, 5]])).logits.shape == (1, 2, n)
    prov = json.loads((out / "wiseft.json").read_text())  # re-indexed rows are not the inputs' own bytes
    assert [i["content_hash"] for i in prov["inputs"]] == [content_hash(models[k]) for k in order]
    assert prov["output"]["content_hash"] == content_hash(out)


def test_mergekit_tokenizer_source_base_uses_the_base_rows(models, tmp_path):
    config = {
        "merge_method": "task_arithmetic",
        "base_model": str(models["A"]),
        "models": [{"model": str(models["B"]), "parameters": {"weight": 1.0}},
                   {"model": str(models["C"]), "parameters": {"weight": 0.5}}],
        "tokenizer_source": "base",
    }  # fmt: skip
    path = tmp_path / "mk.yml"
    path.write_text(yaml.safe_dump(config))
    from wiseft.merge.recipe_file import read_recipe

    p = plan(read_recipe(str(path))[0])
    merge(p, tmp_path / "out")
    got = load_dir(tmp_path / "out")["model.embed_tokens.weight"]
    e = reindexed(models, ["A", "B", "C"], "A", "model.embed_tokens.weight", base="A")
    expected = e["A"] + float64_sum([1.0 * (e["B"] - e["A"]), 0.5 * (e["C"] - e["A"])])
    assert torch.equal(got, expected.to(torch.bfloat16))
    # "y": in A and C, not B; with a base B takes the base's row, so its task vector there is 0
    y = vocab_of(models["A"])["y"]
    assert torch.equal(e["B"][y], e["A"][y])


def test_different_vocab_sizes_without_a_policy_are_refused(models, tmp_path, cli, capsys):
    capsys.readouterr()
    out = tmp_path / "out"
    code, err = cli(["merge", models["A"], models["B"], "--delta", "0.5", "-o", out])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "different vocab sizes" in err and "tokenizer policy" in err and not out.exists()
    code, err = cli(
        ["merge", models["A"], models["B"], "--delta", "0.5", "--dry-run", "--copy-tokenizer-from", "1"]
    )
    assert code == 0 and "embeddings re-indexed by token" in cli.out, err
    assert f"{len(vocab_of(models['B']))} tokens" in cli.out


def test_same_vocabulary_is_not_reindexed(models, tmp_path):
    a = models["A"]
    other = save_tiny_model(tmp_path / "a2", arch="llama", seed=9, dtype=torch.bfloat16)
    p = plan(Recipe(models=(str(a), str(other)), delta=0.5), tokenizer_from=str(a))
    assert p.vocabulary is None

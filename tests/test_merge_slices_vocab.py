"""A tokenizer policy together with layer slices (issue 14): the token matrices of a sliced merge are
re-indexed to the output vocabulary as in a whole-model merge, their default rows taken from the models
the tensor is merged from (the slice's sources, as mergekit's PermutedVocabulary over its gathered
tensors), against plain float64 references."""

import json
import re

import pytest
import torch
import yaml
from support.merge import bits_equal, float64_sum, load_dir
from support.vocab import permuted, union_tokens, vocab_models
from transformers import AutoModelForCausalLM, AutoTokenizer

from wiseft.errors import ConfigError
from wiseft.merge.driver import merge
from wiseft.merge.plan import plan
from wiseft.merge.recipe_file import read_recipe

LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
SHAPES = {"A": (64, 3), "B": (66, 3), "C": (66, 4)}  # (embedding rows, layers)
EMBEDS = ("model.embed_tokens.weight", "lm_head.weight")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    rows = {k: r for k, (r, _) in SHAPES.items()}
    layers = {k: n for k, (_, n) in SHAPES.items()}
    return vocab_models(tmp_path_factory.mktemp("slicevocab"), rows, layers)


def _write(tmp_path, config):
    path = tmp_path / "mergekit.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return read_recipe(str(path))[0]


def _layer_source(name, spans):
    """Output layer L is layer start + offset of the slice holding L (mergekit's planner)."""
    layer = int(LAYER.search(name).group(1))
    for model, start, end in spans:
        if layer < end - start:
            m = LAYER.search(name)
            return model, name[: m.start(1)] + str(start + layer) + name[m.end(1) :]
        layer -= end - start
    raise AssertionError(name)


def test_passthrough_frankenmerge_with_a_union_vocabulary(models, tmp_path):
    spans = [("A", 0, 2), ("C", 1, 4), ("B", 2, 3)]
    recipe = _write(tmp_path, {
        "slices": [{"sources": [{"model": str(models[m]), "layer_range": [a, b]}]} for m, a, b in spans],
        "merge_method": "passthrough",
        "tokenizer_source": "union",
    })  # fmt: skip
    out = tmp_path / "out"
    merge(plan(recipe), out)
    got = load_dir(out)
    tokens = union_tokens(models, ["A", "C", "B"])  # the inputs in the order the slices name them
    # embeddings from the first slice's model, lm_head from the last's; rows that model lacks: zeros
    for name, model in zip(EMBEDS, ("A", "B"), strict=True):
        expected = permuted(models, [model], tokens, name)[model]
        assert bits_equal(got[name], expected.to(torch.bfloat16)), name
    inputs = {k: load_dir(models[k]) for k in "ABC"}
    for name, value in got.items():
        if LAYER.search(name):
            model, src = _layer_source(name, spans)
            assert bits_equal(value, inputs[model][src]), name
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 6 and config["vocab_size"] == len(tokens)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert [tok.convert_ids_to_tokens(i) for i in range(len(tokens))] == tokens
    model = AutoModelForCausalLM.from_pretrained(str(out))
    ids = tok("aß", add_special_tokens=False)["input_ids"]
    assert model(torch.tensor([ids])).logits.shape[-1] == len(tokens)


def test_linear_over_slices_with_a_base_vocabulary_and_padding(models, tmp_path):
    a, b, c = (str(models[k]) for k in "ABC")
    spans = {"A": [(0, 2), (2, 3)], "B": [(0, 2), (2, 3)], "C": [(1, 3), (3, 4)]}
    weights = {"B": {"parameters": {"weight": 0.6}}, "C": {"parameters": {"weight": 0.3}}}
    recipe = _write(tmp_path, {
        "slices": [
            {"sources": [{"model": path, "layer_range": list(spans[k][s]), **weights.get(k, {})}
                         for k, path in zip("ABC", (a, b, c), strict=True)]}
            for s in range(2)
        ],
        "merge_method": "task_arithmetic",
        "base_model": a,
        "tokenizer": {"source": "base", "pad_to_multiple_of": 16},
    })  # fmt: skip
    out = tmp_path / "out"
    merge(plan(recipe), out)
    got = load_dir(out)
    vocab = json.loads((models["A"] / "tokenizer.json").read_text())["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    rows = -(-len(tokens) // 16) * 16
    for name in EMBEDS:  # every input is a source of every slice: the whole-model defaults
        e = permuted(models, ["A", "B", "C"], tokens, name, base="A", pad=16)
        expected = e["A"] + float64_sum([0.6 * (e["B"] - e["A"]), 0.3 * (e["C"] - e["A"])])
        assert got[name].shape[0] == rows
        assert torch.equal(got[name][: len(tokens)], expected[: len(tokens)].to(torch.bfloat16)), name
    inputs = {k: load_dir(models[k]) for k in "ABC"}
    for name, value in got.items():
        m = LAYER.search(name)
        if not m:
            continue
        layer = int(m.group(1))
        src = {k: name[: m.start(1)] + str(layer + (1 if k == "C" else 0)) + name[m.end(1) :] for k in "ABC"}
        x = {k: inputs[k][src[k]].double() for k in "ABC"}
        expected = x["A"] + float64_sum([0.6 * (x["B"] - x["A"]), 0.3 * (x["C"] - x["A"])])
        assert torch.equal(value, expected.to(torch.bfloat16)), name
    assert json.loads((out / "config.json").read_text())["vocab_size"] == rows


def test_a_token_source_outside_the_slice_models_is_a_one_line_error(models, tmp_path):
    recipe = _write(tmp_path, {
        "slices": [{"sources": [{"model": str(models["A"]), "layer_range": [0, 3]}]},
                   {"sources": [{"model": str(models["B"]), "layer_range": [1, 3]}]}],
        "merge_method": "passthrough",
        "tokenizer": {"source": "union", "tokens": {"Ä": {"source": str(models["B"])}}},
    })  # fmt: skip
    with pytest.raises(ConfigError, match=r"tokenizer_tokens\['Ä'\]: source .*B is not among the models "
                                          r"tensor model\.embed_tokens\.weight is taken from"):  # fmt: skip
        plan(recipe)

"""`tokenizer_source: union` and mergekit's `tokenizer:` block (tokens with source/force,
pad_to_multiple_of): the output tokenizer is a valid HF tokenizer whose ids match the merged embedding
rows, and the rows equal a plain float64 reference of mergekit's PermutedEmbeddings."""

import json

import pytest
import torch
import yaml
from support.merge import float64_sum, load_dir
from support.vocab import permuted, union_tokens, vocab_models, vocab_of
from tokenizers import AddedToken
from transformers import AutoModelForCausalLM, AutoTokenizer

from wiseft.errors import ConfigError
from wiseft.merge import Recipe
from wiseft.merge.driver import merge
from wiseft.merge.plan import plan
from wiseft.merge.recipe_file import read_recipe
from wiseft.testing import ALPHABET, save_char_tokenizer, save_tiny_model

IM = "<|im_start|>"
ROWS = {"A": 64, "B": 66, "C": 66}
EMBEDS = ("model.embed_tokens.weight", "lm_head.weight")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = vocab_models(tmp_path_factory.mktemp("union"), ROWS)
    tok = AutoTokenizer.from_pretrained(str(out["B"]))  # a chat token the others lack, as a special token
    tok.add_tokens([AddedToken(IM, special=True, normalized=False)], special_tokens=True)
    tok.save_pretrained(str(out["B"]))
    return out


def test_union_of_three_tokenizers_merges_rows_by_token_and_round_trips(models, tmp_path):
    order = ["A", "B", "C"]
    weights = (0.5, 0.25, 0.25)
    recipe = Recipe("linear", tuple(str(models[k]) for k in order), weights=weights, tokenizer_from="union")
    p = plan(recipe)
    tokens = union_tokens(models, order)
    assert [t.content for t in p.new_tokens] == ["Ä", "Ö", "ß", IM] == tokens[len(vocab_of(models["A"])) :]
    merge(p, tmp_path / "out")
    out = tmp_path / "out"
    got = load_dir(out)
    for name in EMBEDS:
        per_model = permuted(models, order, tokens, name)
        expected = float64_sum([w * per_model[k] for w, k in zip(weights, order, strict=True)])
        assert torch.equal(got[name], expected.to(torch.bfloat16)), name
    tok = AutoTokenizer.from_pretrained(str(out))
    assert [tok.convert_ids_to_tokens(i) for i in range(len(tokens))] == tokens
    text = f"{IM}ab Ä+ßÖ=z"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == [tokens.index(t) for t in [IM, "a", "b", " ", "Ä", "+", "ß", "Ö", "=", "z"]]
    assert tok.decode(ids) == text
    assert tok.added_tokens_decoder[tokens.index(IM)].special  # kept its flags
    assert tok.decode(ids, skip_special_tokens=True) == text[len(IM) :]
    assert json.loads((out / "config.json").read_text())["vocab_size"] == len(tokens)
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model(torch.tensor([ids])).logits.shape == (1, len(ids), len(tokens))


def test_union_with_a_base_takes_the_base_rows_and_is_the_default_of_a_tokenizer_block(models, tmp_path):
    config = {
        "merge_method": "task_arithmetic",
        "base_model": str(models["A"]),
        "models": [{"model": str(models["B"]), "parameters": {"weight": 1.0}},
                   {"model": str(models["C"]), "parameters": {"weight": 0.5}}],
        "tokenizer": {},  # source defaults to union, as in mergekit
    }  # fmt: skip
    path = tmp_path / "mk.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    recipe, schema, _ = read_recipe(str(path))
    assert schema == "mergekit" and recipe.tokenizer_from == "union"
    merge(plan(recipe), tmp_path / "out")
    tokens = union_tokens(models, ["A", "B", "C"])
    for name in EMBEDS:
        e = permuted(models, ["A", "B", "C"], tokens, name, base="A")
        expected = e["A"] + float64_sum([1.0 * (e["B"] - e["A"]), 0.5 * (e["C"] - e["A"])])
        assert torch.equal(load_dir(tmp_path / "out")[name], expected.to(torch.bfloat16)), name


def test_tokens_with_sources_force_and_padding_as_mergekit(models, tmp_path):
    a, b, c = (str(models[k]) for k in "ABC")
    config = {
        "merge_method": "linear",
        "models": [{"model": a, "parameters": {"weight": 0.5}}, {"model": b, "parameters": {"weight": 0.3}},
                   {"model": c, "parameters": {"weight": 0.2}}],
        "tokenizer": {
            "source": "union",
            "tokens": {
                "<tool>": {"source": {"kind": "zero"}},
                "<x>": {"source": {"kind": "model_token", "model": b, "token": "a"}},
                "Ä": {"source": c, "force": True},
                "q": {"source": {"kind": "model_token", "model": a, "token_id": 5}},  # every model has q
            },
            "pad_to_multiple_of": 16,
        },
    }  # fmt: skip
    path = tmp_path / "mk.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    p = plan(read_recipe(str(path))[0])
    order = ["A", "B", "C"]
    tokens = union_tokens(models, order, extra=["<tool>", "<x>", "Ä", "q"])
    assert tokens[-2:] == ["<tool>", "<x>"] and len(tokens) % 16 != 0
    merge(p, tmp_path / "out")
    out = tmp_path / "out"
    vb, vc = vocab_of(models["B"]), vocab_of(models["C"])
    specs = {
        "<tool>": {"source": None},
        "<x>": {"source": ("B", vb["a"])},
        "Ä": {"source": ("C", vc["Ä"]), "force": True},
        "q": {"source": ("A", 5)},
    }
    got = load_dir(out)
    n = -(-len(tokens) // 16) * 16
    for name in EMBEDS:
        per_model = permuted(models, order, tokens, name, specs=specs, pad=16)
        expected = float64_sum([w * per_model[k] for w, k in zip((0.5, 0.3, 0.2), order, strict=True)])
        assert got[name].shape == (n, 32)
        assert torch.equal(got[name][: len(tokens)], expected[: len(tokens)].to(torch.bfloat16)), name
        pad = got[name][len(tokens) :].double()
        assert (pad - expected[len(tokens) :]).abs().max() <= 2**-7 * expected.abs().max(), name  # 1 ulp
    assert json.loads((out / "config.json").read_text())["vocab_size"] == n
    tok = AutoTokenizer.from_pretrained(str(out))
    assert len(tok) == len(tokens) and tok.convert_tokens_to_ids("<x>") == tokens.index("<x>")
    assert tok.decode(tok("a<tool>b", add_special_tokens=False)["input_ids"]) == "a<tool>b"
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["pad_to_multiple_of"] == 16 and recipe["tokenizer_tokens"]["Ä"]["force"] is True
    assert plan(read_recipe(str(out / "recipe.yaml"))[0]).new_tokens == p.new_tokens


def test_identical_vocabularies_union_is_the_first_tokenizer(models, tmp_path):
    other = save_tiny_model(
        tmp_path / "a2", arch="llama", seed=9, dtype=torch.bfloat16, vocab=64, tokenizer=False
    )
    save_char_tokenizer(other, ALPHABET)
    p = plan(Recipe(models=(str(models["A"]), str(other)), delta=0.5, tokenizer_from="union"))
    assert p.vocabulary is None and p.tokenizer_from == 0 and not p.new_tokens


BAD = [
    ({"<q>": {"source": "B"}}, None, r"tokenizer_tokens\['<q>'\]: source .* has no token '<q>'"),
    ({"<q>": {"source": "elsewhere"}}, None, r"tokenizer_tokens\['<q>'\]: source model elsewhere: not one of the inputs"),
    ({"<q>": {"force": True}}, None, r"tokenizer_tokens\['<q>'\] needs source"),
    ({"<q>": {"source": {"kind": "model_token", "model": "B", "token_id": 999}}}, None, r"token_id 999 is not in"),
    ({"<q>": {"source": {"kind": "model_token", "model": "B", "token": "a", "token_id": 1}}}, None, "exactly one of token and token_id"),
    ({"<q>": {"source": {"kind": "one"}}}, None, "kind 'one' is not one of zero, model_token"),
    ({"<q>": {"sorce": "B"}}, None, "unknown key 'sorce'; did you mean 'source'"),
    (None, 0, "pad_to_multiple_of must be a positive integer, got 0"),
]  # fmt: skip


@pytest.mark.parametrize("tokens,pad,message", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_token_sources_are_refused_in_the_preflight(models, tmp_path, monkeypatch, tokens, pad, message):
    from wiseft.checkpoints import Checkpoint

    monkeypatch.setattr(Checkpoint, "read_into", lambda *a, **k: pytest.fail("tensor data was read"))

    def fix(spec):  # model letters to paths
        source = spec.get("source")
        if isinstance(source, str) and source in models:
            return {**spec, "source": str(models[source])}
        if isinstance(source, dict) and source.get("model") in models:
            return {**spec, "source": {**source, "model": str(models[source["model"]])}}
        return spec

    tokens = {t: fix(s) for t, s in tokens.items()} if tokens else None
    with pytest.raises(ConfigError, match=message) as info:
        recipe = Recipe(
            "linear", (str(models["A"]), str(models["B"])), weights=(0.5, 0.5), tokenizer_from="union",
            tokenizer_tokens=tokens, pad_to_multiple_of=pad,
        )  # fmt: skip
        plan(recipe)
    assert "\n" not in str(info.value)


def test_tokens_without_a_tokenizer_policy_are_refused(models, cli, tmp_path):
    recipe = tmp_path / "r.yml"
    recipe.write_text(
        yaml.safe_dump({"method": "linear", "models": [str(models["A"]), str(models["A"])], "weights": [0.5, 0.5],
                        "pad_to_multiple_of": 8})
    )  # fmt: skip
    out = tmp_path / "out"
    code, err = cli(["merge", "--config", recipe, "-o", out])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "need a tokenizer policy" in err, err
    assert not out.exists()


def test_cli_union_flag_dry_run_says_what_is_appended(models, cli, tmp_path):
    argv = ["merge", models["A"], models["B"], "--delta", "0.5", "--copy-tokenizer-from", "union"]
    code, err = cli([*argv, "--dry-run"])
    assert code == 0 and "3 appended to the tokenizer" in cli.out, err
    code, err = cli([*argv, "-o", tmp_path / "out"])
    assert code == 0, err
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    assert tok.decode(tok(f"{IM}aÖ", add_special_tokens=False)["input_ids"]) == f"{IM}aÖ"


def test_tokenizer_from_base_is_the_base(models):
    a, b = str(models["A"]), str(models["B"])
    p = plan(Recipe("task_arithmetic", (b,), base=a, weights=(1.0,), tokenizer_from="base"))
    assert p.tokenizer_from == 0 and p.vocabulary.startswith(f"{len(vocab_of(models['A']))} tokens")
    with pytest.raises(ConfigError, match="tokenizer_from: base needs a base model"):
        plan(Recipe("linear", (a, b), weights=(0.5, 0.5), tokenizer_from="base"))

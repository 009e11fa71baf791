"""WeightSpace over inputs whose vocabularies differ (issue 14): the token matrices are re-indexed once at
load by the merge plan's RowMaps, and every variant is bit-identical to `wiseft merge` of the same recipe."""

import pytest
import torch
from support.merge import bits_equal, load_dir
from support.vocab import vocab_models

from wiseft.checkpoints import Checkpoint
from wiseft.errors import ConfigError, MergeError
from wiseft.merge import Recipe
from wiseft.merge.driver import merge
from wiseft.merge.plan import plan
from wiseft.merge.vocab import RowMap
from wiseft.weightspace import WeightSpace

ROWS = {"A": 64, "B": 66, "C": 66}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return {k: str(v) for k, v in vocab_models(tmp_path_factory.mktemp("wsvocab"), ROWS).items()}


def _recipes(m):
    """(first recipe, a second variant of it) per method family, each with a tokenizer policy."""
    linear = Recipe("linear", (m["A"], m["B"], m["C"]), weights=(0.5, 0.3, 0.2), tokenizer_from="union")
    ties = Recipe(
        "ties", (m["B"], m["C"]), base=m["A"], weights=(1.0, 0.5),
        parameters={"density": 0.5}, tokenizer_from="base", pad_to_multiple_of=16,
    )  # fmt: skip
    slerp = Recipe(
        "slerp", (m["A"], m["B"]), parameters={"t": 0.3}, tokenizer_from=m["B"],
        tokenizer_tokens={"<tool>": {"source": {"kind": "zero"}}},
    )  # fmt: skip
    return [
        (linear, linear.with_parameter("weights", (0.2, 0.2, 0.6))),
        (ties, ties.with_parameter("density", 0.3)),
        (slerp, slerp.with_parameter("t", 0.8)),
    ]


def _same_as_merge(ws, recipe, dtype, out):
    merge(plan(recipe, out_dtype=dtype), out)
    written = load_dir(out)
    params = dict(ws.model.named_parameters())
    assert set(params) <= set(written)
    for name, p in params.items():
        assert bits_equal(p.data, written[name]), name
    return written


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("case", [0, 1, 2], ids=["linear-union", "ties-base-pad", "slerp-input-tokens"])
def test_variants_over_different_vocabularies_equal_the_merged_checkpoint(models, tmp_path, dtype, case):
    first, second = _recipes(models)[case]
    ws = WeightSpace.from_recipe(first, dtype=dtype)
    written = _same_as_merge(ws, first, dtype, tmp_path / "first")
    rows = written["model.embed_tokens.weight"].shape[0]
    assert ws.model.get_input_embeddings().weight.shape[0] == rows
    assert ws.model.config.vocab_size == rows
    ws.apply(second)
    _same_as_merge(ws, second, dtype, tmp_path / "second")


def test_reindexing_happens_once_at_load(models, monkeypatch):
    recipe, second = _recipes(models)[0]
    ws = WeightSpace.from_recipe(recipe, dtype=torch.float32)
    before = {n: p.data_ptr() for n, p in ws.model.named_parameters()}

    def no_reads(*args, **kwargs):
        raise AssertionError("a variant switch read from disk or re-indexed rows")

    for cls, attr in ((Checkpoint, "read_into"), (Checkpoint, "load"), (RowMap, "read_into")):
        monkeypatch.setattr(cls, attr, no_reads)
    ws.apply(second)
    ws.apply([0.1, 0.1, 0.8])  # a plain weight list keeps the space's policy
    assert {n: p.data_ptr() for n, p in ws.model.named_parameters()} == before


def test_load_with_a_tokenizer_policy_and_a_model_of_the_output_vocabulary(models, tmp_path):
    a, b = models["A"], models["B"]
    recipe = Recipe("linear", (a, b), weights=(0.25, 0.75), tokenizer_from=a)
    ws = WeightSpace.load([a, b], dtype=torch.bfloat16, tokenizer_from=a)
    ws.apply([0.25, 0.75])
    _same_as_merge(ws, recipe, torch.bfloat16, tmp_path / "out")
    from transformers import AutoModelForCausalLM

    own = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"), dtype=torch.bfloat16)
    other = WeightSpace.load([a, b], model=own, tokenizer_from=a)  # a model of the output vocabulary
    other.apply([0.5, 0.5])


def test_different_vocabularies_without_a_policy_or_with_another_are_refused(models):
    a, b = models["A"], models["B"]
    with pytest.raises(MergeError, match="different vocab sizes.*tokenizer policy"):
        WeightSpace.load([a, b])
    ws = WeightSpace.load([a, b], tokenizer_from="union")
    with pytest.raises(ConfigError, match="tokenizer policy .*is not the weight space's"):
        ws.apply(Recipe("linear", (a, b), weights=(0.5, 0.5), tokenizer_from=a))
    plain = WeightSpace.load([a, a + "/../A"])
    with pytest.raises(ConfigError, match="pad_to_multiple_of re-index the embeddings"):
        plain.apply(
            Recipe("linear", (a, a), weights=(0.5, 0.5), tokenizer_from="union", pad_to_multiple_of=8)
        )


def test_the_variants_tokenizer_is_the_merged_checkpoints(models, tmp_path):
    """A sampler over the weight space encodes prompts with the output vocabulary's tokenizer: the files
    `wiseft merge` writes (a union appends tokens no input's tokenizer has)."""
    a, b, c = models["A"], models["B"], models["C"]
    recipe = Recipe(
        "linear", (a, b, c), weights=(0.5, 0.3, 0.2), tokenizer_from="union", pad_to_multiple_of=8
    )
    ws = WeightSpace.load([a, b, c], dtype=torch.bfloat16, tokenizer_from="union", pad_to_multiple_of=8)
    ws.apply(recipe)
    merged = _same_as_merge(ws, recipe, torch.bfloat16, tmp_path / "out")
    ws.write_tokenizer(tmp_path / "tok")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "tok" / name).read_bytes() == (tmp_path / "out" / name).read_bytes(), name
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert tok.convert_tokens_to_ids("ß") < merged["model.embed_tokens.weight"].shape[0]
    with pytest.raises(ConfigError, match="keeps its inputs' vocabulary"):
        WeightSpace.load([a, a]).write_tokenizer(tmp_path / "none")

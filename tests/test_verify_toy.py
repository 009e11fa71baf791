"""The demo's toy outcome verifier: trains, saves a standard checkpoint, and scores through the ORM path.

The synthetic graded set mimics a sloppy solver of the toy world: a wrong sample has either an arithmetic
slip (a partial sum off by ±1, ±2 or ±10, carried forward) or a malformed solution (a partial sum missing
or repeated, or the last one cut short). A classifier trained from scratch for a few hundred steps learns
the malformed ones, not the slips (see wiseft.verify.toy), so "above chance" here means it has learned
something real from the graded bits, not that it checks arithmetic.
"""

import json
import random

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from wiseft.chartok import char_tokenizer
from wiseft.errors import OutputError, VerifierError
from wiseft.testing import tiny_config
from wiseft.verify import Item, load_verifier
from wiseft.verify.toy import RECORD_FILE, ToyVerifierConfig, train_toy_verifier

TOY_ALPHABET = "0123456789+=,$"


def rev(n: int) -> str:
    return str(n)[::-1]


def graded(seed: int, count: int) -> list[tuple[str, str, bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        nums = [rng.randint(10, 99) for _ in range(4)]
        sums, acc = [], nums[0]
        kind = rng.choice(["right", "right", "slip", "malformed"])
        slip_at = rng.randrange(3)
        for j, x in enumerate(nums[1:]):
            acc += x + (rng.choice((-10, -2, -1, 1, 2, 10)) if kind == "slip" and j == slip_at else 0)
            sums.append(max(acc, 0))
        parts = [rev(s) for s in sums]
        if kind == "malformed":
            how = rng.randrange(3)
            if how == 0:
                del parts[rng.randrange(2)]  # a sum missing (the answer is still the last one)
            elif how == 1:
                parts.insert(1, parts[0])  # a sum repeated
            else:
                parts[-1] = parts[-1][:-1]  # the answer cut short
        completion = ",".join(parts)
        correct = kind == "right" or (kind == "malformed" and parts[-1] == rev(sum(nums)))
        out.append(("+".join(rev(x) for x in nums) + "=", completion, correct))
    return out


def toy_tok():
    return char_tokenizer(TOY_ALPHABET, model_max_length=64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "verifier"
    record = train_toy_verifier(graded(0, 2000), out, toy_tok())  # the defaults the demo uses
    return out, record


def test_trains_above_chance_and_scores_through_the_orm_path(trained):
    out, record = trained
    test = graded(1, 1000)
    ver = load_verifier(out, "orm", device="cpu")
    result = ver.score([Item(p, c, f"t{i}") for i, (p, c, _) in enumerate(test)])
    y = np.array([c for _, _, c in test])
    s = result.scores
    auc = float((s[y][:, None] > s[~y][None, :]).mean() + 0.5 * (s[y][:, None] == s[~y][None, :]).mean())
    balanced = 0.5 * (float((s[y] > 0).mean()) + float((s[~y] <= 0).mean()))
    assert auc > 0.6 and balanced > 0.55, (auc, balanced)  # measured: 0.72 and 0.63
    assert record["loss_last"] < record["loss_first"] and record["n_samples"] == 2000
    ident = result.identity
    assert ident["kind"] == "orm" and ident["architecture"] == "GPT2ForSequenceClassification"
    assert ident["options"]["template"] == "plain" and ident["vote_transform"] == "sigmoid"
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", RECORD_FILE} <= names
    assert not any(n.endswith((".bin", ".pt")) for n in names)
    assert json.loads((out / RECORD_FILE).read_text())["train_accuracy"] == record["train_accuracy"]


def test_same_samples_and_seed_give_the_same_bytes(tmp_path):
    cfg = ToyVerifierConfig(hidden=32, layers=1, heads=4, intermediate=64, steps=12, batch_size=16)
    data = graded(2, 200)
    train_toy_verifier(data, tmp_path / "a", toy_tok(), cfg)
    train_toy_verifier(data, tmp_path / "b", toy_tok(), cfg)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (
        tmp_path / "b" / "model.safetensors"
    ).read_bytes()
    train_toy_verifier(data, tmp_path / "c", toy_tok(), ToyVerifierConfig(**{**cfg.__dict__, "seed": 1}))
    assert (tmp_path / "a" / "model.safetensors").read_bytes() != (
        tmp_path / "c" / "model.safetensors"
    ).read_bytes()


def test_starts_from_a_language_model(tmp_path):
    config = tiny_config(
        "gpt2", hidden=32, layers=2, heads=4, intermediate=64, vocab=len(toy_tok()), max_pos=64
    )
    config.architectures = ["GPT2LMHeadModel"]
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(config)
    lm.save_pretrained(tmp_path / "lm")
    cfg = ToyVerifierConfig(steps=3, batch_size=8, lr=1e-9, min_lr=0.0, warmup_steps=0, weight_decay=0.0)
    record = train_toy_verifier(graded(3, 64), tmp_path / "v", toy_tok(), cfg, init_from=tmp_path / "lm")
    assert record["init_from"] == str(tmp_path / "lm")
    ver = load_verifier(tmp_path / "v", "orm")
    got = ver.model.transformer.h[0].mlp.c_fc.weight
    torch.testing.assert_close(
        got, lm.transformer.h[0].mlp.c_fc.weight, atol=1e-6, rtol=0
    )  # lr ≈ 0: unchanged


@pytest.mark.parametrize(
    "data,match",
    [
        ([("12=", "3", True)] * 4, "needs correct and incorrect samples, got 4 correct of 4"),
        ([("12=", "3", False)] * 4, "got 0 correct of 4"),
        (
            [("12=", "3", True), ("1" * 70, "2", False)],
            "sample #1 is 71 tokens, over the verifier's limit of 64",
        ),
    ],
)
def test_bad_training_data_writes_nothing(tmp_path, data, match):
    with pytest.raises(VerifierError, match=match):
        train_toy_verifier(data, tmp_path / "v", toy_tok(), ToyVerifierConfig(steps=2))
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "keep").write_text("x")
    with pytest.raises(OutputError):
        train_toy_verifier(graded(4, 32), tmp_path / "v", toy_tok(), ToyVerifierConfig(steps=2, batch_size=8))
    assert [p.name for p in (tmp_path / "v").iterdir()] == ["keep"]


def test_language_model_of_another_vocabulary_is_refused(tmp_path):
    config = tiny_config("gpt2", hidden=32, layers=1, heads=4, intermediate=64, vocab=64, max_pos=64)
    config.architectures = ["GPT2LMHeadModel"]
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "lm")
    with pytest.raises(
        VerifierError, match="same tokenizer \\(18 tokens\\); found GPT2LMHeadModel with a vocabulary of 64"
    ):
        train_toy_verifier(
            graded(5, 32), tmp_path / "v", toy_tok(), ToyVerifierConfig(steps=2), init_from=tmp_path / "lm"
        )
    assert not (tmp_path / "v").exists()

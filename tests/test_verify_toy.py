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


def _toy_orm():
    from wiseft.verify.toy import toy_classifier

    cfg = ToyVerifierConfig(hidden=8, layers=1, heads=2, intermediate=16)
    from wiseft.verify import OutcomeRewardModel

    return OutcomeRewardModel(toy_classifier(toy_tok(), cfg), toy_tok(), template="plain")


@pytest.mark.parametrize(
    "completion,reference,process,targets",
    [
        ("36,1", "36,1", (1, 1, 1, 1), "36,1"),
        ("36,2", "36,1", (1, 1, 1, 0), "36,1"),
        ("46,1", "36,1", (0, 0, 0, 0), "3..."),
        ("36,15", "36,1", (1, 1, 1, 1, 0), "36,1."),  # past the reference's end: no next token
        ("3", "36,1", (1,), "3"),
    ],
)
def test_process_labels_and_next_token_targets_follow_the_reference(completion, reference, process, targets):
    from wiseft.verify.toy import _row

    row = _row(_toy_orm(), 0, ("12+24=", completion, completion == reference, reference))
    assert row.process == tuple(float(p) for p in process)
    tok = toy_tok()
    want = tuple(-1 if ch == "." else tok.convert_tokens_to_ids(ch) for ch in targets)
    assert row.targets == want and row.label == float(completion == reference)


def test_samples_without_a_reference_have_no_dense_targets():
    from wiseft.verify.toy import _row

    row = _row(_toy_orm(), 0, ("12+24=", "36,1", True))
    assert row.process == () and row.targets == () and row.label == 1.0


def test_process_labels_refuse_a_tokenizer_that_merges_characters(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "36": 4, ",": 5, "1": 6, "=": 7, "+": 8, "2": 9}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split(r"\d\d|.", behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", padding_side="left")  # fmt: skip
    data = [("1+2=", "36,1", True, "36,1"), ("1+2=", "36,2", False, "36,1")]
    with pytest.raises(VerifierError, match="sample #0: process labels need one token per character"):
        train_toy_verifier(data, tmp_path / "v", tok, ToyVerifierConfig(steps=1, process_weight=1.0))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "weights",
    [dict(process_weight=1.0), dict(lm_weight=1.0), dict(process_weight=0.5, lm_weight=2.0)],
)
def test_dense_losses_train_deterministically_and_change_the_weights(tmp_path, weights):
    cfg = ToyVerifierConfig(
        hidden=16, layers=1, heads=2, intermediate=32, steps=4, batch_size=8, warmup_steps=0
    )
    data = [(*g, _reference(g[0])) for g in graded(6, 48)]
    dense = ToyVerifierConfig(**{**cfg.__dict__, **weights})
    a = train_toy_verifier(data, tmp_path / "a", toy_tok(), dense)
    train_toy_verifier(data, tmp_path / "b", toy_tok(), dense)
    train_toy_verifier(data, tmp_path / "plain", toy_tok(), cfg)
    read = lambda name: (tmp_path / name / "model.safetensors").read_bytes()  # noqa: E731
    assert read("a") == read("b") != read("plain")
    assert a["n_with_reference"] == 48 and 0.0 <= a["train_auc"] <= 1.0


def _reference(prompt: str) -> str:
    nums = [int(x[::-1]) for x in prompt[:-1].split("+")]
    sums = [sum(nums[: i + 1]) for i in range(1, len(nums))]
    return ",".join(rev(s) for s in sums)


@pytest.mark.parametrize(
    "scores,truth",
    [
        ([0.9, 0.1, 0.5, 0.5], [True, False, True, False]),
        ([1.0, 1.0, 1.0], [True, False, False]),
        ([0.2, 0.8, 0.3, 0.1, 0.7], [False, True, False, True, True]),
        ([3.0, 1.0], [False, True]),
    ],
)
def test_auc_is_the_chance_a_right_sample_outscores_a_wrong_one(scores, truth):
    from wiseft.verify.toy import _auc

    pos = [s for s, t in zip(scores, truth, strict=True) if t]
    neg = [s for s, t in zip(scores, truth, strict=True) if not t]
    brute = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert _auc(np.array(scores), np.array(truth)) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("field", ["process_weight", "lm_weight"])
def test_negative_loss_weights_are_refused(field):
    from wiseft.errors import ConfigError

    with pytest.raises(ConfigError, match="toy verifier loss weights must be ≥ 0"):
        ToyVerifierConfig(**{field: -1.0})


@pytest.mark.parametrize(
    "scores,truth,groups,want",
    [
        ([0.9, 0.1, 0.5, 0.6], [True, False, True, False], ["a", "a", "b", "b"], 0.5),  # a: 1, b: 0
        ([1.0, 1.0, 0.2, 0.3], [True, False, True, False], ["a", "a", "b", "b"], 0.25),  # a tie counts half
        ([0.9, 0.1, 0.5], [True, True, False], ["a", "a", "b"], None),  # no problem has both
        ([3.0, 1.0, 2.0, 0.0, 5.0], [True, False, False, True, True], ["a", "a", "a", "b", "b"], 1.0),
    ],
)
def test_within_auc_averages_the_auc_of_each_problem_with_both_classes(scores, truth, groups, want):
    from wiseft.verify.toy import within_auc

    got = within_auc(np.array(scores), np.array(truth), groups)
    assert np.isnan(got) if want is None else got == pytest.approx(want, abs=1e-12), got


def test_heldout_ranking_is_the_within_auc_of_the_stored_scores():
    from wiseft.records import ProblemSamples
    from wiseft.verify.toy import heldout_ranking

    def problem(correct, scores):
        return ProblemSamples(correct=correct, classes=list(range(len(correct))), scores=scores)

    got = heldout_ranking([
        problem([True, False], [0.9, 0.1]),  # ranked right: AUC 1
        problem([True, False, False], [0.2, 0.5, 0.1]),  # one of two pairs right: 0.5
        problem([True, True], [0.3, 0.4]),  # one class only: left out
    ])  # fmt: skip
    assert got == {"within_auc": pytest.approx(0.75), "n_mixed_problems": 2}
    assert heldout_ranking([problem([False, False], [0.1, 0.2])]) == {
        "within_auc": None,
        "n_mixed_problems": 0,
    }
    assert heldout_ranking([]) == {"within_auc": None, "n_mixed_problems": 0}


def test_saved_checkpoint_scores_equal_a_direct_forward_pass(trained):
    """What `wiseft verify` stores is the classifier's own logit at the last token of prompt + completion
    (transformers' pooling), computed here one sample at a time without the verifier's batching."""
    from transformers import AutoModelForSequenceClassification

    out, record = trained
    assert record["n_mixed_prompts"] == 0 and record["train_within_auc"] is None  # one sample per problem
    data = graded(7, 40)
    ver = load_verifier(out, "orm", device="cpu")
    got = ver.score([Item(p, c, f"t{i}") for i, (p, c, _) in enumerate(data)]).scores
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = toy_tok()
    with torch.inference_mode():
        want = [float(model(torch.tensor([tok(p + c)["input_ids"]])).logits[0, 0]) for p, c, _ in data]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)  # batched vs one by one: float rounding only

"""Verifiers on tiny locally built models: scores against a direct forward pass, PRM steps, bad inputs.

Tolerance. A batch is left-padded and run at once; the reference runs each text alone. The two agree up
to float32 rounding, not bit for bit: padding changes the shapes of the matrix products (the kernels sum
in a different order) and the masked softmax over padded keys adds exact zeros in a different order.
On these models the difference is up to ~2e-6 on logits of magnitude ~3 (measured over 40 texts each);
the tests allow ATOL + RTOL·|x| with ATOL = RTOL = 1e-5.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from wiseft.errors import CheckpointError, VerifierError
from wiseft.testing import ALPHABET, TINY_CHAT_TEMPLATE, save_tiny_model, save_tiny_verifier
from wiseft.verify import Item, load_verifier, score_samples
from wiseft.verify.prm import aggregate
from wiseft.verify.text import split_steps, with_separators

ATOL = RTOL = 1e-5
SEP = "<extra_0>"
LETTERS = ALPHABET.replace("\n", "").replace("\\", "")


def random_items(seed: int, count: int = 11, steps: bool = False) -> list[Item]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        prompt = "".join(rng.choice(list(LETTERS), size=int(rng.integers(1, 12))))
        parts = [
            "".join(rng.choice(list(LETTERS), size=int(rng.integers(1, 9))))
            for _ in range(rng.integers(1, 4))
        ]
        completion = "\n\n".join(parts) if steps else "".join(parts)
        out.append(Item(prompt, completion, f"s{i}"))
    return out


def ids_of(tok, item: Item, chat: bool, completion: str | None = None) -> list[int]:
    completion = item.completion if completion is None else completion
    if not chat:
        return tok(item.prompt + completion)["input_ids"]
    messages = [{"role": "user", "content": item.prompt}, {"role": "assistant", "content": completion}]
    return tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("verifiers")
    return {
        "orm-llama": save_tiny_verifier(root / "orm-llama", "sequence", "llama"),
        "orm-qwen2-chat": save_tiny_verifier(
            root / "orm-qwen2", "sequence", "qwen2", chat_template=TINY_CHAT_TEMPLATE
        ),
        "orm-gpt2": save_tiny_verifier(root / "orm-gpt2", "sequence", "gpt2", seed=1),
        "orm-2labels": save_tiny_verifier(root / "orm-2", "sequence", "llama", num_labels=2, seed=2),
        "prm": save_tiny_verifier(
            root / "prm", "token", "qwen2", extra_tokens=(SEP,), chat_template=TINY_CHAT_TEMPLATE
        ),
        "prm-lm": save_tiny_verifier(root / "prm-lm", "causal", "llama", extra_tokens=(SEP,)),
        "lm": save_tiny_model(root / "lm", "llama"),
        "lm-gpt2": save_tiny_model(root / "lm-gpt2", "gpt2", seed=3),
    }


# ---------------------------------------------------------------------------------------------------- ORM


@pytest.mark.parametrize("name", ["orm-llama", "orm-qwen2-chat", "orm-gpt2", "orm-2labels"])
@pytest.mark.parametrize("max_rows", [None, 3])
def test_orm_batched_scores_equal_one_by_one_forward(models, name, max_rows):
    items = random_items(0)
    ver = load_verifier(models[name], "orm", max_rows=max_rows)
    seen = []
    result = score_samples(ver, items, progress=lambda done, total: seen.append((done, total)))
    model = AutoModelForSequenceClassification.from_pretrained(models[name]).eval()
    chat = name.endswith("chat")
    with torch.no_grad():
        ref = []
        for item in items:
            logits = model(input_ids=torch.tensor([ids_of(ver.tokenizer, item, chat)])).logits[0].double()
            ref.append(float(logits[1] - logits[0]) if logits.shape[0] == 2 else float(logits[0]))
    np.testing.assert_allclose(result.scores, ref, rtol=RTOL, atol=ATOL)
    assert seen[-1] == (len(items), len(items)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    if max_rows:
        assert len(seen) == -(-len(items) // max_rows)
    ident = result.identity
    assert ident["kind"] == "orm" and ident["vote_transform"] == "sigmoid"
    assert ident["options"]["template"] == ("chat" if chat else "plain")
    assert len(ident["sha256"]["weights"]) == 64 and ident["path"] == str(models[name].resolve())


@pytest.mark.parametrize("name", ["orm-llama", "orm-qwen2-chat", "orm-gpt2"])
def test_orm_encodes_a_list_in_one_call_as_one_by_one(models, name):
    """`encode_many` tokenises every text in one tokenizer call: the same ids and pooled positions as
    `encode` of each, also for empty completions, non-ASCII text and the chat template."""
    items = random_items(1) + [
        Item("q", "", "empty"),
        Item("é–ü ", "ß\n\n∑", "unicode"),
        Item("", "x", "no-prompt"),
    ]
    ver = load_verifier(models[name], "orm")
    assert ver.encode_many(items) == [ver.encode(item) for item in items]
    chat = name.endswith("chat")  # and each text's ids as the tokenizer gives them for that text alone
    assert [e.ids for e in ver.encode_many(items)] == [list(ids_of(ver.tokenizer, it, chat)) for it in items]
    assert ver.encode_many([]) == []


def test_orm_identity_follows_content_not_path(models, tmp_path):
    a = load_verifier(models["orm-llama"], "orm").identity
    shutil.copytree(models["orm-llama"], tmp_path / "copy")
    b = load_verifier(tmp_path / "copy", "orm").identity
    assert a["id"] == b["id"] and a["path"] != b["path"]
    assert load_verifier(models["orm-gpt2"], "orm").identity["id"] != a["id"]


# ---------------------------------------------------------------------------------------------------- PRM


@pytest.mark.parametrize(
    "steps,how,expected",
    [
        ([0.9, 0.5, 0.8], "min", 0.5),
        ([0.9, 0.5, 0.8], "last", 0.8),
        ([0.9, 0.5, 0.8], "prod", 0.9 * 0.5 * 0.8),
        ([0.25], "min", 0.25),
        ([0.25], "prod", 0.25),
        ([1.0, 0.0, 1.0], "last", 1.0),
    ],
)
def test_prm_aggregation(steps, how, expected):
    assert aggregate(steps, how) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize(
    "completion,steps",
    [
        ("a\n\nb\n\nc", ["a", "b", "c"]),
        ("a\n\n\n\nb\n\n", ["a", "b"]),  # empty steps dropped
        (" a \n\nb", ["a", "b"]),  # steps stripped
        ("", [""]),  # nothing: one empty step, so every sample has a score
        (f"a{SEP}b\n\nc", ["ab", "c"]),  # a separator inside the text is removed
    ],
)
def test_prm_step_split(completion, steps):
    assert split_steps(completion, "\n\n", SEP) == steps
    assert with_separators(steps, SEP) == "".join(s + SEP for s in steps)


@pytest.mark.parametrize("how", ["min", "last", "prod"])
def test_prm_steps_are_positive_class_probabilities_at_the_separators(models, how):
    items = random_items(1, steps=True)
    ver = load_verifier(models["prm"], "prm", aggregation=how, max_rows=4)
    result = ver.score(items)
    model = AutoModelForTokenClassification.from_pretrained(models["prm"]).eval()
    sep_id = ver.tokenizer.convert_tokens_to_ids(SEP)
    for item, got_steps, got in zip(items, result.steps, result.scores, strict=True):
        steps = split_steps(item.completion, "\n\n", SEP)
        ids = torch.tensor([ids_of(ver.tokenizer, item, chat=True, completion=with_separators(steps, SEP))])
        with torch.no_grad():
            probs = torch.softmax(model(input_ids=ids).logits[0].double(), dim=-1)[:, 1]
        ref_steps = probs[ids[0] == sep_id].tolist()
        assert len(ref_steps) == len(got_steps) == len(steps)
        np.testing.assert_allclose(got_steps, ref_steps, rtol=RTOL, atol=ATOL)
        assert got == pytest.approx(aggregate(got_steps, how), rel=1e-12)
    assert (
        result.identity["options"]["aggregation"] == how and result.identity["vote_transform"] == "identity"
    )


def test_prm_causal_lm_reads_positive_against_negative_token(models):
    items = random_items(2, count=5, steps=True)
    ver = load_verifier(models["prm-lm"], "prm", positive_token="+", negative_token="-", aggregation="last")
    result = ver.score(items)
    model = AutoModelForCausalLM.from_pretrained(models["prm-lm"]).eval()
    tok = ver.tokenizer
    pair = [tok.convert_tokens_to_ids("+"), tok.convert_tokens_to_ids("-")]
    for item, got in zip(items, result.steps, strict=True):
        text = with_separators(split_steps(item.completion, "\n\n", SEP), SEP)
        ids = torch.tensor([ids_of(tok, item, chat=False, completion=text)])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].double()
        ref = torch.softmax(logits[:, pair], dim=-1)[:, 0][ids[0] == tok.convert_tokens_to_ids(SEP)]
        np.testing.assert_allclose(got, ref.tolist(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "options,match",
    [
        (dict(separator="<step>"), "has no token '<step>' for the step separator; name the one"),
        (dict(separator="ab"), "has no token 'ab'"),
        (dict(aggregation="mean"), "aggregation must be one of min, last, prod, got 'mean'"),
        (dict(system="be brief", template="plain"), "a system prompt needs a chat template"),
    ],
)
def test_prm_rejects_bad_options(models, options, match):
    with pytest.raises(VerifierError, match=match):
        load_verifier(models["prm"], "prm", **options)


def test_prm_causal_lm_needs_label_tokens(models):
    with pytest.raises(
        VerifierError, match="is a causal LM: as a PRM it is read at the positive and negative"
    ):
        load_verifier(models["prm-lm"], "prm")


def test_prm_without_the_separator_token(models):
    with pytest.raises(VerifierError, match=f"has no token '{SEP}' for the step separator"):
        load_verifier(models["orm-llama"].parent / "lm", "prm", positive_token="+", negative_token="-")


def test_prm_separator_in_the_problem_names_the_sample(models):
    ver = load_verifier(models["prm"], "prm")
    with pytest.raises(VerifierError, match=f"sample bad: 1 steps but the separator '{SEP}' appears 2 times"):
        ver.score([Item("a", "b", "ok"), Item(f"x{SEP}y", "z", "bad")])


# --------------------------------------------------------------------------------------------- likelihood


@pytest.mark.parametrize("name", ["lm", "lm-gpt2"])
def test_likelihood_is_the_mean_completion_log_probability(models, name):
    items = random_items(3)
    ver = load_verifier(models[name], "likelihood", max_rows=4)
    result = ver.score(items)
    model = AutoModelForCausalLM.from_pretrained(models[name]).eval()
    tok = ver.tokenizer
    ref = []
    for item in items:
        context, completion = (
            tok(item.prompt)["input_ids"],
            tok(item.completion, add_special_tokens=False)["input_ids"],
        )
        ids = context + completion
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
        terms = [float(logp[t - 1, ids[t]]) for t in range(len(context), len(ids))]
        ref.append(sum(terms) / len(terms))
    np.testing.assert_allclose(result.scores, ref, rtol=RTOL, atol=ATOL)
    assert np.all(result.scores <= 0) and result.identity["vote_transform"] == "exp"


def test_likelihood_refuses_an_empty_completion(models):
    ver = load_verifier(models["lm"], "likelihood")
    with pytest.raises(VerifierError, match="sample p3#1: the completion is empty"):
        ver.score([Item("12", "3", "p3#0"), Item("12", "", "p3#1")])


# -------------------------------------------------------------------------------------------- bad inputs


def test_not_a_sequence_classifier_names_the_architecture(models):
    with pytest.raises(
        VerifierError,
        match=r"lm is not a sequence classifier: config.architectures is \['LlamaForCausalLM'\]; "
        r"expected a \*ForSequenceClassification",
    ):
        load_verifier(models["lm"], "orm")
    with pytest.raises(VerifierError, match=r"is not a causal LM: .*LlamaForSequenceClassification"):
        load_verifier(models["orm-llama"], "likelihood")


def test_config_without_architectures(models, tmp_path):
    shutil.copytree(models["orm-llama"], tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["architectures"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(VerifierError, match="config.json has no 'architectures', so its head is unknown"):
        load_verifier(tmp_path / "m", "orm")


def test_bin_only_weights_are_refused(models, tmp_path):
    target = tmp_path / "bin"
    target.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(models["orm-llama"] / name, target / name)
    model = AutoModelForSequenceClassification.from_pretrained(models["orm-llama"])
    torch.save(model.state_dict(), target / "pytorch_model.bin")
    before = sorted(p.name for p in target.iterdir())
    with pytest.raises(
        CheckpointError, match="contains no safetensors weights .*pytorch_model.bin: wiseft reads"
    ):
        load_verifier(target, "orm")
    assert sorted(p.name for p in target.iterdir()) == before


def test_remote_code_needs_consent(models, tmp_path):
    shutil.copytree(models["prm"], tmp_path / "qprm")
    cfg = json.loads((tmp_path / "qprm" / "config.json").read_text())
    cfg["architectures"] = ["Qwen2ForProcessRewardModel"]
    cfg["auto_map"] = {"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}
    (tmp_path / "qprm" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        VerifierError, match="Qwen2ForProcessRewardModel is not part of transformers .* trust_remote_code"
    ):
        load_verifier(tmp_path / "qprm", "prm")
    assert not (tmp_path / "qprm" / "modeling_qwen2_rm.py").exists()


def test_nan_score_names_the_sample(models):
    ver = load_verifier(models["orm-llama"], "orm")
    with torch.no_grad():
        ver.model.score.weight.fill_(float("nan"))
    items = [Item("1", "2", "short"), Item("1+2+3", "456", "long")]
    with pytest.raises(VerifierError, match="gave nan as the score of sample long"):
        ver.score(items)  # the longest sample runs first


def test_nan_step_score_names_the_sample(models):
    ver = load_verifier(models["prm"], "prm")
    with torch.no_grad():
        ver.model.score.weight.fill_(float("nan"))
    with pytest.raises(VerifierError, match="gave nan as a step score of sample p1#0"):
        ver.score([Item("1", "2", "p1#0")])


@pytest.mark.parametrize(
    "kind,options,match",
    [
        ("rm", {}, "verifier kind must be one of orm, prm, likelihood, got 'rm'"),
        ("orm", {"aggregation": "min"}, "unknown option aggregation for a 'orm' verifier"),
        ("orm", {"template": "chat"}, "the tokenizer has no chat template; use template 'plain' or 'auto'"),
        ("orm", {"template": "fancy"}, "template must be one of auto, chat, plain"),
        ("orm", {"device": "cuda:7"}, "CUDA is not available"),
    ],
)
def test_bad_kind_and_options(models, kind, options, match):
    if "device" in options and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(VerifierError, match=match):
        load_verifier(models["orm-llama"], kind, **options)


def test_sample_over_the_token_limit_names_it(models):
    ver = load_verifier(models["orm-llama"], "orm", max_tokens=8)
    with pytest.raises(VerifierError, match="sample #1 is 9 tokens, over the verifier's limit of 8"):
        ver.score([Item("1", "2"), Item("1234", "56789")])


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_verifier(tmp_path / "nothing", "orm")


# ----------------------------------------------------------------------------------------------- batching


def test_plan_sorts_budgets_and_restores_order(models):
    ver = load_verifier(models["orm-llama"], "orm")
    lengths = [40, 30, 30, 10, 5, 5, 1]
    ver.max_rows = 2
    assert ver.plan(lengths) == [[0, 1], [2, 3], [4, 5], [6]]
    ver.max_rows, ver.budget_bytes = None, 4 * ver.row_bytes(40)  # a quarter of it per batch: one row of 40
    assert ver.plan(lengths)[0] == [0]
    ver.budget_bytes = 1  # even a row over the budget runs, alone
    assert ver.plan(lengths) == [[j] for j in range(len(lengths))]
    ver.budget_bytes, ver.max_batch_tokens = 1 << 30, 60
    assert ver.plan(lengths) == [[0], [1, 2], [3, 4, 5, 6]]
    items = random_items(4)
    ver.max_batch_tokens = None
    a = ver.score(items).scores
    b = ver.score(items[::-1]).scores[::-1]
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_scores_match_cpu(models):
    items = random_items(5)
    cpu = load_verifier(models["orm-llama"], "orm", device="cpu").score(items).scores
    gpu = load_verifier(models["orm-llama"], "orm", device="cuda", dtype=torch.float32).score(items).scores
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-3)


def test_identical_pairs_are_scored_once(models):
    ver = load_verifier(models["orm-llama"], "orm")
    items = random_items(6, count=4)
    repeated = items + [Item(it.prompt, it.completion, f"copy-{it.id}") for it in items[:3]] + items[:1]
    rows = []
    real = ver._score_batch
    ver._score_batch = lambda ids, mask, pos, batch: rows.append(len(batch)) or real(ids, mask, pos, batch)
    seen = []
    result = ver.score(repeated, progress=lambda done, total: seen.append((done, total)))
    assert sum(rows) == 4 and seen[-1] == (8, 8)
    np.testing.assert_array_equal(result.scores[4:7], result.scores[:3])
    assert result.scores[7] == result.scores[0]


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_side_by_side_batches_give_the_same_scores(models, workers):
    items = random_items(7, count=30)
    ver = load_verifier(models["orm-qwen2-chat"], "orm", max_rows=4)
    ref = ver.score(items).scores
    ver.workers = workers
    seen = []
    got = ver.score(items, progress=lambda done, total: seen.append(done))
    np.testing.assert_allclose(got.scores, ref, rtol=RTOL, atol=ATOL)
    assert sorted(seen) == seen and seen[-1] == 30 and len(seen) == 8
    assert ver.cpu_workers() == workers


def test_in_memory_verifier_identity_hashes_its_weights(models):
    from transformers import AutoTokenizer

    from wiseft.verify import OutcomeRewardModel

    model = AutoModelForSequenceClassification.from_pretrained(models["orm-llama"]).eval()
    tok = AutoTokenizer.from_pretrained(models["orm-llama"])
    a = OutcomeRewardModel(model, tok).identity
    assert a["path"] is None and len(a["sha256"]["weights"]) == 64
    other = AutoModelForSequenceClassification.from_pretrained(models["orm-2labels"]).eval()
    assert OutcomeRewardModel(other, tok).identity["id"] != a["id"]
    assert OutcomeRewardModel(model, tok).identity["id"] == a["id"]

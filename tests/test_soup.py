"""wiseft soup: the greedy recipe against a hand-computed table, through the in-memory evaluation path;
the output bit-identical to `wiseft merge --method linear`; resume after an interruption; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support.sampling import tiny_model_dir
from support.soup import EXPECTED, TABLE, SoupOracle

from wiseft.errors import ConfigError
from wiseft.evaluate.greedy import Score, greedy_order, greedy_soup
from wiseft.evaluate.soup import default_store, run_soup, soup_spec
from wiseft.evaluate.soup_config import SoupConfig
from wiseft.store import SampleStore
from wiseft.tasks import get_task
from wiseft.tasks.split import split_problems

LIMIT = 10


def _scripted(table):
    """A scorer from a table of pass@1 × 10 by soup, recording the soups it was asked for."""

    def score(soup):
        score.asked.append(soup)
        return Score(table[soup] / 10)

    score.asked = []
    return score


def _steps(trace):
    return [
        (s.candidate, s.soup, round(s.score.value, 9), round(s.before.value, 9), s.kept) for s in trace.steps
    ]


def test_greedy_soup_follows_the_hand_computed_table():
    score = _scripted(TABLE)
    trace = greedy_soup(4, score)
    assert trace.order == EXPECTED["order"]
    assert _steps(trace) == EXPECTED["steps"]
    assert trace.kept == EXPECTED["kept"] and trace.final.value == pytest.approx(EXPECTED["final"])
    assert score.asked == [(0,), (1,), (2,), (3,), (1, 2), (0, 1), (0, 1, 3)]


@pytest.mark.parametrize(
    "table, order, kept",
    [
        ({(0,): 5, (1,): 5, (0, 1): 5}, (0, 1), (0, 1)),  # ties everywhere: the order given, all kept
        ({(0,): 3, (1,): 5, (0, 1): 4}, (1, 0), (1,)),  # the soup is worse than the best alone
        ({(0,): 3, (1,): 5, (0, 1): 9}, (1, 0), (0, 1)),
        ({(0,): 9, (1,): 1, (2,): 5, (0, 2): 8, (0, 1): 9}, (0, 2, 1), (0, 1)),  # a worse step is skipped
    ],
)
def test_greedy_order_and_tie_rule(table, order, kept):
    trace = greedy_soup(len([s for s in table if len(s) == 1]), _scripted(table))
    assert (trace.order, trace.kept) == (order, kept)


def test_greedy_order_is_stable_on_ties():
    assert greedy_order([Score(0.5), Score(0.7), Score(0.5), Score(0.7)]) == (1, 3, 0, 2)


# ------------------------------------------------------------------------------ the real evaluation path


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    root = tmp_path_factory.mktemp("soup-candidates")
    return tuple(
        str(tiny_model_dir(root, name, seed=s)) for name, s in zip("ABCD", (11, 12, 13, 14), strict=True)
    )


def _cfg(candidates, **kw):
    base = dict(candidates=candidates, task="toy", split="sft", limit=LIMIT, n=2, k=(1, 2), max_new_tokens=16,
                seed=3, threads=1, chunk=5, n_boot=50, device="cpu")  # fmt: skip
    base.update(kw)
    return SoupConfig(**base)


def _ranked():
    return [p.question for p in get_task("toy", split="sft").problems[:LIMIT]]


def _factory(candidates, made, table=TABLE, ranked=None, **kw):
    def factory(model, tokenizer):
        made.append(SoupOracle(model, candidates, table, ranked or _ranked(), **kw))
        return made[-1]

    return factory


@pytest.fixture(scope="module")
def souped(candidates, tmp_path_factory):
    """One finished soup run on the scripted metric: (its result, the output directory, the oracle)."""
    out = tmp_path_factory.mktemp("souped") / "soup"
    made = []
    result = run_soup(_cfg(candidates), out, sampler_factory=_factory(candidates, made))
    return result, out, made[0]


def test_soup_through_the_session_follows_the_table(souped):
    result, _, oracle = souped
    trace = result.trace
    assert trace.order == EXPECTED["order"] and trace.kept == EXPECTED["kept"]
    assert _steps(trace) == EXPECTED["steps"]
    # each soup was materialised in the model as the average of exactly its candidates, two chunks each
    assert oracle.soups == [s for s in TABLE for _ in range(2)]
    assert [v.name for v in result.variants] == ["A", "B", "C", "D", "soup(B+C)", "soup(A+B)", "soup(A+B+D)"]
    for score in (*trace.scores, *(s.score for s in trace.steps)):
        assert score.lo is not None and score.lo <= score.value <= score.hi


def test_soup_output_records_order_scores_and_kept(souped, candidates):
    _, out, _ = souped
    soup = json.loads((out / "wiseft.json").read_text())["soup"]
    a, b, c, d = candidates
    assert soup["method"] == "greedy_soup" and soup["metric"] == "pass@1"
    assert soup["order"] == [b, c, a, d] and soup["kept"] == [a, b, d]
    assert [x["kept"] for x in soup["candidates"]] == [True, True, False, True]
    assert [x["rank"] for x in soup["candidates"]] == [3, 1, 2, 4]
    assert [x["score"]["value"] for x in soup["candidates"]] == pytest.approx([0.4, 0.7, 0.7, 0.2])
    assert [(s["added"], s["kept"]) for s in soup["steps"]] == [(c, False), (a, True), (d, True)]
    assert soup["final"]["value"] == pytest.approx(0.8)
    assert soup["weights"] == [1 / 3] * 3
    val = soup["validation"]
    assert (val["split"], val["in_sample"], val["n_problems"], val["store_task"]) == (
        "sft",
        False,
        LIMIT,
        "toy/sft",
    )
    assert val["disjoint_from_test"].startswith("checked: none of the 10 sft problems")
    assert "tie keeps it" in soup["tie_rule"]
    assert soup["store"] == str(default_store(out))


def test_soup_output_is_wiseft_merge_linear_bit_for_bit(souped, candidates, cli, tmp_path):
    _, out, _ = souped
    a, b, _, d = candidates
    ref = tmp_path / "ref"
    code, err = cli(
        ["merge", a, b, d, "--method", "linear", "--weights", ",".join([repr(1 / 3)] * 3), "-o", ref]
    )
    assert code == 0, err
    ours = sorted(p.name for p in out.iterdir())
    assert ours == sorted(p.name for p in ref.iterdir())
    for name in ours:
        if name != "wiseft.json":
            assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    provenance = json.loads((out / "wiseft.json").read_text())
    del provenance["soup"]
    assert provenance == json.loads((ref / "wiseft.json").read_text())
    # `--method linear` without weights (the plain average) gives the same tensors
    plain = tmp_path / "plain"
    assert cli(["merge", a, b, d, "--method", "linear", "-o", plain])[0] == 0
    ours, theirs = load_file(str(out / "model.safetensors")), load_file(str(plain / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k].view(torch.int32), theirs[k].view(torch.int32)) for k in ours)


def test_store_keys_each_soup_by_its_recipe(souped, candidates):
    _, out, _ = souped
    with SampleStore(default_store(out), writer=False) as store:
        rows = {v.name: v for v in store.variants()}
    a, b, _, d = candidates
    row = rows["soup(A+B+D)"]
    assert row.task == "toy/sft"
    assert row.recipe["method"] == "linear" and row.recipe["models"] == [a, b, d]
    assert row.recipe["weights"] == [1 / 3] * 3 and sorted(row.model_hashes) == sorted([a, b, d])
    assert rows["A"].recipe["models"] == [a] and rows["A"].recipe["weights"] == [1.0]
    assert len({r.key for r in rows.values()}) == len(rows)


def test_soup_spec_materialises_one_weight_space_for_every_soup(candidates):
    spec = soup_spec(_cfg(candidates), (0, 2), "ABCD")
    assert (
        spec.anchors == candidates
        and spec.mix == (0.5, 0.0, 0.5, 0.0)
        and spec.models == (candidates[0], candidates[2])
    )
    assert spec.name == "soup(A+C)" and spec.recipe["models"] == [candidates[0], candidates[2]]


def test_killed_soup_resumes_without_resampling(souped, candidates, tmp_path):
    """Interrupt the run on the 10th sampler call (the second chunk of the fifth soup): nothing is
    written but the store; the rerun samples only the chunks that were not committed and ends the same."""
    full, _, _ = souped
    out = tmp_path / "soup"
    made = []
    with pytest.raises(RuntimeError, match="interrupted"):
        run_soup(_cfg(candidates), out, sampler_factory=_factory(candidates, made, fail_at=9))
    assert not out.exists() and default_store(out).is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    again = []
    result = run_soup(_cfg(candidates), out, sampler_factory=_factory(candidates, again))
    ranked = _ranked()
    assert again[0].soups == [(1, 2), (0, 1), (0, 1), (0, 1, 3), (0, 1, 3)]
    assert again[0].prompts == ranked[5:] + ranked + ranked
    assert (result.trace.order, result.trace.kept, _steps(result.trace)) == (
        full.trace.order, full.trace.kept, _steps(full.trace),
    )  # fmt: skip
    assert out.is_dir()


# -------------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def other_arch(tmp_path_factory):
    root = tmp_path_factory.mktemp("soup-other")
    return str(tiny_model_dir(root, "wide", seed=5, hidden=48)), str(
        tiny_model_dir(root, "gpt2", arch="gpt2")
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["{A}", "--split", "sft"], "wiseft soup needs at least 2 candidate checkpoints, got 1"),
        (["{A}", "{B}", "--split", "sft", "--metric", "mean@1"], "--metric 'mean@1' must be pass@k, maj@k"),
        (["{A}", "{B}", "--split", "sft", "--metric", "pass@4"], "with k among --k [1, 2]"),
        (["{A}", "{W}", "--split", "sft"], "tensor lm_head.weight has shape [64, 32] in"),
        (["{A}", "{B}", "{G}", "--split", "sft"], "GPT2LMHeadModel"),
        (["{A}", "{B}"], "--split validation: toy task: split must be one of test, sft"),
        (["{A}", "{B}", "--split", "test"], "--split test is the test set"),
        (
            ["{A}", "{B}", "--in-sample", "--split", "sft"],
            "--in-sample chooses the soup on the test problems",
        ),
        (["{A}", "{B}", "--split", "sft", "--temperature", "0.5,1"], "samples at one temperature"),
        (["{A}", "{B}", "--val-fraction", "1"], "--val-fraction must lie strictly between 0 and 1"),
        (["{A}", "{B}", "--val-fraction", "0.5", "--split", "sft"], "drop --split and --in-sample"),
        (["{A}", "{B}", "--split", "sft", "--dtype", "int8"], "--dtype 'int8' is not a float dtype"),
        (["{A}", "{B}", "--split", "sft", "--store", "{out}/s.db"], "lies inside -o"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(candidates, other_arch, cli, tmp_path, args, message):
    out = tmp_path / "out"
    fill = {"{A}": candidates[0], "{B}": candidates[1], "{W}": other_arch[0], "{G}": other_arch[1]}
    argv = [fill.get(a, a.replace("{out}", str(out))) for a in args]
    code, err = cli(["soup", *argv, "--task", "toy", "--n", "2", "--limit", "2", "-o", out])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("wiseft soup: error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_bad_config_values():
    with pytest.raises(ConfigError, match="at least 2 candidate"):
        SoupConfig(candidates=("a",), task="toy", split="sft", n=2)
    with pytest.raises(ConfigError, match="best@k needs reward-model scores"):
        SoupConfig(candidates=("a", "b"), task="toy", n=2, metric="best@1")
    with pytest.raises(ConfigError, match="drop --ray"):
        SoupConfig(candidates=("a", "b"), task="toy", n=2, ray={})


def test_in_sample_is_recorded(candidates, tmp_path):
    made = []
    table = {(0,): 1, (1,): 2, (0, 1): 2}
    test = [p.question for p in get_task("toy").problems[:LIMIT]]
    factory = _factory(candidates[:2], made, table, test)
    result = run_soup(
        _cfg(candidates[:2], split=None, in_sample=True), tmp_path / "s", sampler_factory=factory
    )
    assert result.trace.kept == (0, 1)
    val = json.loads((tmp_path / "s" / "wiseft.json").read_text())["soup"]["validation"]
    assert val["in_sample"] and val["split"] == "test" and val["store_task"] == "toy"
    assert val["disjoint_from_test"].startswith("no: in-sample")


def test_val_fraction_chooses_on_a_share_of_the_test_split_and_records_the_rest(candidates, tmp_path):
    test = get_task("toy").problems
    validation, held_out = split_problems(test, 0.05, 3)
    made = []
    factory = _factory(candidates[:2], made, {(0,): 1, (1,): 2, (0, 1): 1}, [p.question for p in validation])
    result = run_soup(
        _cfg(candidates[:2], split=None, val_fraction=0.05), tmp_path / "s", sampler_factory=factory
    )
    assert result.trace.kept == (1,) and made[0].prompts[:LIMIT] == [p.question for p in validation[:LIMIT]]
    val = result.record["validation"]
    assert (val["split"], val["in_sample"], val["val_fraction"], val["store_task"]) == (
        "test",
        False,
        0.05,
        "toy",
    )
    assert val["held_out"] == [p.id for p in held_out] and len(held_out) == len(test) - len(validation)
    assert len(validation) == round(0.05 * len(test)) > 0  # 35 of the toy task's 700 test problems
    assert val["disjoint_from_test"].startswith("by construction")


def test_cli_soup_on_the_toy_task_writes_the_soup(candidates, cli, tmp_path):
    """The real sampler on random tiny models: every soup scores 0, so every tie keeps its candidate."""
    out = tmp_path / "soup"
    code, err = cli(["soup", *candidates[:3], "--task", "toy", "--split", "sft", "--limit", "3", "--n", "2",
                     "--max-new-tokens", "4", "--threads", "1", "--n-boot", "20", "-o", out])  # fmt: skip
    assert code == 0, err
    soup = json.loads((out / "wiseft.json").read_text())["soup"]
    assert soup["kept"] == list(candidates[:3]) and soup["order"] == list(candidates[:3])
    assert "kept 3 of 3 candidates" in cli.out
    assert Path(str(out) + ".samples.db").is_file()


def test_merge_lists_greedy_soup_and_points_to_the_command(candidates, cli, tmp_path):
    code, _ = cli(["merge", "--list"])
    assert (
        code == 0
        and "greedy_soup" in cli.out
        and "needs an evaluation" in cli.out
        and "wiseft soup" in cli.out
    )
    code, err = cli(["merge", *candidates[:2], "--method", "greedy_soup", "-o", tmp_path / "m"])
    assert code == 2 and err.count("\n") == 1
    assert "merge method greedy_soup needs an evaluation, so it is its own command: wiseft soup" in err
    assert list(tmp_path.iterdir()) == []


def test_the_soup_evaluated_in_memory_is_the_soup_written(souped, candidates):
    """The weights the session sampled the final soup with are the output's tensors, bit for bit."""
    from wiseft.checkpoints import load_causal_lm
    from wiseft.evaluate.engine import AnchorWeights

    result, out, _ = souped
    model = load_causal_lm(candidates[0], torch.float32)
    AnchorWeights(model, loaded_from=candidates[0]).materialise(
        soup_spec(_cfg(candidates), result.trace.kept, "ABCD")
    )
    written = load_file(str(out / "model.safetensors"))
    params = dict(model.named_parameters())
    assert set(params) <= set(written)
    for name, param in params.items():
        assert torch.equal(param.detach().view(torch.int32), written[name].view(torch.int32)), name

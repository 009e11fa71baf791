"""`wiseft verify` and its consumers: scores written into a store (or a scored JSONL) equal the verifier's
own scores of the same texts; reruns skip what is scored; bad inputs write nothing; `wiseft score`,
`store export`, the harness export and the report read one verifier's scores (never a mix of two).

Tolerance: the store is scored in chunks, the reference in one call, so batches differ (float32 rounding
of padded matrix products, tests/test_verify.py); ATOL = RTOL = 1e-5 as there.
"""

import json
import sqlite3

import numpy as np
import pytest
import torch
from support.verifying import make_store
from transformers import AutoModelForSequenceClassification

from wiseft.errors import MetricError, StoreError, VerifierError
from wiseft.evaluate.verifying import verify_store
from wiseft.harness import export_store
from wiseft.metrics import best_at_k, summarize, weighted_maj_at_k
from wiseft.records import choose_scores
from wiseft.report.data import metric_label
from wiseft.report.from_store import results_from_store
from wiseft.report.plots import headline_metrics
from wiseft.store import SampleStore
from wiseft.testing import TINY_CHAT_TEMPLATE, save_tiny_model, save_tiny_verifier
from wiseft.verify import Item, load_verifier

ATOL = RTOL = 1e-5
SEP = "<extra_0>"


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    root = tmp_path_factory.mktemp("verifiers")
    nan = save_tiny_verifier(root / "orm-nan", "sequence", "gpt2", seed=5)
    model = AutoModelForSequenceClassification.from_pretrained(nan)
    with torch.no_grad():
        model.score.weight.fill_(float("nan"))
    model.save_pretrained(nan)
    return {
        "orm": save_tiny_verifier(root / "orm", "sequence", "gpt2"),
        "orm-chat": save_tiny_verifier(
            root / "orm-chat", "sequence", "qwen2", chat_template=TINY_CHAT_TEMPLATE
        ),
        "prm": save_tiny_verifier(
            root / "prm", "token", "qwen2", extra_tokens=(SEP,), chat_template=TINY_CHAT_TEMPLATE
        ),
        "lm": save_tiny_model(root / "lm", "llama"),
        "orm-nan": nan,
    }


def stored(path, verifier_id=None) -> dict:
    """(variant name, problem, sample) → score [, verifier id] of the store's `scores` table."""
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT v.name, c.problem_id, c.sample_idx, c.score, c.verifier_id FROM scores c JOIN variants v "
        "ON v.id=c.variant_id ORDER BY v.name, c.problem_id, c.sample_idx"
    ).fetchall()
    db.close()
    return {r[:3]: r[3] for r in rows if verifier_id is None or r[4] == verifier_id}


def dump(path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def reference(path, verifier, text_field: str) -> dict:
    """The verifier's scores of every stored sample, in one call, reading `text_field` as the problem."""
    keys, items = [], []
    with SampleStore(path, writer=False) as store:
        problems = {p.problem_id: p for p in store.problems("toy")}
        for v in store.variants():
            for r in store.records(v):
                p = problems[r["problem_id"]]
                text = p.prompt if text_field == "prompt" else p.meta["question"]
                keys.append((v.name, r["problem_id"], r["sample_idx"]))
                items.append(Item(text, r["completion"]))
    return dict(zip(keys, verifier.score(items).scores.tolist(), strict=True))


def assert_scores(got: dict, ref: dict) -> None:
    assert list(got) == sorted(ref)
    np.testing.assert_allclose([got[k] for k in got], [ref[k] for k in got], rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------------------ scoring


@pytest.mark.parametrize(
    "name,kind,flags,options,text",
    [
        ("orm", "orm", [], {}, "prompt"),  # plain prompt + completion (the toy verifier's way)
        ("orm-chat", "orm", [], {}, "question"),  # chat template: the bare question as the user turn
        ("prm", "prm", ["--aggregation", "last", "--separator", SEP], {"aggregation": "last"}, "question"),
        ("lm", "likelihood", [], {}, "prompt"),
        ("orm-chat", "orm", ["--input", "prompt"], {}, "prompt"),
    ],
)
def test_store_scores_equal_the_verifiers_own(vm, tmp_path, cli, name, kind, flags, options, text):
    path = make_store(tmp_path / "s.db")
    code, err = cli(["verify", path, "--verifier", vm[name], "--kind", kind, "--chunk", "7", *flags])
    assert code == 0, err
    ver = load_verifier(vm[name], kind, **options)
    ident = ver.identity
    got = stored(path)
    assert_scores(got, reference(path, ver, text))
    with SampleStore(path, writer=False) as store:
        (vid,) = store.scored_by()
        row = store.verifier(vid)
    assert (
        row.kind == kind and row.vote_transform == ident["vote_transform"] and row.identity["input"] == text
    )
    if "--input" in flags:  # a reading other than the default is another verifier id
        assert vid != ident["id"] and row.identity["verifier_id"] == ident["id"]
    else:
        assert vid == ident["id"] and row.identity["sha256"] == ident["sha256"]
    assert vid in cli.out and "samples/s" in cli.out and "scored now" in cli.out


def test_a_rerun_scores_nothing_again_and_verifiers_live_side_by_side(vm, tmp_path, cli):
    path = make_store(tmp_path / "s.db")
    assert cli(["verify", path, "--verifier", vm["orm"], "--kind", "orm", "--variant", "a"])[0] == 0
    first = stored(path)
    assert {k[0] for k in first} == {"a"}
    assert cli(["verify", path, "--verifier", vm["orm"], "--kind", "orm"])[0] == 0
    second = stored(path)
    assert {k: second[k] for k in first} == first  # kept as written, bit for bit
    assert len(second) == 2 * len(first)
    assert cli(["verify", path, "--verifier", vm["lm"], "--kind", "likelihood"])[0] == 0
    with SampleStore(path, writer=False) as store:
        counts = store.scored_by()
    assert sorted(counts.values()) == [40, 40]
    assert cli(["verify", path, "--verifier", vm["orm"], "--kind", "orm"])[0] == 0
    assert "│ a       │      20 │          0 │            20 │" in cli.out.replace("━", "")


@pytest.mark.parametrize(
    "model,kind,flags,message",
    [
        ("lm", "orm", [], "is not a sequence classifier: config.architectures is ['LlamaForCausalLM']"),
        ("prm", "prm", ["--separator", "<step>"], "has no token '<step>' for the step separator"),
        ("orm", "orm", ["--variant", "zzz"], "has no variant 'zzz'; it has: a, b, empty"),
        ("orm", "orm", ["--variant", "empty"], "has no samples for variant 'empty'"),
        ("orm-nan", "orm", [], "gave nan as the score of sample "),
        ("orm", "orm", ["--aggregation", "min"], "--aggregation applies to --kind prm, not orm"),
        (
            "lm",
            "likelihood",
            ["--template", "chat"],
            "--template applies to --kind orm or prm, not likelihood",
        ),
        ("orm", "orm", ["-o", "x.jsonl"], "-o/--output does not apply to a sample store"),
        ("orm", "orm", ["--input", "question", "--variant", "b"], None),  # checked below: no questions
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(vm, tmp_path, cli, model, kind, flags, message):
    path = make_store(tmp_path / "s.db")
    with SampleStore(path) as store:
        store.variant("empty", "checkpoint", "toy", {"model": "empty"}, {"n": 4})
        if message is None:  # a store whose problems have prompts but no questions
            store.db.execute("UPDATE problems SET meta=NULL")
            message = "5 problem(s) have no meta.question, the problem text this verifier reads"
    before = dump(path)
    code, err = cli(["verify", path, "--verifier", vm[model], "--kind", kind, *flags])
    last = err.strip().splitlines()[-1]  # before it, progress lines at most (stderr is not a terminal)
    assert code == 2 and last.startswith("wiseft verify: error: ") and message in last, err
    assert dump(path) == before


def test_a_verifier_failing_mid_run_leaves_nothing_of_its_run(vm, tmp_path):
    path = make_store(tmp_path / "s.db")
    ver = load_verifier(vm["orm"], "orm", max_rows=2, workers=1)  # one batch at a time: calls in order
    verify_store(path, ver, variants=["a"], chunk=4)
    before = dump(path)
    calls = {"n": 0}
    real = ver._score_batch

    def flaky(*args):
        calls["n"] += 1
        out = real(*args)
        return [float("nan")] * len(out) if calls["n"] == 5 else out

    ver._score_batch = flaky
    with pytest.raises(VerifierError, match=r"gave nan as the score of sample b/p\d#\d"):
        verify_store(path, ver, chunk=4)  # b's first two chunks are committed, then the third fails
    assert calls["n"] == 5
    assert dump(path) == before


# ------------------------------------------------------------------------------------------ score


def _metrics(tmp_path, cli, path, *flags):
    out = tmp_path / f"m{len(list(tmp_path.glob('m*.json')))}.json"
    code, err = cli(["score", path, "--k", "1,2,4", "--n-boot", "50", "-o", out, *flags])
    return code, err, (json.loads(out.read_text()) if code == 0 else None)


def test_score_reads_one_verifier_named_when_there_are_two(vm, tmp_path, cli):
    path = make_store(tmp_path / "s.db")
    code, _, plain = _metrics(tmp_path, cli, path)
    assert code == 0 and "best@1" not in plain["variants"][0]["summary"]["metrics"]
    for name, kind in (("orm", "orm"), ("lm", "likelihood")):
        assert cli(["verify", path, "--verifier", vm[name], "--kind", kind])[0] == 0
    orm, lm = (load_verifier(vm[n], k).identity["id"] for n, k in (("orm", "orm"), ("lm", "likelihood")))
    code, err, _ = _metrics(tmp_path, cli, path)
    assert code == 2 and "holds scores of 2 verifiers" in err and orm in err and lm in err
    code, err, _ = _metrics(tmp_path, cli, path, "--verifier", "0123456789abcdef")
    assert code == 2 and "no scores of verifier '0123456789abcdef'" in err
    for vid, transform in ((orm, "sigmoid"), (lm, "exp")):
        code, err, body = _metrics(tmp_path, cli, path, "--verifier", vid)
        assert code == 0, err
        assert f"scores of verifier {vid}; votes weighted by {transform}(score)" in cli.out
        with SampleStore(path, writer=False) as store:
            for entry, v in zip(body["variants"], store.variants(), strict=True):
                summary = entry["summary"]
                assert summary["verifier"] == {
                    "id": vid,
                    "vote_transform": transform,
                    "scored": 20,
                    "samples": 20,
                }
                problems = store.problem_samples(v, verifier=vid)
                for k in (1, 2, 4):
                    best = np.mean([best_at_k(p.scores, p.correct, k) for p in problems])
                    wmaj = np.mean([weighted_maj_at_k(p.classes, p.correct, p.scores, k, transform=transform)
                                    for p in problems])  # fmt: skip
                    assert summary["metrics"][f"best@{k}"]["value"] == pytest.approx(best, abs=1e-12)
                    assert summary["metrics"][f"wmaj@{k}"]["value"] == pytest.approx(wmaj, abs=1e-12)
                # Pass@k and maj@k are what they were without scores
                for key, value in plain["variants"][0 if v.name == "a" else 1]["summary"]["metrics"].items():
                    assert summary["metrics"][key] == value
    assert "wmaj@4" in cli.out


def test_the_evaluations_own_summaries_ignore_verifier_scores(vm, tmp_path, cli):
    path = make_store(tmp_path / "s.db")
    with SampleStore(path, writer=False) as store:
        before = [
            summarize(store.problem_samples(v, ["p0", "p1", "p2"], 4), [1, 4]) for v in store.variants()
        ]
    assert cli(["verify", path, "--verifier", vm["orm"], "--kind", "orm"])[0] == 0
    with SampleStore(path, writer=False) as store:
        after = [store.problem_samples(v, ["p0", "p1", "p2"], 4) for v in store.variants()]
        assert all(p.scores is None for ps in after for p in ps)
        assert [summarize(ps, [1, 4]) for ps in after] == before


def test_partly_scored_variants_say_so(vm, tmp_path, cli):
    path = make_store(tmp_path / "s.db")
    assert cli(["verify", path, "--verifier", vm["orm"], "--kind", "orm", "--variant", "a"])[0] == 0
    db = sqlite3.connect(path)
    db.execute("DELETE FROM scores WHERE problem_id='p3'")
    db.commit()
    db.close()
    code, err, body = _metrics(tmp_path, cli, path)
    assert code == 0, err
    a, b = (v["summary"] for v in body["variants"])
    assert a["verifier"]["scored"] == 16 and "best@1" not in a["metrics"]
    assert "verifier" not in b and "best@1" not in b["metrics"]
    assert "variant a: 16 of 20 samples are scored" in cli.out


@pytest.mark.parametrize(
    "scores,verifier,expect",
    [
        ([(1.0, "x", "sigmoid"), (2.0, "x", "sigmoid")], None, ("x", "sigmoid", [1.0, 2.0])),
        ([(1.0, None, None), (2.0, None, None)], None, (None, None, [1.0, 2.0])),
        ([(1.0, "x", "exp"), (2.0, "y", "identity")], "y", ("y", "identity", [None, 2.0])),
        ([(1.0, "x", "exp"), (None, None, None)], None, ("x", "exp", [1.0, None])),
        ([(1.0, "x", "exp"), (2.0, "y", "exp")], None, "hold scores of 2 verifiers (x, y)"),
        ([(1.0, "x", "exp"), (2.0, None, None)], None, "hold scores of 2 verifiers (x, (no verifier named))"),
        ([(1.0, "x", "exp")], "z", "--verifier z: no sample of the records is scored by it"),
        ([(1.0, "x", "exp"), (2.0, "x", "sigmoid")], None, "name 2 vote transforms"),
    ],
)
def test_choose_scores(scores, verifier, expect):
    recs = []
    for i, (score, vid, transform) in enumerate(scores):
        rec = {"problem_id": "p", "sample_idx": i, "completion": "c"}
        rec.update(
            {k: v for k, v in (("score", score), ("verifier", vid), ("vote_transform", transform)) if v}
        )
        recs.append(rec)
    if isinstance(expect, str):
        with pytest.raises(MetricError, match=expect.replace("(", r"\(").replace(")", r"\)")):
            choose_scores(recs, verifier, "the records")
        return
    out, vid, transform = choose_scores(recs, verifier, "the records")
    assert (vid, transform, [r.get("score") for r in out]) == expect


# ------------------------------------------------------------------------------------------ older stores


def test_an_older_store_is_read_without_scores_and_upgraded_by_verify(vm, tmp_path, cli):
    path = make_store(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.execute("DROP TABLE scores")
    db.execute("DROP TABLE verifiers")
    db.commit()
    db.close()
    tables = lambda: {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}  # noqa: E731
    with SampleStore(path, writer=False) as store:  # read-only: seen without scores, left as it is
        assert store.scored_by() == {} and store.choose_verifier() is None
        assert len(store.records(1, graded=True)) == 20
    assert "scores" not in tables()
    assert _metrics(tmp_path, cli, path)[0] == 0
    assert cli(["verify", path, "--verifier", vm["orm"], "--kind", "orm"])[0] == 0
    assert {"scores", "verifiers"} <= tables() and len(stored(path)) == 40


# ------------------------------------------------------------------------------------------ JSONL


def test_jsonl_in_scored_jsonl_out_and_back_into_a_store(vm, tmp_path, cli):
    path = make_store(tmp_path / "s.db")
    assert cli(["store", "export", path, "-o", tmp_path / "e.jsonl"])[0] == 0
    args = ["verify", tmp_path / "e.jsonl", "--verifier", vm["orm"], "--kind", "orm"]
    assert cli([*args, "--variant", "b", "-o", tmp_path / "b.jsonl"])[0] == 0
    assert cli(args)[0] == 0
    recs = [json.loads(line) for line in (tmp_path / "e.scored.jsonl").read_text().splitlines()]
    vid = load_verifier(vm["orm"], "orm").identity["id"]
    assert all(r["verifier"] == vid and r["vote_transform"] == "sigmoid" for r in recs)
    assert_scores({(r["variant"], r["problem_id"], r["sample_idx"]): r["score"] for r in recs},
                  reference(path, load_verifier(vm["orm"], "orm"), "prompt"))  # fmt: skip
    only_b = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [("score" in r) for r in only_b] == [r["variant"] == "b" for r in only_b]
    code, err = cli(args)
    assert code == 2 and "already exists; choose another -o/--output or pass --force" in err
    code, err = cli([*args, "--force", "--variant", "zzz"])
    assert code == 2 and "has no samples for variant 'zzz'; it holds: a, b" in err
    # graded, so `wiseft score` reads it; then into a new store and out again
    assert (
        _metrics(tmp_path, cli, tmp_path / "e.scored.jsonl")[2]["variants"][0]["summary"]["verifier"]["id"]
        == vid
    )
    assert cli(["store", "import", tmp_path / "n.db", tmp_path / "e.scored.jsonl", "--task", "toy"])[0] == 0
    assert stored(tmp_path / "n.db", vid) == {
        (r["variant"], r["problem_id"], r["sample_idx"]): r["score"] for r in recs
    }
    with SampleStore(tmp_path / "n.db", writer=False) as store:
        row = store.verifier(vid)
        assert row.vote_transform == "sigmoid" and row.identity["imported_from"]
        assert all("score" not in r for v in store.variants() for r in store.records(v))  # not samples.score
    assert cli(["store", "export", tmp_path / "n.db", "-o", tmp_path / "again.jsonl"])[0] == 0
    again = [json.loads(line) for line in (tmp_path / "again.jsonl").read_text().splitlines()]
    keep = ("score", "verifier", "vote_transform")
    assert [{k: r[k] for k in keep} for r in again] == [{k: r[k] for k in keep} for r in recs]


# ------------------------------------------------------------------------------------------ exports, report


def test_store_and_harness_exports_carry_score_and_verifier(vm, tmp_path, cli):
    path = make_store(tmp_path / "s.db")
    with SampleStore(path, writer=False) as store:
        export_store(store, tmp_path / "plain", "lm-eval", date="2025-01-31T12-00-00.123456")
    plain = next((tmp_path / "plain").rglob("samples_*.jsonl")).read_text().splitlines()
    assert "score" not in json.loads(plain[0])["wiseft"]
    for name, kind in (("orm", "orm"), ("lm", "likelihood")):
        assert cli(["verify", path, "--verifier", vm[name], "--kind", kind])[0] == 0
    lm = load_verifier(vm["lm"], "likelihood").identity["id"]
    code, err = cli(["store", "export", path, "-o", tmp_path / "x.jsonl"])
    assert code == 2 and "holds scores of 2 verifiers" in err and not (tmp_path / "x.jsonl").exists()
    assert cli(["store", "export", path, "-o", tmp_path / "x.jsonl", "--verifier", lm])[0] == 0
    recs = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert all(r["verifier"] == lm and r["vote_transform"] == "exp" for r in recs)
    assert [r["score"] for r in recs] == list(stored(path, lm).values())
    code, _ = cli(["store", "export", path, "--format", "lm-eval", "-o", tmp_path / "h", "--verifier", lm])
    assert code == 0
    lines = [
        json.loads(x)
        for f in sorted((tmp_path / "h").rglob("samples_*.jsonl"))
        for x in f.read_text().splitlines()
    ]
    assert all(line["wiseft"]["verifier"] == [lm] * 4 for line in lines)
    assert sum(len(line["wiseft"]["score"]) for line in lines) == 40
    assert cli(["store", "info", path])[0] == 0 and lm in cli.out and "samples scored" in cli.out


def test_report_from_a_store_adds_best_and_weighted_maj_at_k(vm, tmp_path, cli):
    path = make_store(tmp_path / "s.db")
    assert cli(["verify", path, "--verifier", vm["prm"], "--kind", "prm"])[0] == 0
    res = results_from_store(path, n_boot=20)
    summary = res.variants[0].summary
    assert {"best@4", "wmaj@4"} <= set(summary["metrics"]) and summary["vote_transform"] == "identity"
    assert metric_label("wmaj@4") == "wmaj@4"
    from wiseft.report.data import Results

    view = Results(res, "s.db")
    assert headline_metrics(view, [4]) == ["pass@1", "pass@4", "maj@4", "best@4", "wmaj@4"]
    assert view.metric_names(vote_ks=[4])[-2:] == ["best@4", "wmaj@4"]
    assert cli(["verify", path, "--verifier", vm["orm"], "--kind", "orm"])[0] == 0
    two = results_from_store(path, n_boot=20)
    assert "best@4" not in two.variants[0].summary["metrics"]
    assert "holds scores of 2 verifiers" in two.config["verifier_note"]


def test_store_add_scores_refuses_non_finite(tmp_path):
    path = make_store(tmp_path / "s.db")
    with SampleStore(path) as store:
        store.add_verifier({"id": "v1", "kind": "orm", "vote_transform": "sigmoid"})
        with pytest.raises(StoreError, match="score nan of sample 0 of problem 'p0' is not a finite number"):
            store.add_scores(1, "v1", [("p1", 0, 0.5), ("p0", 0, float("nan"))])
        assert store.scored_by() == {}


def test_a_store_in_use_by_another_writer_is_refused_before_the_model_loads(vm, tmp_path, cli):
    path = make_store(tmp_path / "s.db")
    with SampleStore(path):  # another writer holds the store's lock
        code, err = cli(["verify", path, "--verifier", vm["orm"], "--kind", "orm"])
    assert code == 2 and "is in use by another wiseft process" in err
    assert stored(path) == {}

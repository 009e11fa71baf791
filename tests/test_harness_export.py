"""`wiseft store export --format lm-eval|lighteval`: the files those harnesses write, with their names and
fields, read back with the harnesses' own code where it is installed (`make harness-readers`)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wiseft.errors import ConfigError
from wiseft.harness import export_store
from wiseft.harness.common import problem_order, safe_name, unique_dirnames
from wiseft.store import SampleStore

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / ".harness"
DATE = "2025-01-31T12-00-00.123456"
N = 4
# problem id → (prompt, gold, meta, correctness of its 4 samples); p3 came without prompt or gold
PROBLEMS = {
    "test/algebra/1.json": ("Problem: 1+1?\nSolution:", "2", {"subject": "Algebra", "level": 1}, [1, 0, 1, 1]),
    "test/geometry/7.json": ("Problem: area?\nSolution:", "\\frac{1}{2}", {"subject": "Geometry", "level": 4},
                             [0, 0, 0, 0]),
    "test/number/3.json": (None, None, None, [0, 1, 0, 0]),
}  # fmt: skip
VARIANTS = ("a", "mix/b")  # "mix/b" is not a directory name as it stands: lm-eval makes it "mix__b"


def _record(variant: str, pid: str, i: int) -> dict:
    prompt, gold, meta, correct = PROBLEMS[pid]
    ok = bool(correct[i])
    rec = {"problem_id": pid, "sample_idx": i, "completion": f"{variant} says \\boxed{{{i}}}", "n_tokens": 10 + i,
           "finish_reason": "length" if i == 3 else "stop", "variant": variant,
           "answer": None if i == 2 else str(i), "extraction": None if i == 2 else "boxed",
           "verdict": "correct" if ok else ("no_answer" if i == 2 else "incorrect"), "correct": ok,
           "answer_class": -1 if i == 2 else (0 if ok else i), "grader": "math-verify==0.9.0", "reason": None}  # fmt: skip
    rec.update({k: v for k, v in (("prompt", prompt), ("gold", gold), ("meta", meta)) if v is not None})
    return rec


def _records(variants=VARIANTS, graded=True) -> list[dict]:
    recs = [_record(v, pid, i) for v in variants for pid in PROBLEMS for i in range(N)]
    if not graded:
        recs = [{k: x for k, x in r.items() if k not in ("verdict", "correct", "answer_class")} for r in recs]
    return recs


def _import(tmp_path, records, name="s.db") -> Path:
    samples = tmp_path / f"{name}.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    with SampleStore(tmp_path / name) as store:
        store.import_jsonl(samples, "math500")
    return tmp_path / name


@pytest.fixture
def store(tmp_path):
    return _import(tmp_path, _records())


def _export(path, out, fmt, date=DATE, **kw):
    with SampleStore(path, writer=False) as db:
        return export_store(db, out, fmt, date=date, **kw)


def _pass_at_k(n: int, c: int, k: int) -> float:
    """Reference: 1 − C(n−c, k)/C(n, k), in exact integers."""
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------- lm-eval

LM_EVAL_KEYS = ["doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics", "doc_hash",
                "prompt_hash", "target_hash", "math_verify", "pass@1", "pass@2", "pass@4", "wiseft"]  # fmt: skip


def test_lm_eval_files_have_the_harness_names_and_fields(store, tmp_path):
    out = tmp_path / "lm"
    done = _export(store, out, "lm-eval")
    assert _files(out) == [
        f"a/results_{DATE}.json", f"a/samples_math500_{DATE}.jsonl",
        f"mix__b/results_{DATE}.json", f"mix__b/samples_math500_{DATE}.jsonl",
    ]  # fmt: skip
    assert sorted(map(str, done.files)) == sorted(str(out / f) for f in _files(out))
    for variant, folder in zip(VARIANTS, ("a", "mix__b"), strict=True):
        lines = [
            json.loads(x) for x in (out / folder / f"samples_math500_{DATE}.jsonl").read_text().splitlines()
        ]
        assert [x["doc"]["problem_id"] for x in lines] == list(PROBLEMS)  # the order they were recorded in
        for doc_id, (x, (pid, (prompt, gold, meta, correct))) in enumerate(
            zip(lines, PROBLEMS.items(), strict=True)
        ):
            assert list(x) == LM_EVAL_KEYS
            assert x["doc_id"] == doc_id and x["doc"] == {"problem_id": pid, **(meta or {}), "gold": gold}
            assert x["target"] == (gold or "") and x["arguments"]["gen_args_0"]["arg_0"] == (prompt or "")
            assert x["resps"] == [[f"{variant} says \\boxed{{{i}}}" for i in range(N)]]
            assert x["filtered_resps"] == [["0", "1", "[invalid]", "3"]] and x["filter"] == "wiseft-extract"
            assert x["metrics"] == ["math_verify", "pass@1", "pass@2", "pass@4"]
            assert x["math_verify"] == sum(correct) / N
            for k in (1, 2, 4):
                assert x[f"pass@{k}"] == pytest.approx(_pass_at_k(N, sum(correct), k), abs=1e-15)
            assert x["wiseft"]["correct"] == [bool(c) for c in correct]
            assert x["wiseft"]["finish_reason"] == ["stop"] * 3 + ["length"]
        results = json.loads((out / folder / f"results_{DATE}.json").read_text())
        means = [sum(c) / N for *_, c in PROBLEMS.values()]
        assert results["results"]["math500"]["math_verify,wiseft-extract"] == pytest.approx(sum(means) / 3)
        assert results["configs"]["math500"]["repeats"] == N and results["n-shot"] == {"math500": 0}
        assert (
            results["config"]["model_args"]["variant"] == variant
            and results["model_name_sanitized"] == folder
        )


# ------------------------------------------------------------------------------------------- lighteval

DETAIL = f"details_math500|0_{DATE}.parquet"
DOC_FIELDS = ["query", "choices", "gold_index", "instruction", "images", "specific", "unconditioned_query",
              "original_query", "id", "task_name", "fewshot_samples", "sampling_methods", "fewshot_sorting_class",
              "generation_size", "stop_sequences", "use_logits", "num_samples", "generation_grammar"]  # fmt: skip
RESPONSE_FIELDS = ["input", "input_tokens", "text", "output_tokens", "text_post_processed", "reasonings",
                   "logprobs", "argmax_logits_eq_gold", "logits", "unconditioned_logprobs",
                   "truncated_tokens_count", "padded_tokens_count"]  # fmt: skip


def test_lighteval_files_have_the_harness_names_and_fields(store, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the export extra) is not installed")
    out = tmp_path / "le"
    _export(store, out, "lighteval", ks=(1, 4))
    assert _files(out) == [
        f"details/a/{DATE}/{DETAIL}", f"details/mix__b/{DATE}/{DETAIL}",
        f"results/a/results_{DATE}.json", f"results/mix__b/results_{DATE}.json",
    ]  # fmt: skip
    for variant, folder in zip(VARIANTS, ("a", "mix__b"), strict=True):
        table = pq.read_table(out / "details" / folder / DATE / DETAIL)
        assert table.column_names == ["doc", "metric", "model_response"]
        rows = table.to_pylist()
        for doc_id, (row, (pid, (prompt, gold, meta, correct))) in enumerate(
            zip(rows, PROBLEMS.items(), strict=True)
        ):
            doc, response = row["doc"], row["model_response"]
            assert list(doc) == DOC_FIELDS and list(response) == RESPONSE_FIELDS
            assert (doc["query"], doc["choices"], doc["gold_index"]) == (prompt or "", [gold or ""], 0)
            assert (doc["id"], doc["task_name"], doc["num_samples"]) == (str(doc_id), "math500|0", N)
            assert doc["specific"]["problem_id"] == pid and doc["specific"].get("subject") == (
                meta or {}
            ).get("subject")
            assert doc["specific"]["wiseft"]["correct"] == [bool(c) for c in correct]
            assert response["input"] == (prompt or "")
            assert response["text"] == [f"{variant} says \\boxed{{{i}}}" for i in range(N)]
            c = sum(correct)
            assert row["metric"] == pytest.approx(
                {
                    "avg@n:n=4": c / N,
                    "pass@k:k=1&n=4": _pass_at_k(N, c, 1),
                    "pass@k:k=4&n=4": _pass_at_k(N, c, 4),
                },
                abs=1e-15,
            )
        results = json.loads((out / "results" / folder / f"results_{DATE}.json").read_text())
        assert set(results["results"]) == {"math500|0", "all"}
        assert results["config_general"]["model_name"] == variant


def test_the_same_store_and_date_give_the_same_bytes(store, tmp_path):
    pytest.importorskip("pyarrow", reason="pyarrow (the export extra) is not installed")
    for fmt in ("lm-eval", "lighteval"):
        one, two = tmp_path / f"{fmt}-1", tmp_path / f"{fmt}-2"
        _export(store, one, fmt)
        _export(store, two, fmt)
        assert _files(one) == _files(two)
        assert all((one / f).read_bytes() == (two / f).read_bytes() for f in _files(one))


# --------------------------------------------------------------------------- the harnesses' own readers


def _read_with_harness(fmt: str, root: Path, tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HARNESS), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}  # fmt: skip
    script = ROOT / "tests" / "support" / "harness_readers.py"
    done = subprocess.run([sys.executable, str(script), fmt, str(root)], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


needs_readers = pytest.mark.skipif(
    not (HARNESS / ".installed").exists(),
    reason="the harnesses' readers are not installed: `make harness-readers`",
)


@needs_readers
def test_lm_eval_reads_our_files(store, tmp_path):
    pytest.importorskip("datasets", reason="datasets (lm-eval's intended loader) is not installed")
    out = tmp_path / "lm"
    _export(store, out, "lm-eval")
    seen = _read_with_harness("lm-eval", out, tmp_path)
    assert seen["results"] == [f"lm/a/results_{DATE}.json", f"lm/mix__b/results_{DATE}.json"]
    assert [(s["model"], s["task"], s["date"], s["hashes_ok"]) for s in seen["samples"]] == [
        ("a", "math500", DATE, True), ("mix__b", "math500", DATE, True)
    ]  # fmt: skip
    for s, variant in zip(seen["samples"], VARIANTS, strict=True):
        for row, (prompt, gold, _, correct) in zip(s["rows"], PROBLEMS.values(), strict=True):
            assert row["target"] == (gold or "") and row["arguments"]["gen_args_0"]["arg_0"] == (prompt or "")
            assert row["resps"][0] == [f"{variant} says \\boxed{{{i}}}" for i in range(N)]
            assert row["math_verify"] == sum(correct) / N


@needs_readers
def test_lighteval_reads_our_files(store, tmp_path):
    pytest.importorskip("pyarrow", reason="pyarrow (the export extra) is not installed")
    pytest.importorskip("datasets", reason="datasets (lighteval's details loader) is not installed")
    out = tmp_path / "le"
    _export(store, out, "lighteval")
    seen = _read_with_harness("lighteval", out, tmp_path)
    assert [(d["model"], d["date"], d["task"]) for d in seen["details"]] == [
        ("a", DATE, "math500|0"), ("mix__b", DATE, "math500|0")
    ]  # fmt: skip
    for d, variant in zip(seen["details"], VARIANTS, strict=True):
        for doc, (prompt, gold, _, correct) in zip(d["docs"], PROBLEMS.values(), strict=True):
            assert (doc["query"], doc["input"], doc["golds"]) == (prompt or "", prompt or "", [gold or ""])
            assert doc["text"] == [f"{variant} says \\boxed{{{i}}}" for i in range(N)]
            assert doc["specific"]["wiseft"]["correct"] == [bool(c) for c in correct]
            assert doc["metric"]["avg@n:n=4"] == sum(correct) / N


# ------------------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("fmt, pattern", [("lm-eval", "*/samples_math500_*.jsonl"),
                                          ("lighteval", "details/*/*/details_math500|0_*.parquet")])  # fmt: skip
def test_the_cli_writes_the_files_and_names_them(store, tmp_path, cli, fmt, pattern):
    if fmt == "lighteval":
        pytest.importorskip("pyarrow", reason="pyarrow (the export extra) is not installed")
    out = tmp_path / "out"
    argv = [
        "store",
        "export",
        store,
        "--format",
        fmt,
        "-o",
        out,
        "--variant",
        "a",
        "--variant",
        "a",
        "--k",
        "1,2",
    ]
    code, err = cli(argv)  # a variant named twice is written once
    assert code == 0, err
    assert len(list(out.glob(pattern))) == 1 and "variant a: 3 problems" in cli.out
    assert str(next(out.glob(pattern))) in cli.out


def test_force_writes_into_an_existing_directory_and_keeps_other_files(store, tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert cli(["store", "export", store, "--format", "lm-eval", "-o", out, "--force"])[0] == 0
    assert (out / "mine.txt").read_text() == "keep" and len(list(out.glob("*/samples_*.jsonl"))) == 2
    assert not [p for p in tmp_path.iterdir() if ".wiseft-tmp-" in p.name]


def _ungraded(tmp_path):
    return _import(tmp_path, _records(graded=False), "ungraded.db")


def _uneven(tmp_path):
    return _import(tmp_path, _records()[:-1], "uneven.db")  # the last problem of "mix/b" lacks a sample


@pytest.mark.parametrize(
    "make, argv, message",
    [
        (None, ["--format", "lm_eval"], "--format must be one of jsonl, lm-eval, lighteval; got 'lm_eval'"),
        (_ungraded, ["--format", "lm-eval"],
         "12 of the 12 samples of variant 'a' are not graded; run `wiseft grade"),
        (_uneven, ["--format", "lighteval", "--variant", "mix/b"],
         "variant 'mix/b' has 3 samples for some problems and 4 for others"),
        (None, ["--format", "lm-eval", "--k", "8"], "--k 8 is larger than the 4 samples per problem of variant 'a'"),
        (None, ["--format", "lm-eval", "--k", "0"], "--k must be positive integers"),
        (None, ["--k", "2"], "--k applies to --format lm-eval and lighteval, not to jsonl"),
        (None, ["--format", "lm-eval", "--variant", "zzz"], "has no variant 'zzz'"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_nothing_written(store, tmp_path, cli, make, argv, message):
    path = make(tmp_path) if make else store
    out = tmp_path / "out"
    code, err = cli(["store", "export", path, "-o", out, *argv])
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".wiseft-tmp-" in p.name]


@pytest.mark.parametrize("fmt", ["lm-eval", "lighteval", "jsonl"])
def test_an_existing_output_needs_force(store, tmp_path, cli, fmt):
    out = tmp_path / "out"
    out.mkdir()
    code, err = cli(["store", "export", store, "--format", fmt, "-o", out])
    assert code == 2 and f"output {out} already exists; choose another -o/--output or pass --force" in err
    assert list(out.iterdir()) == []


def test_lighteval_without_pyarrow_names_the_extra(store, tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    code, err = cli(["store", "export", store, "--format", "lighteval", "-o", tmp_path / "out"])
    assert code == 2 and "needs pyarrow; install it with `pip install 'wiseft[export]'` (pyarrow==" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    "ids, task_order, expected",
    [
        (["2", "10", "1"], [], [(1, "1"), (2, "2"), (10, "10")]),  # whole numbers: the id is the doc_id
        (["b", "a", "c"], ["c", "a"], [(0, "c"), (1, "a"), (2, "b")]),  # recorded order, then the rest by id
        (["x1", "x0"], [], [(0, "x0"), (1, "x1")]),
        (["1", "x"], ["x", "1"], [(0, "x"), (1, "1")]),  # not all whole numbers: positions
    ],
)
def test_problem_order_and_doc_ids(ids, task_order, expected):
    assert problem_order(ids, task_order) == expected


@pytest.mark.parametrize(
    "name, expected",
    [
        ("delta=0.250,T=1.0", "delta=0.250,T=1.0"),
        ("org/model", "org__model"),
        ('a<>:"/\\|?*[]b', "a__b"),  # lm-eval's sanitize_model_name
        ("..", "_.._"),
        ("", "__"),
        ("tab\there", "tabhere"),
    ],
)
def test_safe_names(name, expected):
    assert safe_name(name) == expected


def test_long_and_repeated_names_stay_distinct():
    long = safe_name("x" * 400)
    assert len(long.encode()) <= 150 and long != safe_name("x" * 401)
    assert unique_dirnames(["a/b", "a:b", "a"]) == ["a__b", "a__b__2", "a"]


def test_a_bad_date_id_is_refused(store, tmp_path):
    with pytest.raises(ConfigError, match="date id '../x'"):
        _export(store, tmp_path / "out", "lm-eval", date="../x")
    assert not (tmp_path / "out").exists()


def test_meta_whose_type_differs_between_problems_is_written_as_text(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the export extra) is not installed")
    records = [r for r in _records(("a",)) if r["problem_id"] != "test/number/3.json"]
    for r in records:
        if r["problem_id"] == "test/geometry/7.json":
            r["meta"] = {"subject": "Geometry", "level": "Level 4", "tags": ["area"]}
    out = tmp_path / "le"
    _export(_import(tmp_path, records), out, "lighteval")
    rows = pq.read_table(out / "details" / "a" / DATE / DETAIL).to_pylist()
    assert [(r["doc"]["specific"]["level"], r["doc"]["specific"]["tags"]) for r in rows] == [
        ("1", None),
        ("Level 4", '["area"]'),
    ]

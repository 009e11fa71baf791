"""Sweeps: configs, variants materialised in place, resume from the store, best-δ selection."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from support.sampling import CountingSampler, tiny_model_dir

from wiseft.config import from_dict
from wiseft.errors import ConfigError, MergeError, TaskError
from wiseft.evaluate.config import SweepConfig
from wiseft.evaluate.plan import plan_sweep
from wiseft.evaluate.runners import run_sweep
from wiseft.evaluate.select import choose_best
from wiseft.merge.recipe_file import load_recipe
from wiseft.records import ProblemSamples
from wiseft.results import VariantResult
from wiseft.sampling import SamplingParams
from wiseft.sampling.hf import HFSampler
from wiseft.store import SampleStore
from wiseft.tasks import Problem, get_task
from wiseft.tasks.split import split_problems


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 4, "k": "1,8"}, "--k 8 is larger than --n 4"),
        ({"delta": "0,1.5"}, "--delta values must lie in [0, 1]"),
        ({"metric": "pass@4"}, "--metric 'pass@4' must be pass@k, maj@k or best@k with k among --k [1]"),
        ({"anchors": ["a"]}, "needs two anchors EARLY FINAL"),
        ({"temperature": "-1"}, "--temperature must be >= 0"),
        ({"metric": "best@1"}, "best@k needs reward-model scores"),
        ({"n": 0}, "--n must lie in 1.."),
        ({"n_boot": 10**9}, "--n-boot is 1000000000; the limit is 100000"),
        ({"workers": 10**6}, "--workers is 1000000; the limit is"),
        ({"problem_budget": float("nan")}, "--problem-budget must be positive seconds"),
    ],
)
def test_bad_sweep_config(kwargs, message):
    data = {"anchors": ["a", "b"], "n": 4, "k": [1]}
    data.update(kwargs)
    with pytest.raises(ConfigError) as err:
        from_dict(SweepConfig, data)
    assert message in str(err.value)


def test_config_fields_are_typed_and_text_is_parsed_at_the_boundary():
    cfg = from_dict(SweepConfig, {"anchors": ["a", "b"], "n": 4, "k": "1,4", "delta": "0:1:0.5"})
    assert cfg.k == (1, 4) and cfg.delta == (0.0, 0.5, 1.0) and cfg.anchors == ("a", "b")
    with pytest.raises(ConfigError, match="--delta must be a tuple of float"):
        SweepConfig(anchors=("a", "b"), delta="0,1")


@pytest.fixture(scope="module")
def anchors(tmp_path_factory):
    root = tmp_path_factory.mktemp("anchors")
    return tiny_model_dir(root, "early", seed=1), tiny_model_dir(root, "final", seed=2)


def _cfg(anchors, store, **kw):
    base = dict(anchors=anchors, task="toy", limit=12, n=3, k=(1, 3), delta=(0.0, 0.5, 1.0), max_new_tokens=10,
                seed=3, threads=1, chunk=5, n_boot=50, store=str(store), device="cpu")  # fmt: skip
    base.update(kw)
    return SweepConfig(**base)


@pytest.fixture(scope="module")
def swept(anchors, tmp_path_factory):
    """One finished sweep: (its config, its results, the progress events, the directory)."""
    early, final = anchors
    root = tmp_path_factory.mktemp("swept")
    cfg = _cfg((str(early), str(final)), root / "s.db")
    seen = []
    res = run_sweep(cfg, root / "out", progress=lambda *a: seen.append(a), report=False)
    return cfg, res, seen, root


def test_sweep_reports_every_variant_and_a_best_one(swept):
    _, res, seen, _ = swept
    assert [v.name for v in res.variants] == ["delta=0.000,T=1", "delta=0.500,T=1", "delta=1.000,T=1"]
    assert {v.kind for v in res.variants} == {"mix"}
    assert res.best.metric == "pass@1" and res.best.variant in {v.name for v in res.variants}
    assert ("delta=0.500,T=1", "sample", 12, 12) in seen and ("delta=0.500,T=1", "grade", 12, 12) in seen


def test_sweep_endpoints_are_the_anchors_sampled_directly(swept, anchors):
    """δ=0 is the final model and δ=1 the early one: the same samples as sampling the saved models."""
    _, _, _, root = swept
    early, final = anchors
    task = get_task("toy")
    prompts = [task.prompt(p) for p in task.problems[:12]]
    params = SamplingParams(temperature=1.0, max_new_tokens=10, stop=task.stop, seed=3)
    with SampleStore(root / "s.db", writer=False) as store:
        for name, path in (("delta=0.000,T=1", final), ("delta=1.000,T=1", early)):
            direct = HFSampler.from_pretrained(path, device="cpu").generate(prompts, 3, params)
            stored = store.records(store.find_variant(name), [p.id for p in task.problems[:12]], 3)
            assert [r["completion"] for r in stored] == [c.text for row in direct for c in row]


def test_sweep_summary_is_the_stores_grades(swept):
    _, res, _, root = swept
    with SampleStore(root / "s.db", writer=False) as store:
        recs = store.records(store.find_variant("delta=0.500,T=1"), graded=True)
    per_problem = {}
    for r in recs:
        per_problem.setdefault(r["problem_id"], []).append(r["correct"])
    want = np.mean([np.mean(c) for c in per_problem.values()])
    assert res.variant("delta=0.500,T=1").summary["metrics"]["pass@1"]["value"] == pytest.approx(want)


def test_sweep_resumes_exactly_what_was_lost(swept, tmp_path):
    """Lose two problems of one variant: a rerun samples exactly those, and gets the same text back."""
    cfg, res, _, root = swept
    task = get_task("toy")
    with SampleStore(root / "s.db", writer=False) as store:
        before = {x.name: store.records(x) for x in store.variants()}
        lost = store.find_variant("delta=0.500,T=1").id
    gone = [p.id for p in task.problems[3:5]]
    db = sqlite3.connect(root / "s.db")
    db.execute("DELETE FROM grades WHERE variant_id=? AND problem_id IN (?, ?)", (lost, *gone))
    db.execute("DELETE FROM samples WHERE variant_id=? AND problem_id IN (?, ?)", (lost, *gone))
    db.commit()
    db.close()
    counting = []

    def factory(model, tok):
        counting.append(CountingSampler(HFSampler(model, tok, threads=1)))
        return counting[-1]

    again = run_sweep(cfg, tmp_path / "out", sampler_factory=factory, report=False)
    assert counting[0].prompts == [task.prompt(p) for p in task.problems[3:5]]
    with SampleStore(root / "s.db", writer=False) as store:
        assert {x.name: store.records(x) for x in store.variants()} == before
    name = "delta=0.500,T=1"
    assert again.variant(name).summary["metrics"] == res.variant(name).summary["metrics"]


def test_bad_inputs_write_nothing(anchors, tmp_path):
    early, final = anchors
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        run_sweep(_cfg((str(early), str(final)), tmp_path / "o" / "s.db", task="nope"), tmp_path / "o")
    other = tiny_model_dir(tmp_path, "wide", hidden=48)
    with pytest.raises(MergeError) as err:
        run_sweep(_cfg((str(early), str(other)), tmp_path / "o" / "s.db"), tmp_path / "o")
    assert "shape" in str(err.value)
    assert not (tmp_path / "o").exists()


def test_too_few_problems_to_split_choose_in_sample_and_say_so(anchors, tmp_path):
    early, final = anchors
    cfg = _cfg((str(early), str(final)), tmp_path / "s.db", limit=1, delta=(0.0, 1.0))
    res = run_sweep(cfg, tmp_path / "out", report=False)
    assert res.best.in_sample and "(in-sample)" in res.best.how
    assert "1 problem(s) are too few for a validation split of 0.5" in res.best.note


def test_best_is_chosen_on_validation_and_reported_on_test():
    """Variant A is perfect on the validation split only, B on the test split only: A must win, and its
    reported value must be its (poor) test value."""
    problems = [Problem(str(i), "q", "1") for i in range(20)]
    val, test = split_problems(problems, 0.5, 0)

    def variant(name, good_ids):
        per = tuple(ProblemSamples(correct=[p.id in good_ids] * 2, classes=[0] * 2) for p in problems)
        return VariantResult(name, "mix", None, 1.0, None, {"metrics": {}}, per_problem=per)

    cfg = SweepConfig(anchors=("a", "b"), n=2, k=(1,), val_fraction=0.5, seed=0, n_boot=20)
    variants = [variant("A", {p.id for p in val}), variant("B", {p.id for p in test})]
    best, splits = choose_best(variants, problems, cfg)
    assert best.variant == "A" and not best.in_sample
    assert best.validation["value"] == 1.0 and best.test["value"] == 0.0
    assert splits["B"]["test"]["pass@1"]["value"] == 1.0


def test_plan_sweep_over_a_recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "method: wise-ft\nmodels: [e, f]\ndelta: 0.3\nrules:\n  - {match: '.*mlp.*', delta: 0.6}\n"
    )
    recipe = load_recipe(str(path))
    grid = plan_sweep(
        from_dict(SweepConfig, {"recipe": str(path), "delta": "0,0.5", "temperature": "0.7,1", "n": 2}),
        recipe,
    )
    assert [(s.name, s.delta, s.temperature) for s in grid] == [
        ("delta=0.000,T=0.7", 0.0, 0.7), ("delta=0.500,T=0.7", 0.5, 0.7),
        ("delta=0.000,T=1", 0.0, 1.0), ("delta=0.500,T=1", 0.5, 1.0),
    ]  # fmt: skip
    assert all(s.mix.rules == recipe.rules for s in grid)  # the schedule is kept, δ replaced
    # recipe paths are relative to the recipe file (issue 13)
    assert grid[1].recipe["delta"] == 0.5 and grid[1].anchors == (str(tmp_path / "e"), str(tmp_path / "f"))
    single = plan_sweep(from_dict(SweepConfig, {"recipe": str(path), "delta": "0.3", "n": 2}), recipe)
    assert [(s.name, s.mix) for s in single] == [("wise-ft,delta=0.300,T=1", recipe)]


def test_the_closing_table_marks_no_best_on_a_tie_and_says_so(anchors, tmp_path, cli):
    """Random tiny models solve no toy problem: every δ ties at 0 %, so no ★ and a note that says why."""
    early, final = anchors
    code, text = cli(["sweep", str(early), str(final), "--task", "toy", "--limit", "3", "--n", "2",
                      "--delta", "0,1", "--max-new-tokens", "4", "--val-fraction", "0", "--n-boot", "20",
                      "--device", "cpu", "--no-report", "-o", str(tmp_path / "out")])  # fmt: skip
    assert code == 0, text
    assert "★" not in cli.out
    assert "All 2 variants tie on Pass@1" in " ".join(cli.out.split())

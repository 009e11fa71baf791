"""Sweeps: grids, configs, variants materialised in place, resume from the store, best-δ selection."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from _sampling_fixtures import CountingSampler, tiny_model_dir

from wiseft.errors import ConfigError, MergeError, TaskError
from wiseft.metrics import ProblemSamples
from wiseft.sampling import SamplingParams
from wiseft.sampling.hf import HFSampler
from wiseft.store import SampleStore
from wiseft.sweep import SweepConfig, choose_best, parse_grid, run_sweep
from wiseft.tasks import get_task


def test_parse_grid():
    assert parse_grid("0:1:0.125") == tuple(i / 8 for i in range(9))
    assert parse_grid("0:1:0.1")[-1] == 1.0 and len(parse_grid("0:1:0.1")) == 11
    assert parse_grid("0.25, 0.5") == (0.25, 0.5)
    assert parse_grid([0, 1]) == (0.0, 1.0)
    assert parse_grid(0.3) == (0.3,)
    with pytest.raises(ConfigError, match="give start:stop:step"):
        parse_grid("0:1")
    with pytest.raises(ConfigError, match="positive step"):
        parse_grid("1:0:0.1")
    with pytest.raises(ConfigError, match="give start:stop:step"):
        parse_grid("a,b")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 4, "k": (1, 8)}, "--k 8 is larger than --n 4"),
        ({"delta": "0,1.5"}, "--delta values must lie in [0, 1]"),
        ({"metric": "pass@4"}, "--metric 'pass@4' must be pass@k, maj@k or best@k with k among --k [1]"),
        ({"anchors": ("a",)}, "needs two anchors EARLY FINAL"),
        ({"temperature": "-1"}, "--temperature must be >= 0"),
        ({"metric": "best@1"}, "best@k needs reward-model scores"),
    ],
)
def test_bad_sweep_config(kwargs, message):
    base = {"anchors": ("a", "b"), "n": 4, "k": (1,)}
    base.update(kwargs)
    with pytest.raises(ConfigError) as err:
        SweepConfig(**base)
    assert message in str(err.value)


@pytest.fixture(scope="module")
def anchors(tmp_path_factory):
    root = tmp_path_factory.mktemp("anchors")
    return tiny_model_dir(root, "early", seed=1), tiny_model_dir(root, "final", seed=2)


def _cfg(anchors, store, **kw):
    base = dict(anchors=anchors, task="toy", limit=12, n=3, k=(1, 3), delta="0,0.5,1", max_new_tokens=10,
                seed=3, threads=1, chunk=5, n_boot=50, store=str(store), device="cpu")  # fmt: skip
    base.update(kw)
    return SweepConfig(**base)


def test_sweep_matches_direct_sampling_and_resumes(anchors, tmp_path):
    early, final = anchors
    cfg = _cfg((str(early), str(final)), tmp_path / "s.db")
    seen = []
    res = run_sweep(cfg, tmp_path / "out", progress=lambda *a: seen.append(a))
    assert [v["name"] for v in res["variants"]] == ["delta=0.000,T=1", "delta=0.500,T=1", "delta=1.000,T=1"]
    assert {v["kind"] for v in res["variants"]} == {"mix"}
    assert res["best"]["metric"] == "pass@1" and res["best"]["variant"] in {
        v["name"] for v in res["variants"]
    }
    assert set(res) >= {"config", "versions", "variants", "best"}
    assert ("delta=0.500,T=1", "sample", 12, 12) in seen and ("delta=0.500,T=1", "grade", 12, 12) in seen

    # δ=0 is the final model and δ=1 the early one: the same samples as sampling the saved models directly.
    task = get_task("toy")
    prompts = [task.prompt(p) for p in task.problems[:12]]
    params = SamplingParams(temperature=1.0, max_new_tokens=10, stop=task.stop, seed=3)
    with SampleStore(tmp_path / "s.db", writer=False) as store:
        for name, path in (("delta=0.000,T=1", final), ("delta=1.000,T=1", early)):
            direct = HFSampler.from_pretrained(path, device="cpu").generate(prompts, 3, params)
            stored = store.records(store.find_variant(name), [p.id for p in task.problems[:12]], 3)
            assert [r["completion"] for r in stored] == [c.text for row in direct for c in row]
        # The summary is the store's grades, recomputed by hand here.
        v = store.find_variant("delta=0.500,T=1")
        recs = store.records(v, graded=True)
        per_problem = {}
        for r in recs:
            per_problem.setdefault(r["problem_id"], []).append(r["correct"])
        want = np.mean([np.mean(c) for c in per_problem.values()])
        got = res["variants"][1]["summary"]["metrics"]["pass@1"]["value"]
        assert got == pytest.approx(want)
        before = {x.name: store.records(x) for x in store.variants()}

    # Lose two problems of one variant: a rerun samples exactly those, and gets the same text back.
    db = sqlite3.connect(tmp_path / "s.db")
    gone = [p.id for p in task.problems[3:5]]
    db.execute("DELETE FROM grades WHERE problem_id IN (?, ?)", gone)
    db.execute("DELETE FROM samples WHERE variant_id=2 AND problem_id IN (?, ?)", gone)
    db.commit()
    db.close()
    counting = []

    def factory(model, tok):
        counting.append(CountingSampler(HFSampler(model, tok, threads=1)))
        return counting[-1]

    again = run_sweep(cfg, tmp_path / "out", sampler_factory=factory)
    assert counting[0].prompts == [task.prompt(p) for p in task.problems[3:5]]
    with SampleStore(tmp_path / "s.db", writer=False) as store:
        assert {x.name: store.records(x) for x in store.variants()} == before
    assert again["variants"][1]["summary"]["metrics"] == res["variants"][1]["summary"]["metrics"]


def test_bad_inputs_write_nothing(anchors, tmp_path):
    early, final = anchors
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        run_sweep(_cfg((str(early), str(final)), tmp_path / "o" / "s.db", task="nope"), tmp_path / "o")
    with pytest.raises(ConfigError, match="leaves an empty validation or test split"):
        run_sweep(_cfg((str(early), str(final)), tmp_path / "o" / "s.db", limit=1), tmp_path / "o")
    other = tiny_model_dir(tmp_path, "wide", hidden=48)
    with pytest.raises(MergeError) as err:
        run_sweep(_cfg((str(early), str(other)), tmp_path / "o" / "s.db"), tmp_path / "o")
    assert "shape" in str(err.value)
    assert not (tmp_path / "o").exists()


def test_best_is_chosen_on_validation_and_reported_on_test():
    """Variant A is perfect on the validation split only, B on the test split only: A must win, and its
    reported value must be its (poor) test value."""
    from wiseft.tasks import Problem, split_problems

    problems = [Problem(str(i), "q", "1") for i in range(20)]
    val, test = split_problems(problems, 0.5, 0)
    val_ids = {p.id for p in val}

    def entry(name, good_ids):
        per = [ProblemSamples(correct=[p.id in good_ids] * 2, classes=[0] * 2) for p in problems]
        return {"name": name, "summary": {"metrics": {}}, "_per_problem": per}

    cfg = SweepConfig(anchors=("a", "b"), n=2, k=(1,), val_fraction=0.5, seed=0, n_boot=20)
    test_ids = {p.id for p in test}
    entries = [entry("A", val_ids), entry("B", test_ids)]
    best = choose_best(entries, problems, cfg, [p.id for p in problems])
    assert best["variant"] == "A"
    assert best["validation"]["value"] == 1.0 and best["test"]["value"] == 0.0
    assert entries[1]["splits"]["test"]["pass@1"]["value"] == 1.0


def test_plan_sweep_over_a_recipe(tmp_path):
    from wiseft.merge.recipe import load_recipe
    from wiseft.sweep import plan_sweep

    path = tmp_path / "r.yaml"
    path.write_text(
        "method: wise-ft\nmodels: [e, f]\ndelta: 0.3\nrules:\n  - {match: '.*mlp.*', delta: 0.6}\n"
    )
    recipe = load_recipe(str(path))
    grid = plan_sweep(SweepConfig(recipe=str(path), delta="0,0.5", temperature="0.7,1", n=2), recipe)
    assert [(s.name, s.delta, s.temperature) for s in grid] == [
        ("delta=0.000,T=0.7", 0.0, 0.7), ("delta=0.500,T=0.7", 0.5, 0.7),
        ("delta=0.000,T=1", 0.0, 1.0), ("delta=0.500,T=1", 0.5, 1.0),
    ]  # fmt: skip
    assert all(s.weights.rules == recipe.rules for s in grid)  # the schedule is kept, δ replaced
    assert grid[1].recipe["delta"] == 0.5
    single = plan_sweep(SweepConfig(recipe=str(path), delta="0.3", n=2), recipe)
    assert [(s.name, s.weights) for s in single] == [("wise-ft,delta=0.300,T=1", recipe)]

"""`wiseft sweep --recipe` over models whose vocabularies differ (issue 14): the variants are re-indexed to
the recipe's output vocabulary in memory, sampled with the tokenizer `wiseft merge` writes, and equal, token
for token, the merged checkpoint evaluated from disk; the engines that cannot do it are refused up front."""

from __future__ import annotations

import sys

import pytest
import yaml
from support.vocab import vocab_models

from wiseft.config import from_dict
from wiseft.errors import ConfigError
from wiseft.evaluate.config import SweepConfig
from wiseft.evaluate.engine import make_engine, variant_vocabulary
from wiseft.evaluate.runners import plan_sweep_run
from wiseft.sampling import SamplingParams
from wiseft.sampling.hf import HFSampler
from wiseft.store import SampleStore
from wiseft.tasks import get_task

ROWS = {"A": 64, "B": 66, "C": 66}
LIMIT, N, SEED = 4, 2, 5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return {k: str(v) for k, v in vocab_models(tmp_path_factory.mktemp("sweepvocab"), ROWS).items()}


RECIPES = {
    "wise-ft-union": lambda m: {"method": "wise-ft", "models": [m["A"], m["B"]], "delta": 0.3,
                                "tokenizer_from": "union", "dtype": "float32"},
    "dare-ties-base": lambda m: {"method": "dare_ties", "models": [m["B"], m["C"]], "base": m["A"],
                                 "weights": [1.0, 0.5], "parameters": {"density": 0.6}, "seed": 11,
                                 "tokenizer_from": "base", "pad_to_multiple_of": 16, "dtype": "float32"},
}  # fmt: skip


def _recipe_file(tmp_path, data):
    path = tmp_path / "recipe.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _sweep_args(recipe, out, *extra):
    return ["sweep", "--recipe", recipe, "--task", "toy", "--limit", LIMIT, "--n", N, "--k", 1,
            "--max-new-tokens", 8, "--seed", SEED, "--threads", 1, "--device", "cpu", "--n-boot", 20,
            "--delta", 0.3, "--no-report", "-o", out, *extra]  # fmt: skip


@pytest.mark.parametrize("case", list(RECIPES))
def test_a_swept_variant_equals_the_merged_checkpoint_sampled_from_disk(models, tmp_path, cli, case):
    recipe = _recipe_file(tmp_path, RECIPES[case](models))
    code, err = cli(_sweep_args(recipe, tmp_path / "sweep"))
    assert code == 0, err
    code, err = cli(["merge", "--config", recipe, "-o", tmp_path / "merged"])
    assert code == 0, err
    problems = get_task("toy").problems[:LIMIT]
    direct = _sample_fresh(tmp_path / "merged")
    with SampleStore(tmp_path / "sweep" / "samples.db", writer=False) as store:
        (variant,) = store.variants()
        stored = store.records(variant, [p.id for p in problems], N)
    got = [(r["completion"], r["n_tokens"], r["finish_reason"]) for r in stored]
    assert got == [(c.text, c.n_tokens, c.finish_reason) for row in direct for c in row]


def _sample_fresh(model_dir, sampler=None):
    """The toy prompts sampled (seeded) from `model_dir` loaded from disk, or with `sampler`."""
    task = get_task("toy")
    params = SamplingParams(temperature=1.0, max_new_tokens=8, stop=task.stop, seed=SEED)
    sampler = sampler or HFSampler.from_pretrained(model_dir, device="cpu")
    return sampler.generate([task.prompt(p) for p in task.problems[:LIMIT]], N, params)


def test_the_in_memory_variant_samples_the_merged_checkpoints_token_ids(models, tmp_path, cli):
    recipe = _recipe_file(tmp_path, RECIPES["wise-ft-union"](models))
    raw = {
        "recipe": str(recipe),
        "task": "toy",
        "n": N,
        "engine": "auto",
        "threads": 1,
        "device": "cpu",
        "delta": "0.3",
    }
    cfg, specs = plan_sweep_run(from_dict(SweepConfig, raw))
    vocabulary = variant_vocabulary(specs)
    engine = make_engine(cfg, specs[0].anchors[-1], specs=specs)
    assert "re-indexes the vocabulary" in engine.info["engine_choice"]
    tok = engine.tokenizer
    assert len(tok) == vocabulary.vocab_size == engine.weights.model.get_input_embeddings().weight.shape[0]
    assert tok.decode(tok("aÄÖ", add_special_tokens=False)["input_ids"]) == "aÄÖ"  # B's letters appended
    engine.weights.materialise(specs[0])
    in_memory = _sample_fresh(None, engine.sampler)
    code, err = cli(["merge", "--config", recipe, "-o", tmp_path / "merged"])
    assert code == 0, err
    fresh = _sample_fresh(tmp_path / "merged")
    assert [c.token_ids for row in in_memory for c in row] == [c.token_ids for row in fresh for c in row]
    assert in_memory == fresh and all(c.token_ids for row in fresh for c in row)


@pytest.mark.parametrize(
    "extra, flag, ray_installed",
    [(["--engine", "vllm"], "--engine vllm", True), (["--ray"], "--ray", True), (["--ray"], "--ray", False)],
)
def test_engines_that_cannot_resize_are_refused_up_front(
    models, tmp_path, cli, monkeypatch, extra, flag, ray_installed
):
    """The recipe's refusal comes first whether or not Ray is installed (CI has no Ray): the command's
    head start on the cluster (`start_ray_early`) must not put "install Ray" before the input's error."""
    if not ray_installed:
        monkeypatch.setitem(sys.modules, "ray", None)
    recipe = _recipe_file(tmp_path, RECIPES["wise-ft-union"](models))
    out = tmp_path / "out"
    code, err = cli(_sweep_args(recipe, out, *extra))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert flag in err and str(recipe) in err and "--engine hf" in err and "wiseft merge --config" in err
    assert not out.exists()


def test_a_recipe_without_a_policy_over_different_vocabularies_is_refused_before_writing(
    models, tmp_path, cli
):
    data = RECIPES["wise-ft-union"](models)
    del data["tokenizer_from"]
    out = tmp_path / "out"
    code, err = cli(_sweep_args(_recipe_file(tmp_path, data), out))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "different vocab sizes" in err and "tokenizer policy" in err
    assert not out.exists()


def test_one_engine_holds_one_vocabulary(models, tmp_path):
    data = RECIPES["wise-ft-union"](models)
    _, union = plan_sweep_run(from_dict(SweepConfig, {"recipe": str(_recipe_file(tmp_path, data)), "n": 1}))
    data["tokenizer_from"] = models["B"]
    (tmp_path / "b").mkdir()
    _, base = plan_sweep_run(
        from_dict(SweepConfig, {"recipe": str(_recipe_file(tmp_path / "b", data)), "n": 1})
    )
    assert variant_vocabulary(base).vocab_size != variant_vocabulary(union).vocab_size
    with pytest.raises(ConfigError, match="different vocabularies"):
        variant_vocabulary([*union, *base])

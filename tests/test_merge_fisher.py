"""Fisher merging: `wiseft fisher` against a plain per-example gradient loop, and the merge against the
paper's formula in float64 (Matena & Raffel 2022)."""

import json
import math

import pytest
import support.merge_references as ref
import torch
from support.merge import float64_sum, load_dir
from transformers import AutoModelForCausalLM, AutoTokenizer

from wiseft.merge import Recipe
from wiseft.merge.driver import merge
from wiseft.merge.plan import plan
from wiseft.train.fisher import compute_fisher, example_seed

TEXTS = [{"text": "abc abd"}, {"prompt": "q: ab", "completion": " cd"}, {"text": "bcd a"}]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from wiseft.testing import save_tiny_model

    root = tmp_path_factory.mktemp("fisher")
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in TEXTS))
    models = [save_tiny_model(root / f"m{s}", arch="gpt2", seed=s, dtype=torch.float32) for s in (1, 2, 3)]
    fishers = []
    for i, m in enumerate(models):
        compute_fisher(m, data, root / f"f{i}", seed=5)
        fishers.append(root / f"f{i}")
    return models, fishers, data


def plain_fisher(model_dir, seed):
    """Per example: logits, targets drawn from the model (the same seeded generator), autograd, square."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    total = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in model.named_parameters()}
    for i, row in enumerate(TEXTS):
        prompt, text = row.get("prompt", ""), row.get("completion", row.get("text"))
        head = tok(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        ids = head + tok(text, add_special_tokens=False)["input_ids"]
        first = max(1, len(head))
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)[first - 1 : len(ids) - 1]
        g = torch.Generator().manual_seed(example_seed(seed, i))
        y = torch.multinomial(logp.detach().exp(), 1, generator=g)
        grads = torch.autograd.grad(logp.gather(1, y).sum(), list(model.parameters()), allow_unused=True)
        for (n, _), gr in zip(model.named_parameters(), grads, strict=True):
            if gr is not None:
                total[n] += gr.double() ** 2
    return {n: t / len(TEXTS) for n, t in total.items()}


def test_fisher_equals_a_plain_gradient_loop_and_is_reproducible(setup, tmp_path):
    models, fishers, data = setup
    got = load_dir(fishers[0])
    expected = plain_fisher(models[0], 5)
    assert set(got) == {n for n, t in load_dir(models[0]).items() if t.is_floating_point()}
    for name, value in got.items():
        assert value.dtype == torch.float32 and bool((value >= 0).all())
        torch.testing.assert_close(value.double(), expected[name], rtol=1e-4, atol=1e-10)
    info = json.loads((fishers[0] / "fisher.json").read_text())
    assert info["examples"] == 3 and info["seed"] == 5
    assert info["norm"] == pytest.approx(
        math.sqrt(sum(float(v.double().square().sum()) for v in got.values()))
    )
    compute_fisher(models[0], data, tmp_path / "again", seed=5)
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (
        fishers[0] / "model.safetensors"
    ).read_bytes()


def reference(thetas, fs, weights, floor, norms):
    hats = [w * torch.clamp(f.double() / n, min=floor) for f, w, n in zip(fs, weights, norms, strict=True)]
    num = [h * t.double() for h, t in zip(hats, thetas, strict=True)]
    return float64_sum(num) / float64_sum(hats)  # 3+ terms: smallest value first (the documented order)


@pytest.mark.parametrize(
    ("n", "params", "normalize"),
    [(2, {}, False), (2, {"fisher_floor": 1e-3}, True), (3, {}, False)],
    ids=["two", "floor+normalize", "three"],
)
def test_fisher_merge_matches_the_formula(setup, tmp_path, n, params, normalize):
    models, fishers, _ = setup
    weights = (1.0, 0.5, 2.0)[:n]
    recipe = Recipe(
        method="fisher",
        models=tuple(map(str, models[:n])),
        fishers=tuple(map(str, fishers[:n])),
        weights=weights,
        parameters={**params, "normalize_fishers": normalize},
    )
    p = plan(recipe)
    merge(p, tmp_path / "out")
    got = load_dir(tmp_path / "out")
    thetas = [load_dir(m) for m in models[:n]]
    fs = [load_dir(f) for f in fishers[:n]]
    norms = [json.loads((f / "fisher.json").read_text())["norm"] if normalize else 1.0 for f in fishers[:n]]
    floor = params.get("fisher_floor", 1e-6)
    for name, value in got.items():
        expected = reference([t[name] for t in thetas], [f[name] for f in fs], weights, floor, norms)
        ref.assert_matches(value, expected, True, name)
    prov = json.loads((tmp_path / "out" / "wiseft.json").read_text())
    assert [i["path"] for i in prov["inputs"]][n:] == [str(f) for f in fishers[:n]]


def test_fisher_of_one_model_twice_is_that_model(setup, tmp_path):
    models, fishers, _ = setup
    recipe = Recipe(method="fisher", models=(str(models[0]),) * 2, fishers=(str(fishers[0]),) * 2)
    merge(plan(recipe), tmp_path / "out")
    got, want = load_dir(tmp_path / "out"), load_dir(models[0])
    for name, value in got.items():  # (F·θ + F·θ)/(F + F) = θ exactly
        assert torch.equal(value, want[name]), name


def test_bad_fisher_inputs_are_one_line_errors(setup, tmp_path, cli, capsys):
    from wiseft.testing import save_tiny_model

    models, fishers, data = setup
    other = save_tiny_model(tmp_path / "other", arch="gpt2", seed=1, hidden=16)
    compute_fisher(other, data, tmp_path / "fother")
    capsys.readouterr()
    out = tmp_path / "out"
    a, b = str(models[0]), str(models[1])
    cases = [
        (["--fisher", fishers[0]], "method fisher needs one Fisher per model"),
        (
            ["--fisher", fishers[0], "--fisher", tmp_path / "fother"],
            "compute it for that model with wiseft fisher",
        ),
        (["--fisher", fishers[0], "--fisher", models[1]], "is not a Fisher directory (no fisher.json)"),
        (
            ["--fisher", fishers[0], "--fisher", fishers[1], "--param", "fisher_floor=0"],
            "fisher_floor 0 must be > 0",
        ),
    ]
    for extra, message in cases:
        code, err = cli(["merge", a, b, "--method", "fisher", "-o", out, *extra])
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
        assert not out.exists()
    code, err = cli(["fisher", a, "--data", tmp_path / "missing.jsonl", "-o", out])
    assert code == 2 and "--data" in err and "does not exist" in err and not out.exists()

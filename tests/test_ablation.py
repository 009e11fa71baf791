"""Layer and module ablations (issue 16): the grid expands to recipes whose rules move exactly the tensors
expected on Llama-, Qwen2-, GPT-2- and MoE-shaped checkpoints, bit for bit what `wiseft merge` writes, named
and recorded per variant; bad ranges and kinds fail with one line and nothing written."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from wiseft.checkpoints import Checkpoint
from wiseft.config import from_dict
from wiseft.errors import ConfigError
from wiseft.evaluate.config import SweepConfig
from wiseft.evaluate.plan import plan_sweep
from wiseft.merge import ablation
from wiseft.merge.ablation import Choice

LAYERS = 3
QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")


def _llama_attention(layer: int) -> set[str]:
    return {f"model.layers.{layer}.self_attn.{p}.weight" for p in QKVO}


def _qwen2_attention(layer: int) -> set[str]:
    return _llama_attention(layer) | {f"model.layers.{layer}.self_attn.{p}.bias" for p in QKVO[:3]}


def _qwen3_attention(layer: int) -> set[str]:
    return _llama_attention(layer) | {f"model.layers.{layer}.self_attn.{p}_norm.weight" for p in "qk"}


def _dense_mlp(layer: int) -> set[str]:
    return {f"model.layers.{layer}.mlp.{p}_proj.weight" for p in ("gate", "up", "down")}


def _experts(layer: int) -> set[str]:
    return {
        f"model.layers.{layer}.mlp.experts.{e}.{p}_proj.weight"
        for e in range(4)
        for p in ("gate", "up", "down")
    }


def _router(layer: int) -> set[str]:
    return {f"model.layers.{layer}.mlp.gate.weight"}


def _shared(layer: int) -> set[str]:
    return {f"model.layers.{layer}.mlp.shared_expert.{p}_proj.weight" for p in ("gate", "up", "down")} | {
        f"model.layers.{layer}.mlp.shared_expert_gate.weight"
    }


def _norms(layer: int) -> set[str]:
    return {f"model.layers.{layer}.{n}.weight" for n in ("input_layernorm", "post_attention_layernorm")}


def _gpt2_attention(layer: int) -> set[str]:
    return {f"transformer.h.{layer}.attn.{m}.{p}" for m in ("c_attn", "c_proj") for p in ("weight", "bias")}


def _gpt2_mlp(layer: int) -> set[str]:
    return {f"transformer.h.{layer}.mlp.{m}.{p}" for m in ("c_fc", "c_proj") for p in ("weight", "bias")}


def _gpt2_norms(layer: int) -> set[str]:
    return {f"transformer.h.{layer}.{m}.{p}" for m in ("ln_1", "ln_2") for p in ("weight", "bias")}


# Per architecture: the tensors of each kind in block L, and the tensors outside the blocks.
SHAPES = {
    "llama": (
        {"attention": _llama_attention, "mlp": _dense_mlp, "norm": _norms},
        {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"},
    ),
    "qwen2": (
        {"attention": _qwen2_attention, "mlp": _dense_mlp, "norm": _norms},
        {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"},
    ),
    "qwen2_moe": (
        {
            "attention": _qwen2_attention,
            "experts": _experts,
            "router": _router,
            "shared_expert": _shared,
            "norm": _norms,
        },
        {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"},
    ),  # fmt: skip
    "qwen3_moe": (
        {"attention": _qwen3_attention, "experts": _experts, "router": _router, "norm": _norms},
        {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"},
    ),
    "gpt2": (
        {"attention": _gpt2_attention, "mlp": _gpt2_mlp, "norm": _gpt2_norms},
        {
            "transformer.wte.weight",
            "transformer.wpe.weight",
            "transformer.ln_f.weight",
            "transformer.ln_f.bias",
            "lm_head.weight",
        },
    ),  # fmt: skip
}


def expected(arch: str, choice: Choice) -> set[str]:
    """What `choice` moves, written from the shapes above (MoE: mlp = experts + router + shared expert)."""
    kinds, outside = SHAPES[arch]
    layers = range(*(choice.layers or (0, LAYERS)))

    def of(kind: str | None, layer: int) -> set[str]:
        if kind is None:
            return set().union(*(f(layer) for f in kinds.values()))
        if kind == "mlp" and "mlp" not in kinds:
            return set().union(
                *(kinds[k](layer) for k in ("experts", "router", "shared_expert") if k in kinds)
            )
        return kinds[kind](layer) if kind in kinds else set()

    if choice.module is None:
        return set().union(*(of(None, L) for L in layers))
    if not choice.exclude:
        return set().union(*(of(choice.module, L) for L in layers))
    rest = set().union(*(of(None, L) - of(choice.module, L) for L in layers))
    return rest | (outside if choice.layers is None else set())


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from wiseft.testing import save_tiny_model

    root = tmp_path_factory.mktemp("ablation-shapes")
    out = {}
    for arch in SHAPES:
        path = save_tiny_model(root / arch, arch=arch, layers=LAYERS, tokenizer=False)
        out[arch] = list(Checkpoint.open(path).tensors)
    return out


CHOICES = [
    Choice((0, 1)), Choice((1, 3)), Choice((0, 3)), Choice(None, "attention"), Choice(None, "mlp"),
    Choice(None, "norm"), Choice(None, "attention", exclude=True), Choice(None, "mlp", exclude=True),
    Choice((1, 2), "attention"), Choice((0, 2), "mlp"), Choice((2, 3), "mlp", exclude=True),
]  # fmt: skip


@pytest.mark.parametrize("arch", list(SHAPES))
@pytest.mark.parametrize("choice", CHOICES, ids=lambda c: c.label)
def test_each_choice_moves_exactly_the_expected_tensors(shapes, arch, choice):
    names = shapes[arch]
    want = expected(arch, choice)
    assert want, "the expectation must name something"
    assert set(ablation.resolve(choice, names)) == want
    assert set(ablation.selected(choice, names)) == want


@pytest.mark.parametrize("arch, kind", [("qwen2_moe", "experts"), ("qwen2_moe", "router"),
                                         ("qwen2_moe", "shared_expert"), ("qwen3_moe", "router")])  # fmt: skip
def test_moe_parts_alone(shapes, arch, kind):
    names = shapes[arch]
    assert set(ablation.resolve(Choice(None, kind), names)) == expected(arch, Choice(None, kind))


def test_outside_the_blocks_nothing_moves_for_a_layer_or_module_choice(shapes):
    for arch, names in shapes.items():
        outside = SHAPES[arch][1]
        for choice in CHOICES:
            moved = set(ablation.resolve(choice, names))
            assert bool(moved & outside) == (choice.exclude and choice.layers is None), (arch, choice)


@pytest.mark.parametrize(
    "choice, message",
    [
        (Choice((0, 4)), "--layers 0:4 lies outside the model's depth: it has 3 blocks"),
        (Choice((3, 5)), "--layers 3:5 lies outside"),
        (Choice(None, "router"), "--modules router: no tensor of the model is of that kind"),
        (Choice(None, "shared_expert"), "--modules shared_expert: no tensor"),
    ],
)
def test_bad_choices_name_the_flag(shapes, choice, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        ablation.resolve(choice, shapes["llama"])


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("layers", "0-12", "--layers '0-12': give half-open block ranges START:STOP"),
        ("layers", "12:12", "--layers 12:12: START must be below STOP"),
        ("layers", "0:12,,", "--layers has an empty entry"),
        ("modules", "attn,mlpx", "--modules 'mlpx' is not a module kind"),
        ("modules", "no-all", "--modules 'no-all' is not a module kind"),
        ("rest_from", "middle", "--rest-from 'middle' must be first, last or one of the anchors"),
    ],
)
def test_bad_flags_are_config_errors(field, value, message):
    with pytest.raises(ConfigError) as err:
        from_dict(SweepConfig, {"anchors": ["a", "b"], "n": 2, "k": [1], field: value})
    assert str(err.value).startswith(message)


def test_the_torch_free_flag_parsers_know_exactly_the_classified_kinds():
    from wiseft.grids import MODULE_KINDS

    assert tuple(ablation.KINDS) == MODULE_KINDS  # wiseft.grids parses the flags without importing torch


def test_flags_parse_to_canonical_choices():
    cfg = from_dict(
        SweepConfig, {"anchors": ["a", "b"], "layers": "0:12, 12:24,all", "modules": "attn,ffn,no-attention"}
    )
    assert cfg.layers == ("0:12", "12:24", "all") and cfg.modules == ("attention", "mlp", "no-attention")
    grid = ablation.choices(cfg.layers, cfg.modules)
    assert (
        len(grid) == 9
        and grid[0] == Choice((0, 12), "attention")
        and grid[-1] == Choice(None, "attention", True)
    )
    assert [c.label for c in grid[:3]] == ["layers=0:12,modules=attention", "layers=0:12,modules=mlp",
                                           "layers=0:12,modules=no-attention"]  # fmt: skip


# --- the sweep plan: recipes, names, records ----------------------------------------------------------
@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from wiseft.testing import save_tiny_model

    root = tmp_path_factory.mktemp("ablation-pair")
    return tuple(
        str(save_tiny_model(root / n, arch="qwen2", seed=s, layers=LAYERS))
        for n, s in (("ins", 1), ("thi", 2))
    )


def test_plan_expands_choices_times_deltas_with_rest_from_the_first_anchor(pair):
    names = list(Checkpoint.open(pair[1]).tensors)
    cfg = SweepConfig(anchors=pair, n=2, k=(1,), delta=(0.2, 0.6), layers=("0:1", "1:3"), modules=("mlp",))
    specs = plan_sweep(cfg, None, names)
    assert [s.name for s in specs] == [
        "layers=0:1,modules=mlp,delta=0.200,T=1", "layers=0:1,modules=mlp,delta=0.600,T=1",
        "layers=1:3,modules=mlp,delta=0.200,T=1", "layers=1:3,modules=mlp,delta=0.600,T=1",
    ]  # fmt: skip
    spec = specs[1]
    assert spec.ablation == {"layers": [0, 1], "modules": "mlp"} and spec.recipe["delta"] == 1.0
    for name in names:
        coeff = spec.mix.coefficients(name, LAYERS)[0]
        assert coeff == ((0.6,) if name in _dense_mlp(0) else (1.0,)), (
            name
        )  # the rest: δ = 1, the first anchor
    last = plan_sweep(dataclasses.replace(cfg, rest_from="last"), None, names)[1]
    assert {n: last.mix.coefficients(n, LAYERS)[0] for n in names} == {
        n: (0.6,) if n in _dense_mlp(0) else (0.0,) for n in names
    }
    assert len({str(s.recipe) for s in specs}) == 4  # the store keys variants by their recipes


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ablation_variants_equal_wiseft_merge_of_the_same_recipe_bit_for_bit(pair, tmp_path, dtype):
    from support.merge import bits_equal, load_dir

    from wiseft.merge.driver import merge
    from wiseft.merge.plan import plan
    from wiseft.merge.recipe_file import load_recipe
    from wiseft.weightspace import WeightSpace

    names = list(Checkpoint.open(pair[1]).tensors)
    cfg = SweepConfig(
        anchors=pair, n=2, k=(1,), delta=(0.3,), layers=("1:3",), modules=("attention", "no-mlp")
    )
    ws = WeightSpace.load(list(pair), dtype=dtype)
    for i, spec in enumerate(plan_sweep(cfg, None, names)):
        import yaml

        path = tmp_path / f"r{i}.yaml"
        path.write_text(yaml.safe_dump(spec.recipe))  # what results record, as a `wiseft merge` recipe
        out = tmp_path / f"m{i}"
        merge(plan(load_recipe(str(path)), out_dtype=dtype), out)
        written = load_dir(out)
        ws.apply(spec.mix)
        moved = set(ablation.resolve(spec.choice, names))
        first = load_dir(pair[0])
        for name, p in ws.model.named_parameters():
            assert bits_equal(p.data, written[name]), (spec.name, name)
            if name not in moved:  # the rest is the first anchor's tensor, exactly
                assert bits_equal(p.data, first[name].to(dtype)), (spec.name, name)


def test_recipe_sweeps_ablate_linear_mixes_and_refuse_other_methods(pair, tmp_path):
    from wiseft.merge.recipe import Recipe

    names = list(Checkpoint.open(pair[1]).tensors)
    cfg = SweepConfig(
        anchors=(), recipe="x.yaml", n=2, k=(1,), delta=(0.5,), modules=("attention",), rest_from="last"
    )
    linear = Recipe(method="linear", models=pair, weights=(0.25, 0.75))
    (spec,) = plan_sweep(cfg, linear, names)
    assert spec.name == "linear,modules=attention,T=1"
    # linear's slots are (w_0, w_1, normalize); normalize stays off
    assert spec.mix.coefficients("model.layers.0.self_attn.q_proj.weight", LAYERS)[0] == (0.25, 0.75, 0.0)
    assert spec.mix.coefficients("model.layers.0.mlp.up_proj.weight", LAYERS)[0] == (0.0, 1.0, 0.0)
    ruled = Recipe(method="wise-ft", models=pair, delta=0.5, rules=({"match": "x", "delta": 0.1},))
    with pytest.raises(ConfigError, match="the --recipe already has rules"):
        plan_sweep(cfg, ruled, names)


# --- the command line: dry run, errors with nothing written, results ------------------------------------
def test_dry_run_lists_what_each_variant_moves_and_writes_nothing(cli, pair, tmp_path):
    out = tmp_path / "out"
    code, err = cli(["sweep", *pair, "--task", "toy", "--n", "2", "--k", "1", "--delta", "0.5",
                     "--layers", "0:1,1:3", "--modules", "attention", "--dry-run", "-o", out])  # fmt: skip
    assert code == 0, err
    assert "layers=0:1,modules=attention,delta=0.500,T=1: moves 7 of" in cli.out
    assert "model.layers.{1-2}.self_attn.q_proj.bias" in cli.out
    assert "model.layers.{0}.self_attn.o_proj.weight" in cli.out
    assert "mlp" not in cli.out.split("layers=0:1")[1]
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--layers", "0:2,2:4"], "error: --layers 2:4 lies outside the model's depth: it has 3 blocks"),
        (["--modules", "experts"], "error: --modules experts: no tensor of the model is of that kind"),
        (["--modules", "bogus"], "error: --modules 'bogus' is not a module kind"),
        (["--length-reference", "nope"], "error: --length-reference 'nope' is not a variant of this run"),
    ],
)
def test_bad_ablations_exit_2_with_one_line_and_nothing_written(cli, pair, tmp_path, flags, message):
    out = tmp_path / "out"
    code, err = cli(
        ["sweep", *pair, "--task", "toy", "--n", "2", "--k", "1", "--delta", "0.5", *flags, "-o", out]
    )
    assert code == 2
    assert err.strip().startswith("wiseft sweep: " + message) and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_sweep_records_each_ablation_variant(pair, tmp_path):
    from wiseft.evaluate.runners import run_sweep
    from wiseft.results import RunResults
    from wiseft.store import SampleStore

    cfg = SweepConfig(anchors=pair, task="toy", limit=3, n=2, k=(1, 2), delta=(0.0, 0.5), max_new_tokens=4,
                      threads=1, n_boot=20, device="cpu", layers=("0:1",), modules=("all", "attention"))  # fmt: skip
    res = run_sweep(cfg, tmp_path / "out", report=False)
    names = [v.name for v in res.variants]
    assert names == ["layers=0:1,delta=0.000,T=1", "layers=0:1,delta=0.500,T=1",
                     "layers=0:1,modules=attention,delta=0.000,T=1", "layers=0:1,modules=attention,delta=0.500,T=1"]  # fmt: skip
    back = RunResults.from_json(res.to_json())
    assert [v.ablation for v in back.variants] == [{"layers": [0, 1], "modules": None}] * 2 + [
        {"layers": [0, 1], "modules": "attention"}
    ] * 2
    assert back.config["layers"] == ["0:1"] and back.config["rest_from"] == "first"
    with SampleStore(tmp_path / "out" / "samples.db", writer=False) as store:
        rows = store.db.execute("SELECT name, recipe FROM variants").fetchall()
    assert len({r[1] for r in rows}) == 4 and all('"rules"' in r[1] for r in rows)

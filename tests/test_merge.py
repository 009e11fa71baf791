"""The merge engine: golden numerics against float64, identities, schedules, real model round trips."""

import json

import pytest
import torch
from support.merge import bits_equal, float64_sum, load_dir, reference
from transformers import AutoModelForCausalLM

from wiseft.checkpoints import Checkpoint
from wiseft.merge import Recipe
from wiseft.merge.driver import merge
from wiseft.merge.plan import plan


def run(recipe, out, **kwargs):
    plan_kwargs = {
        k: kwargs.pop(k) for k in ("out_dtype", "tokenizer_from", "chunk", "io_chunk") if k in kwargs
    }
    return merge(plan(recipe, **plan_kwargs), out, **kwargs)


CASES = [
    ("llama", torch.bfloat16, False, False),
    ("qwen2", torch.bfloat16, True, True),
    ("gemma", torch.float32, True, False),
    ("llama", torch.float32, False, True),
]


@pytest.mark.parametrize("arch,dtype,tied,sharded", CASES)
def test_wiseft_equals_float64_reference(models, tmp_path, arch, dtype, tied, sharded):
    early = models.get(arch, 1, dtype, tied, sharded)
    final = models.get(arch, 2, dtype, tied, sharded)
    delta = 0.3
    out = tmp_path / "out"
    # small chunks make tensors span several reads and several kernel calls per read
    run(
        Recipe(models=(str(early), str(final)), delta=delta),
        out,
        chunk=1000,
        io_chunk=3000,
        shard_size=20_000,
    )
    got, e, f = load_dir(out), load_dir(early), load_dir(final)
    assert set(got) == set(e) - ({"lm_head.weight"} if tied else set())
    assert ("lm_head.weight" in got) is (not tied)
    for name, t in got.items():
        assert t.dtype == dtype
        ref = reference([delta, 1 - delta], [e[name], f[name]], dtype)
        assert torch.equal(t, ref), name
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is tied


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_endpoints_and_self_merge_are_bit_exact(models, tmp_path, dtype):
    early, final = models.get("qwen2", 1, dtype), models.get("qwen2", 2, dtype)
    e, f = load_dir(early), load_dir(final)
    for delta, expect in ((0.0, f), (1.0, e)):
        out = tmp_path / f"d{delta}"
        run(Recipe(models=(str(early), str(final)), delta=delta), out)
        got = load_dir(out)
        assert all(bits_equal(got[n], expect[n]) for n in expect), delta
    out = tmp_path / "self"
    run(Recipe(models=(str(final), str(final)), delta=0.37), out)
    got = load_dir(out)
    assert all(bits_equal(got[n], f[n]) for n in f)


def test_output_dtype_is_rounded_once_from_float64(models, tmp_path):
    early, final = models.get("llama", 1, torch.float32), models.get("llama", 2, torch.float32)
    out = tmp_path / "bf16"
    run(Recipe(models=(str(early), str(final)), delta=0.6), out, out_dtype="bfloat16")
    got, e, f = load_dir(out), load_dir(early), load_dir(final)
    for name, t in got.items():
        assert torch.equal(t, reference([0.6, 0.4], [e[name], f[name]], torch.bfloat16)), name
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_linear_matches_reference_and_is_permutation_invariant(models, tmp_path):
    paths = [models.get("llama", s, torch.bfloat16) for s in (1, 2, 3)]
    weights = [0.2, 0.3, 0.5]
    run(Recipe(method="linear", models=tuple(map(str, paths)), weights=weights), tmp_path / "a")
    order = [2, 0, 1]
    run(
        Recipe(
            method="linear", models=tuple(str(paths[i]) for i in order), weights=[weights[i] for i in order]
        ),
        tmp_path / "b",
    )
    a, b = load_dir(tmp_path / "a"), load_dir(tmp_path / "b")
    ins = [load_dir(p) for p in paths]
    for name in a:
        assert torch.equal(a[name], reference(weights, [i[name] for i in ins], torch.bfloat16)), name
        assert bits_equal(a[name], b[name]), name


def test_task_arithmetic_matches_reference_and_base_identity(models, tmp_path):
    base, m1, m2 = (models.get("qwen2", s, torch.float32) for s in (1, 2, 3))
    lams = [0.7, -0.4]
    run(
        Recipe(method="task_arithmetic", models=(str(m1), str(m2)), base=str(base), weights=lams),
        tmp_path / "ta",
    )
    got, b, x1, x2 = load_dir(tmp_path / "ta"), load_dir(base), load_dir(m1), load_dir(m2)
    for name, t in got.items():
        bb = b[name].double()
        terms = [bb, lams[0] * (x1[name].double() - bb), lams[1] * (x2[name].double() - bb)]
        ref = float64_sum(terms).to(torch.float32)
        assert torch.equal(t, ref), name
    # task vectors of the base itself are zero: the base comes back unchanged
    run(Recipe(method="task_arithmetic", models=(str(base),), base=str(base), weights=[3.0]), tmp_path / "id")
    got = load_dir(tmp_path / "id")
    assert all(bits_equal(got[n], b[n]) for n in b)


def test_schedule_rules_and_gradient(models, tmp_path):
    early = models.get("llama", 1, torch.float32, layers=3)
    final = models.get("llama", 2, torch.float32, layers=3)
    recipe = Recipe(
        models=(str(early), str(final)),
        delta=0.5,
        rules=(
            {"match": r"model\.embed_tokens\.weight", "delta": 0.0},
            {"match": r"model\.layers\.\d+\.mlp\..*", "delta": {"gradient": [0.0, 1.0]}},
            {
                "match": r"model\.layers\.1\..*",
                "delta": 0.9,
            },  # never reached for mlp tensors: first match wins
            {"match": r"lm_head\.weight|model\.norm\.weight", "delta": {"gradient": [0.2, 0.8]}},
        ),
    )
    run(recipe, tmp_path / "out")
    got, e, f = load_dir(tmp_path / "out"), load_dir(early), load_dir(final)

    def delta_of(name):
        if name == "model.embed_tokens.weight":
            return 0.0
        if ".mlp." in name:
            return int(name.split(".")[2]) / 2  # layers 0,1,2 -> 0, 0.5, 1
        if name.startswith("model.layers.1."):
            return 0.9
        if name in ("lm_head.weight", "model.norm.weight"):
            return 0.8  # outside the layers and not an embedding: the gradient's last value
        return 0.5

    for name, t in got.items():
        d = delta_of(name)
        assert torch.equal(t, reference([d, 1 - d], [e[name], f[name]], torch.float32)), name
    resolved = json.loads((tmp_path / "out" / "wiseft.json").read_text())["recipe"]
    assert resolved["rules"][1]["delta"] == {"gradient": [0.0, 1.0]}


def test_tied_embeddings_follow_the_embedding_rule(models, tmp_path):
    early, final = models.get("gemma", 1, torch.float32, True), models.get("gemma", 2, torch.float32, True)
    recipe = Recipe(models=(str(early), str(final)), delta={"gradient": [0.1, 0.9]})
    p = plan(recipe)
    by_name = {t.name: t.coeffs for t in p.tensors}
    assert "lm_head.weight" not in by_name
    assert by_name["model.embed_tokens.weight"] == (0.1,)
    assert by_name["model.norm.weight"] == (0.9,)


@pytest.mark.parametrize("arch,tied", [("qwen2", False), ("gemma", True)])
def test_output_loads_and_gives_reference_logits(models, tmp_path, arch, tied):
    early, final = models.get(arch, 1, torch.bfloat16, tied), models.get(arch, 2, torch.bfloat16, tied)
    out = tmp_path / "out"
    run(Recipe(models=(str(early), str(final)), delta=0.4), out)
    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ref_model = AutoModelForCausalLM.from_pretrained(str(final)).eval()
    e, f = Checkpoint.open(early), Checkpoint.open(final)
    with torch.no_grad():
        for name, p in ref_model.named_parameters():
            p.copy_(reference([0.4, 0.6], [e.load(name), f.load(name)], p.dtype))
        ids = torch.arange(1, 17).reshape(2, 8)
        assert torch.equal(merged(ids).logits, ref_model(ids).logits)
        assert not torch.equal(
            merged(ids).logits, AutoModelForCausalLM.from_pretrained(str(final))(ids).logits
        )
    assert merged.config.tie_word_embeddings is tied


def test_provenance_in_wiseft_json_and_safetensors_metadata(models, tmp_path):
    early, final = (
        models.get("llama", 1, torch.bfloat16, sharded=True),
        models.get("llama", 2, torch.bfloat16, sharded=True),
    )
    out = tmp_path / "out"
    run(Recipe(models=(str(early), str(final)), delta=0.25), out, shard_size=30_000)
    prov = json.loads((out / "wiseft.json").read_text())
    assert prov["recipe"]["delta"] == 0.25 and prov["recipe"]["method"] == "wise-ft"
    assert [i["path"] for i in prov["inputs"]] == [str(early), str(final)]
    assert all(
        "config.json" in i["sha256"] and "model.safetensors.index.json" in i["sha256"] for i in prov["inputs"]
    )
    assert prov["inputs"][0]["tensor_bytes"] > 0
    from safetensors import safe_open

    shard = sorted(out.glob("model-*.safetensors"))[0]
    with safe_open(str(shard), "pt") as fh:
        meta = fh.metadata()
    assert json.loads(meta["wiseft_recipe"])["delta"] == 0.25
    assert meta["wiseft_version"] == prov["wiseft_version"]
    assert (out / "tokenizer.json").read_bytes() == (final / "tokenizer.json").read_bytes()
    assert (out / "recipe.yaml").is_file()


def test_integer_tensors_are_copied(models, tmp_path):
    from safetensors.torch import save_file

    dirs = []
    for seed in (1, 2):
        src = models.get("llama", seed, torch.float32)
        d = tmp_path / f"m{seed}"
        d.mkdir()
        (d / "config.json").write_bytes((src / "config.json").read_bytes())
        tensors = load_dir(src)
        tensors["extra.position_ids"] = torch.arange(10, dtype=torch.int64)
        save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
        dirs.append(d)
    run(Recipe(models=tuple(map(str, dirs)), delta=0.5), tmp_path / "out")
    assert torch.equal(load_dir(tmp_path / "out")["extra.position_ids"], torch.arange(10))


def test_cli_recipe_yaml_dry_run_and_list(models, tmp_path, capsys):
    from wiseft.cli import main

    early, final = models.get("qwen2", 1, torch.bfloat16), models.get("qwen2", 2, torch.bfloat16)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"method: wise-ft\nmodels: [{early}, {final}]\ndelta: 0.5\n"
        "rules:\n  - match: 'model\\.layers\\.\\d+\\.self_attn\\..*'\n    delta: {gradient: [0.0, 1.0]}\n"
    )
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["merge", "--config", str(recipe), "-o", str(out), "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert "bytes to read" in shown and "estimated time" in shown and "peak memory" in shown
    assert "rules[0]" in shown and not out.exists()
    assert main(["merge", "--config", str(recipe), "-o", str(out), "--dtype", "float32"]) == 0
    got, e, f = load_dir(out), load_dir(early), load_dir(final)
    for name, t in got.items():
        d = (0.0 if ".layers.0." in name else 1.0) if ".self_attn." in name else 0.5
        assert torch.equal(t, reference([d, 1 - d], [e[name], f[name]], torch.float32)), name
    # flags override the file: --delta replaces the default, the rules stay
    assert main(["merge", "--config", str(recipe), "--delta", "0.25", "-o", str(tmp_path / "o2")]) == 0
    name = "model.norm.weight"
    assert torch.equal(
        load_dir(tmp_path / "o2")[name], reference([0.25, 0.75], [e[name], f[name]], torch.bfloat16)
    )
    # the recipe written into an output reproduces it
    assert (
        main(
            ["merge", "--config", str(out / "recipe.yaml"), "--dtype", "float32", "-o", str(tmp_path / "o3")]
        )
        == 0
    )
    again = load_dir(tmp_path / "o3")
    assert all(bits_equal(again[n], got[n]) for n in got)
    # --buffered-io writes the same files through the page cache
    args = ["merge", "--config", str(out / "recipe.yaml"), "--dtype", "float32", "--buffered-io"]
    assert main([*args, "-o", str(tmp_path / "o4")]) == 0
    assert all(
        (tmp_path / "o4" / p.name).read_bytes() == p.read_bytes()
        for p in (tmp_path / "o3").glob("*.safetensors")
    )
    assert main(["merge", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(m in listed for m in ("wise-ft", "linear", "task_arithmetic"))


def test_the_merge_table_says_how_the_shards_were_written(models, tmp_path, capsys, monkeypatch):
    """direct, buffered on request, or buffered because the file system refused O_DIRECT: never silent."""
    import errno
    import os

    import wiseft.checkpoints.writer as writer_module
    from wiseft.cli import main

    early, final = models.get("qwen2", 1, torch.bfloat16), models.get("qwen2", 2, torch.bfloat16)
    merge_args = ["merge", str(early), str(final), "--delta", "0.5"]

    def writes(*extra) -> str:
        capsys.readouterr()
        assert main([*merge_args, *extra, "-o", str(tmp_path / "out"), "--force"]) == 0
        return next(line for line in capsys.readouterr().out.splitlines() if "writes" in line)

    assert "buffered (--buffered-io)" in writes("--buffered-io")
    try:
        os.close(os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644))
        takes = True
    except (AttributeError, OSError):  # no O_DIRECT here, or a file system that refuses it
        takes = False
    line = writes()
    assert ("refused" in line) is not takes and ("direct" in line) is takes
    real_open = os.open

    def refuse(path, flags, mode=0o777):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    monkeypatch.setattr(writer_module.os, "open", refuse)
    assert "the file system refused O_DIRECT" in writes()


def test_recipe_validation_messages(tmp_path):
    from wiseft.errors import ConfigError
    from wiseft.merge import load_recipe

    with pytest.raises(ConfigError, match="unknown merge method 'slerpy'"):
        Recipe(method="slerpy", models=("a", "b"), delta=0.5)
    with pytest.raises(ConfigError, match="2 value\\(s\\) given for 3 model"):
        Recipe(method="linear", models=("a", "b", "c"), weights=[0.5, 0.5])
    with pytest.raises(ConfigError, match="needs a base model"):
        Recipe(method="task_arithmetic", models=("a",), weights=[1.0])
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        Recipe(models=("a", "b"), delta=0.5, rules=({"match": "(", "delta": 0.1},))
    with pytest.raises(ConfigError, match="must set delta"):
        Recipe(models=("a", "b"), delta=0.5, rules=({"match": "x", "weights": [0.1]},))
    bad = tmp_path / "r.yaml"
    bad.write_text("method: wise-ft\nmodels: [a, b]\ndelta: 0.5\nmix: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'mix'"):
        load_recipe(str(bad))
    bad.write_text("method: wise-ft\nmodels: [a, b]\ndelta: 0.5\nrulez: []\n")
    with pytest.raises(ConfigError, match="unknown key 'rulez'; did you mean 'rules'"):
        load_recipe(str(bad))


def test_no_spurious_lm_head_when_an_input_stores_a_tied_one(models, tmp_path):
    from safetensors.torch import save_file

    src = models.get("qwen2", 1, torch.float32, True)
    copy = tmp_path / "with-head"
    copy.mkdir()
    (copy / "config.json").write_bytes((src / "config.json").read_bytes())
    tensors = load_dir(src)
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    save_file(tensors, str(copy / "model.safetensors"), metadata={"format": "pt"})
    final = models.get("qwen2", 2, torch.float32, True)
    p = plan(Recipe(models=(str(copy), str(final)), delta=0.5))
    assert p.dropped == ("lm_head.weight",)
    merge(p, tmp_path / "out")
    assert "lm_head.weight" not in load_dir(tmp_path / "out")


def test_copy_tokenizer_from_a_stated_input(models, tmp_path, capsys):
    import shutil

    from wiseft.cli import main

    early = tmp_path / "early"
    shutil.copytree(models.get("llama", 1, torch.bfloat16), early)
    (early / "generation_config.json").write_text('{"marker": "early"}')
    final = models.get("llama", 2, torch.bfloat16)
    out = tmp_path / "out"
    assert (
        main(
            ["merge", str(early), str(final), "--delta", "0.5", "-o", str(out), "--copy-tokenizer-from", "0"]
        )
        == 0
    )
    assert json.loads((out / "generation_config.json").read_text()) == {"marker": "early"}
    assert json.loads((out / "wiseft.json").read_text())["tokenizer_from"] == str(early)
    assert main(["merge", str(early), str(final), "--delta", "0.5", "-o", str(tmp_path / "o2")]) == 0
    assert (tmp_path / "o2" / "generation_config.json").read_bytes() == (
        final / "generation_config.json"
    ).read_bytes()
    capsys.readouterr()
    assert (
        main(
            [
                "merge",
                str(early),
                str(final),
                "--delta",
                "0.5",
                "-o",
                str(tmp_path / "o3"),
                "--copy-tokenizer-from",
                "7",
            ]
        )
        == 2
    )
    assert "--copy-tokenizer-from 7: there are 2 inputs" in capsys.readouterr().err
    assert not (tmp_path / "o3").exists()


def _tiny_gpt2(path, seed):
    from transformers import GPT2Config

    config = GPT2Config(
        n_layer=3, n_embd=16, n_head=2, vocab_size=32, n_positions=16, bos_token_id=1, eos_token_id=2
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    model.save_pretrained(str(path))
    return path


def test_gpt2_style_names_schedule_and_weightspace(tmp_path):
    from wiseft.weightspace import WeightSpace

    early, final = _tiny_gpt2(tmp_path / "e", 1), _tiny_gpt2(tmp_path / "f", 2)
    recipe = Recipe(models=(str(early), str(final)), delta={"gradient": [0.0, 1.0]})
    out = tmp_path / "out"
    run(recipe, out)
    got, e, f = load_dir(out), load_dir(early), load_dir(final)
    assert "lm_head.weight" not in got  # GPT-2 ties lm_head to wte

    def delta_of(name):
        if name.startswith("transformer.h."):
            return int(name.split(".")[2]) / 2  # 3 layers: 0, 0.5, 1
        return 0.0 if name in ("transformer.wte.weight", "transformer.wpe.weight") else 1.0

    for name, t in got.items():
        d = delta_of(name)
        assert torch.equal(t, reference([d, 1 - d], [e[name], f[name]], torch.float32)), name
    ws = WeightSpace.load([early, final], dtype=torch.float32)
    ws.apply(recipe)
    for name, p in ws.model.named_parameters():
        assert bits_equal(p.data, got[name]), name

"""Every bad input of `wiseft merge`: a one-line error naming the culprit, exit 2, and no OUT afterwards."""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from support.merge import load_dir

from wiseft.atomic import TMP_TAG
from wiseft.cli import main


@pytest.fixture
def pair(models):
    return models.get("llama", 1, torch.bfloat16), models.get("llama", 2, torch.bfloat16)


def fails(capsys, argv, pattern, out: Path):
    capsys.readouterr()  # drop what building the fixtures printed
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert pattern in err or re.search(pattern, err), err
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}{TMP_TAG}*"))
    return err


def copy_with(src: Path, dst: Path, edit=None, config_edit=None) -> Path:
    """A copy of model `src` with its tensors and/or config changed."""
    shutil.copytree(src, dst)
    if edit is not None:
        tensors = load_dir(src)
        edit(tensors)
        for f in dst.glob("*.safetensors"):
            f.unlink()
        (dst / "model.safetensors.index.json").unlink(missing_ok=True)
        save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    if config_edit is not None:
        config = json.loads((dst / "config.json").read_text())
        config_edit(config)
        (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_missing_directory(capsys, pair, tmp_path):
    out = tmp_path / "out"
    fails(
        capsys,
        ["merge", str(tmp_path / "nope"), str(pair[1]), "--delta", "0.5", "-o", str(out)],
        "does not exist",
        out,
    )


def test_directory_without_safetensors(capsys, pair, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(pair[0] / "config.json", empty / "config.json")
    (empty / "pytorch_model.bin").write_bytes(b"pickle")
    out = tmp_path / "out"
    err = fails(
        capsys,
        ["merge", str(empty), str(pair[1]), "--delta", "0.5", "-o", str(out)],
        "contains no safetensors",
        out,
    )
    assert "pytorch_model.bin" in err


def test_truncated_safetensors(capsys, pair, tmp_path):
    bad = copy_with(pair[0], tmp_path / "trunc")
    f = bad / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    out = tmp_path / "out"
    fails(capsys, ["merge", str(bad), str(pair[1]), "--delta", "0.5", "-o", str(out)], "is truncated", out)


def test_corrupted_header(capsys, pair, tmp_path):
    bad = copy_with(pair[0], tmp_path / "corrupt")
    f = bad / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:20] = b"\xff" * 12
    f.write_bytes(bytes(data))
    out = tmp_path / "out"
    fails(capsys, ["merge", str(bad), str(pair[1]), "--delta", "0.5", "-o", str(out)], "is corrupt", out)


def test_header_offsets_that_do_not_match_the_shape(capsys, pair, tmp_path):
    bad = copy_with(pair[0], tmp_path / "offsets")
    f = bad / "model.safetensors"
    raw = f.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    name = "model.norm.weight"
    header[name]["shape"] = [header[name]["shape"][0] * 2]
    new = json.dumps(header, separators=(",", ":")).encode()
    new += b" " * (n - len(new))
    assert len(new) == n
    f.write_bytes(raw[:8] + new + raw[8 + n :])
    out = tmp_path / "out"
    fails(
        capsys, ["merge", str(bad), str(pair[1]), "--delta", "0.5", "-o", str(out)], "model.norm.weight", out
    )


def test_shape_mismatch(capsys, pair, tmp_path):
    bad = copy_with(
        pair[0],
        tmp_path / "shape",
        edit=lambda t: t.update({"model.norm.weight": t["model.norm.weight"][:-1]}),
    )
    out = tmp_path / "out"
    fails(
        capsys,
        ["merge", str(bad), str(pair[1]), "--delta", "0.5", "-o", str(out)],
        r"tensor model.norm.weight has shape \[31\]",
        out,
    )


def test_missing_tensor(capsys, pair, tmp_path):
    bad = copy_with(pair[1], tmp_path / "missing", edit=lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    out = tmp_path / "out"
    err = fails(
        capsys,
        ["merge", str(pair[0]), str(bad), "--delta", "0.5", "-o", str(out)],
        "does not have the same tensors",
        out,
    )
    assert "missing 1 tensor(s)" in err and "model.layers.1.mlp.up_proj.weight" in err


def test_different_architectures(capsys, pair, tmp_path):
    bad = copy_with(
        pair[1], tmp_path / "arch", config_edit=lambda c: c.update(architectures=["Qwen2ForCausalLM"])
    )
    out = tmp_path / "out"
    fails(
        capsys,
        ["merge", str(pair[0]), str(bad), "--delta", "0.5", "-o", str(out)],
        "different architectures",
        out,
    )


def test_different_vocab_sizes(capsys, pair, models, tmp_path):
    other = models.get("llama", 3, torch.bfloat16, vocab=80)
    out = tmp_path / "out"
    fails(
        capsys,
        ["merge", str(pair[0]), str(other), "--delta", "0.5", "-o", str(out)],
        "different vocab sizes: .* 64 .* 80",
        out,
    )


def test_nonfinite_input_is_an_error_unless_allowed(capsys, pair, tmp_path):
    def poison(t):
        t["model.layers.0.self_attn.q_proj.weight"][3, 5] = float("nan")

    bad = copy_with(pair[0], tmp_path / "nan", edit=poison)
    out = tmp_path / "out"
    argv = ["merge", str(bad), str(pair[1]), "--delta", "0.5", "-o", str(out)]
    err = fails(capsys, argv, "non-finite", out)
    assert "model.layers.0.self_attn.q_proj.weight" in err and "--allow-nonfinite" in err
    assert main([*argv, "--allow-nonfinite"]) == 0
    assert "non-finite" in capsys.readouterr().err
    assert load_dir(out)["model.layers.0.self_attn.q_proj.weight"].isnan().sum() == 1


def test_weights_not_summing_to_one(capsys, pair, tmp_path):
    out = tmp_path / "out"
    fails(
        capsys,
        ["merge", str(pair[0]), str(pair[1]), "--weights", "0.5,0.4", "-o", str(out)],
        "sum to 0.9,",
        out,
    )


def test_delta_out_of_range_needs_extrapolate(capsys, pair, tmp_path):
    out = tmp_path / "out"
    argv = ["merge", str(pair[0]), str(pair[1]), "--delta", "1.5", "-o", str(out)]
    fails(capsys, argv, r"delta 1.5 is outside \[0, 1\]; pass --extrapolate", out)
    assert main([*argv, "--extrapolate"]) == 0
    e, f, got = load_dir(pair[0]), load_dir(pair[1]), load_dir(out)
    name = "model.norm.weight"
    assert torch.equal(got[name], (1.5 * e[name].double() - 0.5 * f[name].double()).to(torch.bfloat16))


def test_same_model_twice_is_a_warning(capsys, pair, tmp_path):
    out = tmp_path / "out"
    assert main(["merge", str(pair[0]), str(pair[0]), "--delta", "0.5", "-o", str(out)]) == 0
    assert "warning: the same model is given twice" in capsys.readouterr().err
    assert out.is_dir()


def test_output_inside_an_input(capsys, pair, tmp_path):
    src = copy_with(pair[0], tmp_path / "src")
    out = src / "merged"
    fails(
        capsys,
        ["merge", str(src), str(pair[1]), "--delta", "0.5", "-o", str(out)],
        "is inside the input directory",
        out,
    )


def test_existing_output_needs_force(capsys, pair, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("x")
    assert main(["merge", str(pair[0]), str(pair[1]), "--delta", "0.5", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and (out / "keep").exists()
    assert main(["merge", str(pair[0]), str(pair[1]), "--delta", "0.5", "-o", str(out), "--force"]) == 0
    assert not (out / "keep").exists() and (out / "config.json").exists()


def test_integer_tensor_that_differs(capsys, pair, tmp_path):
    a = copy_with(pair[0], tmp_path / "a", edit=lambda t: t.update(ids=torch.arange(4)))
    b = copy_with(pair[1], tmp_path / "b", edit=lambda t: t.update(ids=torch.arange(4) + 1))
    out = tmp_path / "out"
    fails(capsys, ["merge", str(a), str(b), "--delta", "0.5", "-o", str(out)], "I64 tensor ids differs", out)


def test_disk_full_during_write_leaves_nothing(capsys, pair, tmp_path, monkeypatch):
    import wiseft.checkpoints.writer as writer

    real_write = os.write
    written = [0]

    def full_disk(fd, data):
        written[0] += len(data)
        if written[0] > 20_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(writer.os, "write", full_disk)
    out = tmp_path / "out"
    err = fails(
        capsys,
        ["merge", str(pair[0]), str(pair[1]), "--delta", "0.5", "-o", str(out)],
        "No space left on device",
        out,
    )
    assert "nothing was written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_hub_name_offline(capsys, pair, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    out = tmp_path / "out"
    err = fails(
        capsys,
        ["merge", "no-such-org/no-such-model", str(pair[1]), "--delta", "0.5", "-o", str(out)],
        "HF_HUB_OFFLINE",
        out,
    )
    assert "no-such-org/no-such-model" in err


def test_missing_output_flag_and_bad_weights(capsys, pair, tmp_path):
    assert main(["merge", str(pair[0]), str(pair[1]), "--delta", "0.5"]) == 2
    assert "-o/--output is required" in capsys.readouterr().err
    out = tmp_path / "out"
    fails(
        capsys,
        ["merge", str(pair[0]), str(pair[1]), "--weights", "a,b", "-o", str(out)],
        "expected comma-separated",
        out,
    )
    fails(capsys, ["merge", str(pair[0]), "--delta", "0.5", "-o", str(out)], "needs exactly 2 model", out)


KILL_SCRIPT = """
import sys, time
import wiseft.checkpoints.writer as writer
real = writer.ShardWriter.write
def slow(self, data):
    real(self, data)
    print("WRITING", flush=True)
    time.sleep(60)
writer.ShardWriter.write = slow
from wiseft.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_run_leaves_no_output_and_next_run_cleans_up(pair, tmp_path):
    out = tmp_path / "out"
    argv = ["merge", str(pair[0]), str(pair[1]), "--delta", "0.5", "-o", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, *argv], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "WRITING"  # some shard bytes are on disk now
        stale = list(tmp_path.glob(f".out{TMP_TAG}*"))
        assert len(stale) == 1 and any(stale[0].glob("*.safetensors"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    assert main(argv) == 0
    assert out.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_nonfinite_input_with_zero_weight_and_output_overflow(capsys, pair, models, tmp_path):
    def poison(t):
        t["model.norm.weight"][0] = float("inf")

    bad = copy_with(pair[0], tmp_path / "inf", edit=poison)
    out = tmp_path / "out"
    fails(
        capsys,
        ["merge", str(bad), str(pair[1]), "--delta", "0", "-o", str(out)],
        "model.norm.weight of .* non-finite",
        out,
    )

    def huge(t):
        t["model.norm.weight"].mul_(1e6)

    big = copy_with(models.get("llama", 1, torch.float32), tmp_path / "big", edit=huge)
    final = models.get("llama", 2, torch.float32)
    argv = ["merge", str(big), str(final), "--delta", "0.5", "--dtype", "float16", "-o", str(out)]
    fails(capsys, argv, "model.norm.weight: the merged values overflow float16", out)


# --- the methods' parameters and mergekit configurations: checked before any tensor data is read ----------
@pytest.fixture
def trio(models):
    return tuple(str(models.get("llama", s, torch.bfloat16)) for s in (1, 2, 3))


def _mergekit(tmp_path, text):
    path = tmp_path / "mk.yml"
    path.write_text(text)
    return ["--config", str(path)]


def _fake_fisher(model, path, drop=None, reshape=None) -> str:
    """A Fisher directory shaped like `model` (its tensors as float32, fisher.json), with tensor `drop`
    left out or tensor `reshape` stored in another shape; built from the safetensors library only."""
    tensors = {n: t.float() for n, t in load_dir(Path(model)).items() if n != drop}
    if reshape is not None:
        tensors[reshape] = tensors[reshape].reshape(-1, 2).contiguous()
    path.mkdir()
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(Path(model) / "config.json", path / "config.json")
    (path / "fisher.json").write_text(json.dumps({"norm": 1.0}))
    return str(path)


PREFLIGHT = [
    ("ties without a base", lambda m, d: [m[0], m[1], "--method", "ties", "--weights", "1,1"],
     "method ties needs a base model"),
    ("density above 1", lambda m, d: [m[0], m[1], "--base", m[2], "--method", "ties", "--weights", "1,1", "--param", "density=1.5"],
     r"tensor lm_head\.weight \(default\): density 1.5 of model 0 is outside \(0, 1\]"),
    ("density 0", lambda m, d: [m[0], "--base", m[2], "--method", "dare_linear", "--weights", "1", "--param", "density=0"],
     r"density 0 of model 0 is outside \(0, 1\]"),
    ("weights that cannot be normalised", lambda m, d: [m[0], m[1], "--method", "linear", "--weights", "1,-1", "--param", "normalize=true"],
     "cannot be normalised"),
    ("task-vector weights summing to 0", lambda m, d: [m[0], m[1], "--base", m[2], "--method", "dare_linear", "--weights", "2,-2", "--param", "normalize=true"],
     "cannot be normalised"),
    ("della epsilon too wide", lambda m, d: [m[0], "--base", m[2], "--method", "della", "--weights", "1", "--param", "density=0.5", "--param", "epsilon=0.6"],
     r"epsilon 0.6 of model 0: density ± epsilon"),
    ("breadcrumbs gamma 1", lambda m, d: [m[0], "--base", m[2], "--method", "breadcrumbs", "--weights", "1", "--param", "gamma=1"],
     r"gamma 1 of model 0 is outside \[0, 1\)"),
    ("unknown parameter", lambda m, d: [m[0], "--base", m[2], "--method", "ties", "--weights", "1", "--param", "densty=0.5"],
     "unknown key 'densty'; did you mean 'density'"),
    ("parameter without a value", lambda m, d: [m[0], m[1], "--method", "slerp", "--param", "t"],
     "expected NAME=VALUE"),
    ("slerp without t", lambda m, d: [m[0], m[1], "--method", "slerp"],
     "no value for parameter t"),
    ("slerp of three models", lambda m, d: [m[0], m[1], m[2], "--method", "slerp", "--param", "t=0.5"],
     "method slerp needs exactly 2 model"),
    ("rescale not a choice", lambda m, d: [m[0], "--base", m[2], "--method", "dare_ties", "--weights", "1", "--param", "rescale=l2"],
     "rescale 'l2' is not one of none, l1, inverse"),
    ("negative seed", lambda m, d: [m[0], "--base", m[2], "--method", "dare_ties", "--weights", "1", "--seed", "-1"],
     "seed -1 must be a non-negative integer"),
    ("mergekit: unknown key", lambda m, d: _mergekit(d, f"merge_method: linear\nmodels:\n  - model: {m[0]}\nbase_modle: {m[1]}\n"),
     "unknown key 'base_modle'; did you mean 'base_model'"),
    ("mergekit: unknown parameter", lambda m, d: _mergekit(d, f"merge_method: ties\nbase_model: {m[2]}\nmodels:\n  - model: {m[0]}\n    parameters: {{weight: 1, densty: 0.5}}\n"),
     "unknown key 'densty'; did you mean 'density'"),
    ("mergekit: unknown key of a model", lambda m, d: _mergekit(d, f"merge_method: linear\nmodels:\n  - model: {m[0]}\n    parameter: {{weight: 1}}\n"),
     "unknown key 'parameter'; did you mean 'parameters'"),
    ("mergekit: missing base_model", lambda m, d: _mergekit(d, f"merge_method: ties\nmodels:\n  - model: {m[0]}\n    parameters: {{weight: 1}}\n"),
     "merge_method ties needs base_model"),
    ("mergekit: a method of a later phase", lambda m, d: _mergekit(d, f"merge_method: ram\nmodels:\n  - model: {m[0]}\n"),
     "merge_method ram is not supported yet"),
    ("nearswap without a base", lambda m, d: [m[0], "--method", "nearswap", "--param", "t=0.1"],
     "method nearswap needs a base model"),
    ("nearswap of two models", lambda m, d: [m[0], m[1], "--base", m[2], "--method", "nearswap", "--param", "t=0.1"],
     "method nearswap needs exactly 1 model"),
    ("nearswap negative t", lambda m, d: [m[0], "--base", m[2], "--method", "nearswap", "--param", "t=-0.1"],
     r"tensor lm_head\.weight \(default\): t -0.1 must be a finite number >= 0"),
    ("nearswap without t", lambda m, d: [m[0], "--base", m[2], "--method", "nearswap"],
     "no value for parameter t"),
    ("arcee_fusion with weights", lambda m, d: [m[0], "--base", m[2], "--method", "arcee_fusion", "--weights", "1"],
     "method arcee_fusion takes no weights and no parameters"),
    ("arcee_fusion without a base", lambda m, d: _mergekit(d, f"merge_method: arcee_fusion\nmodels:\n  - model: {m[0]}\n  - model: {m[1]}\n"),
     "merge_method arcee_fusion needs base_model"),
    ("mergekit: arcee_fusion of three models", lambda m, d: _mergekit(d, f"merge_method: arcee_fusion\nbase_model: {m[2]}\nmodels:\n  - model: {m[0]}\n  - model: {m[1]}\n"),
     "method arcee_fusion needs exactly 1 model"),
    ("mergekit: residual_weight not a number", lambda m, d: _mergekit(d, f"merge_method: passthrough\nslices:\n  - sources:\n      - {{model: {m[0]}, layer_range: [0, 2]}}\n    residual_weight: lots\n"),
     r"slices\[0\]\.residual_weight must be a number, got 'lots'"),
    ("mergekit: passthrough of two models without slices", lambda m, d: _mergekit(d, f"merge_method: passthrough\nmodels:\n  - model: {m[0]}\n  - model: {m[1]}\n"),
     "passthrough takes one model, or slices naming a model per layer range; got 2 models"),
    ("mergekit: a slice beyond the layers", lambda m, d: _mergekit(d, f"merge_method: slerp\nbase_model: {m[0]}\nparameters: {{t: 0.5}}\nslices:\n  - sources:\n      - {{model: {m[0]}, layer_range: [0, 1]}}\n      - {{model: {m[1]}, layer_range: [1, 3]}}\n"),
     r"slices\[0\]: every source must span the same number of layers"),
    ("mergekit: a slice range that does not exist", lambda m, d: _mergekit(d, f"merge_method: slerp\nbase_model: {m[0]}\nparameters: {{t: 0.5}}\nslices:\n  - sources:\n      - {{model: {m[0]}, layer_range: [0, 3]}}\n      - {{model: {m[1]}, layer_range: [0, 3]}}\n"),
     r"slices\[0\]\.sources\[0\]: layer_range \[0, 3\] of .* does not exist: it has 2 layers"),
    ("mergekit: a named chat template", lambda m, d: _mergekit(d, f"merge_method: linear\nmodels:\n  - {{model: {m[0]}, parameters: {{weight: 1}}}}\nchat_template: chatml\n"),
     "chat_template 'chatml' names one of mergekit's bundled templates"),
    ("mergekit: density 0 of a model", lambda m, d: _mergekit(d, f"merge_method: ties\nbase_model: {m[2]}\nmodels:\n  - model: {m[0]}\n    parameters: {{weight: 1, density: 0}}\n"),
     r"density 0 of model 0 is outside \(0, 1\]"),
    ("mergekit: unknown key of a slice source", lambda m, d: _mergekit(d, f"merge_method: passthrough\nslices:\n  - sources:\n      - {{model: {m[0]}, layer_rnage: [0, 2]}}\n"),
     "unknown key 'layer_rnage'; did you mean 'layer_range'"),
    ("mergekit: unknown key of the tokenizer block", lambda m, d: _mergekit(d, f"merge_method: linear\nmodels:\n  - model: {m[0]}\n  - model: {m[1]}\ntokenizer: {{sorce: union}}\n"),
     "unknown key 'sorce'; did you mean 'source'"),
    ("mergekit: a passthrough range that does not exist", lambda m, d: _mergekit(d, f"merge_method: passthrough\nslices:\n  - sources: [{{model: {m[0]}, layer_range: [0, 2]}}]\n  - sources: [{{model: {m[1]}, layer_range: [1, 4]}}]\n"),
     r"slices\[1\]\.sources\[0\]: layer_range \[1, 4\] of .* does not exist: it has 2 layers"),
    ("mergekit: a token source outside a slice's models", lambda m, d: _mergekit(d, f"merge_method: passthrough\nslices:\n  - sources: [{{model: {m[0]}, layer_range: [0, 2]}}]\n  - sources: [{{model: {m[1]}, layer_range: [1, 2]}}]\ntokenizer: {{source: union, tokens: {{'a': {{source: {m[1]}}}}}}}\n"),
     r"tokenizer_tokens\['a'\]: source .* is not among the models tensor model\.embed_tokens\.weight is taken from"),
    ("fisher: a Fisher without one of the model's tensors", lambda m, d: [m[0], m[1], "--method", "fisher", "--fisher", _fake_fisher(m[0], d / "f0"), "--fisher", _fake_fisher(m[1], d / "f1", drop="model.norm.weight")],
     r"Fisher .*f1 has no tensor model\.norm\.weight \(\[32\] in .*\); compute it for that model with wiseft fisher"),
    ("fisher: a Fisher tensor of another shape", lambda m, d: [m[0], m[1], "--method", "fisher", "--fisher", _fake_fisher(m[0], d / "f0", reshape="model.norm.weight"), "--fisher", _fake_fisher(m[1], d / "f1")],
     r"Fisher .*f0 has F32 \[16, 2\] for model\.norm\.weight \(\[32\] in .*\)"),
    ("mergekit: a required weight missing", lambda m, d: _mergekit(d, f"merge_method: task_arithmetic\nbase_model: {m[2]}\nmodels:\n  - model: {m[0]}\n    parameters: {{weight: [{{filter: mlp, value: 1}}]}}\n"),
     "needs --weights|no value for parameter weight of model"),
]  # fmt: skip


@pytest.mark.parametrize("case", PREFLIGHT, ids=[c[0] for c in PREFLIGHT])
def test_bad_parameters_are_refused_before_reading_tensors(capsys, trio, tmp_path, monkeypatch, case):
    from wiseft.checkpoints import Checkpoint

    def no_reads(*args, **kwargs):
        raise AssertionError("tensor data was read before the pre-flight refused the merge")

    monkeypatch.setattr(Checkpoint, "read_into", no_reads)
    monkeypatch.setattr(Checkpoint, "load", no_reads)
    out = tmp_path / "out"
    fails(capsys, ["merge", *case[1](trio, tmp_path), "-o", str(out)], case[2], out)

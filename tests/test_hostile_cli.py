"""Every subcommand, given a broken input of each kind: exit status 2, one line that names the file or flag at
fault, no traceback, and nothing written (not the output, not a lock file, not an empty directory)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from wiseft.testing import save_tiny_model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A good tiny model and, beside it, broken copies of it; a data file and a broken one."""
    root = tmp_path_factory.mktemp("hostile-cli")
    good = save_tiny_model(root / "good", seed=0)
    truncated = _copy(good, root / "truncated")
    blob = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    oversized = _copy(good, root / "oversized-header")
    raw = (oversized / "model.safetensors").read_bytes()
    (oversized / "model.safetensors").write_bytes(struct.pack("<Q", 10**12) + raw[8:])
    remote = _copy(good, root / "remote-code")
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    (root / "sft.jsonl").write_text('{"prompt": "1+1=", "completion": "2$"}\n')
    (root / "bad.jsonl").write_text('{"prompt": "1+1=", "completion": "2$"}\n{not json\n')
    record = '{"problem_id": "toy-5-test-0000", "sample_idx": 0, "completion": "81$"}'
    (root / "bad-samples.jsonl").write_text(record + "\n{not json\n")
    (root / "samples.jsonl").write_text(record[:-1] + ', "prompt": "1+1="}\n')
    (root / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    (root / "bad.yaml").write_text("task: toy\nn: [unclosed\n")
    run = root / "run"
    _copy(good, run / "checkpoint-10")
    _copy(truncated, run / "checkpoint-20")
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def eval_flags(out):
    return ["--task", "toy", "--limit", "2", "--n", "2", "--k", "1", "--max-new-tokens", "4", "--device", "cpu",
            "--threads", "1", "-o", out]  # fmt: skip


# A YAML syntax error may show the parser's detail on the lines after its one-line summary.
MULTI_LINE = {"eval-bad-yaml"}
CASES = [
    # (id, argv builder (world, out) -> argv, fragment of the message's first line)
    ("merge-truncated", lambda w, o: ["merge", w / "good", w / "truncated", "--delta", "0.5", "-o", o], "truncated"),
    ("merge-oversized-header", lambda w, o: ["merge", w / "oversized-header", w / "good", "--delta", "0.5", "-o", o],
     "oversized-header"),
    ("merge-missing", lambda w, o: ["merge", w / "nope", w / "good", "--delta", "0.5", "-o", o], "nope"),
    ("merge-nan-delta", lambda w, o: ["merge", w / "good", w / "good", "--delta", "nan", "-o", o], "delta: nan"),
    ("eval-truncated", lambda w, o: ["eval", w / "truncated", *eval_flags(o)], "truncated"),
    ("eval-oversized-header", lambda w, o: ["eval", w / "oversized-header", *eval_flags(o)], "oversized-header"),
    ("eval-remote-code", lambda w, o: ["eval", w / "remote-code", *eval_flags(o)], "remote code"),
    ("eval-bad-yaml", lambda w, o: ["eval", w / "good", "--config", w / "bad.yaml", "-o", o], "bad.yaml"),
    ("eval-huge-grid", lambda w, o: ["eval", w / "good", *eval_flags(o), "--temperature", "0:1:1e-9"], "--temperature"),
    ("eval-huge-k", lambda w, o: ["eval", w / "good", *eval_flags(o), "--k", "1:100000000:1"], "--k"),
    ("eval-workers", lambda w, o: ["eval", w / "good", *eval_flags(o), "--workers", "500"], "--workers"),
    ("eval-n-boot", lambda w, o: ["eval", w / "good", *eval_flags(o), "--n-boot", "1000000000"], "--n-boot"),
    ("eval-context", lambda w, o: ["eval", w / "good", *eval_flags(o), "--max-new-tokens", "100000"],
     "--max-new-tokens"),
    ("sweep-truncated", lambda w, o: ["sweep", w / "good", w / "truncated", *eval_flags(o), "--delta", "0,1"],
     "truncated"),
    ("sweep-remote-code", lambda w, o: ["sweep", w / "remote-code", w / "remote-code", *eval_flags(o),
                                        "--delta", "0,1"], "remote code"),  # fmt: skip
    ("sweep-infinite-grid", lambda w, o: ["sweep", w / "good", w / "good", *eval_flags(o), "--delta", "0:inf:1"],
     "--delta"),
    ("trajectory-truncated", lambda w, o: ["trajectory", w / "run", *eval_flags(o)], "checkpoint-20"),
    ("train-truncated", lambda w, o: ["train", "sft", "--model", w / "truncated", "--data", w / "sft.jsonl",
                                      "-o", o, "--steps", "1"], "truncated"),  # fmt: skip
    ("train-remote-code", lambda w, o: ["train", "sft", "--model", w / "remote-code", "--data", w / "sft.jsonl",
                                        "-o", o, "--steps", "1"], "remote code"),  # fmt: skip
    ("train-bad-data", lambda w, o: ["train", "sft", "--model", w / "good", "--data", w / "bad.jsonl", "-o", o,
                                     "--steps", "1"], "bad.jsonl:2"),  # fmt: skip
    ("train-deep-json", lambda w, o: ["train", "sft", "--model", w / "good", "--data", w / "deep.jsonl", "-o", o,
                                      "--steps", "1"], "deep.jsonl:1"),  # fmt: skip
    ("grpo-remote-code", lambda w, o: ["train", "grpo", "--model", w / "remote-code", "--task", "toy", "-o", o,
                                       "--steps", "1"], "remote code"),  # fmt: skip
    ("grade-bad-jsonl", lambda w, o: ["grade", w / "bad-samples.jsonl", "--task", "toy", "-o", o],
     "bad-samples.jsonl:2"),
    ("grade-nan-timeout", lambda w, o: ["grade", w / "sft.jsonl", "--task", "toy", "--timeout", "nan", "-o", o],
     "--timeout"),
    ("score-huge-n-boot", lambda w, o: ["score", w / "sft.jsonl", "--n-boot", "1000000000", "-o", o], "--n-boot"),
    ("report-deep-json", lambda w, o: ["report", w / "deep.jsonl", "-o", o], "deep.jsonl"),
    ("store-import-bad", lambda w, o: ["store", "import", o, w / "bad-samples.jsonl", "--task", "toy"],
     "bad-samples.jsonl:2"),
    ("store-info-missing", lambda w, o: ["store", "info", w / "no.db"], "no.db"),
    ("verify-bad-jsonl", lambda w, o: ["verify", w / "bad-samples.jsonl", "--verifier", w / "good", "--kind",
                                       "likelihood", "-o", o], "bad-samples.jsonl:2"),  # fmt: skip
    ("verify-truncated", lambda w, o: ["verify", w / "samples.jsonl", "--verifier", w / "truncated", "--kind",
                                       "likelihood", "-o", o], "truncated"),  # fmt: skip
    ("verify-not-a-classifier", lambda w, o: ["verify", w / "samples.jsonl", "--verifier", w / "good", "--kind",
                                              "orm", "-o", o], "is not a sequence classifier"),  # fmt: skip
    ("verify-huge-budget", lambda w, o: ["verify", w / "samples.jsonl", "--verifier", w / "good", "--kind",
                                         "likelihood", "--cpu-budget-gib", "1e9", "-o", o], "--cpu-budget-gib"),  # fmt: skip
]  # fmt: skip


@pytest.mark.parametrize("case, build, fragment", CASES, ids=[c[0] for c in CASES])
def test_broken_input_is_one_line_exit_2_and_nothing_written(world, tmp_path, cli, case, build, fragment):
    out = tmp_path / "out"
    code, err = cli(build(world, out))
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err and "remote code ran" not in err + cli.out
    assert lines[0].startswith("wiseft ") and ": error: " in lines[0], err
    assert len(lines) == 1 or case in MULTI_LINE, err
    assert fragment in lines[0], err
    assert not out.exists() and not Path(f"{out}.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_argparse_errors_give_their_summary_first(cli):
    with pytest.raises(SystemExit) as info:
        cli(["eval", "--n", "many"])
    assert info.value.code == 2


def test_an_unwritable_output_is_one_line(world, tmp_path, cli, monkeypatch):
    """Writing fails (read-only directory, full disk): OutputError naming the file, nothing left half-written."""
    import builtins

    real_open = builtins.open
    target = tmp_path / "graded.jsonl"

    def refusing_open(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied")
        return real_open(file, mode, *args, **kwargs)

    samples = tmp_path / "samples.jsonl"
    samples.write_text((world / "bad-samples.jsonl").read_text().splitlines()[0] + "\n")
    monkeypatch.setattr(builtins, "open", refusing_open)
    code, err = cli(["grade", samples, "--task", "toy", "-o", target])
    assert code == 2 and f"cannot write {target}: Permission denied" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.jsonl"]

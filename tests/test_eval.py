"""`wiseft eval`: one model sampled, graded and scored; outputs, reruns and bad input."""

from __future__ import annotations

import json

from _sampling_fixtures import run_cli, tiny_model_dir

from wiseft.grading.records import read_records


def _args(model, out, *extra):
    return ["eval", str(model), "--task", "toy", "--limit", "6", "--n", "4", "--k", "1,2,4",
            "--max-new-tokens", "8", "--threads", "1", "--n-boot", "20", "--device", "cpu", "-o", str(out),
            *extra]  # fmt: skip


def test_eval_writes_metrics_samples_and_config(tmp_path, capsys):
    model = tiny_model_dir(tmp_path, "m")
    out = tmp_path / "out"
    code, _ = run_cli(_args(model, out), capsys)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_problems"] == 6 and metrics["n"] == 4
    assert set(metrics["metrics"]) >= {"pass@1", "pass@2", "pass@4", "maj@4"}
    assert metrics["grader"] == "int-exact"
    records = read_records(out / "samples.jsonl", graded=True)
    assert len(records) == 24
    # A length-limited model is recorded as such: these random weights rarely emit "$" or EOS in 8 tokens.
    assert {r["finish_reason"] for r in records} <= {"stop", "length"}
    truncated = sum(r["finish_reason"] == "length" for r in records) / len(records)
    assert metrics["tokens"]["truncated_frac"] == truncated
    config = (out / "config.yaml").read_text()
    assert "wiseft_version" in config and "n: 4" in config
    # Finished results are not overwritten without --force; with it the store is reused.
    code, err = run_cli(_args(model, out), capsys)
    assert code == 2 and f"output {out} already holds metrics.json" in err
    code, _ = run_cli(_args(model, out, "--force"), capsys)
    assert code == 0
    assert read_records(out / "samples.jsonl", graded=True) == records


def test_eval_bad_input_writes_nothing(tmp_path, capsys):
    model = tiny_model_dir(tmp_path, "m")
    out = tmp_path / "out"
    code, err = run_cli(_args(model, out, "--n", "2"), capsys)
    assert code == 2 and "--k 4 is larger than --n 2" in err
    code, err = run_cli(_args(model, out, "--task", "nope"), capsys)
    assert code == 2 and "unknown task 'nope'" in err
    code, err = run_cli(_args(tmp_path / "missing", out), capsys)
    assert code == 2 and "has no config.json" in err
    assert not out.exists()


def test_eval_yaml_config_with_flags_overriding(tmp_path, capsys):
    model = tiny_model_dir(tmp_path, "m")
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("task: toy\nlimit: 3\nn: 2\nk: [1, 2]\nmax_new_tokens: 6\nthreads: 1\nn_boot: 10\n")
    out = tmp_path / "out"
    code, _ = run_cli(["eval", str(model), "--config", str(cfg), "--n", "3", "--device", "cpu", "-o", str(out)],
                      capsys)  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_problems"] == 3 and metrics["n"] == 3
    cfg.write_text("task: toy\nbogus: 1\n")
    code, err = run_cli(["eval", str(model), "--config", str(cfg), "-o", str(tmp_path / "o2")], capsys)
    assert code == 2 and "unknown key(s) bogus" in err


def test_model_that_never_stops_is_recorded_as_length(tmp_path):
    from wiseft.sampling.fake import ScriptedSampler
    from wiseft.store import SampleStore
    from wiseft.sweep import ModelEvalConfig, run_eval

    model = tiny_model_dir(tmp_path, "m")
    cfg = ModelEvalConfig(model=str(model), task="toy", limit=4, n=2, k=(1, 2), max_new_tokens=12, n_boot=10,
                          device="cpu")  # fmt: skip
    never = ScriptedSampler(lambda prompt, i, params: "12," * 50)  # no "$", no end of sequence
    entries = run_eval(cfg, model, tmp_path / "out", sampler_factory=lambda m, t: never)
    assert entries[0]["summary"]["tokens"]["truncated_frac"] == 1.0
    with SampleStore(tmp_path / "out" / "samples.db", writer=False) as store:
        recs = store.records(store.variants()[0])
    assert len(recs) == 8
    assert all(r["finish_reason"] == "length" and r["n_tokens"] == 12 for r in recs)


def test_store_of_another_version_is_refused(tmp_path, capsys):
    import sqlite3

    from wiseft.store import SampleStore

    model = tiny_model_dir(tmp_path, "m")
    out = tmp_path / "out"
    SampleStore(out / "samples.db").close()
    db = sqlite3.connect(out / "samples.db")
    db.execute("UPDATE meta SET value='0' WHERE key='schema_version'")
    db.commit()
    db.close()
    code, err = run_cli(_args(model, out), capsys)
    assert code == 2 and "has schema version 0" in err and str(out / "samples.db") in err
    assert sorted(p.name for p in out.iterdir()) == ["samples.db", "samples.db.lock"]

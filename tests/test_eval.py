"""`wiseft eval`: one model sampled, graded and scored; outputs, reruns and bad input."""

from __future__ import annotations

import json

from support.sampling import tiny_model_dir

from wiseft.evaluate.config import ModelEvalConfig
from wiseft.evaluate.runners import run_eval
from wiseft.records import read_records
from wiseft.sampling.fake import ScriptedSampler
from wiseft.store import SampleStore


def _args(model, out, *extra):
    return ["eval", str(model), "--task", "toy", "--limit", "6", "--n", "4", "--k", "1,2,4",
            "--max-new-tokens", "8", "--threads", "1", "--n-boot", "20", "--device", "cpu", "-o", str(out),
            *extra]  # fmt: skip


def test_eval_writes_metrics_samples_and_config(tmp_path, cli):
    model = tiny_model_dir(tmp_path, "m")
    out = tmp_path / "out"
    code, _ = cli(_args(model, out))
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["grader"] == "int-exact" and len(metrics["variants"]) == 1
    summary = metrics["variants"][0]["summary"]
    assert summary["n_problems"] == 6 and summary["n"] == 4
    assert set(summary["metrics"]) >= {"pass@1", "pass@2", "pass@4", "maj@4"}
    records = read_records(out / "samples.jsonl", graded=True)
    assert len(records) == 24
    truncated = sum(r["finish_reason"] == "length" for r in records) / len(records)
    assert summary["tokens"]["truncated_frac"] == truncated
    assert metrics["task"]["example_prompt"] == records[0]["prompt"]  # the rendered prompt is recorded
    assert all(r["gold"] and r["prompt"].endswith("=") for r in records)  # toy prompts end with "="
    config = (out / "config.yaml").read_text()
    assert "wiseft_version" in config and "n: 4" in config


def test_finished_eval_is_kept_unless_forced_and_then_reuses_the_store(tmp_path, cli):
    model = tiny_model_dir(tmp_path, "m")
    out = tmp_path / "out"
    assert cli(_args(model, out))[0] == 0
    records = read_records(out / "samples.jsonl", graded=True)
    code, err = cli(_args(model, out))
    assert code == 2 and f"output {out} already holds metrics.json" in err
    code, _ = cli(_args(model, out, "--force"))
    assert code == 0
    assert read_records(out / "samples.jsonl", graded=True) == records


def test_finish_reasons_and_token_counts_are_the_samplers(tmp_path):
    """Samples that stop and samples cut by the length limit are recorded as such, with their counts."""
    model = tiny_model_dir(tmp_path, "m")
    cfg = ModelEvalConfig(model=str(model), task="toy", limit=4, n=2, k=(1, 2), max_new_tokens=12, n_boot=10,
                          device="cpu")  # fmt: skip
    # Sample 0 of each problem writes an answer and stops ("$"); sample 1 never stops.
    script = ScriptedSampler(lambda prompt, i, params: "81$" if i == 0 else "12," * 50)
    results = run_eval(cfg, tmp_path / "out", sampler_factory=lambda m, t: script)
    assert results.variants[0].summary["tokens"]["truncated_frac"] == 0.5
    records = read_records(tmp_path / "out" / "samples.jsonl", graded=True)
    by_index = {
        i: {(r["finish_reason"], r["n_tokens"]) for r in records if r["sample_idx"] == i} for i in (0, 1)
    }
    assert by_index[0] == {("stop", 3)} and by_index[1] == {("length", 12)}


def test_eval_bad_input_writes_nothing(tmp_path, cli):
    model = tiny_model_dir(tmp_path, "m")
    out = tmp_path / "out"
    code, err = cli(_args(model, out, "--n", "2"))
    assert code == 2 and "--k 4 is larger than --n 2" in err
    code, err = cli(_args(model, out, "--task", "nope"))
    assert code == 2 and "unknown task 'nope'" in err
    code, err = cli(_args(tmp_path / "missing", out))
    assert code == 2 and "missing does not exist" in err
    assert not out.exists()


def test_eval_yaml_config_with_flags_overriding(tmp_path, cli):
    model = tiny_model_dir(tmp_path, "m")
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("task: toy\nlimit: 3\nn: 2\nk: [1, 2]\nmax_new_tokens: 6\nthreads: 1\nn_boot: 10\n")
    out = tmp_path / "out"
    code, _ = cli(["eval", model, "--config", cfg, "--n", "3", "--device", "cpu", "-o", out])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    summary = metrics["variants"][0]["summary"]
    assert summary["n_problems"] == 3 and summary["n"] == 3
    cfg.write_text("task: toy\nbogus: 1\n")
    code, err = cli(["eval", model, "--config", cfg, "-o", tmp_path / "o2"])
    assert code == 2 and "unknown key(s) bogus" in err


def test_model_that_never_stops_is_recorded_as_length(tmp_path):
    model = tiny_model_dir(tmp_path, "m")
    cfg = ModelEvalConfig(model=str(model), task="toy", limit=4, n=2, k=(1, 2), max_new_tokens=12, n_boot=10,
                          device="cpu")  # fmt: skip
    never = ScriptedSampler(lambda prompt, i, params: "12," * 50)  # no "$", no end of sequence
    results = run_eval(cfg, tmp_path / "out", sampler_factory=lambda m, t: never)
    assert results.variants[0].summary["tokens"]["truncated_frac"] == 1.0
    with SampleStore(tmp_path / "out" / "samples.db", writer=False) as store:
        recs = store.records(store.variants()[0])
    assert len(recs) == 8
    assert all(r["finish_reason"] == "length" and r["n_tokens"] == 12 for r in recs)


def test_store_of_another_version_is_refused(tmp_path, cli):
    import sqlite3

    model = tiny_model_dir(tmp_path, "m")
    out = tmp_path / "out"
    SampleStore(out / "samples.db").close()
    db = sqlite3.connect(out / "samples.db")
    db.execute("UPDATE meta SET value='0' WHERE key='schema_version'")
    db.commit()
    db.close()
    code, err = cli(_args(model, out))
    assert code == 2 and "has schema version 0" in err and str(out / "samples.db") in err
    assert sorted(p.name for p in out.iterdir()) == ["samples.db", "samples.db.lock"]


def test_another_prompt_style_draws_its_own_samples_and_a_larger_limit_reuses_them(tmp_path):
    model = tiny_model_dir(tmp_path, "m")
    store = tmp_path / "shared.db"

    def run(out, **kw):
        cfg = ModelEvalConfig(model=str(model), task="toy", n=2, max_new_tokens=6, n_boot=10, device="cpu",
                              store=str(store), **kw)  # fmt: skip
        calls = ScriptedSampler(lambda prompt, i, params: "81$")
        run_eval(cfg, tmp_path / out, sampler_factory=lambda m, t: calls)
        return calls.calls

    assert len(run("plain", limit=3)) == 3
    assert len(run("paper", limit=3, prompt="paper")) == 3  # another prompt: sampled again
    assert len(run("paper-more", limit=5, prompt="paper")) == 2  # the same prompt: only the new problems
    with SampleStore(store, writer=False) as db:
        assert len(db.variants()) == 2

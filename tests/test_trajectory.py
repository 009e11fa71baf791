"""`wiseft trajectory RUN_DIR`: checkpoints raw and mixed, ordered by step; bad runs are refused."""

from __future__ import annotations

import json

from support.sampling import tiny_model_dir


def _args(run, out, *extra):
    return ["trajectory", str(run), "--task", "toy", "--limit", "6", "--n", "2", "--k", "1,2",
            "--delta", "0.5", "--max-new-tokens", "8", "--threads", "1", "--n-boot", "20", "--device", "cpu",
            "--no-report", "-o", str(out), *extra]  # fmt: skip


def test_trajectory_table_by_step(tmp_path, cli):
    run = tmp_path / "run"
    for i, step in enumerate((30, 10, 20)):
        tiny_model_dir(run, f"checkpoint-{step}", seed=i)
    (run / "notes").mkdir()  # not a checkpoint: ignored
    out = tmp_path / "out"
    code, _ = cli(_args(run, out))
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    got = [(v["kind"], v["step"], v["delta"]) for v in res["variants"]]
    assert got == [("checkpoint", 10, None), ("checkpoint", 20, None), ("mix", 20, 0.5),
                   ("checkpoint", 30, None), ("mix", 30, 0.5)]  # fmt: skip
    assert res["early_step"] == 10
    assert res["best"]["variant"] in {v["name"] for v in res["variants"]}
    assert (out / "config.yaml").is_file()


def test_trajectory_bad_runs(tmp_path, cli):
    run = tmp_path / "run"
    tiny_model_dir(run, "checkpoint-10", seed=0)
    tiny_model_dir(run, "checkpoint-20", seed=1, hidden=48)  # another architecture: does not match
    out = tmp_path / "out"
    code, err = cli(_args(run, out))
    assert code == 2 and "checkpoint-20" in err and "[64, 48]" in err
    assert not out.exists()
    code, err = cli(_args(run, out, "--early", "15"))
    assert code == 2 and "--early 15" in err and "[10, 20]" in err
    code, err = cli(_args(tmp_path / "empty", out))
    assert code == 2 and "is not a directory" in err
    (tmp_path / "empty").mkdir()
    code, err = cli(_args(tmp_path / "empty", out))
    assert code == 2 and "holds no checkpoint-STEP directories" in err
    assert not out.exists()

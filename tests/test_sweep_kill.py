"""A sweep killed with SIGKILL and started again loses no sample and duplicates none, and ends with exactly
the samples an uninterrupted sweep draws (a real subprocess is killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from support.sampling import tiny_model_dir
from support.stores import sample_count, sample_rows

from wiseft.evaluate.config import SweepConfig
from wiseft.evaluate.runners import run_sweep

N, LIMIT, DELTAS = 3, 16, "0,0.5,1"
DELTA_VALUES = (0.0, 0.5, 1.0)


def _sweep_cmd(early, final, out):
    return [
        sys.executable, "-m", "wiseft", "sweep", str(early), str(final), "--task", "toy", "--limit", str(LIMIT),
        "--n", str(N), "--k", "1,3", "--delta", DELTAS, "--max-new-tokens", "10", "--chunk", "1",
        "--threads", "1", "--n-boot", "20", "--device", "cpu", "--no-report", "-o", str(out),
    ]  # fmt: skip


def test_sigkill_mid_sweep_then_resume(tmp_path):
    early = tiny_model_dir(tmp_path, "early", seed=1)
    final = tiny_model_dir(tmp_path, "final", seed=2)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    total = 3 * LIMIT * N

    out = tmp_path / "killed"
    proc = subprocess.Popen(_sweep_cmd(early, final, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    db_path = out / "samples.db"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if db_path.exists() and sample_count(db_path) >= N * 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep finished before it could be killed: " + proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = sample_count(db_path)
    assert 0 < partial < total
    assert partial % N == 0  # whole problems only: each chunk was one transaction

    resumed = subprocess.run(_sweep_cmd(early, final, out), env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    rows = sample_rows(db_path)
    keys = [r[:3] for r in rows]
    assert len(keys) == len(set(keys)) == total
    assert {r[2] for r in rows} == set(range(N))

    # The same sweep uninterrupted (in this process, to save an interpreter start) draws the same samples.
    clean = tmp_path / "clean"
    cfg = SweepConfig(anchors=(str(early), str(final)), task="toy", limit=LIMIT, n=N, k=(1, 3), delta=DELTA_VALUES,
                      max_new_tokens=10, chunk=LIMIT, threads=1, n_boot=20, device="cpu")  # fmt: skip
    run_sweep(cfg, clean, report=False)
    assert sample_rows(clean / "samples.db") == rows
    assert (out / "results.json").is_file() and (out / "config.yaml").is_file()

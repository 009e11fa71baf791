"""A soup killed with SIGKILL and started again loses no sample, duplicates none, leaves no output behind,
and ends with the samples and the output of an uninterrupted soup (a real subprocess is killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from support.sampling import tiny_model_dir
from support.stores import sample_count, sample_rows

from wiseft.evaluate.soup import run_soup
from wiseft.evaluate.soup_config import SoupConfig

N, LIMIT = 2, 8
VARIANTS = 5  # A, B, C alone, then soup(A+B) and soup(A+B+C): random models score 0, every tie keeps


def _cmd(models, out):
    return [
        sys.executable, "-m", "wiseft", "soup", *models, "--task", "toy", "--split", "sft", "--limit", str(LIMIT),
        "--n", str(N), "--max-new-tokens", "8", "--chunk", "1", "--threads", "1", "--n-boot", "20",
        "--device", "cpu", "-o", str(out),
    ]  # fmt: skip


def test_sigkill_mid_soup_then_resume(tmp_path):
    models = [str(tiny_model_dir(tmp_path, name, seed=s)) for name, s in zip("ABC", (1, 2, 3), strict=True)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    total = VARIANTS * LIMIT * N
    out = tmp_path / "killed"
    db_path = tmp_path / "killed.samples.db"
    proc = subprocess.Popen(_cmd(models, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if db_path.exists() and sample_count(db_path) >= 2 * LIMIT * N + N:  # into the third candidate
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the soup finished before it could be killed: " + proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = sample_count(db_path)
    assert 0 < partial < total and partial % N == 0  # whole problems only: one transaction per chunk
    assert not out.exists()

    resumed = subprocess.run(_cmd(models, out), env=env, capture_output=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    rows = sample_rows(db_path)
    keys = [r[:3] for r in rows]
    assert len(keys) == len(set(keys)) == total

    # The same soup uninterrupted (in this process) draws the same samples and writes the same output.
    clean = tmp_path / "clean"
    cfg = SoupConfig(candidates=tuple(models), task="toy", split="sft", limit=LIMIT, n=N, max_new_tokens=8,
                     chunk=LIMIT, threads=1, n_boot=20, device="cpu")  # fmt: skip
    run_soup(cfg, clean)
    assert sample_rows(tmp_path / "clean.samples.db") == rows
    for name in ("model.safetensors", "config.json", "recipe.yaml"):
        assert (out / name).read_bytes() == (clean / name).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

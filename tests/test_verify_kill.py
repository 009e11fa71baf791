"""`wiseft verify` killed with SIGKILL and started again loses no score and duplicates none, and ends with
the scores an uninterrupted run writes (a real subprocess is killed)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
from support.verifying import make_store

from wiseft.evaluate.verifying import verify_store
from wiseft.testing import save_tiny_verifier
from wiseft.verify import load_verifier

VARIANTS, PROBLEMS, N = ("a", "b"), 40, 8
TOTAL = len(VARIANTS) * PROBLEMS * N


def _cmd(store, verifier):
    return [sys.executable, "-m", "wiseft", "verify", str(store), "--verifier", str(verifier), "--kind", "orm",
            "--chunk", "1", "--max-rows", "1", "--threads", "1", "--device", "cpu"]  # fmt: skip


def _scores(path):
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT variant_id, problem_id, sample_idx, verifier_id, score FROM scores "
        "ORDER BY variant_id, problem_id, sample_idx"
    ).fetchall()
    db.close()
    return rows


def _count(path):
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_sigkill_mid_verify_then_resume(tmp_path):
    store = make_store(tmp_path / "s.db", VARIANTS, n_problems=PROBLEMS, n=N)
    clean = tmp_path / "clean.db"
    shutil.copy(store, clean)
    verifier = save_tiny_verifier(tmp_path / "orm", "sequence", "gpt2")
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    proc = subprocess.Popen(_cmd(store, verifier), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and _count(store) < 20:
        time.sleep(0.01)
    assert proc.poll() is None, "verify finished before it could be killed: " + proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _scores(store)
    assert 0 < len(partial) < TOTAL

    resumed = subprocess.run(_cmd(store, verifier), env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    rows = _scores(store)
    keys = [r[:4] for r in rows]
    assert len(keys) == len(set(keys)) == TOTAL
    assert set(partial) <= set(rows)  # what the killed run committed is kept as it was
    db = sqlite3.connect(store)
    runs = db.execute("SELECT finished IS NULL FROM runs WHERE command='verify' ORDER BY id").fetchall()
    db.close()
    assert runs == [(1,), (0,)]  # the killed run never finished; the resumed one did

    # An uninterrupted run (in this process) scores the same, up to float32 batch rounding (one sample a
    # time in both, so in fact bit for bit here).
    verify_store(clean, load_verifier(verifier, "orm", device="cpu"))
    ref = _scores(clean)
    assert [r[:4] for r in ref] == keys
    np.testing.assert_allclose([r[4] for r in rows], [r[4] for r in ref], rtol=1e-5, atol=1e-5)

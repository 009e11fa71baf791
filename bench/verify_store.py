"""Benchmark: `wiseft verify` on a sample store with the demo's toy verifier, on CPU: samples/s scored into
the store against the verifier alone, and what resuming costs.

The store holds toy-world samples (bench/verify.py's `toy_items`: a prompt such as `23+58+91+17=`, a
completion of three reversed partial sums) of two variants; the toy verifier (`verify.toy`, a few
training steps: speed does not depend on training) scores them. Rows, each the median of --runs runs on
a fresh copy of the store:
- "verifier alone": `Verifier.score` of the same items in one call, nothing stored (the baseline,
  measured in the same run);
- `verify_store` at the default chunk (1,024 samples a transaction) and at 128: the same scores written
  into the store, chunk by chunk, each chunk committed;
- "resume, all scored": a rerun when every sample is scored (what a finished store costs to check);
- "resume, half scored": a rerun after half the scores were removed (a run killed halfway), against half
  of a fresh run's time.
The `wiseft verify` command adds the interpreter and model start to these (a few seconds). On a busy
machine, run with --threads 1: a chunk small enough for one batch runs the tiny model on all of torch's
threads, and OpenMP's waits then swamp what the store costs (bench/RESULTS.md).

    .venv/bin/python bench/verify_store.py [--runs 3] [--problems 250] [--n 16] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from verify import TOY_ALPHABET, toy_items  # bench/verify.py

from wiseft.chartok import char_tokenizer
from wiseft.evaluate.verifying import DEFAULT_CHUNK, verify_store
from wiseft.store import SampleStore
from wiseft.verify import Item, load_verifier
from wiseft.verify.toy import ToyVerifierConfig, train_toy_verifier

VARIANTS = ("final", "mix")


def build_store(path: Path, problems: int, n: int) -> list:
    """A store of VARIANTS × problems × n toy samples; returns the items in store order."""
    items = toy_items(len(VARIANTS) * problems * n, seed=0)
    with SampleStore(path) as store:
        store.add_problems("toy", [(f"p{i:04d}", None, items[i * n].prompt) for i in range(problems)])
        at = 0
        for name in VARIANTS:
            v = store.variant(name, "checkpoint", "toy", {"model": name}, {"n": n})
            recs = []
            for i in range(problems):
                for j in range(n):
                    recs.append(
                        {"problem_id": f"p{i:04d}", "sample_idx": j, "completion": items[at].completion}
                    )
                    at += 1
            store.add_samples(v, recs)
    prompts = {f"p{i:04d}": items[i * n].prompt for i in range(problems)}
    return [(prompts[f"p{(k // n) % problems:04d}"], items[k].completion) for k in range(len(items))]


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def fresh(tmp: Path, run: int) -> Path:
    """A copy of the unscored store for one run."""
    path = tmp / f"run{run}.db"
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    shutil.copy(tmp / "base.db", path)
    return path


def unscore_half(path: Path, n: int) -> None:
    """Remove the scores of the upper half of every problem's samples: a run killed halfway."""
    db = sqlite3.connect(path)
    db.execute("DELETE FROM scores WHERE sample_idx >= ?", (n // 2,))
    db.commit()
    db.close()


def measure(tmp: Path, ver, items: list, n: int, runs: int) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {k: [] for k in ("alone", "chunk", "chunk128", "all", "half", "half_ref")}
    for run in range(runs):
        rows["alone"].append(timed(ver.score, items))
        path = fresh(tmp, run)
        rows["chunk"].append(timed(verify_store, path, ver))
        rows["all"].append(timed(verify_store, path, ver))
        unscore_half(path, n)
        rows["half"].append(timed(verify_store, path, ver))
        rows["half_ref"].append(rows["chunk"][-1] / 2)
        rows["chunk128"].append(timed(verify_store, fresh(tmp, run), ver, chunk=128))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--problems", type=int, default=250)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pairs = build_store(tmp / "base.db", args.problems, args.n)
        graded = [(p, c, i % 3 == 0) for i, (p, c) in enumerate(pairs[:256])]
        train_toy_verifier(graded, tmp / "toy", char_tokenizer(TOY_ALPHABET, 64), ToyVerifierConfig(steps=5))
        ver = load_verifier(tmp / "toy", "orm", device="cpu")
        items = [Item(p, c) for p, c in pairs]
        ver.score(items[:64])  # warm-up
        rows = measure(tmp, ver, items, args.n, args.runs)
    print_table(rows, len(items), args)


def print_table(rows: dict[str, list[float]], total: int, args) -> None:
    med = {k: statistics.median(v) for k, v in rows.items()}
    table = Table(
        title=f"bench/verify_store.py: toy verifier, {total:,} samples ({len(VARIANTS)} variants × "
        f"{args.problems} problems × {args.n}), CPU ({torch.get_num_threads()} threads), median of {args.runs}"
    )
    for col in ("what", "seconds", "samples/s", "against the baseline", "run times (s)"):
        table.add_column(col, justify="left" if col == "what" else "right")

    def row(name: str, key: str, samples: int, base: float | None, label: str = "") -> None:
        times = ", ".join(f"{t:.2f}" for t in rows[key])
        rate = f"{samples / med[key]:,.0f}" if samples else "-"
        vs = f"{med[key] / base:.2f}× the time {label}".strip() if base else "baseline"
        table.add_row(name, f"{med[key]:.2f}", rate, vs, times)

    row("verifier alone (Verifier.score, nothing stored)", "alone", total, None)
    row(f"verify_store, chunk {DEFAULT_CHUNK}", "chunk", total, med["alone"])
    row("verify_store, chunk 128", "chunk128", total, med["alone"])
    row("resume, all scored (nothing to do)", "all", 0, med["chunk"], "of a fresh run")
    row("resume, half scored", "half", total // 2, med["half_ref"], "of half a fresh run")
    Console(width=200).print(table)
    Console().print(f"load average during the runs: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

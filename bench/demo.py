"""`wiseft demo` end to end, this tree against a baseline tree (another checkout of wiseft), run alternately
in fresh processes on the same machine: each tree's first run builds its base into its own empty cache
(the fresh time), then --cached-runs runs reuse it (the cached time). Prints the wall seconds of each run,
the median per stage (from each run's results.json) and the whole command's wall time, side by side.

    PYTHONPATH=src python bench/demo.py --baseline /path/to/old/checkout --cached-runs 3
    PYTHONPATH=src python bench/demo.py --baseline … --threads 2 --keep /tmp/demo-bench

Both trees run with the same interpreter (this one) and flags; their outputs go under --keep (a temporary
directory by default). The machine should be otherwise idle: wall time is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("base", "sft", "eval", "verifier", "claims", "report", "total")


def run_demo(tree: Path, out: Path, cache: Path, threads: int) -> dict:
    """One `wiseft demo` of `tree` into `out`: its wall seconds and its results.json timings."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    cmd = [sys.executable, "-m", "wiseft", "demo", "--threads", str(threads), "-o", str(out), "--cache-dir",
           str(cache)]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    timings = json.loads((out / "results.json").read_text())["timings"]
    return {"wall": wall, **{s: timings.get(s) for s in STAGES}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="another checkout of wiseft (its src/ is used)")
    ap.add_argument("--cached-runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", default=None, help="directory for the outputs (default: a temporary one)")
    args = ap.parse_args()
    trees = {"this tree": Path(__file__).resolve().parents[1], "baseline": Path(args.baseline).resolve()}
    work = Path(args.keep or tempfile.mkdtemp(prefix="demo-bench-"))
    runs: dict[tuple[str, str], list[dict]] = {}
    for i in range(1 + args.cached_runs):  # run 0 builds each tree's base; the others reuse it
        mode = "fresh" if i == 0 else "cached"
        for label, tree in trees.items():
            tag = label.replace(" ", "-")
            res = run_demo(tree, work / f"{tag}-{i}", work / f"cache-{tag}", args.threads)
            runs.setdefault((label, mode), []).append(res)
            print(f"{label:9s} {mode:6s} run {i}: {res['wall']:.1f} s", flush=True)
    print(f"\n`wiseft demo --threads {args.threads}`: wall seconds, fresh (1 run) and cached (median of "
          f"{args.cached_runs})")  # fmt: skip
    print(
        "| stage | this tree, fresh | baseline, fresh | this tree, cached | baseline, cached | cached ratio |"
    )
    print("|---|---|---|---|---|---|")
    for stage in ("wall", *STAGES):
        cells = []
        for label, mode in (("this tree", "fresh"), ("baseline", "fresh"), ("this tree", "cached"),
                            ("baseline", "cached")):  # fmt: skip
            values = [r[stage] for r in runs[label, mode] if r[stage] is not None]
            cells.append(statistics.median(values) if values else None)
        ratio = f"{cells[2] / cells[3]:.2f}x" if cells[2] and cells[3] else "–"
        text = " | ".join("–" if c is None else f"{c:.1f}" for c in cells)
        print(f"| {'whole command' if stage == 'wall' else stage} | {text} | {ratio} |")


if __name__ == "__main__":
    main()

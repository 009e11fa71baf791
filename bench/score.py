"""Benchmark: scoring a variant from the sample store (the step after sampling and grading), this tree
against a git ref, side by side in one run.

Scoring one variant is what `wiseft eval`, `sweep`, `score`, `report` and the demo do per variant: read its
graded samples from the store as arrays (`SampleStore.problem_samples`), the per-problem table and the
summary with its bootstrap intervals (`metrics.problem_table`, `metrics.summarize`). The bench builds one
store with the current code (V variants × P problems × n graded samples, the demo's shape by default),
then runs the same scoring in fresh processes of each version, alternating (ref, this, ref, this, …) so
that a busy machine slows both alike, and prints the median seconds per variant of each part.

    python bench/score.py [--ref 4722048] [--runs 3] [--variants 11] [--problems 600] [--n 32]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

KS = (1, 2, 4, 8, 16, 32)

# Run in a fresh interpreter with one version's src first on the path: times each part per variant.
CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from wiseft.metrics import problem_table, summarize
from wiseft.store import SampleStore
ks, n_boot = tuple(json.loads(sys.argv[3])), int(sys.argv[4])
parts = {"read": [], "table": [], "summary": []}
with SampleStore(sys.argv[2], writer=False) as store:
    ids = [p.problem_id for p in store.problems("bench")]
    for v in store.variants():
        t0 = time.perf_counter()
        pp = store.problem_samples(v, ids, max(ks))
        t1 = time.perf_counter()
        table = problem_table(pp, ks, seed=0)
        t2 = time.perf_counter()
        summarize(pp, ks, seed=0, n_boot=n_boot, table=table)
        t3 = time.perf_counter()
        parts["read"].append(t1 - t0); parts["table"].append(t2 - t1); parts["summary"].append(t3 - t2)
print(json.dumps(parts))
"""


def build_store(path: Path, variants: int, problems: int, n: int) -> None:
    """V variants of P problems × n graded samples: answers drawn per problem from a few classes, one of
    them right, with token counts and finish reasons, as a sampled and graded toy run leaves them."""
    from wiseft.store import SampleStore

    rng = random.Random(0)
    ids = [f"p{i:04d}" for i in range(problems)]
    with SampleStore(path) as store:
        store.add_problems("bench", [(pid, "1", f"q {pid}", {}) for pid in ids])
        for v in range(variants):
            row = store.variant(f"v{v}", "mix", "bench", {"m": str(v)}, {"max_new_tokens": 16}, seed=0)
            samples, grades = [], []
            for pid in ids:
                p_right = rng.random()
                for i in range(n):
                    right = rng.random() < p_right
                    cls = 0 if right else rng.randrange(1, 6)
                    samples.append({"problem_id": pid, "sample_idx": i, "completion": f"= {cls} $",
                                    "n_tokens": rng.randrange(4, 17), "finish_reason": "stop"})  # fmt: skip
                    grades.append({"problem_id": pid, "sample_idx": i, "answer": str(cls), "extraction": "rule",
                                   "verdict": "correct" if right else "incorrect", "correct": right,
                                   "answer_class": cls, "grader": "bench", "reason": None})  # fmt: skip
            store.add_samples(row, samples)
            store.add_grades(row, grades)


def checkout(ref: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), ref],
                   check=True, capture_output=True)  # fmt: skip
    return where / "src"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default="4722048", help="the version compared with (a git ref)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--variants", type=int, default=11)
    ap.add_argument("--problems", type=int, default=600)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    ks = [k for k in KS if k <= args.n]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = tmp / "samples.db"
        build_store(store, args.variants, args.problems, args.n)
        ref_src = checkout(args.ref, tmp / "ref")
        try:
            times: dict[str, dict[str, list[float]]] = {"ref": {}, "this": {}}
            for run in range(args.runs):
                for name, src in (("ref", ref_src), ("this", ROOT / "src")):
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD, str(src), str(store), json.dumps(ks), str(args.n_boot)],
                        check=True, capture_output=True, text=True,
                    )  # fmt: skip
                    for part, values in json.loads(out.stdout.strip().splitlines()[-1]).items():
                        times[name].setdefault(part, []).append(statistics.median(values))
                print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "ref")],
                           capture_output=True)  # fmt: skip
    print(f"\nscoring one variant of {args.problems} problems × {args.n} samples, k = {ks}, "
          f"{args.n_boot} resamples; seconds per variant, median over {args.variants} variants, then over "
          f"{args.runs} runs\n")  # fmt: skip
    print(f"| part | {args.ref} | this tree | ratio |")
    print("|---|---|---|---|")
    total = {"ref": 0.0, "this": 0.0}
    for part in times["this"]:
        a, b = statistics.median(times["ref"][part]), statistics.median(times["this"][part])
        total["ref"] += a
        total["this"] += b
        print(f"| {part} | {a:.3f} | {b:.3f} | {b / a:.2f}× |")
    print(f"| whole | {total['ref']:.3f} | {total['this']:.3f} | {total['this'] / total['ref']:.2f}× |")


if __name__ == "__main__":
    main()

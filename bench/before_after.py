"""The same user commands timed on two versions of wiseft, side by side, in one run.

A refactor must not cost speed. This bench checks out a git ref (default: 6666fae, the code before the
evaluation-engine rebuild of issue 10) into a temporary worktree, builds one set of inputs with the current
code, and then times the same command lines through the CLI of both versions, alternating (before, after,
before, after, ...) so that a busy machine slows both alike. It prints the median wall time of each and
their ratio (after / before; below 1 is faster), and the same for CPU time (user + system of the command
and the processes it waited for), which a busy machine inflates less than wall time.

The commands (whole CLI processes, Python start-up included, as a user runs them):
- merge: `wiseft merge --delta 0.5` of two random bfloat16 Llama-shaped checkpoints (~0.2 GB each);
- grade: `wiseft grade` of GSM8K-shaped completions (correct, wrong and spelled-differently answers, so
  that Math-Verify workers run);
- eval: `wiseft eval` of a tiny random model on GSM8K problems (sampling, grading, bootstrap).

    python bench/before_after.py [--ref 6666fae] [--runs 3] [--only merge,grade,eval]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))


def build_inputs(tmp: Path, gsm8k: Path) -> dict[str, list[str]]:
    import torch

    from wiseft.testing import save_tiny_model

    shape = dict(hidden=1024, layers=8, heads=16, kv_heads=4, intermediate=2816, vocab=32000)
    a = save_tiny_model(tmp / "a", seed=0, dtype=torch.bfloat16, tokenizer=False, **shape)
    b = save_tiny_model(tmp / "b", seed=1, dtype=torch.bfloat16, tokenizer=False, **shape)
    small = save_tiny_model(tmp / "small", seed=0, hidden=64, layers=2, intermediate=128, max_pos=1024)
    samples = tmp / "samples.jsonl"
    samples.write_text(_completions(gsm8k, problems=100, n=16))
    return {
        "merge": ["merge", str(a), str(b), "--delta", "0.5", "-o", "{out}/merged"],
        "grade": ["grade", str(samples), "--task", "gsm8k", "--data", str(gsm8k), "-o", "{out}/graded.jsonl"],
        "eval": ["eval", str(small), "--task", "gsm8k", "--data", str(gsm8k), "--limit", "16", "--n", "8",
                 "--k", "1,8", "--max-new-tokens", "64", "--threads", "1", "--n-boot", "200", "--device",
                 "cpu", "-o", "{out}/eval"],
    }  # fmt: skip


def _completions(gsm8k: Path, problems: int, n: int) -> str:
    """Sample records whose answers are the gold, a wrong number, or the gold spelled as a fraction."""
    rng = random.Random(0)
    lines = []
    with open(gsm8k) as fh:
        rows = [json.loads(line) for _, line in zip(range(problems), fh, strict=False)]
    for i, row in enumerate(rows):
        gold = row["answer"].split("####")[-1].strip().replace(",", "")
        for j in range(n):
            pick = rng.random()
            answer = (
                gold
                if pick < 0.5
                else f"\\frac{{{2 * int(gold)}}}{{2}}"
                if pick < 0.7
                else str(rng.randint(0, 99))
            )
            text = f"Step one. Step two gives {answer}. The answer is $\\boxed{{{answer}}}$."
            lines.append(json.dumps({"problem_id": str(i), "sample_idx": j, "completion": text}))
    return "\n".join(lines) + "\n"


def time_command(src: Path, argv: list[str], out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `wiseft` process running `argv` from source tree `src`."""
    out.mkdir(parents=True, exist_ok=True)
    args = [a.replace("{out}", str(out)) for a in argv]
    env = {**os.environ, "PYTHONPATH": str(src)}
    cpu0 = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "wiseft", *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{src}: wiseft {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return elapsed, _children_cpu() - cpu0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", default="6666fae", help="git ref of the 'before' version (default 6666fae)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="merge,grade,eval", help="comma-separated commands to time")
    ap.add_argument("--data", default=str(DATA), help="directory with gsm8k/test.jsonl")
    args = ap.parse_args()
    gsm8k = Path(args.data) / "gsm8k" / "test.jsonl"
    if not gsm8k.is_file():
        raise SystemExit(f"{gsm8k} not found; pass --data DIR")
    with tempfile.TemporaryDirectory(prefix="wiseft-before-after-") as tmpdir:
        tmp = Path(tmpdir)
        before = tmp / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(before), args.ref], check=True
        )
        try:
            commands = build_inputs(tmp, gsm8k)
            rows = []
            for name in args.only.split(","):
                times: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
                for run in range(args.runs):
                    for label, src in (("before", before / "src"), ("after", ROOT / "src")):
                        times[label].append(
                            time_command(src, commands[name], tmp / "out" / f"{name}-{label}-{run}")
                        )
                    (bw, bc), (aw, ac) = times["before"][-1], times["after"][-1]
                    print(f"  {name} run {run + 1}/{args.runs}: before {bw:.2f} s ({bc:.2f} s CPU), "
                          f"after {aw:.2f} s ({ac:.2f} s CPU)", flush=True)  # fmt: skip
                b, a = (
                    [statistics.median(t[i] for t in times[label]) for i in (0, 1)]
                    for label in ("before", "after")
                )
                rows.append((name, b[0], a[0], a[0] / b[0], b[1], a[1], a[1] / b[1]))
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False
            )
    load = os.getloadavg()[0]
    print(f"\nbench/before_after.py: wiseft CLI, {args.ref} (before) vs this tree (after), median of {args.runs}, "
          f"alternating; load average {load:.1f}")  # fmt: skip
    print(f"{'command':<8} {'before (s)':>11} {'after (s)':>10} {'after/before':>13}"
          f" {'CPU before (s)':>15} {'CPU after (s)':>14} {'after/before':>13}")  # fmt: skip
    for name, b, a, ratio, bc, ac, cratio in rows:
        print(f"{name:<8} {b:>11.2f} {a:>10.2f} {ratio:>13.2f} {bc:>15.2f} {ac:>14.2f} {cratio:>13.2f}")


if __name__ == "__main__":
    main()

"""Benchmark: `wiseft demo --thinking` over seeds — do the stages appear, and where does a run's time go?

Issue 16's targets: the stages appear (claims a, b and c of `wiseft.demo_thinking`) for the default seed and
on at least 4 of 5 seeds, and the demo runs within 2 minutes on 2 cores. Seed s is a replicate of the whole
story (`ThinkingDemoConfig.for_seed`): the base's pretraining (each seed its own base, cached under the
key `wiseft demo --seeds` uses, in the same cache directory), both fine-tunes and sampling with its
bootstraps. Seed 0 is the default run, whose base `wiseft demo` (`make demo`) leaves in the cache.

Printed: one row per seed (the base's pretraining steps, claims held, stage boundaries, Pass@1 at λ = 0 and
1, wall and CPU seconds of each stage), then the median of the run's own time (everything but the base,
which `wiseft demo` caches) over the seeds beside the target (120 s): the rows are runs of the same
workload with different seeds, so their median is the run time. Wall time on a shared machine includes
waiting for the cores; CPU seconds (of all the process's threads) do not.

    PYTHONPATH=src .venv/bin/python bench/demo_thinking.py [--seeds 0,1,2,3,4] [--threads 2]
                                       [--sft-steps 600] [--cache-dir DIR (default: wiseft demo's)] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from wiseft.demo import default_cache_dir
from wiseft.demo_thinking import ThinkingDemoConfig, run_thinking_demo, stages_appeared

TARGET_S = 120.0
STAGES = ("base", "instruct", "thinking", "eval", "claims", "report")


def run_seed(seed: int, threads: int, sft_steps: int | None, cache: Path, out: Path) -> dict:
    cfg = ThinkingDemoConfig(threads=threads).for_seed(seed)
    sft = dataclasses.replace(cfg.sft, threads=threads, **({"steps": sft_steps} if sft_steps else {}))
    res = run_thinking_demo(dataclasses.replace(cfg, sft=sft), out / f"seed-{seed}", cache_dir=cache)
    by = {v.name: v for v in res.variants}
    return {
        "seed": seed,
        "held": {c.key: c.held for c in res.claims},
        "appeared": stages_appeared(res),
        "roles": res.roles,
        "pass0": by["lambda=0.00"].summary["metrics"]["pass@1"]["value"],
        "pass1": by["lambda=1.00"].summary["metrics"]["pass@1"]["value"],
        "wall": res.timings,
        "cpu": res.cpu_seconds,
        "base": res.base,
    }


def own(times: dict) -> float:
    """The run's own seconds: all but the base (`wiseft demo`'s, cached)."""
    return sum(v for k, v in times.items() if k in STAGES and k != "base")


def table(rows: list[dict], steps: int) -> Table:
    t = Table(title=f"wiseft demo --thinking over seeds (fine-tunes {steps} steps; seconds wall / CPU)")
    for col in ("seed", "base steps", "a", "b", "c", "d", "stages", ">10 %", ">90 %", "sweet spot",
                "Pass@1 λ=0", "Pass@1 λ=1", *STAGES, "own total"):  # fmt: skip
        t.add_column(col, justify="right")
    for r in rows:
        w, c, b = r["wall"], r["cpu"], r["base"]
        base_steps = f"{b.get('pretrain_steps')}" + ("" if b.get("stopped_at_gate") else " (limit)")
        t.add_row(
            str(r["seed"]), base_steps, *("✓" if r["held"][k] else "✗" for k in "abcd"),
            "yes" if r["appeared"] else "NO", str(r["roles"]["switch_start"]), str(r["roles"]["switch_end"]),
            str(r["roles"]["sweet_spot"]), f"{100 * r['pass0']:.1f}", f"{100 * r['pass1']:.1f}",
            *(f"{w.get(k, 0):.1f} / {c.get(k, 0):.1f}" + (" (cached)" if k == "base" and b["cached"] else "")
              for k in STAGES),
            f"{own(w):.1f} / {own(c):.1f}",
        )  # fmt: skip
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--sft-steps", type=int, default=None, help="steps of each fine-tune (default: the demo's)"
    )
    ap.add_argument("--cache-dir", default=None, help="the bases' cache (default: wiseft demo's)")
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temporary directory)")
    args = ap.parse_args()
    console = Console(width=260)  # the table is wide; a pipe would squeeze it to 80 columns
    seeds = [int(s) for s in args.seeds.split(",")]
    steps = args.sft_steps or ThinkingDemoConfig().sft.steps
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
        out = Path(args.out or Path(tmp) / "runs")
        rows = []
        for seed in seeds:
            rows.append(run_seed(seed, args.threads, args.sft_steps, cache, out))
            console.print(f"seed {seed} done: own {own(rows[-1]['wall']):.1f}s", highlight=False)
    console.print(table(rows, steps))
    walls, cpus = [own(r["wall"]) for r in rows], [own(r["cpu"]) for r in rows]
    appeared = sum(r["appeared"] for r in rows)
    console.print(
        f"stages appeared on {appeared} of {len(rows)} seeds (target: the default seed and ≥ 4 of 5); "
        f"median run without the base {statistics.median(walls):.1f}s wall, {statistics.median(cpus):.1f}s CPU "
        f"over {len(rows)} runs (target ≤ {TARGET_S:.0f}s wall on 2 cores; ratio "
        f"{statistics.median(walls) / TARGET_S:.2f})",
        highlight=False,
    )


if __name__ == "__main__":
    main()

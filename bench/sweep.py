"""Benchmarks of the in-memory sweep, each against a floor measured in the same run (median of ≥3).

1. Variant switch on a Qwen2.5-0.5B-shaped model on CPU (random bf16 anchors, built once and cached in
   ~/.cache/wiseft-bench by bench/merge.py's builder): median `WeightSpace.set_delta` time versus one
   plain `torch.lerp` pass over float32 copies of the anchors into a reused buffer (target ≤ 2×), on the
   sweep's usual grid δ = k/8 and on δ = k/10 (see WeightSpace._kernel_for; WISEFT_NO_FUSED=1 measures
   the kernels used without numba), and
   resident memory over 20 switches (target: flat).
2. Sampling throughput on a model of the toy size (Llama, width 128, 3 layers, 4 heads, char vocabulary)
   with toy prompts, n=32, T=1, ≤26 new tokens, stop "$": tokens/s of `HFSampler` versus a loop calling
   `model.generate` per prompt with `num_return_sequences=n` (target ≥ 5×).
3. An 11-point δ sweep (toy task) on that shape: wall time beyond the sum of sampling and grading
   (target ≤ 10%).

Usage: python bench/sweep.py [--runs 3] [--threads 2] [--skip-switch]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from merge import CACHE  # noqa: E402  (bench/merge.py: cache location and the Qwen-shaped builder)
from merge import build as build_qwen  # noqa: E402


def toy_models() -> tuple[Path, Path]:
    from wiseft.testing import toy_shape_pair

    return toy_shape_pair(CACHE)


# ---- 1. variant switch ---------------------------------------------------------------------------------


def bench_switch(runs: int) -> dict:
    from wiseft.weightspace import WeightSpace

    early, final = build_qwen("0.5b", "early", 1), build_qwen("0.5b", "final", 2)
    ws = WeightSpace.load([str(early), str(final)], device="cpu")
    proc = psutil.Process()
    ws.set_delta(0.5)  # first touch of every page, the scratch and the magnitude scan, not timed
    ws.set_delta(0.3)
    # Two grids: the sweep's usual δ = k/8 (few-bit weights) and δ = k/10 (53-bit weights). With numba
    # both take the fused kernel; without it, k/8 takes the float32 shortcut and k/10 the torch float64
    # kernel (WISEFT_NO_FUSED=1 shows that case).
    times, rss = {"k/8": [], "k/10": []}, []
    for i in range(max(10, runs)):
        for grid, delta in (("k/8", (i % 7 + 1) / 8), ("k/10", 0.1 * (i % 9 + 1))):
            t0 = time.perf_counter()
            ws.set_delta(delta)
            times[grid].append(time.perf_counter() - t0)
            rss.append(proc.memory_info().rss)
    # Floor: float32 copies of the anchors, lerped tensor by tensor into one reused buffer.
    pairs = [(f.float(), e.float()) for _, (e, f) in ws.anchor_tensors()]
    buf = torch.empty(max(e.numel() for e, _ in pairs))
    floors = []
    for i in range(max(3, runs)):
        t0 = time.perf_counter()
        for final_t, early_t in pairs:
            torch.lerp(final_t, early_t, 0.1 * (i + 1), out=buf[: final_t.numel()])
        floors.append(time.perf_counter() - t0)
    n_params = sum(e.numel() for e, _ in pairs)
    del pairs, buf, ws
    gc.collect()
    return {
        "switch": statistics.median(times["k/8"]),
        "switch64": statistics.median(times["k/10"]),
        "floor": statistics.median(floors),
        "rss_growth_mb": (max(rss[1:]) - rss[0]) / 2**20,
        "rss_mb": rss[-1] / 2**20,
        "params": n_params,
    }


# ---- 2. sampler throughput -------------------------------------------------------------------------------


def toy_prompts(count: int) -> tuple[list[str], tuple[str, ...]]:
    from wiseft.tasks import get_task

    task = get_task("toy")
    return [task.prompt(p) for p in task.problems[:count]], task.stop


def bench_sampler(runs: int, threads: int, n: int = 32, prompts_ours: int = 128, prompts_base: int = 12):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wiseft.sampling import SamplingParams
    from wiseft.sampling.hf import HFSampler

    _, final = toy_models()
    model = AutoModelForCausalLM.from_pretrained(str(final), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(final))
    prompts, stop = toy_prompts(prompts_ours)
    params = SamplingParams(temperature=1.0, max_new_tokens=26, stop=stop, seed=0)
    sampler = HFSampler(model, tok, threads=threads)
    sampler.generate(prompts[:4], n, params)  # warm-up
    ours, ours_cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = sampler.generate(prompts, n, params)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        tokens = sum(c.n_tokens for row in out for c in row)
        ours.append(tokens / elapsed)
        ours_cpu.append(tokens / cpu)

    torch.set_num_threads(threads)
    eos = tok.eos_token_id
    base, base_cpu = [], []
    for r in range(runs):
        tokens, elapsed, cpu = 0, 0.0, 0.0
        for p in prompts[:prompts_base]:
            ids = torch.tensor([tok(p)["input_ids"]])
            torch.manual_seed(r)
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.inference_mode():
                seqs = model.generate(
                    ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
                    top_p=1.0, num_return_sequences=n, max_new_tokens=26, stop_strings=list(stop),
                    tokenizer=tok, pad_token_id=eos, eos_token_id=eos,
                )  # fmt: skip
            elapsed += time.perf_counter() - t0
            cpu += time.process_time() - c0
            for row in seqs[:, ids.shape[1] :].tolist():  # finished rows are padded with EOS
                tokens += row.index(eos) + 1 if eos in row else len(row)
        base.append(tokens / elapsed)
        base_cpu.append(tokens / cpu)
    # For the record: transformers' own batched generate over the same rows (left-padded, 64 prompts
    # per call, num_return_sequences=n), which our loop replaces.
    batched = []
    tok.padding_side = "left"
    for r in range(runs):
        tokens, cpu = 0, 0.0
        for start in range(0, len(prompts), 64):
            enc = tok(prompts[start : start + 64], return_tensors="pt", padding=True)
            torch.manual_seed(r)
            c0 = time.process_time()
            with torch.inference_mode():
                seqs = model.generate(
                    **enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, num_return_sequences=n,
                    max_new_tokens=26, stop_strings=list(stop), tokenizer=tok, pad_token_id=eos,
                    eos_token_id=eos,
                )  # fmt: skip
            cpu += time.process_time() - c0
            for row in seqs[:, enc["input_ids"].shape[1] :].tolist():
                tokens += row.index(eos) + 1 if eos in row else len(row)
        batched.append(tokens / cpu)
    med = statistics.median
    return {"ours": med(ours), "base": med(base), "ours_cpu": med(ours_cpu), "base_cpu": med(base_cpu),
            "batched_cpu": med(batched)}  # fmt: skip


# ---- 3. sweep overhead -------------------------------------------------------------------------------------


def bench_sweep(runs: int, threads: int) -> dict:
    from wiseft.sweep import SweepConfig, run_sweep

    early, final = toy_models()
    ratios, totals, parts = [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = SweepConfig(
                anchors=(str(early), str(final)), task="toy", limit=100, n=8, k=(1, 8), delta="0:1:0.1",
                max_new_tokens=26, threads=threads, n_boot=200, device="cpu", chunk=100,
            )  # fmt: skip
            t0 = time.perf_counter()
            res = run_sweep(cfg, Path(tmp) / "out")
            total = time.perf_counter() - t0
        work = res["timings"]["sample"] + res["timings"]["grade"]
        totals.append(total)
        parts.append(res["timings"])
        ratios.append((total - work) / work)
    i = sorted(range(runs), key=lambda j: ratios[j])[runs // 2]
    return {"ratio": ratios[i], "total": totals[i], "timings": parts[i]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads for sampling (default 2)")
    ap.add_argument("--skip-switch", action="store_true", help="skip the 0.5B switch benchmark (needs ~9 GB)")
    ap.add_argument("--only", choices=("switch", "sampler", "sweep"), help="run one benchmark only")
    args = ap.parse_args()
    if args.runs < 3:
        ap.error("--runs must be at least 3 (medians of ≥3)")
    from wiseft.memory import tune_allocator

    tune_allocator()  # as the `wiseft` command does at start-up
    console = Console()
    load = os.getloadavg()[0]
    table = Table(title=f"bench/sweep.py — median of {args.runs} runs, {args.threads} sampling thread(s), "
                  f"load average {load:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    for col in ("measure", "wiseft", "floor / baseline", "ratio", "target"):
        table.add_column(col, justify="right" if col != "measure" else "left")

    run = {"switch": not args.skip_switch, "sampler": True, "sweep": True}
    if args.only:
        run = {name: name == args.only for name in run}
    if run["switch"]:
        console.print("1/3 variant switch on a Qwen2.5-0.5B-shaped model (CPU)…")
        s = bench_switch(args.runs)
        gbps = s["params"] * 4 * 3 / s["floor"] / 1e9
        table.add_row(
            f"δ switch, {s['params'] / 1e6:.0f}M params, δ = k/8", f"{s['switch'] * 1e3:.0f} ms",
            f"{s['floor'] * 1e3:.0f} ms (lerp, {gbps:.0f} GB/s)", f"{s['switch'] / s['floor']:.2f}×", "≤ 2×",
        )  # fmt: skip
        table.add_row(
            "  δ = k/10", f"{s['switch64'] * 1e3:.0f} ms", f"{s['floor'] * 1e3:.0f} ms",
            f"{s['switch64'] / s['floor']:.2f}×", "≤ 2×",
        )  # fmt: skip
        table.add_row("RSS growth over 20 switches", f"{s['rss_growth_mb']:+.1f} MB", f"RSS {s['rss_mb']:.0f} MB",
                      "", "flat")  # fmt: skip
    if run["sampler"]:
        console.print("2/3 sampler throughput (toy shape, n=32)…")
        t = bench_sampler(args.runs, args.threads)
        table.add_row("sampling tokens/s (wall clock)", f"{t['ours']:,.0f}", f"{t['base']:,.0f} (generate per prompt)",
                      f"{t['ours'] / t['base']:.1f}×", "≥ 5×")  # fmt: skip
        table.add_row("sampling tokens/CPU-second", f"{t['ours_cpu']:,.0f}", f"{t['base_cpu']:,.0f}",
                      f"{t['ours_cpu'] / t['base_cpu']:.1f}×", "(less sensitive to a busy machine)")  # fmt: skip
        table.add_row("  vs batched generate (64 prompts × n per call)", f"{t['ours_cpu']:,.0f}",
                      f"{t['batched_cpu']:,.0f}", f"{t['ours_cpu'] / t['batched_cpu']:.1f}×", "(for the record)")  # fmt: skip
    if run["sweep"]:
        console.print("3/3 11-point δ sweep (toy task, 100 problems × n=8)…")
        w = bench_sweep(args.runs, args.threads)
        tm = w["timings"]
        table.add_row(
            "11-point sweep, time beyond sampling+grading", f"{w['total']:.1f} s total",
            f"sample {tm['sample']:.1f} s + grade {tm['grade']:.1f} s", f"{w['ratio']:.1%}", "≤ 10%",
        )  # fmt: skip
        table.add_row("  of which", f"switch {tm['switch']:.2f} s", f"store {tm['store']:.2f} s",
                      f"score {tm['score']:.2f} s", "")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()

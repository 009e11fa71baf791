"""Benchmark `wiseft merge` against the I/O floor of the same machine, in the same run.

Builds once (cached in ~/.cache/wiseft-bench, outside the repo) two random bfloat16 checkpoints with the
shape of Qwen2.5-0.5B (default) or Qwen2.5-1.5B (`--shape 1.5b`), then, for each of ≥3 runs:
  1. reads both inputs into the page cache;
  2. measures the floor: read both inputs with plain `readinto` into one reused buffer, and write the
     output's number of bytes to a file (then delete it);
  3. times the whole `wiseft merge EARLY FINAL --delta 0.3 -o OUT` process (start-up included) while
     sampling its anonymous resident memory (RssAnon in /proc/PID/status) every 5 ms.
Python start-up (a process importing what a merge imports) is timed in each run too. Prints the medians, MB/s, the
ratio to the floor, peak anonymous memory, and the target: median ≤ 2×floor + start-up, peak ≤ 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from wiseft.checkpoints import ShardWriter, plan_shards

CACHE = Path(os.environ.get("WISEFT_BENCH_CACHE", Path.home() / ".cache" / "wiseft-bench"))
SHAPES = {
    "0.5b": dict(hidden=896, layers=24, intermediate=4864, heads=14, kv_heads=2, vocab=151936),
    "1.5b": dict(hidden=1536, layers=28, intermediate=8960, heads=12, kv_heads=2, vocab=151936),
}


def qwen2_tensors(s: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and shapes of a Qwen2 causal LM with tied embeddings (as Qwen2.5-0.5B/1.5B)."""
    h, kv = s["hidden"], s["hidden"] // s["heads"] * s["kv_heads"]
    out = [("model.embed_tokens.weight", (s["vocab"], h))]
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.q_proj.bias", (h,)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.k_proj.bias", (kv,)),
            (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.v_proj.bias", (kv,)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (s["intermediate"], h)),
            (p + "mlp.up_proj.weight", (s["intermediate"], h)),
            (p + "mlp.down_proj.weight", (h, s["intermediate"])),
        ]
    return out + [("model.norm.weight", (h,))]


def build(shape: str, which: str, seed: int) -> Path:
    """A random bf16 checkpoint of `shape`, written once (streamed, so building needs little memory)."""
    path = CACHE / f"qwen2.5-{shape}-{which}"
    if (path / ".complete").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    s = SHAPES[shape]
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": s["hidden"],
        "num_hidden_layers": s["layers"],
        "intermediate_size": s["intermediate"],
        "num_attention_heads": s["heads"],
        "num_key_value_heads": s["kv_heads"],
        "vocab_size": s["vocab"],
        "tie_word_embeddings": True,
        "dtype": "bfloat16",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    entries = [(n, "BF16", shp) for n, shp in qwen2_tensors(s)]
    writer = ShardWriter(path, plan_shards(entries, 5 * 10**9, {"format": "pt"}))
    gen = torch.Generator().manual_seed(seed)
    piece = 1 << 24
    f32 = torch.empty(piece)
    b16 = torch.empty(piece, dtype=torch.bfloat16)
    for _, _, shp in entries:
        n = 1
        for d in shp:
            n *= d
        for start in range(0, n, piece):
            m = min(piece, n - start)
            f32[:m].normal_(0.0, 0.02, generator=gen)
            b16[:m].copy_(f32[:m])
            writer.write(memoryview(b16[:m].view(torch.uint8).numpy()))
    writer.close()
    (path / ".complete").write_text("ok")
    return path


def files_of(model: Path) -> list[Path]:
    return sorted(model.glob("*.safetensors"))


def warm(paths: list[Path], buf: bytearray) -> int:
    """Read every file with readinto into `buf`; returns bytes read (also puts them in the page cache)."""
    total = 0
    view = memoryview(buf)
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            while n := fh.readinto(view):
                total += n
    return total


def floor_once(inputs: list[Path], out_bytes: int, scratch_dir: Path, buf: bytearray) -> float:
    """Plain file I/O: read both inputs, write `out_bytes` to a new file. Seconds."""
    t0 = time.perf_counter()
    warm(inputs, buf)
    target = scratch_dir / "floor.bin"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(buf)
        left = out_bytes
        while left:
            left -= os.write(fd, view[: min(left, len(view))])
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - t0
    target.unlink()
    return elapsed


def rss_anon(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_merge(early: Path, final: Path, out: Path) -> tuple[float, int]:
    """Seconds for the whole `wiseft merge` process, and its peak anonymous memory (bytes)."""
    env = dict(os.environ)  # as a user runs it: wiseft tunes its own allocator at start-up
    cmd = [
        sys.executable,
        "-m",
        "wiseft",
        "merge",
        str(early),
        str(final),
        "--delta",
        "0.3",
        "-o",
        str(out),
        "--force",
    ]
    peak = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], rss_anon(proc.pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - t0
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"wiseft merge failed ({proc.returncode}): {err.decode()[-2000:]}")
    return elapsed, peak[0]


def startup() -> float:
    """Seconds for a Python process that only imports what a merge imports, then exits."""
    code = "import wiseft.cli, wiseft.cli.merge, wiseft.merge.driver, wiseft.merge.plan, rich.progress"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    console.print(f"building/using cached inputs in {CACHE} ...")
    early, final = build(args.shape, "early", 1), build(args.shape, "final", 2)
    inputs = files_of(early) + files_of(final)
    in_bytes = sum(p.stat().st_size for p in inputs)
    out_bytes = sum(p.stat().st_size for p in files_of(final))
    work = CACHE / "work"
    work.mkdir(exist_ok=True)
    out = work / f"merged-{args.shape}"
    buf = bytearray(16 << 20)
    merges, floors, starts, peaks = [], [], [], []
    for i in range(args.runs):  # each run measures floor, start-up and merge back to back (paired)
        warm(inputs, buf)
        floors.append(floor_once(inputs, out_bytes, work, buf))
        starts.append(startup())
        warm(inputs, buf)
        seconds, peak = run_merge(early, final, out)
        merges.append(seconds)
        peaks.append(peak)
        console.print(
            f"run {i + 1}: merge {seconds:.2f} s, floor {floors[-1]:.2f} s, start-up {starts[-1]:.2f} s, "
            f"peak anon {peak / 2**20:.0f} MiB"
        )
    shutil.rmtree(out, ignore_errors=True)
    m, f, start = statistics.median(merges), statistics.median(floors), statistics.median(starts)
    total = in_bytes + out_bytes
    title = f"wiseft merge, Qwen2.5-{args.shape.upper()} shape, bf16, δ=0.3 (median of {args.runs} runs)"
    table = Table(title=title)
    for col in ("", "seconds", "MB/s", "vs floor"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row(
        "floor: plain read of inputs + write of output", f"{f:.2f}", f"{total / f / 1e6:.0f}", "1.00×"
    )
    table.add_row("wiseft merge (whole process)", f"{m:.2f}", f"{total / m / 1e6:.0f}", f"{m / f:.2f}×")
    paired = statistics.median(a / b for a, b in zip(merges, floors, strict=True))
    table.add_row("  median of per-run ratios (paired)", "", "", f"{paired:.2f}×")
    table.add_row("python start-up (imports of a merge)", f"{start:.2f}", "", "")
    body = [a - b for a, b in zip(merges, starts, strict=True)]
    paired_body = statistics.median(x / fl for x, fl in zip(body, floors, strict=True))
    table.add_row(
        "merge − start-up (per run, median)",
        f"{statistics.median(body):.2f}",
        f"{total / max(statistics.median(body), 1e-9) / 1e6:.0f}",
        f"{paired_body:.2f}×",
    )
    met = sum(x <= 2 * fl + st for x, fl, st in zip(merges, floors, starts, strict=True))
    table.add_row(
        "target: 2×floor + start-up", f"{2 * f + start:.2f}", "", f"met in {met}/{len(merges)} runs"
    )
    peak = max(peaks)
    table.add_row(
        "peak anonymous memory (max of runs)",
        f"{peak / 2**20:.0f} MiB",
        "",
        "met (≤ 1 GiB)" if peak <= 2**30 else "MISSED",
    )
    table.caption = (
        f"read {in_bytes / 1e9:.2f} GB, written {out_bytes / 1e9:.2f} GB; per run: merge "
        f"{' '.join(f'{x:.2f}' for x in merges)}, floor {' '.join(f'{x:.2f}' for x in floors)}, start-up "
        f"{' '.join(f'{x:.2f}' for x in starts)}; load average {os.getloadavg()[0]:.1f}"
    )
    console.print(table)


if __name__ == "__main__":
    main()

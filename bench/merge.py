"""Benchmark `wiseft merge` (every method) against the I/O floor of the same machine, in the same run.

Builds once (cached in ~/.cache/wiseft-bench, outside the repo) three random bfloat16 checkpoints with the
shape of Qwen2.5-0.5B (default) or Qwen2.5-1.5B (`--shape 1.5b`; `--shape tiny` checks that the script
runs): EARLY, FINAL and BASE (the third model,
the base of the task-vector methods), and, for `fisher`, a random float32 Fisher of EARLY and of FINAL
(the shape `wiseft fisher` writes; its values do not change the cost). Then, for each of ≥3 runs:
  1. measures the floors: read the inputs (two, three with a base, the two models and their Fishers for
     fisher, one model's bytes for `passthrough-slices`, which reads half of each) with plain `readinto`
     into one reused buffer and write the output's number of bytes to a file (then delete it), inputs in
     the page cache; the write twice, once buffered and once with O_DIRECT (as `wiseft merge` writes
     where it can), and the floor of the run is the faster of the two (the stricter target);
  2. times each method's whole `wiseft merge … -o OUT` process (start-up included) while sampling its
     anonymous resident memory (RssAnon in /proc/PID/status) every 5 ms.
Python start-up (a process importing what a merge imports) is timed in each run too. `--baseline CHECKOUT`
runs every method with that checkout's wiseft as well, alternating with this tree within each run, and adds
its median and the median of the paired ratios. Prints per method the
median seconds, the ratio to its floor (median of the per-run paired ratios), peak anonymous memory, and
the targets: the linear family and slerp ≤ 1.5× floor, sparsifying methods (ties, dare, breadcrumbs,
della) ≤ 3× floor, everything ≤ 1 GiB of peak anonymous memory. nearswap and arcee_fusion (one model over
the base) are measured without a floor target.
`passthrough-slices` is a mergekit "frankenmerge" configuration (`--config`): the first half of the layers
from EARLY, the second half from FINAL.
"""

from __future__ import annotations

import argparse
import json
import math
import mmap
import os
import resource
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
    "tiny": dict(hidden=64, layers=4, intermediate=128, heads=4, kv_heads=2, vocab=1024),  # smoke runs
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


def build_fisher(shape: str, which: str, seed: int) -> Path:
    """A random float32 Fisher directory for model `which` (|N(0, 1e-4)|, with fisher.json), written once."""
    path = CACHE / f"qwen2.5-{shape}-{which}-fisher"
    if (path / ".complete").exists():
        return path
    model = build(shape, which, seed)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    shutil.copyfile(model / "config.json", path / "config.json")
    entries = [(n, "F32", shp) for n, shp in qwen2_tensors(SHAPES[shape])]
    writer = ShardWriter(path, plan_shards(entries, 10**12, {"format": "pt"}))
    gen = torch.Generator().manual_seed(seed + 100)
    piece = 1 << 24
    f32 = torch.empty(piece)
    squares = []
    for _, _, shp in entries:
        n = math.prod(shp)
        for start in range(0, n, piece):
            m = min(piece, n - start)
            f32[:m].normal_(0.0, 1e-4, generator=gen).abs_()
            squares.append(float(f32[:m].double().square().sum()))
            writer.write(memoryview(f32[:m].view(torch.uint8).numpy()))
    writer.close()
    (path / "fisher.json").write_text(
        json.dumps({"model": str(model), "norm": math.sqrt(math.fsum(squares))})
    )
    (path / ".complete").write_text("ok")
    return path


def slices_config(early: Path, final: Path, shape: str, work: Path) -> Path:
    """A mergekit passthrough configuration: layers [0, L/2) of EARLY, then [L/2, L) of FINAL."""
    layers = SHAPES[shape]["layers"]
    half = layers // 2
    text = (
        "merge_method: passthrough\ndtype: bfloat16\nslices:\n"
        f"  - sources: [{{model: {early}, layer_range: [0, {half}]}}]\n"
        f"  - sources: [{{model: {final}, layer_range: [{half}, {layers}]}}]\n"
    )
    path = work / f"passthrough-slices-{shape}.yml"
    path.write_text(text)
    return path


def files_of(model: Path) -> list[Path]:
    return sorted(model.glob("*.safetensors"))


def warm(paths: list[Path], buf) -> int:
    """Read every file with readinto into `buf` (a bytearray or mmap); returns bytes read (also puts them
    in the page cache)."""
    total = 0
    view = memoryview(buf)
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            while n := fh.readinto(view):
                total += n
    return total


def floor_once(inputs: list[Path], out_bytes: int, scratch_dir: Path, buf, direct: bool = False) -> float:
    """Plain file I/O: read the inputs, write `out_bytes` to a new file (with O_DIRECT: whole 16 MiB
    blocks, `buf` page-aligned, the last block padded). Seconds."""
    t0 = time.perf_counter()
    warm(inputs, buf)
    target = scratch_dir / "floor.bin"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_DIRECT if direct else 0)
    fd = os.open(target, flags, 0o644)
    try:
        view = memoryview(buf)
        left = out_bytes
        while left > 0:
            left -= os.write(fd, view[: len(view) if direct else min(left, len(view))])
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


# method -> (inputs: "pair", "trio" (with the base), "based" (FINAL over the base), "fisher" (pair +
# Fishers) or "slices" (a config that reads one model's bytes), extra flags, target ratio to the floor or None)
METHODS = {
    "wise-ft": ("pair", ["--delta", "0.3"], 1.5),
    "linear": ("pair", ["--method", "linear", "--weights", "0.3,0.7"], 1.5),
    "task_arithmetic": ("trio", ["--method", "task_arithmetic", "--weights", "0.5,0.5"], 1.5),
    "slerp": ("pair", ["--method", "slerp", "--param", "t=0.3"], 1.5),
    "nuslerp": ("pair", ["--method", "nuslerp", "--weights", "0.7,0.3"], 1.5),
    "nuslerp-rows": (
        "pair",
        ["--method", "nuslerp", "--weights", "0.7,0.3", "--param", "nuslerp_flatten=false"],
        None,
    ),
    "multislerp": ("pair", ["--method", "multislerp", "--weights", "0.7,0.3"], 1.5),
    "karcher": ("pair", ["--method", "karcher", "--weights", "0.7,0.3"], 1.5),
    "model_stock": ("trio", ["--method", "model_stock"], 1.5),
    "ties": ("trio", ["--method", "ties", "--weights", "1,1", "--param", "density=0.5"], 3.0),
    "dare_linear": ("trio", ["--method", "dare_linear", "--weights", "1,1", "--param", "density=0.5"], 3.0),
    "dare_ties": ("trio", ["--method", "dare_ties", "--weights", "1,1", "--param", "density=0.5"], 3.0),
    "breadcrumbs": ("trio", ["--method", "breadcrumbs", "--weights", "1,1", "--param", "density=0.9"], 3.0),
    "breadcrumbs_ties": (
        "trio",
        ["--method", "breadcrumbs_ties", "--weights", "1,1", "--param", "density=0.9"],
        3.0,
    ),
    "della": (
        "trio",
        ["--method", "della", "--weights", "1,1", "--param", "density=0.5", "--param", "epsilon=0.1"],
        3.0,
    ),
    "della_linear": (
        "trio",
        ["--method", "della_linear", "--weights", "1,1", "--param", "density=0.5", "--param", "epsilon=0.1"],
        3.0,
    ),
    "sce": ("trio", ["--method", "sce", "--param", "select_topk=0.5"], None),
    "nearswap": ("based", ["--method", "nearswap", "--param", "t=0.01"], None),
    "arcee_fusion": ("based", ["--method", "arcee_fusion"], None),
    "fisher": ("fisher", ["--method", "fisher"], 1.5),
    "passthrough-slices": ("slices", [], 1.5),
}


def child_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_merge(args: list[str], out: Path, src: Path | None = None) -> tuple[float, int, float]:
    """Seconds for the whole `wiseft merge ARGS -o OUT` process, its peak anonymous memory (bytes) and its
    CPU seconds (what a loaded machine does not distort). `src`: run the wiseft found there instead
    (a baseline checkout's src folder)."""
    cpu0 = child_cpu()
    env = dict(os.environ)  # as a user runs it: wiseft tunes its own allocator at start-up
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, "-m", "wiseft", "merge", *map(str, args), "-o", str(out), "--force"]
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
    return elapsed, peak[0], child_cpu() - cpu0


def merge_args(kind: str, flags: list[str], models: dict[str, Path]) -> list[str]:
    """The command line of a method whose inputs are of `kind` (METHODS)."""
    pair = [models["early"], models["final"]]
    if kind == "trio":
        return [*pair, *flags, "--base", models["base"]]
    if kind == "based":
        return [models["final"], *flags, "--base", models["base"]]
    if kind == "fisher":
        return [*pair, *flags, "--fisher", models["early-fisher"], "--fisher", models["final-fisher"]]
    if kind == "slices":
        return ["--config", models["slices"], *flags]
    return [*pair, *flags]


def floor_inputs(kind: str, models: dict[str, Path]) -> list[Path]:
    """The files a method of `kind` reads (for `slices`: one model's worth, FINAL's files)."""
    names = {"pair": ("early", "final"), "trio": ("early", "final", "base"), "slices": ("final",)}
    names["based"] = ("final", "base")
    names["fisher"] = ("early", "final", "early-fisher", "final-fisher")
    return [f for n in names[kind] for f in files_of(models[n])]


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
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS)
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a baseline checkout (its root or src folder): each method runs with it too, alternating with "
        "this tree in every run, and the table adds its median and the paired ratio",
    )
    args = parser.parse_args()
    if args.baseline is not None:
        root = args.baseline.resolve()
        args.baseline = root / "src" if (root / "src" / "wiseft").is_dir() else root
        if not (args.baseline / "wiseft").is_dir():
            raise SystemExit(
                f"--baseline {root}: no wiseft package there (give a checkout or its src folder)"
            )
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    console = Console()
    console.print(f"building/using cached inputs in {CACHE} ...")
    kinds = sorted({METHODS[m][0] for m in methods})
    work = CACHE / "work"
    work.mkdir(parents=True, exist_ok=True)
    models = {"early": build(args.shape, "early", 1), "final": build(args.shape, "final", 2)}
    if "trio" in kinds or "based" in kinds:
        models["base"] = build(args.shape, "base", 3)
    if "fisher" in kinds:
        models["early-fisher"] = build_fisher(args.shape, "early", 1)
        models["final-fisher"] = build_fisher(args.shape, "final", 2)
    if "slices" in kinds:
        models["slices"] = slices_config(models["early"], models["final"], args.shape, work)
    reads = {k: floor_inputs(k, models) for k in kinds}
    out_bytes = sum(p.stat().st_size for p in files_of(models["final"]))
    out = work / f"merged-{args.shape}"
    buf = mmap.mmap(-1, 16 << 20)  # page-aligned, for the O_DIRECT floor
    floors: dict[str, list[float]] = {k: [] for k in kinds}  # per run: the faster of the two writes
    both: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}  # (buffered, direct)
    starts: list[float] = []
    times: dict[str, list[float]] = {m: [] for m in methods}
    peaks: dict[str, list[int]] = {m: [] for m in methods}
    cpus: dict[str, list[float]] = {m: [] for m in methods}
    base_times: dict[str, list[float]] = {m: [] for m in methods}
    for i in range(args.runs):  # each run measures the floors, start-up and every method back to back
        for k in kinds:
            warm(reads[k], buf)
            pair = (
                floor_once(reads[k], out_bytes, work, buf),
                floor_once(reads[k], out_bytes, work, buf, True),
            )
            both[k].append(pair)
            floors[k].append(min(pair))
        starts.append(startup())
        for m in methods:
            kind, flags, _ = METHODS[m]
            trees = [None] if args.baseline is None else [None, args.baseline][:: 1 if i % 2 == 0 else -1]
            for src in trees:  # with a baseline: this tree first in even runs, the baseline first in odd ones
                warm(reads[kind], buf)
                seconds, peak, cpu = run_merge(merge_args(kind, flags, models), out, src)
                if src is not None:
                    base_times[m].append(seconds)
                    console.print(f"run {i + 1}: {m} baseline {seconds:.2f} s ({cpu:.2f} CPU s)")
                    continue
                times[m].append(seconds)
                peaks[m].append(peak)
                cpus[m].append(cpu)
                console.print(
                    f"run {i + 1}: {m} {seconds:.2f} s ({cpu:.2f} CPU s), peak anon {peak / 2**20:.0f} MiB"
                )
        console.print(
            f"run {i + 1}: floors (buffered / direct write) "
            + ", ".join(f"{k} {both[k][-1][0]:.2f} / {both[k][-1][1]:.2f} s" for k in kinds)
        )
    shutil.rmtree(out, ignore_errors=True)
    _table(console, args, methods, floors, both, starts, times, peaks, cpus, reads, out_bytes, base_times)


def _table(console, args, methods, floors, both, starts, times, peaks, cpus, reads, out_bytes, base_times):
    title = (
        f"wiseft merge, Qwen2.5-{args.shape.upper()} shape, bf16 (median of {args.runs} runs, whole process)"
    )
    table = Table(title=title)
    cols = ("method", "inputs", "seconds", "CPU s", "floor s", "vs floor (paired)", "target", "peak anon MiB")
    if args.baseline is not None:
        cols += ("baseline s", "vs baseline (paired)")
    for col in cols:
        table.add_column(col, justify="left" if col == "method" else "right")
    start = statistics.median(starts)
    for m in methods:
        kind, _, target = METHODS[m]
        fl = floors[kind]
        ratio = statistics.median(a / b for a, b in zip(times[m], fl, strict=True))
        met = "" if target is None else (f"≤ {target}× met" if ratio <= target else f"≤ {target}× MISSED")
        peak = max(peaks[m])
        met += ("; " if met else "") + ("≤ 1 GiB met" if peak <= 2**30 else "≤ 1 GiB MISSED")
        row = [
            m, kind, f"{statistics.median(times[m]):.2f}", f"{statistics.median(cpus[m]):.2f}",
            f"{statistics.median(fl):.2f}", f"{ratio:.2f}×", met,
            f"{peak / 2**20:.0f}" + ("" if peak <= 2**30 else " (> 1 GiB)"),
        ]  # fmt: skip
        if args.baseline is not None:
            paired = statistics.median(a / b for a, b in zip(times[m], base_times[m], strict=True))
            row += [f"{statistics.median(base_times[m]):.2f}", f"{paired:.2f}×"]
        table.add_row(*row)
    read = ", ".join(f"{k} {sum(p.stat().st_size for p in files) / 1e9:.2f}" for k, files in reads.items())
    table.caption = (
        f"floor = plain read of the inputs + write of the output, per run the faster of a buffered and a "
        f"direct (O_DIRECT) write (GB read: {read}; {out_bytes / 1e9:.2f} GB written; medians buffered / "
        + ", ".join(
            f"direct: {k} {statistics.median(b for b, _ in v):.2f} / {statistics.median(d for _, d in v):.2f} s"
            for k, v in both.items()
        )
        + f"); python start-up {start:.2f} s (included in every method's time); "
        f"load average {os.getloadavg()[0]:.1f}"
        + (f"; baseline: {args.baseline}" if args.baseline is not None else "")
    )
    console.print(table)


if __name__ == "__main__":
    main()

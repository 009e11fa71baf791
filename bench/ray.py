"""Benchmarks of sampling on Ray actors (`wiseft.distributed`), each beside its baseline measured in the same
run (medians of --runs, 3 by default). One local Ray cluster (2 CPUs, as `ray start --head` would give on
this machine) serves every Ray run, so cluster start-up is reported once and not counted in a sweep.

1. Scale-out: a δ sweep of a toy-shaped model (Llama, width 128, 3 layers) on the toy task, in this
   process (`threads=1`, the plain local sweep) and on 1 and 2 single-thread CPU actors. samples/s over
   the sampling span (first unit handed out → last unit done) and over the whole sweep (wall, actor
   start-up included); targets: 2 actors ≥ 1.7× the samples/s of 1, and Ray with 1 actor within 10 % of
   the local sweep's wall time, on a sweep of ≥ 30 s.
1c. (`--commands`) The same sweep as a user runs it: the whole `wiseft sweep` command, a fresh process,
   with and without `--ray ADDRESS` (this benchmark's cluster, 1 single-CPU actor); wall time of each
   command, paired and interleaved. In 1 the local sweep runs in this process, whose imports are already
   done, while the actor pays its own; here both commands pay theirs, as in real use.
1d. (`--machine`) The machine's ceiling for 2 actors vs 1: the local command alone and two at once.
2. A simulated larger cluster: 8 actors of 0.25 CPU each holding `distributed.fake.ScriptedEngine`
   (a fixed cost per token, answers of uneven length: one problem in eight is up to 8× longer), with and
   without lookahead; targets: actors ≥ 90 % busy over the sampling span, weight switches ≤ variants ×
   actors.

3. Composition: does a prompt's sampling depend on which prompts share its `generate` call? The
   transformers sampler on the toy-shaped model, prompts of 12 to 42 characters (so some batches cross the
   shared-prompt attention width and all are padded): every prompt in one call, each alone, and in random
   groups; samples whose tokens differ, and prefill logits of each prompt alone vs in one padded batch
   (rows not bit-identical, largest difference). Why Ray keeps the session's chunks as its units.

4. vLLM (`--vllm`, in an environment with vLLM and Ray, e.g. `.venv-vllm` + `pip install ray==2.60.0`): the
   same sweep with `--engine vllm` in this process and on 1 Ray actor holding vLLM; samples/s over the
   sampling span and the wall, and the overhead of the actor (target, on a GPU: <= 5 %). `--vllm-anchors
   EARLY,FINAL --vllm-device cuda` for real models on a GPU; by default a tiny Qwen2 pair on the CPU.

CPU seconds (this driver process and the actors' processes) and the load average are printed beside the
figures: on a shared, busy machine the wall-clock figures move with the other work. Table 1b gives, per
actor, its busy share (did the scheduler keep it fed?) and its sampling CPU seconds per busy second (how
much of a core it got); with both actors near 100 % busy, the 2-vs-1 figure "from CPU time" is what two
free cores would give.

Usage: PYTHONPATH=src python bench/ray.py [--runs 3] [--limit 96] [--n 8] [--skip-scale] [--skip-sim] [--commands] [--machine]
       [--skip-composition] [--vllm [--vllm-anchors EARLY,FINAL] [--vllm-device cuda]]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

# This file is bench/ray.py: its directory must not stand first on the path, where `import ray` (here and
# in Ray's workers, which get the driver's path) would find it instead of Ray.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

CACHE = Path(os.environ.get("WISEFT_BENCH_CACHE", Path.home() / ".cache" / "wiseft-bench"))
med = statistics.median


def toy_models() -> tuple[Path, Path]:
    from wiseft.testing import toy_shape_pair

    return toy_shape_pair(CACHE)


def sweep_cfg(args, ray=None, **kw):
    from wiseft.evaluate.config import SweepConfig

    early, final = toy_models()
    base = dict(anchors=(str(early), str(final)), task="toy", limit=args.limit, n=args.n, k=(1,),
                delta=args.delta, max_new_tokens=26, threads=1, chunk=args.chunk, n_boot=100, device="cpu",
                val_fraction=0.0, ray=ray)  # fmt: skip
    base.update(kw)
    return SweepConfig(**base)


class CpuTimed:
    """A sampler that adds up the CPU seconds of its `generate` calls (the local run's sampling CPU)."""

    def __init__(self, inner):
        self.inner = inner
        self.cpu = 0.0

    def generate(self, prompts, n, params):
        c0 = time.process_time()
        try:
            return self.inner.generate(prompts, n, params)
        finally:
            self.cpu += time.process_time() - c0


def one_sweep(cfg, engine=None) -> dict:
    """Run one sweep into a fresh directory: wall, CPU, samples, and the Ray record if any."""
    from wiseft.evaluate.runners import run_sweep
    from wiseft.sampling.hf import HFSampler

    timed = []

    def factory(model, tokenizer):
        timed.append(CpuTimed(HFSampler(model, tokenizer, threads=cfg.threads)))
        return timed[-1]

    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        plain = engine is None and cfg.ray is None and cfg.engine == "hf"  # (the CPU-timed local sampler)
        kw = {"sampler_factory": factory} if plain else {"engine": engine}
        res = run_sweep(cfg, Path(tmp) / "out", report=False, **kw)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    samples = cfg.n * cfg.limit * len(res.variants)
    ray = (res.machine or {}).get("ray")
    span = ray["span_s"] if ray else res.timings["sample"]
    per_actor = [a["sample_cpu_s"] for a in ray["actors"]] if ray else [t.cpu for t in timed] or [0.0]
    return {"wall": wall, "span": span, "samples": samples, "driver_cpu": cpu, "record": ray,
            "actors_cpu": sum(a["cpu_s"] for a in ray["actors"]) if ray else 0.0,
            "sample_cpu": sum(per_actor), "busiest_cpu": max(per_actor),
            "start_s": max(a["start_s"] for a in ray["actors"]) if ray else 0.0,
            "rate_span": samples / span, "rate_wall": samples / wall}  # fmt: skip


def bench_scale(args) -> dict:
    from wiseft.evaluate.config import RayConfig

    runs = {"local": [], "ray 1 actor": [], "ray 2 actors": []}
    order = list(runs)
    for r in range(args.runs):  # interleaved, rotating, so a change in the machine's load hits all alike
        for label in order[r % 3 :] + order[: r % 3]:
            actors = {"local": 0, "ray 1 actor": 1, "ray 2 actors": 2}[label]
            ray = RayConfig(actors=actors, cpus_per_actor=1.0) if actors else None
            runs[label].append(one_sweep(sweep_cfg(args, ray)))
    return runs


def command(args, tmp: Path, ray_address: str | None) -> list[str]:
    """`wiseft sweep` on the scale-out sweep's settings, locally or with one single-CPU actor."""
    early, final = toy_models()
    cmd = [sys.executable, "-m", "wiseft", "sweep", str(early), str(final), "--task", "toy", "--limit",
           str(args.limit), "--n", str(args.n), "--k", "1", "--delta", ",".join(map(str, args.delta)),
           "--max-new-tokens", "26", "--threads", "1", "--chunk", str(args.chunk), "--n-boot", "100",
           "--device", "cpu", "--val-fraction", "0", "--no-report", "-o", str(tmp / "out")]  # fmt: skip
    if ray_address:
        cmd += ["--ray", ray_address, "--ray-actors", "1", "--ray-cpus-per-actor", "1"]
    return cmd


def bench_commands(args) -> dict:
    """1c. The user's view: the whole `wiseft sweep` command (a fresh process: imports, model reads, the
    store, grading) with and without `--ray` to the benchmark's running cluster, interleaved. The Ray
    command's driver connects to the cluster and its actor imports torch and loads the model while the
    driver reads its task, opens its store and fingerprints the models, as in real use."""
    import resource
    import subprocess

    import ray

    address = ray.get_runtime_context().gcs_address
    out = {"local command": [], "--ray command, 1 actor": []}
    for r in range(args.runs):
        for label in list(out)[r % 2 :] + list(out)[: r % 2]:
            with tempfile.TemporaryDirectory() as tmp:
                c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run(command(args, Path(tmp), address if "ray" in label else None), check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                wall = time.perf_counter() - t0
                c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
            out[label].append({"wall": wall, "cpu": cpu})
    return out


def bench_machine(args) -> dict:
    """1d. The machine's own ceiling for 2 actors vs 1: the local `wiseft sweep` command alone, and two of
    them at once (no Ray), interleaved. Two processes that slow each other (shared memory bandwidth and
    cache, the host's clock under load) bound what 2 actors on this machine can give."""
    import subprocess

    out = {"1 local command": [], "2 local commands at once": []}
    for r in range(args.runs):
        for label in list(out)[r % 2 :] + list(out)[: r % 2]:
            with tempfile.TemporaryDirectory() as tmp:
                cmds = [command(args, Path(tmp) / str(i), None) for i in range(1 if label[0] == "1" else 2)]
                t0 = time.perf_counter()
                procs = [
                    subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in cmds
                ]
                if any(p.wait() for p in procs):
                    raise RuntimeError(f"{label}: a command failed")
                out[label].append({"wall": time.perf_counter() - t0, "commands": len(cmds)})
    return out


def machine_table(runs: dict, args) -> Table:
    t = Table(title="1d. the machine's ceiling: the local command alone vs two at once, no Ray (medians)")
    for col in ("run", "wall s (each run)", "samples/s (all commands)"):
        t.add_column(col, justify="right")
    samples = args.n * args.limit * len(args.delta)
    rate = {}
    for label, rs in runs.items():
        rate[label] = med(r["commands"] * samples / r["wall"] for r in rs)
        t.add_row(label, ", ".join(f"{r['wall']:.1f}" for r in rs), f"{rate[label]:.1f}")
    one, two = rate["1 local command"], rate["2 local commands at once"]
    t.caption = (
        f"2 processes vs 1 on this machine: {two / one:.2f}x samples/s (the ceiling for 2 actors vs 1)"
    )
    return t


def commands_table(runs: dict) -> Table:
    t = Table(title="1c. the whole `wiseft sweep` command, with and without --ray (medians)")
    for col in ("command", "wall s (each run)", "median wall s", "command process CPU s"):
        t.add_column(col, justify="right")
    for label, rs in runs.items():
        t.add_row(label, ", ".join(f"{r['wall']:.1f}" for r in rs), f"{med(r['wall'] for r in rs):.1f}",
                  f"{med(r['cpu'] for r in rs):.1f}")  # fmt: skip
    local, ray = runs["local command"], runs["--ray command, 1 actor"]
    over = med(b["wall"] / a["wall"] - 1 for a, b in zip(local, ray, strict=True))
    t.caption = f"--ray with 1 actor vs the local command, wall: {over:+.1%} (paired median; target <= +10%)"
    return t


def bench_sim(args) -> dict:
    from wiseft.distributed.actor import ActorSetup
    from wiseft.distributed.engine import RayEngine
    from wiseft.distributed.fake import ScriptedEngine
    from wiseft.evaluate.config import RayConfig
    from wiseft.evaluate.engine import Engine
    from wiseft.evaluate.plan import plan_sweep

    out = {"lookahead": [], "no lookahead": []}
    for _ in range(args.runs):
        for label, lookahead in (("lookahead", True), ("no lookahead", False)):
            cfg = sweep_cfg(
                args, limit=args.sim_limit, n=4, chunk=2, delta=args.sim_delta, max_new_tokens=128
            )
            ray_cfg = RayConfig(actors=8, cpus_per_actor=0.25)
            setup = ActorSetup(cfg.anchors[-1], (), "cpu", 1)
            fake = ScriptedEngine(per_token=args.per_token)
            ray_engine = RayEngine(ray_cfg, plan_sweep(cfg), setup, fake, lookahead=lookahead)
            result = one_sweep(cfg, Engine(ray_engine, ray_engine, None, describe=ray_engine.describe))
            result["variants"] = len(cfg.delta)
            out[label].append(result)
    return out


def bench_composition() -> dict:
    import random

    import torch

    from wiseft.sampling import SamplingParams
    from wiseft.sampling.hf import HFSampler
    from wiseft.tasks import get_task

    _, final = toy_models()
    sampler = HFSampler.from_pretrained(final, device="cpu", threads=1)
    task, rng = get_task("toy"), random.Random(0)
    prompts = ["ab " * rng.randint(0, 10) + task.prompt(p) for p in task.problems[:48]]
    params = SamplingParams(temperature=1.0, max_new_tokens=26, stop=task.stop, seed=0)

    def tokens(rows):
        return [[c.token_ids for c in row] for row in rows]

    whole = tokens(sampler.generate(prompts, 4, params))
    alone = tokens([sampler.generate([p], 4, params)[0] for p in prompts])
    grouped, order, i = [None] * len(prompts), list(range(len(prompts))), 0
    rng.shuffle(order)
    while i < len(order):
        group = order[i : i + rng.randint(2, 7)]
        for j, row in zip(group, sampler.generate([prompts[j] for j in group], 4, params), strict=True):
            grouped[j] = row
        i += len(group)
    grouped = tokens(grouped)

    def differ(a, b) -> int:
        return sum(x != y for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))

    # Prefill logits: each prompt alone, and in one left-padded batch (as HFSampler._prefill builds it).
    ids = [sampler.tokenizer(p)["input_ids"] for p in prompts]
    width = max(map(len, ids))
    batch = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros_like(batch)
    for k, row in enumerate(ids):
        batch[k, width - len(row) :], mask[k, width - len(row) :] = torch.tensor(row), 1
    with torch.inference_mode():
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        padded = sampler.model(input_ids=batch, attention_mask=mask, position_ids=pos).logits[:, -1]
        single = torch.stack([sampler.model(input_ids=torch.tensor([row])).logits[0, -1] for row in ids])
    diff = (padded - single).abs().amax(dim=1)
    return {"samples": len(prompts) * 4, "whole_vs_alone": differ(whole, alone),
            "whole_vs_groups": differ(whole, grouped), "rows_differ": int((diff > 0).sum()),
            "rows": len(ids), "max_diff": float(diff.max())}  # fmt: skip


def bench_vllm(args) -> dict:
    """The `--engine vllm` sweep locally and on one Ray actor, interleaved; each run starts its engine."""
    import dataclasses

    from wiseft.evaluate.config import RayConfig

    if args.vllm_anchors:
        early, final = args.vllm_anchors.split(",")
        opts = dict(engine="vllm", device=args.vllm_device)
    else:  # vLLM-CPU has attention kernels for head size 32 and up: a tiny Qwen2 pair (test_vllm.py's)
        import torch

        from wiseft.testing import save_tiny_model

        early, final = (CACHE / "vllm-tiny-early", CACHE / "vllm-tiny-final")
        for path, seed in ((early, 1), (final, 2)):
            if not (path / "config.json").is_file():
                save_tiny_model(path, seed=seed, dtype=torch.bfloat16, arch="qwen2", hidden=64, heads=2,
                                kv_heads=1, intermediate=128, tied=True)  # fmt: skip
        opts = dict(engine="vllm", device="cpu", vllm_dtype="float32", max_model_len=256, kv_cache_gib=0.1,
                    enforce_eager=True, threads=None)  # fmt: skip
    cfg = dataclasses.replace(sweep_cfg(args), anchors=(str(early), str(final)), **opts)
    gpus = 1.0 if str(cfg.device).startswith("cuda") else 0.0
    ray_cfg = RayConfig(actors=1, cpus_per_actor=1.0, gpus_per_actor=gpus)
    out = {"local vLLM": [], "ray 1 vLLM actor": []}
    for r in range(args.runs):
        for label in list(out)[r % 2 :] + list(out)[: r % 2]:
            out[label].append(one_sweep(dataclasses.replace(cfg, ray=ray_cfg if "ray" in label else None)))
    return out


def vllm_table(runs: dict) -> Table:
    t = Table(title="4. --engine vllm: local vs 1 Ray actor (medians; each run starts its engine)")
    for col in ("run", "samples", "wall s", "span s", "samples/s (span)", "samples/s (wall)"):
        t.add_column(col, justify="right")
    for label, rs in runs.items():
        t.add_row(label, str(rs[0]["samples"]), f"{med(r['wall'] for r in rs):.1f}",
                  f"{med(r['span'] for r in rs):.1f}", f"{med(r['rate_span'] for r in rs):.1f}",
                  f"{med(r['rate_wall'] for r in rs):.1f}")  # fmt: skip
    local, ray = runs["local vLLM"], runs["ray 1 vLLM actor"]
    over = med(b["span"] / a["span"] - 1 for a, b in zip(local, ray, strict=True))
    t.caption = f"Ray actor vs local, sampling span: {over:+.1%} (target on a GPU: <= +5%)"
    return t


def scale_table(runs: dict) -> Table:
    t = Table(title="1. toy sweep: local vs Ray actors (medians)")
    cols = ("run", "samples", "wall s", "span s", "samples/s (span)", "samples/s (wall)", "sampling CPU s",
            "busiest actor CPU s", "samples/CPU s", "driver CPU s", "actors CPU s", "actor start s", "busy")  # fmt: skip
    for col in cols:
        t.add_column(col, justify="right")
    for label, rs in runs.items():
        busy = [r["record"]["busy_share"] for r in rs if r["record"]]
        m = {k: med(r[k] for r in rs) for k in rs[0] if k != "record"}
        t.add_row(label, str(rs[0]["samples"]), f"{m['wall']:.1f}", f"{m['span']:.1f}", f"{m['rate_span']:.1f}",
                  f"{m['rate_wall']:.1f}", f"{m['sample_cpu']:.1f}", f"{m['busiest_cpu']:.1f}",
                  f"{med(r['samples'] / r['sample_cpu'] for r in rs):.1f}", f"{m['driver_cpu']:.1f}",
                  f"{m['actors_cpu']:.1f}", f"{m['start_s']:.1f}", f"{med(busy):.0%}" if busy else "-")  # fmt: skip
    return t


def actor_table(runs: dict) -> Table:
    """Each Ray run's actors, medians over the runs: whether the scheduler kept every actor fed (busy share:
    sampling + switch seconds over the seconds from its start to the sweep's last unit) and how much CPU
    each actually got for it (sampling CPU seconds per busy second: 1.0 on a free core, less when the
    machine is shared). On a loaded machine wall samples/s say little; these two say whether 2 actors
    both worked the whole time and what 2 free cores would give."""
    t = Table(title="1b. per actor (medians): busy share and CPU, meaningful on a loaded machine")
    cols = ("run", "actor", "units", "samples", "busy s", "busy share", "sampling CPU s", "process CPU s",
            "CPU per busy s", "switches")  # fmt: skip
    for col in cols:
        t.add_column(col, justify="right")
    for label, rs in runs.items():
        recs = [r["record"] for r in rs if r["record"]]
        for i in range(min((len(rec["actors"]) for rec in recs), default=0)):
            a = [rec["actors"][i] for rec in recs]
            t.add_row(label, str(i), f"{med(x['units'] for x in a):g}", f"{med(x['samples'] for x in a):g}",
                      f"{med(x['busy_s'] for x in a):.1f}", f"{med(x['busy_frac'] for x in a):.0%}",
                      f"{med(x['sample_cpu_s'] for x in a):.1f}", f"{med(x['cpu_s'] for x in a):.1f}",
                      f"{med(x['sample_cpu_s'] / x['busy_s'] if x['busy_s'] else 0.0 for x in a):.2f}",
                      f"{med(x['switches'] for x in a):g}")  # fmt: skip
    return t


def scale_verdicts(runs: dict) -> list[str]:
    one, two, local = runs["ray 1 actor"], runs["ray 2 actors"], runs["local"]
    pairs = list(zip(one, two, strict=True))
    speed_span = med(b["rate_span"] / a["rate_span"] for a, b in pairs)
    speed_wall = med(b["rate_wall"] / a["rate_wall"] for a, b in pairs)
    speed_cpu = med(a["sample_cpu"] / b["busiest_cpu"] for a, b in pairs)
    over = med(a["wall"] / b["wall"] - 1 for a, b in zip(one, local, strict=True))
    over_span = med(a["span"] / b["span"] - 1 for a, b in zip(one, local, strict=True))
    over_cpu = med(
        (a["sample_cpu"] + a["driver_cpu"]) / b["driver_cpu"] - 1 for a, b in zip(one, local, strict=True)
    )
    return [
        f"2 actors vs 1, measured: {speed_span:.2f}x samples/s over the sampling span, {speed_wall:.2f}x over "
        f"the wall; from CPU time (1 actor's sampling CPU / the busier of 2 actors'), what two free cores "
        f"would give: {speed_cpu:.2f}x (target >= 1.7x)",
        f"Ray, 1 actor, vs the local sweep ({med(r['wall'] for r in local):.0f} s): {over:+.1%} wall, "
        f"{over_span:+.1%} sampling span, {over_cpu:+.1%} CPU (driver + the actor's units, start-up "
        f"and switches excluded) (target <= +10%)",
        "per run (local | 1 actor | 2 actors), wall s: "
        + " | ".join(", ".join(f"{r['wall']:.1f}" for r in rs) for rs in (local, one, two))
        + "; sampling CPU s: "
        + " | ".join(", ".join(f"{r['sample_cpu']:.1f}" for r in rs) for rs in (local, one, two)),
    ]


def sim_table(sim: dict) -> Table:
    t = Table(title="2. simulated cluster: 8 actors x 0.25 CPU, scripted engine, uneven answers (medians)")
    for col in (
        "run",
        "units",
        "span s",
        "busy share",
        "least busy actor",
        "switches",
        "bound",
        "driver CPU s",
    ):
        t.add_column(col, justify="right")
    for label, rs in sim.items():
        recs = [r["record"] for r in rs]
        least = [min(a["busy_s"] for a in rec["actors"]) / rec["span_s"] for rec in recs]
        t.add_row(label, str(sum(u["outcome"] == "done" for u in recs[0]["units"])),
                  f"{med(r['span_s'] for r in recs):.1f}", f"{med(r['busy_share'] for r in recs):.1%}",
                  f"{med(least):.1%}", str(max(r["switches"] for r in recs)), str(rs[0]["variants"] * 8),
                  f"{med(r['driver_cpu'] for r in rs):.1f}")  # fmt: skip
    return t


def start_cluster(ray, tries: int = 5) -> None:
    """The benchmark's local cluster, with the workers' niceness of the cluster `--ray` starts for a run
    (`cluster.LOCAL_SYSTEM_CONFIG`). Ray gives its node 30 s to register, which a loaded, shared machine
    can miss: try again (the failed try's processes end with this one)."""
    from wiseft.distributed.cluster import LOCAL_SYSTEM_CONFIG

    for attempt in range(1, tries + 1):
        try:
            ray.init(
                num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config=LOCAL_SYSTEM_CONFIG
            )
            return
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for a node that timed out
            if attempt == tries or "timed out during startup" not in str(exc):
                raise
            print(f"Ray's node did not register in time (try {attempt} of {tries}, a loaded machine); again")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=96, help="toy problems in the scale-out sweep")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument(
        "--delta", type=lambda s: tuple(float(x) for x in s.split(",")), default=(0.0, 0.25, 0.5, 0.75, 1.0)
    )
    ap.add_argument("--sim-limit", type=int, default=128)
    ap.add_argument(
        "--sim-delta", type=lambda s: tuple(float(x) for x in s.split(",")), default=(0.0, 0.5, 1.0, 0.25)
    )
    ap.add_argument(
        "--per-token", type=float, default=0.0005, help="seconds per token of the scripted engine"
    )
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--skip-sim", action="store_true")
    ap.add_argument("--commands", action="store_true", help="also 1c: whole `wiseft sweep` commands")
    ap.add_argument("--machine", action="store_true", help="also 1d: 1 local command vs 2 at once")
    ap.add_argument("--skip-composition", action="store_true")
    ap.add_argument("--vllm", action="store_true", help="also section 4 (needs vLLM and Ray)")
    ap.add_argument("--vllm-anchors", default=None, help="EARLY,FINAL model directories for section 4")
    ap.add_argument("--vllm-device", default="cuda", help="device of section 4 with --vllm-anchors")
    args = ap.parse_args()
    # The process settings the CLI gives the commands that run models (`wiseft.cli.main`), so that the
    # local sweep in this process runs as `wiseft sweep` would and as the actors do (they tune their own
    # allocator; a local cluster started here passes the OpenMP policy on to them).
    from wiseft.memory import tune_allocator
    from wiseft.openmp import passive_openmp

    passive_openmp()
    tune_allocator()
    import ray

    console = Console(width=150)
    toy_models()
    load0, t0 = os.getloadavg(), time.perf_counter()
    start_cluster(ray)
    console.print(f"local Ray cluster (2 CPUs) started in {time.perf_counter() - t0:.1f} s; "
                  f"load average before: {load0[0]:.1f} / {load0[1]:.1f} (1 / 5 min), {os.cpu_count()} cores")  # fmt: skip
    if not args.skip_scale:
        runs = bench_scale(args)
        console.print(scale_table(runs))
        console.print(actor_table({k: v for k, v in runs.items() if k != "local"}))
        for line in scale_verdicts(runs):
            console.print(line)
    if args.commands:
        console.print(commands_table(bench_commands(args)))
    if args.machine:
        console.print(machine_table(bench_machine(args), args))
    if not args.skip_sim:
        console.print(sim_table(bench_sim(args)))
    if not args.skip_composition:
        c = bench_composition()
        console.print(
            f"3. composition, {c['samples']} samples: tokens differ in {c['whole_vs_alone']} samples (one call vs "
            f"each prompt alone) and {c['whole_vs_groups']} (vs random groups); prefill logits alone vs in one "
            f"padded batch: {c['rows_differ']} of {c['rows']} rows not bit-identical, largest difference "
            f"{c['max_diff']:.2g}"
        )
    if args.vllm:
        console.print(vllm_table(bench_vllm(args)))
    load1 = os.getloadavg()
    console.print(f"load average after: {load1[0]:.1f} / {load1[1]:.1f}; a shared machine under other work: "
                  "wall-clock figures are from a busy machine")  # fmt: skip
    ray.shutdown()


if __name__ == "__main__":
    main()

"""`wiseft demo`: the paper's whole effect on a tiny model, end to end, from the project's real pieces.

1. base: the toy world's sloppy pretraining (`train.toy.pretrain`), cached under the user cache directory
   by a key of everything that decides it, so a second run skips it;
2. SFT with a checkpoint schedule (`train.toy.finetune`, standard HF checkpoints);
3. evaluation of every variant through the sweep's machinery (`sweep.evaluate`: sample with
   `sampling.hf.HFSampler`, store in `store.SampleStore`, grade with `grading.Grader` ("int"), summarise
   with `metrics.summarize`): the base, the SFT checkpoints, early⊕final mixes over a δ grid (weights
   materialised in place by `weightspace.WeightSpace`), and the final model at several temperatures;
4. the three claims (`train.claims`), checked on this run's numbers;
5. `results.json` (docs/ARCHITECTURE.md) and the report (`report.build`).

The library reports progress through `progress(stage, done, total, detail)` and never prints; the whole
output directory is written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wiseft.config import to_dict
from wiseft.errors import ConfigError
from wiseft.train import toy
from wiseft.train.claims import (
    PairedTables,
    claim_mix_recovers,
    claim_sft_collapse,
    claim_temperature_cannot,
)

Progress = Callable[[str, int, int, str], None]


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the demo runs. Defaults are the recipe of docs/TOY.md, with seeds pinned."""

    recipe: toy.ToyRecipe = toy.ToyRecipe()
    n: int = 32
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    deltas: tuple[float, ...] = (0.25, 0.5, 0.75)
    temperatures: tuple[float, ...] = (0.7, 1.3, 1.6)
    early_step: int = 75
    # Which SFT checkpoints are evaluated (the early and the final one always are) and on how many of the
    # held-out problems: sampling is ~95% of the evaluation time, and the claims held on the first 200,
    # 250, 300 and all 400 problems with the default seeds (measured), so 300 keeps the cached demo short.
    eval_steps: tuple[int, ...] = (75, 150, 300, 450, 600)
    n_eval: int = 300
    sample_seed: int = 0
    n_boot: int = 1000
    max_new_tokens: int = 16
    select_metric: str = "pass@1"  # how the best mix is chosen (the sweep's default)
    threads: int = 0

    def __post_init__(self):
        if self.select_metric not in [f"pass@{k}" for k in self.ks] + [f"maj@{k}" for k in self.ks]:
            raise ConfigError(
                f"select_metric {self.select_metric!r} must be pass@k or maj@k with k in {self.ks}"
            )
        if self.n < max(self.ks):
            raise ConfigError(f"--n {self.n} is smaller than the largest k {max(self.ks)}; raise --n")
        steps = toy.ToyRecipe.sft_config(self.recipe).checkpoint_steps()
        if self.early_step not in steps:
            raise ConfigError(
                f"--early-step {self.early_step} is not a checkpoint step; choose one of {steps}"
            )
        if self.early_step == self.recipe.sft_steps:
            raise ConfigError("--early-step must come before the last SFT step")
        missing = [s for s in self.eval_steps if s not in steps]
        if missing:
            raise ConfigError(f"eval steps {missing} are not checkpoint steps; choose among {steps}")
        if not 1 <= self.n_eval <= self.recipe.n_test:
            raise ConfigError(
                f"--n-eval must lie in 1..{self.recipe.n_test} (the test problems), got {self.n_eval}"
            )
        if any(not 0 < d < 1 for d in self.deltas):
            raise ConfigError(f"--delta values must lie strictly between 0 and 1, got {self.deltas}")
        if not self.deltas:
            raise ConfigError("give at least one --delta")


def default_cache_dir() -> Path:
    """$WISEFT_CACHE, else $XDG_CACHE_HOME/wiseft, else ~/.cache/wiseft."""
    if os.environ.get("WISEFT_CACHE"):
        return Path(os.environ["WISEFT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wiseft"


def base_path(cfg: DemoConfig, cache_dir: Path) -> Path:
    return Path(cache_dir) / f"toy-base-{cfg.recipe.base_key()}"


def ensure_base(cfg: DemoConfig, cache_dir: Path, fresh: bool = False, progress: Progress | None = None):
    """The base model directory, built (atomically) unless a cached one exists; (path, was_cached)."""
    from wiseft.atomic import atomic_dir

    target = base_path(cfg, cache_dir)
    if not fresh and (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target, True
    steps = cfg.recipe.pretrain_steps

    def on_step(p):
        if progress:
            progress("pretrain", p.step, steps, f"loss {p.loss:.3f}")

    # The recipe's micro-batches make the base the same bytes for any thread count (sft._MicroBatches),
    # which matters: 800 steps sit near the edge of the model learning to carry, and before micro-batches
    # a base pretrained on two threads instead of one (another summation order) flipped claim (a).
    with atomic_dir(target, force=True) as tmp:
        result = toy.pretrain(cfg.recipe, tmp / "run", on_step=on_step)
        last = result.checkpoints[max(result.checkpoints)]
        for entry in last.iterdir():
            shutil.move(str(entry), str(tmp / entry.name))
        shutil.rmtree(tmp / "run")
    return target, False


def _variant_specs(cfg: DemoConfig, checkpoints: dict[int, Path], base: Path) -> list[tuple[Any, list[Path]]]:
    """(VariantSpec, anchor paths) in evaluation order: base, checkpoints, mixes, temperatures."""
    from wiseft.merge.recipe import Recipe, recipe_to_dict
    from wiseft.sweep import VariantSpec, variant_name

    final_step = max(checkpoints)
    early, final = checkpoints[cfg.early_step], checkpoints[final_step]
    out: list[tuple[Any, list[Path]]] = [
        (VariantSpec("base,T=1", "base", 1.0, models=(str(base),), weights=[1.0]), [base])
    ]
    wanted = set(cfg.eval_steps) | {cfg.early_step, final_step}
    for step, path in checkpoints.items():
        if step not in wanted:
            continue
        spec = VariantSpec(variant_name(None, 1.0, step), "checkpoint", 1.0, step=step, models=(str(path),))
        out.append((dataclasses.replace(spec, weights=[1.0]), [path]))
    for d in cfg.deltas:
        r = Recipe(method="wise-ft", models=(str(early), str(final)), delta=d)
        spec = VariantSpec(
            variant_name(d, 1.0),
            "mix",
            1.0,
            delta=d,
            step=final_step,
            weights=r,
            recipe=recipe_to_dict(r),
            models=(str(early), str(final)),
        )
        out.append((spec, [early, final]))
    for t in cfg.temperatures:
        spec = VariantSpec(
            variant_name(None, t, final_step, label="final"),
            "temperature",
            t,
            step=final_step,
            models=(str(final),),
            weights=[1.0],
        )
        out.append((spec, [final]))
    return out


def run_demo(
    cfg: DemoConfig,
    out_dir: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    fresh: bool = False,
    report: bool = True,
    force: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Run the demo into `out_dir` (atomically) and return the results dict (claims and timings included)."""
    import torch

    from wiseft.atomic import atomic_dir, write_json
    from wiseft.config import write_resolved

    clock = _Clock()
    load_before = os.getloadavg()[0]
    busy_before = busy_cores_now()
    torch.set_num_threads(choose_threads(cfg.threads, busy_before))
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    with atomic_dir(out_dir, force=force) as tmp:
        with clock.stage("base"):
            base, cached = ensure_base(cfg, cache, fresh, progress)

        steps = cfg.recipe.sft_steps

        def on_sft(p):
            if progress:
                progress("sft", p.step, steps, f"loss {p.loss:.3f}")

        with clock.stage("sft"):
            run = toy.finetune(cfg.recipe, base, tmp / "sft", on_step=on_sft)

        with clock.stage("eval"):
            entries, eval_timings = _evaluate_all(cfg, base, run.checkpoints, tmp, progress)

        with clock.stage("claims"):
            results = _results(cfg, entries, base, cached, run.checkpoints)
        results["paths"] = {"base": str(base), "sft": str(Path(out_dir) / "sft")}
        write_resolved(tmp, cfg, name="demo_config.yaml")
        if report:
            from wiseft.report import build

            if progress:
                progress("report", 0, 1, "plots")
            with clock.stage("report"):
                build(_public(results), tmp / "report")
            if progress:
                progress("report", 1, 1, "done")
        timings = dict(clock.wall)
        timings.update({f"eval.{k}": v for k, v in eval_timings.items()})
        timings["total"] = clock.total()
        results["timings"] = {k: round(v, 2) for k, v in timings.items()}
        # CPU seconds of this process per stage: on a busy machine they show what an idle one would take.
        results["cpu_seconds"] = {k: round(v, 2) for k, v in clock.cpu.items()}
        results["machine"] = {
            "torch_threads": torch.get_num_threads(),
            "micro_batches": cfg.recipe.micro_batches,
            "cpu_count": os.cpu_count(),
            "busy_cores_before": round(busy_before, 2),
            "loadavg_1min_before": round(load_before, 2),
            "loadavg_1min_after": round(os.getloadavg()[0], 2),
        }
        write_json(tmp / "results.json", _public(results))
    return _public(results)


def choose_threads(asked: int, busy_cores: float) -> int:
    """`asked` when given; else the cores that other processes leave free (at least one).

    `busy_cores` is how many cores other work occupies right now (`busy_cores_now`). Measured on the
    project's 2-core VM with other jobs running: a pretraining step with two intra-op threads took 4-12 s
    against ~1.3 s with one (the threads wait on each other while a core is taken), so a busy core is not
    counted. The 1-minute load average is no guide here: right after another run it still reads ~2 on an
    idle machine, which made back-to-back demos run single-threaded.
    """
    if asked:
        return asked
    cores = os.cpu_count() or 1
    return max(1, min(cores, int(cores - busy_cores + 0.5)))


def busy_cores_now(seconds: float = 0.5) -> float:
    """Cores in use by all processes over the next `seconds` (from /proc/stat via psutil)."""
    import psutil

    return psutil.cpu_percent(interval=seconds) / 100.0 * (os.cpu_count() or 1)


class _Clock:
    """Wall and CPU seconds per named stage."""

    def __init__(self):
        self.start = time.perf_counter()
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = time.perf_counter() - wall
            self.cpu[name] = time.process_time() - cpu

    def total(self) -> float:
        return time.perf_counter() - self.start


def _public(results: dict) -> dict:
    return {k: v for k, v in results.items() if not k.startswith("_")}


def _evaluate_all(cfg: DemoConfig, base: Path, checkpoints: dict[int, Path], out: Path, progress):
    """Sample, grade and summarise every variant with one model, one store and one grader."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wiseft.grading import Grader
    from wiseft.sampling.hf import HFSampler
    from wiseft.store import SampleStore, model_fingerprint
    from wiseft.sweep import EvalConfig, Workload, evaluate, make_prompts
    from wiseft.tasks import get_task
    from wiseft.weightspace import WeightSpace

    r = cfg.recipe
    task = get_task("toy", seed=r.data_seed, n_sft=r.n_sft, n_test=r.n_test)
    task = task.subset([p.id for p in task.problems[: cfg.n_eval]])
    final = checkpoints[max(checkpoints)]
    tokenizer = AutoTokenizer.from_pretrained(str(final))
    model = AutoModelForCausalLM.from_pretrained(str(final), dtype=torch.float32).eval()
    sampler = HFSampler(model, tokenizer)
    ecfg = EvalConfig(
        task="toy",
        n=cfg.n,
        k=cfg.ks,
        temperature=(1.0,),
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.sample_seed,
        device="cpu",
        chunk=cfg.n_eval,  # one chunk per variant: the sampler batches it as it likes
        n_boot=cfg.n_boot,
    )
    specs = _variant_specs(cfg, checkpoints, base)
    fingerprints: dict[str, str] = {}
    total = len(specs) * len(task.problems)
    done_variants = 0

    def tick(name, stage, done, n_problems):
        if progress and stage == "sample":
            progress("eval", done_variants * n_problems + done, total, name)

    entries = []
    with SampleStore(out / "samples.db") as store, Grader(task.grader) as grader:
        prompts = make_prompts(task, tokenizer, "plain")
        store.add_problems(task.name, [(p.id, p.gold, prompts[p.id]) for p in task.problems])
        run_id = store.begin_run("demo", to_dict(cfg))
        work = Workload(task, list(task.problems), prompts, store, grader, ecfg, run_id, tick)
        spaces: dict[tuple[str, ...], WeightSpace] = {}
        for spec, anchors in specs:
            key = tuple(str(a) for a in anchors)
            t0 = time.perf_counter()
            if key not in spaces:
                spaces.clear()  # anchors of one variant group at a time; the model is shared
                spaces[key] = WeightSpace.load([str(a) for a in anchors], model=model)
            spaces[key].apply(spec.weights)
            work.timings["switch"] += time.perf_counter() - t0
            for a in key:
                if a not in fingerprints:
                    fingerprints[a] = model_fingerprint(a)
            entry = evaluate(work, spec, sampler, {a: fingerprints[a] for a in key})
            entries.append(entry)
            done_variants += 1
        store.end_run(run_id)
        grader_name = grader.name
    for e in entries:
        e["_grader"] = grader_name
    return entries, dict(work.timings)


def _results(
    cfg: DemoConfig, entries: list[dict], base: Path, cached: bool, checkpoints: dict[int, Path]
) -> dict:
    from wiseft.sweep import versions

    by_name = {e["name"]: e for e in entries}
    final_step = max(checkpoints)
    ckpt = {e["step"]: e["name"] for e in entries if e["kind"] == "checkpoint"}
    mixes = [e for e in entries if e["kind"] == "mix"]
    temps = {e["name"]: e["temperature"] for e in entries if e["kind"] == "temperature"}
    tables = PairedTables(
        {e["name"]: e["_per_problem"] for e in entries}, cfg.ks, seed=cfg.sample_seed, n_boot=cfg.n_boot
    )
    metric = cfg.select_metric
    best = max(mixes, key=lambda e: e["summary"]["metrics"][metric]["value"])
    early, final = ckpt[cfg.early_step], ckpt[final_step]
    # The final model at T=1 is a temperature of the final model too.
    temps_all = {final: 1.0, **temps}
    claims = [
        claim_sft_collapse(tables, early, final),
        claim_mix_recovers(tables, best["name"], final),
        claim_temperature_cannot(tables, best["name"], temps_all),
    ]
    variants = [{k: v for k, v in e.items() if not k.startswith("_")} for e in entries]
    return {
        "config": to_dict(cfg),
        "versions": versions(entries[0]["_grader"] if entries else None),
        "task": {
            "name": "toy",
            "n_problems": cfg.n_eval,
            "source": f"toy generator seed {cfg.recipe.data_seed}",
        },
        "variants": variants,
        "best": {
            "metric": metric,
            "variant": best["name"],
            "how": f"highest {metric} among the mixes δ ∈ {list(cfg.deltas)}, on all {cfg.n_eval} evaluated test problems "
            "(in-sample: the demo's claims use the same problems)",
            "value": best["summary"]["metrics"][metric],
        },
        "base": {"path": str(base), "cached": cached, "key": cfg.recipe.base_key()},
        "roles": {"early": early, "final": final, "mix": best["name"], "temperatures": list(temps)},
        "early_step": cfg.early_step,
        "claims": [c.as_dict() for c in claims],
        "_by_name": by_name,
    }

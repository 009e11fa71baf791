"""Sweeps: many model variants evaluated from one set of weights in memory, resumably.

A sweep is a list of `VariantSpec`s (a δ grid × temperatures, one model, or the checkpoints of a
training run raw and mixed). For each variant, `evaluate()`:

1. materialises the weights in place (`WeightSpace.apply`; no checkpoint is written or re-read);
2. samples only what the store lacks (`SampleStore.missing`), a chunk of problems at a time, committing
   each chunk as it is produced, so a killed sweep resumes where it stopped;
3. grades what is not graded yet (whole problems, since answer classes are per problem);
4. summarises (`metrics.summarize`) from the store.

The result is the `results.json` dict of docs/ARCHITECTURE.md. The best variant is chosen by one metric
on a validation split of the problems (`tasks.split_problems`) and reported on the held-out split, so
the choice is not scored on the data that made it. Library code reports progress through a callback,
`progress(variant_name, stage, done, total)` with stage "sample" or "grade"; it never prints.

Reproducibility: every variant samples with the same seed, so variants see common random numbers
(paired comparisons are tighter), and the sampler's per-prompt random streams make a resumed run draw
what an uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wiseft.config import to_dict
from wiseft.errors import ConfigError, MetricError, SamplingError, TrainError
from wiseft.sampling import Completion, SamplingParams

Progress = Callable[[str, str, int, int], None]
KINDS = ("checkpoint", "mix", "temperature", "base")


# ---- configuration -----------------------------------------------------------------------------------


def parse_grid(spec: Any, flag: str = "--delta") -> tuple[float, ...]:
    """`"0:1:0.125"` (start:stop:step, both ends included), `"0,0.5,1"`, a number or a list → floats."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return (float(spec),)
    if isinstance(spec, (list, tuple)):
        try:
            return tuple(float(x) for x in spec)
        except (TypeError, ValueError):
            raise ConfigError(f"{flag}: every value must be a number, got {list(spec)!r}") from None
    text = str(spec).strip()
    try:
        if ":" in text:
            parts = [float(x) for x in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise ConfigError(f"{flag} {text!r}: need start <= stop and a positive step (e.g. 0:1:0.125)")
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            return tuple(round(start + i * step, 10) for i in range(count))
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r}: give start:stop:step (e.g. 0:1:0.125) or comma-separated numbers"
        ) from None
    if not values:
        raise ConfigError(f"{flag} is empty; give start:stop:step or comma-separated numbers")
    return values


def parse_ks(spec: Any) -> tuple[int, ...]:
    values = parse_grid(spec, "--k")
    if any(v != int(v) or v < 1 for v in values):
        raise ConfigError(f"--k must be positive integers such as 1,4,16, got {spec!r}")
    return tuple(sorted({int(v) for v in values}))


@dataclass(frozen=True)
class EvalConfig:
    """What every evaluation shares: the task, how many samples, how to sample, grade and score."""

    task: str = "gsm8k"
    data: str | None = None
    limit: int | None = None
    prompt: str = "plain"
    n: int = 16
    k: Any = (1,)
    temperature: Any = (1.0,)
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 512
    seed: int = 0
    device: str | None = None
    threads: int | None = None
    chunk: int = 64
    workers: int | None = None
    n_boot: int = 1000
    store: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", parse_ks(self.k))
        object.__setattr__(self, "temperature", parse_grid(self.temperature, "--temperature"))
        if self.n < 1:
            raise ConfigError(f"--n must be at least 1, got {self.n}")
        if max(self.k) > self.n:
            raise ConfigError(
                f"--k {max(self.k)} is larger than --n {self.n}: Pass@k needs at least k samples per problem; "
                f"raise --n to {max(self.k)} or drop k > {self.n}"
            )
        if any(t < 0 for t in self.temperature):
            raise ConfigError(f"--temperature must be >= 0, got {self.temperature}")
        if self.chunk < 1:
            raise ConfigError(f"--chunk must be at least 1, got {self.chunk}")
        if self.prompt not in ("plain", "chat"):
            raise ConfigError(f"--prompt must be plain or chat, got {self.prompt!r}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        SamplingParams(top_p=self.top_p, top_k=self.top_k, max_new_tokens=self.max_new_tokens)


@dataclass(frozen=True)
class ModelEvalConfig(EvalConfig):
    """`wiseft eval MODEL`: one model, each temperature."""

    model: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise ConfigError("wiseft eval needs a MODEL directory")


@dataclass(frozen=True)
class SweepConfig(EvalConfig):
    """`wiseft sweep`: anchors EARLY FINAL (or a recipe) × a δ grid × temperatures."""

    anchors: tuple[str, ...] = ()
    recipe: str | None = None
    delta: Any = "0:1:0.125"
    extrapolate: bool = False
    val_fraction: float = 0.5
    metric: str = "pass@1"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "delta", parse_grid(self.delta))
        object.__setattr__(self, "anchors", tuple(str(a) for a in self.anchors))
        if self.recipe is None and len(self.anchors) != 2:
            raise ConfigError(
                f"wiseft sweep needs two anchors EARLY FINAL (or --recipe), got {len(self.anchors)}"
            )
        if not self.extrapolate and any(not 0 <= d <= 1 for d in self.delta):
            raise ConfigError(f"--delta values must lie in [0, 1] (or pass --extrapolate), got {self.delta}")
        check_metric(self.metric, self.k)
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in [0, 1) (0: no split), got {self.val_fraction}")


@dataclass(frozen=True)
class TrajectoryConfig(EvalConfig):
    """`wiseft trajectory RUN_DIR`: every checkpoint-* raw, and mixed with an early checkpoint at δ."""

    run_dir: str = ""
    early: int | None = None
    delta: Any = (0.5,)
    val_fraction: float = 0.5
    metric: str = "pass@1"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "delta", parse_grid(self.delta))
        if any(not 0 <= d <= 1 for d in self.delta):
            raise ConfigError(f"--delta values must lie in [0, 1], got {self.delta}")
        check_metric(self.metric, self.k)
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in [0, 1) (0: no split), got {self.val_fraction}")


def check_metric(metric: str, ks: Sequence[int]) -> None:
    m = re.fullmatch(r"(pass|maj|best)@(\d+)", metric)
    if not m or int(m.group(2)) not in ks:
        raise ConfigError(f"--metric {metric!r} must be pass@k, maj@k or best@k with k among --k {list(ks)}")
    if m.group(1) == "best":
        raise ConfigError(
            f"--metric {metric}: best@k needs reward-model scores, which a sweep does not produce; "
            "choose pass@k or maj@k"
        )


def check_split(cfg, task) -> None:
    """Fail before any sampling when the validation split cannot be made (too few problems)."""
    from wiseft.errors import TaskError
    from wiseft.tasks import split_problems

    if getattr(cfg, "val_fraction", 0):
        try:
            split_problems(task.problems, cfg.val_fraction, cfg.seed)
        except TaskError as exc:
            raise ConfigError(str(exc)) from exc


def sampling_params(cfg: EvalConfig, temperature: float, stop: tuple[str, ...]) -> SamplingParams:
    return SamplingParams(
        temperature=temperature, top_p=cfg.top_p, top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens,
        stop=tuple(stop), seed=cfg.seed,
    )  # fmt: skip


# ---- variants ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantSpec:
    """One point of a sweep. `weights` is what `WeightSpace.apply` takes (a δ, a Recipe), or None for
    "the model as it is"; `models` names the anchors (for the store's fingerprints)."""

    name: str
    kind: str
    temperature: float
    delta: float | None = None
    step: int | None = None
    weights: Any = None
    recipe: dict | None = None
    models: tuple[str, ...] = field(default=())


def variant_name(delta: float | None, temperature: float, step: int | None = None, label: str = "") -> str:
    parts = []
    if step is not None:
        parts.append(f"step={step}")
    if label:
        parts.append(label)
    if delta is not None:
        parts.append(f"delta={delta:.3f}")
    parts.append(f"T={temperature:g}")
    return ",".join(parts)


def plan_sweep(cfg: SweepConfig, recipe=None) -> list[VariantSpec]:
    """δ grid × temperatures over two anchors, or over a recipe (whose δ the grid replaces when the
    recipe is wise-ft and the grid was asked for; otherwise the recipe as written, per temperature)."""
    from wiseft.merge.recipe import Recipe, recipe_to_dict

    specs = []
    for t in cfg.temperature:
        if recipe is None:
            for d in cfg.delta:
                r = Recipe(method="wise-ft", models=cfg.anchors, delta=d, extrapolate=cfg.extrapolate)
                specs.append(VariantSpec(variant_name(d, t), "mix", t, delta=d, weights=r,
                                         recipe=recipe_to_dict(r), models=cfg.anchors))  # fmt: skip
        elif recipe.method == "wise-ft" and cfg.delta and cfg.delta != (recipe.delta,):
            for d in cfg.delta:
                r = dataclasses.replace(recipe, delta=d)
                specs.append(VariantSpec(variant_name(d, t), "mix", t, delta=d, weights=r,
                                         recipe=recipe_to_dict(r), models=tuple(recipe.models)))  # fmt: skip
        else:
            d = recipe.delta if isinstance(recipe.delta, (int, float)) else None
            specs.append(VariantSpec(variant_name(d, t, label=recipe.method), "mix", t, delta=d,
                                     weights=recipe, recipe=recipe_to_dict(recipe),
                                     models=tuple(recipe.models)))  # fmt: skip
    return specs


CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def find_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """The `checkpoint-STEP` directories of a training run, by step."""
    run = Path(run_dir)
    if not run.is_dir():
        raise TrainError(f"training run {run} is not a directory")
    found = []
    for entry in run.iterdir():
        m = CHECKPOINT_RE.match(entry.name)
        if m and entry.is_dir():
            if not (entry / "config.json").is_file():
                raise TrainError(f"{entry} has no config.json; is this checkpoint complete?")
            found.append((int(m.group(1)), entry))
    if not found:
        raise TrainError(f"training run {run} holds no checkpoint-STEP directories")
    return sorted(found)


# ---- evaluation --------------------------------------------------------------------------------------


@dataclass
class Workload:
    """What all variants of one run share: the task, its problems and prompts, the store, the grader."""

    task: Any
    problems: list
    prompts: dict[str, str]
    store: Any
    grader: Any
    cfg: EvalConfig
    run_id: int | None = None
    progress: Progress | None = None
    # Seconds spent in: weight switches, the sampler, the grader, store reads/writes, summaries.
    timings: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("switch", "sample", "grade", "store", "score"), 0.0)
    )

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.problems]


def load_task(cfg: EvalConfig, task=None):
    """The task of `cfg` (or the given Task object), cut to its first `cfg.limit` problems."""
    from wiseft.tasks import get_task

    if task is None:
        task = get_task(cfg.task, data=cfg.data)
    if cfg.limit is not None and cfg.limit < len(task.problems):
        task = task.subset([p.id for p in task.problems[: cfg.limit]])
    return task


def make_prompts(task, tokenizer, style: str) -> dict[str, str]:
    return {p.id: task.prompt(p, style=style, tokenizer=tokenizer) for p in task.problems}


def evaluate(work: Workload, spec: VariantSpec, sampler, model_hashes: dict) -> dict:
    """Sample what is missing, grade what is ungraded, and summarise one (already materialised) variant.
    Returns the results.json entry of the variant (its summary over all problems, plus the selection
    metric on the validation and test splits when `splits` were given)."""
    from wiseft.grading.records import grade_records
    from wiseft.metrics import summarize

    cfg, store = work.cfg, work.store
    params = sampling_params(cfg, spec.temperature, work.task.stop)
    sampling = {k: v for k, v in dataclasses.asdict(params).items() if k != "temperature"}
    sampling["prompt"] = cfg.prompt
    v = store.variant(
        spec.name, spec.kind, work.task.name, model_hashes, sampling, recipe=spec.recipe,
        temperature=spec.temperature, seed=cfg.seed, step=spec.step, run_id=work.run_id,
    )  # fmt: skip
    ids = work.ids
    todo = store.missing(v, ids, cfg.n)
    done = len(ids) - len(todo)
    _tick(work, spec.name, "sample", done, len(ids))
    clock = work.timings
    for start in range(0, len(todo), cfg.chunk):
        chunk = todo[start : start + cfg.chunk]
        t0 = time.perf_counter()
        completions = sampler.generate([work.prompts[pid] for pid in chunk], cfg.n, params)
        t1 = time.perf_counter()
        store.add_samples(v, _records(chunk, completions))
        clock["sample"] += t1 - t0
        clock["store"] += time.perf_counter() - t1
        done += len(chunk)
        _tick(work, spec.name, "sample", done, len(ids))

    ungraded = store.ungraded_problems(v, ids, cfg.n, work.grader.name)
    graded_done = len(ids) - len(ungraded)
    _tick(work, spec.name, "grade", graded_done, len(ids))
    step = max(1, 4096 // cfg.n)
    for start in range(0, len(ungraded), step):
        chunk = ungraded[start : start + step]
        records = store.records(v, chunk, cfg.n)
        t0 = time.perf_counter()
        graded = grade_records(records, work.task, work.grader)
        t1 = time.perf_counter()
        store.add_grades(v, graded)
        clock["grade"] += t1 - t0
        clock["store"] += time.perf_counter() - t1
        graded_done += len(chunk)
        _tick(work, spec.name, "grade", graded_done, len(ids))

    t0 = time.perf_counter()
    per_problem = store.problem_samples(v, ids, cfg.n)
    summary = summarize(per_problem, cfg.k, seed=cfg.seed, n_boot=cfg.n_boot)
    clock["score"] += time.perf_counter() - t0
    return {
        "name": spec.name, "kind": spec.kind, "delta": spec.delta, "temperature": spec.temperature,
        "step": spec.step, "summary": summary, "_per_problem": per_problem,
    }  # fmt: skip


def _records(problem_ids: Sequence[str], completions: Sequence[Sequence[Completion]]) -> list[dict]:
    out = []
    for pid, comps in zip(problem_ids, completions, strict=True):
        for i, c in enumerate(comps):
            out.append({"problem_id": pid, "sample_idx": i, "completion": c.text, "n_tokens": c.n_tokens,
                        "finish_reason": c.finish_reason})  # fmt: skip
    return out


def _tick(work: Workload, name: str, stage: str, done: int, total: int) -> None:
    if work.progress is not None:
        work.progress(name, stage, done, total)


def choose_best(entries: list[dict], problems: list, cfg, ids_order: list[str]) -> dict:
    """Pick the variant with the highest `cfg.metric` on a validation split; report it on the rest.

    Each entry's selection metric on both splits is added under "splits". With val_fraction 0 the
    choice is made and reported on all problems (and "how" says so)."""
    from wiseft.metrics import summarize
    from wiseft.tasks import split_problems

    metric = cfg.metric
    if cfg.val_fraction == 0:
        best = max(entries, key=lambda e: e["summary"]["metrics"][metric]["value"])
        return {"metric": metric, "variant": best["name"],
                "how": f"highest {metric} on all {len(problems)} problems (no validation split: in-sample)",
                "value": best["summary"]["metrics"][metric]}  # fmt: skip
    val, test = split_problems(problems, cfg.val_fraction, cfg.seed)  # feasibility checked up front
    pos = {pid: i for i, pid in enumerate(ids_order)}
    k = int(metric.split("@")[1])
    for e in entries:
        e["splits"] = {}
        for split_name, part in (("validation", val), ("test", test)):
            chosen = [e["_per_problem"][pos[p.id]] for p in part]
            try:
                s = summarize(chosen, [k], seed=cfg.seed, n_boot=cfg.n_boot)
            except MetricError as exc:
                raise ConfigError(f"--metric {metric}: {exc}") from exc
            e["splits"][split_name] = {"n_problems": len(part), metric: s["metrics"][metric]}
    best = max(entries, key=lambda e: e["splits"]["validation"][metric]["value"])
    return {
        "metric": metric,
        "variant": best["name"],
        "how": (
            f"highest {metric} on a validation split of {len(val)} problems (seed {cfg.seed}); "
            f"reported on the other {len(test)} held-out problems"
        ),
        "validation": best["splits"]["validation"][metric],
        "test": best["splits"]["test"][metric],
    }


def versions(grader_name: str | None = None) -> dict:
    import torch
    import transformers

    from wiseft import __version__
    from wiseft.store import SCHEMA_VERSION

    return {"wiseft": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "grader": grader_name, "store_schema": SCHEMA_VERSION}  # fmt: skip


def results_dict(cfg, entries: list[dict], best: dict | None, grader_name: str, work: Workload) -> dict:
    variants = [{k: v for k, v in e.items() if not k.startswith("_")} for e in entries]
    return {
        "config": to_dict(cfg),
        "versions": versions(grader_name),
        "task": {"name": work.task.name, "n_problems": len(work.problems), "source": work.task.source},
        "variants": variants,
        "best": best,
        "timings": {k: round(v, 3) for k, v in work.timings.items()},
    }


# ---- the runs ----------------------------------------------------------------------------------------


def open_store(cfg: EvalConfig, out_dir: Path):
    from wiseft.store import SampleStore

    path = Path(cfg.store) if cfg.store else out_dir / "samples.db"
    return SampleStore(path)


def _fingerprints(paths: Sequence[str | os.PathLike]) -> dict:
    from wiseft.store import model_fingerprint

    return {str(p): model_fingerprint(p) for p in paths}


def run_sweep(
    cfg: SweepConfig,
    out_dir: str | os.PathLike,
    progress: Progress | None = None,
    sampler_factory: Callable[[Any, Any], Any] | None = None,
    task=None,
) -> dict:
    """Run (or resume) a δ × temperature sweep; return the results dict (written by the caller).

    `sampler_factory(model, tokenizer)` builds the sampler (default `HFSampler`); `task` (a Task) replaces
    the one `cfg.task` names, for callers that build their own (the demo)."""
    from transformers import AutoTokenizer

    from wiseft.grading import Grader
    from wiseft.merge.recipe import load_recipe
    from wiseft.weightspace import WeightSpace

    recipe = load_recipe(cfg.recipe) if cfg.recipe else None
    anchors = tuple(recipe.models) if recipe is not None else cfg.anchors
    task = load_task(cfg, task)
    check_split(cfg, task)
    specs = plan_sweep(cfg, recipe)
    device = cfg.device or _default_device()
    ws = WeightSpace.load(list(anchors), device=device, base=recipe.base if recipe else None)
    tokenizer = _tokenizer(ws.anchors[-1].path, AutoTokenizer)
    hashes = _fingerprints([a.path for a in ws.anchors] + ([ws.base.path] if ws.base is not None else []))
    sampler = (sampler_factory or _hf_sampler(cfg))(ws.model, tokenizer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open_store(cfg, out) as store, Grader(task.grader, workers=cfg.workers) as grader:
        work = _workload(cfg, task, tokenizer, store, grader, "sweep", progress)
        entries = []
        for spec in specs:
            t0 = time.perf_counter()
            ws.apply(spec.weights)
            work.timings["switch"] += time.perf_counter() - t0
            entries.append(evaluate(work, spec, sampler, hashes))
        best = choose_best(entries, work.problems, cfg, work.ids)
        store.end_run(work.run_id)
        return results_dict(cfg, entries, best, grader.name, work)


def run_trajectory(
    cfg: TrajectoryConfig,
    out_dir: str | os.PathLike,
    progress: Progress | None = None,
    sampler_factory: Callable[[Any, Any], Any] | None = None,
    task=None,
) -> dict:
    """Every checkpoint-* of a run raw, and mixed with the early checkpoint at each δ, ordered by step."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wiseft.grading import Grader
    from wiseft.merge.recipe import Recipe, recipe_to_dict
    from wiseft.weightspace import WeightSpace

    checkpoints = find_checkpoints(cfg.run_dir)
    steps = [s for s, _ in checkpoints]
    early_step = cfg.early if cfg.early is not None else steps[0]
    if early_step not in steps:
        raise ConfigError(f"--early {early_step}: {cfg.run_dir} has checkpoints at steps {steps}")
    early = dict(checkpoints)[early_step]
    # Pre-flight on headers only: a checkpoint that cannot be mixed with the early one fails before any
    # sampling, so nothing is written.
    from wiseft.checkpoints import Checkpoint
    from wiseft.merge.plan import check_compatible

    check_compatible([Checkpoint.open(early)] + [Checkpoint.open(p) for _, p in checkpoints if p != early])
    task = load_task(cfg, task)
    check_split(cfg, task)
    device = cfg.device or _default_device()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(early), dtype=dtype)
    model.to(device).eval()
    tokenizer = _tokenizer(early, AutoTokenizer, fallback=Path(cfg.run_dir))
    sampler = (sampler_factory or _hf_sampler(cfg))(model, tokenizer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open_store(cfg, out) as store, Grader(task.grader, workers=cfg.workers) as grader:
        work = _workload(cfg, task, tokenizer, store, grader, "trajectory", progress)
        entries = []
        for step, path in checkpoints:
            t0 = time.perf_counter()
            ws = WeightSpace.load([str(early), str(path)], model=model, device=device)
            work.timings["switch"] += time.perf_counter() - t0
            hashes = _fingerprints([early, path])
            for t in cfg.temperature:
                t0 = time.perf_counter()
                ws.set_delta(0.0)  # the raw checkpoint, bit for bit
                work.timings["switch"] += time.perf_counter() - t0
                raw = VariantSpec(variant_name(None, t, step), "checkpoint", t, step=step,
                                  models=(str(path),))  # fmt: skip
                entries.append(evaluate(work, raw, sampler, {str(path): hashes[str(path)]}))
                for d in cfg.delta:
                    if step == early_step or d == 0:
                        continue  # mixing the early checkpoint with itself, or δ=0, is the raw checkpoint
                    r = Recipe(method="wise-ft", models=(str(early), str(path)), delta=d)
                    t0 = time.perf_counter()
                    ws.apply(r)
                    work.timings["switch"] += time.perf_counter() - t0
                    mix = VariantSpec(variant_name(d, t, step), "mix", t, delta=d, step=step, weights=r,
                                      recipe=recipe_to_dict(r), models=(str(early), str(path)))  # fmt: skip
                    entries.append(evaluate(work, mix, sampler, hashes))
            del ws
        best = choose_best(entries, work.problems, cfg, work.ids)
        store.end_run(work.run_id)
        results = results_dict(cfg, entries, best, grader.name, work)
        results["early_step"] = early_step
        return results


def run_eval(
    cfg: EvalConfig,
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    progress: Progress | None = None,
    sampler_factory: Callable[[Any, Any], Any] | None = None,
    task=None,
) -> list[dict]:
    """One model, each temperature: sample → grade → summarise. Returns the variant entries (with
    "summary"); the graded records stay in the store."""
    from wiseft.grading import Grader
    from wiseft.sampling.hf import load_model_and_tokenizer

    task = load_task(cfg, task)
    model, tokenizer = load_model_and_tokenizer(model_path, cfg.device)
    sampler = (sampler_factory or _hf_sampler(cfg))(model, tokenizer)
    hashes = _fingerprints([model_path])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open_store(cfg, out) as store, Grader(task.grader, workers=cfg.workers) as grader:
        work = _workload(cfg, task, tokenizer, store, grader, "eval", progress)
        entries = []
        for t in cfg.temperature:
            spec = VariantSpec(variant_name(None, t, label=Path(model_path).name), "base", t,
                               models=(str(model_path),))  # fmt: skip
            entry = evaluate(work, spec, sampler, hashes)
            entry["grader"] = grader.name
            entry["records"] = store.records(store.find_variant(spec.name), work.ids, cfg.n)
            entries.append(entry)
        store.end_run(work.run_id)
        return entries


def _workload(cfg, task, tokenizer, store, grader, command: str, progress) -> Workload:
    prompts = make_prompts(task, tokenizer, cfg.prompt)
    store.add_problems(task.name, [(p.id, p.gold, prompts[p.id]) for p in task.problems])
    run_id = store.begin_run(command, to_dict(cfg))
    return Workload(task, list(task.problems), prompts, store, grader, cfg, run_id, progress)


def _default_device() -> str:
    from wiseft.sampling.hf import default_device

    return default_device()


def _hf_sampler(cfg: EvalConfig):
    from wiseft.sampling.hf import HFSampler

    return lambda model, tokenizer: HFSampler(model, tokenizer, threads=cfg.threads)


def _tokenizer(path: Path, auto, fallback: Path | None = None):
    for candidate in (path, fallback):
        if candidate is not None and (
            (candidate / "tokenizer.json").is_file() or (candidate / "tokenizer_config.json").is_file()
        ):
            return auto.from_pretrained(str(candidate))
    raise SamplingError(f"no tokenizer in {path}" + (f" or {fallback}" if fallback else "") +
                     "; save the tokenizer with the model")  # fmt: skip

"""`wiseft demo`: the paper's whole effect on a tiny model, end to end, from the project's real pieces.

1. base: the toy world's sloppy pretraining (`train.toy.build_base`), cached under the user cache directory
   by a key of everything that decides it, so a second run skips it;
2. SFT with a checkpoint schedule (`train.toy.finetune`, standard HF checkpoints);
3. evaluation of every variant through the evaluation engine (`evaluate.EvalSession` with the
   transformers engine): the base, the SFT checkpoints, early⊕final mixes over a δ grid (weights
   materialised in place), and the final model at several temperatures;
4. the paper's claims (`wiseft.claims`), checked on this run's numbers;
5. `results.json` and the report, written with the evaluation's own outputs (`evaluate.outputs`).

The library reports progress through `progress(stage, done, total, detail)` and never prints; the whole
output directory is written atomically.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from wiseft.atomic import atomic_dir
from wiseft.claims import replicate_row, replicate_table
from wiseft.config import to_dict, write_resolved
from wiseft.demo_claims import choose_mix, demo_claims
from wiseft.demo_rl import RLStageConfig, add_rl_stage
from wiseft.errors import ConfigError
from wiseft.evaluate.config import EvalConfig
from wiseft.evaluate.engine import hf_engine
from wiseft.evaluate.outputs import write_report, write_results
from wiseft.evaluate.plan import VariantSpec, variant_name
from wiseft.evaluate.session import EvalSession, store_path
from wiseft.evaluate.verifying import verify_in_store
from wiseft.machine import Clock, busy_cores_now, choose_threads
from wiseft.merge import fused
from wiseft.merge.recipe import Recipe
from wiseft.metrics import problem_table, summarize
from wiseft.paired import BIG_K_MIN
from wiseft.results import RunResults, VariantResult
from wiseft.store import SampleStore, VariantRow
from wiseft.tasks import get_task
from wiseft.train import toy
from wiseft.verify import load_verifier
from wiseft.verify.toy import ToyVerifierConfig, heldout_ranking, train_toy_verifier

DemoProgress = Callable[[str, int, int, str], None]


def ks_up_to(n: int) -> tuple[int, ...]:
    """The k of Pass@k for n samples per problem: the powers of two up to n (32: 1, 2, …, 32). n must reach
    the smallest k the claims judge (`paired.BIG_K_MIN`); below that a one-line error naming --n."""
    if n < BIG_K_MIN:
        raise ConfigError(f"--n must be at least {BIG_K_MIN}: the claims judge Pass@k for k >= {BIG_K_MIN}")
    return tuple(2**i for i in range(n.bit_length()) if 2**i <= n)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the demo runs: the toy recipe, and how its variants are evaluated (seeds pinned)."""

    recipe: toy.ToyRecipe = toy.ToyRecipe()
    n: int = 16  # samples per problem (round 11: half of round 10's 32, half the evaluation; docs/TOY-LOG.md)
    ks: tuple[int, ...] = ks_up_to(16)
    deltas: tuple[float, ...] = (0.25, 0.5, 0.75)
    temperatures: tuple[float, ...] = (0.7, 1.3, 1.6)
    early_step: int | None = None  # None: the recipe's rule, its first SFT checkpoint
    # SFT checkpoints evaluated (+ early, final); None: the early one, every other one after it, the final
    eval_steps: tuple[int, ...] | None = None
    n_eval: int = 600  # held-out problems the claims are checked on (docs/TOY-LOG.md, round 9)
    n_val: int = 100  # the next test problems, which choose the mix (0: choose in-sample)
    sample_seed: int = 0
    n_boot: int = 1000
    max_new_tokens: int = 16
    select_metric: str = "pass@1"  # how the best mix is chosen (the sweep's default)
    threads: int = 0
    verifier: ToyVerifierConfig | None = ToyVerifierConfig()  # None: no Best@k (no toy verifier)
    rl: RLStageConfig | None = None  # the RL stage and claim (f) (`wiseft.demo_rl`); None: skipped

    def __post_init__(self):
        if self.select_metric not in [f"pass@{k}" for k in self.ks] + [f"maj@{k}" for k in self.ks]:
            raise ConfigError(
                f"select_metric {self.select_metric!r} must be pass@k or maj@k with k in {self.ks}"
            )
        if self.n < max(self.ks):
            raise ConfigError(f"--n {self.n} is smaller than the largest k {max(self.ks)}; raise --n")
        if not 1 <= self.n_eval <= self.recipe.n_test:
            raise ConfigError(
                f"--n-eval must lie in 1..{self.recipe.n_test} (the test problems), got {self.n_eval}"
            )
        if not 0 <= self.n_val <= self.recipe.n_test - self.n_eval:
            raise ConfigError(
                f"--n-val must lie in 0..{self.recipe.n_test - self.n_eval} (the test problems beyond "
                f"--n-eval {self.n_eval}), got {self.n_val}"
            )
        if not self.deltas:
            raise ConfigError("give at least one --delta")
        if any(not 0 < d < 1 for d in self.deltas):
            raise ConfigError(f"--delta values must lie strictly between 0 and 1, got {self.deltas}")
        self._check_steps()

    @property
    def early(self) -> int:
        """The early checkpoint's step: `early_step`, else the recipe's first checkpoint (a rule fixed in
        advance, never chosen by looking at the outcome)."""
        return self.early_step if self.early_step is not None else self.recipe.early_step

    @property
    def steps(self) -> tuple[int, ...]:
        """The SFT checkpoints evaluated: `eval_steps`, or the early checkpoint, every other checkpoint
        after it and the final one (20, 80, 320, 1280 of 20, 40, …, 1280): the trajectory's shape for
        four of its seven checkpoints."""
        if self.eval_steps is not None:
            return self.eval_steps
        steps = self.recipe.checkpoint_steps()
        return tuple(sorted({*steps[::2], steps[-1]}))

    def _check_steps(self) -> None:
        steps = self.recipe.checkpoint_steps()
        if self.early not in steps:
            raise ConfigError(f"--early-step {self.early} is not a checkpoint step; choose one of {steps}")
        if self.early == self.recipe.sft_steps:
            raise ConfigError("--early-step must come before the last SFT step")
        missing = [s for s in self.steps if s not in steps]
        if missing:
            raise ConfigError(f"eval steps {missing} are not checkpoint steps; choose among {steps}")

    def for_seed(self, seed: int) -> DemoConfig:
        """This demo with pretraining and SFT seeded by `seed` (a replicate: its own base)."""
        return dataclasses.replace(
            self, recipe=dataclasses.replace(self.recipe, pretrain_seed=seed, sft_seed=seed)
        )

    def eval_config(self) -> EvalConfig:
        """How each variant is sampled, graded and scored (one chunk per variant: the sampler batches it)."""
        return EvalConfig(
            task="toy", n=self.n, k=self.ks, temperature=(1.0,), max_new_tokens=self.max_new_tokens,
            seed=self.sample_seed, device="cpu", chunk=self.n_eval, n_boot=self.n_boot,
        )  # fmt: skip


def default_cache_dir() -> Path:
    """$WISEFT_CACHE, else $XDG_CACHE_HOME/wiseft, else ~/.cache/wiseft."""
    if os.environ.get("WISEFT_CACHE"):
        return Path(os.environ["WISEFT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wiseft"


def base_path(cfg: DemoConfig, cache_dir: Path) -> Path:
    return Path(cache_dir) / f"toy-base-{cfg.recipe.base_key()}"


def ensure_base(cfg: DemoConfig, cache_dir: Path, fresh: bool = False, progress: DemoProgress | None = None):
    """The base model directory, built (atomically) unless a cached one exists; (path, was_cached)."""
    target = base_path(cfg, cache_dir)
    if not fresh and (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target, True
    steps = cfg.recipe.pretrain_ceiling

    def on_step(p):
        if progress:
            progress("pretrain", p.step, steps, f"loss {p.loss:.3f}")

    return toy.build_base(cfg.recipe, target, on_step), False


def plan_demo(cfg: DemoConfig, checkpoints: dict[int, Path], base: Path) -> list[VariantSpec]:
    """In evaluation order: the base, the SFT checkpoints, the early⊕final mixes, the final model's
    temperatures. Models evaluated as they are use linear weights (1.0,) over themselves."""
    final_step = max(checkpoints)
    early, final = str(checkpoints[cfg.early]), str(checkpoints[final_step])
    specs = [VariantSpec("base,T=1", "base", 1.0, mix=(1.0,), anchors=(str(base),))]
    wanted = set(cfg.steps) | {cfg.early, final_step}
    for step, path in checkpoints.items():
        if step in wanted:
            specs.append(VariantSpec(variant_name(None, 1.0, step), "checkpoint", 1.0, step=step, mix=(1.0,),
                                     anchors=(str(path),)))  # fmt: skip
    for d in cfg.deltas:
        mix = Recipe(method="wise-ft", models=(early, final), delta=d)
        specs.append(VariantSpec(variant_name(d, 1.0), "mix", 1.0, delta=d, step=final_step, mix=mix,
                                 anchors=(early, final)))  # fmt: skip
    for t in cfg.temperatures:
        specs.append(VariantSpec(variant_name(None, t, final_step, label="final"), "temperature", t,
                                 step=final_step, mix=(1.0,), anchors=(final,)))  # fmt: skip
    return specs


def run_demo(
    cfg: DemoConfig,
    out_dir: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    fresh: bool = False,
    report: bool = True,
    force: bool = False,
    progress: DemoProgress | None = None,
) -> RunResults:
    """Run the demo into `out_dir` (atomically) and return its results (claims and timings included)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    with atomic_dir(out_dir, force=force) as tmp:
        results = _run_into(cfg, tmp, Path(out_dir), cache, fresh, progress)
        _finish(tmp, results, report, progress)
    return results


def run_replicates(
    cfg: DemoConfig,
    seeds: Sequence[int],
    out_dir: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    fresh: bool = False,
    report: bool = True,
    force: bool = False,
    progress: DemoProgress | None = None,
) -> RunResults:
    """The whole demo once per seed, into OUT/seed-<s>/ (pretraining and SFT seeded by s, each base
    cached), and the seed × claim table (`claims.replicate_table`).

    OUT/results.json and OUT/report are the first seed's results with the table added as `replicates`.
    `progress("replicates", i, len(seeds), "seed s")` marks the start of each seed's stages.
    """
    seeds = check_seeds(seeds)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    with atomic_dir(out_dir, force=force) as tmp:

        def one(seed: int, tmp_sub: Path, out_sub: Path) -> RunResults:
            return _run_into(cfg.for_seed(seed), tmp_sub, out_sub, cache, fresh, progress)

        runs = run_seeds(seeds, one, tmp, Path(out_dir), progress)
        head = runs[0]
        head.replicates = replicate_table([_replicate_row(s, r) for s, r in zip(seeds, runs, strict=True)])
        _finish(tmp, head, report, progress)
    return head


def run_seeds(
    seeds: Sequence[int], run_one: Callable[[int, Path, Path], RunResults], tmp: Path, out: Path,
    progress: DemoProgress | None,
) -> list[RunResults]:  # fmt: skip
    """`run_one(seed, tmp/seed-s, out/seed-s)` for each seed in turn, each seed's results.json written
    into its directory; `progress("replicates", i, n, "seed s")` marks each start (the replicate loop of
    both demos)."""
    runs = []
    for i, seed in enumerate(seeds):
        if progress:
            progress("replicates", i, len(seeds), f"seed {seed}")
        sub = f"seed-{seed}"
        runs.append(run_one(seed, tmp / sub, out / sub))
        write_results(tmp / sub, runs[-1])
    if progress:
        progress("replicates", len(seeds), len(seeds), "done")
    return runs


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The replicate seeds, checked: at least one, non-negative integers, no repeats."""
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("give at least one seed (--seeds 0,1,2 or --replicates 3)")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"--seeds must be non-negative integers, got {seeds}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"--seeds lists {', '.join(map(str, repeated))} more than once; give each seed once"
        )
    return seeds


def _replicate_row(seed: int, results: RunResults) -> dict:
    r = results.config.get("recipe", {})
    extra = {
        "pretrain_seed": r.get("pretrain_seed"),
        "sft_seed": r.get("sft_seed"),
        "dir": f"seed-{seed}",
        "mix": (results.roles or {}).get("mix"),
        "base_cached": (results.base or {}).get("cached"),
        "seconds": (results.timings or {}).get("total"),
        "cpu_seconds": round(sum((results.cpu_seconds or {}).values()), 2),
    }
    return replicate_row(seed, results.claims or [], extra)


def _run_into(
    cfg: DemoConfig, tmp: Path, out: Path, cache: Path, fresh: bool, progress: DemoProgress | None
) -> RunResults:
    """Base, SFT, evaluation and claims in the directory `tmp` (renamed to `out` by the caller)."""
    import torch

    clock = Clock()
    load_before = os.getloadavg()[0]
    busy_before = busy_cores_now()
    torch.set_num_threads(choose_threads(cfg.threads, busy_before))
    with clock.stage("base"):
        base, cached = ensure_base(cfg, cache, fresh, progress)
    # The evaluation's first weight switch imports numba and loads its kernels: 3-4 s instead of ~0.6 when
    # the VM dropped those files from its page cache during pretraining. Loaded during SFT instead.
    fused.warm_in_background()
    with clock.stage("sft"):
        run = toy.finetune(cfg.recipe, base, tmp / "sft", on_step=_sft_ticks(cfg, progress))
    with clock.stage("eval"):
        final = run.checkpoints[max(run.checkpoints)]
        ev = _evaluate(cfg, plan_demo(cfg, run.checkpoints, base), final, tmp, progress)
        results = ev.results
        _add_roles(cfg, results, ev.validation, base, cached, run.checkpoints)
    results.paths = {"base": str(base), "sft": str(out / "sft")}
    if cfg.verifier is not None:
        with clock.stage("verifier"):
            results.base["verifier"] = add_verifier_scores(cfg, ev, tmp, progress)
        results.paths["verifier"] = str(out / "verifier")
    with clock.stage("claims"):
        results.claims = demo_claims(results, cfg.ks, cfg.sample_seed, cfg.n_boot, cfg.verifier is not None)
    if cfg.rl is not None:
        with clock.stage("rl"):
            add_rl_stage(cfg, results, run.checkpoints, cfg.early, tmp / "rl", progress, out)
    write_resolved(tmp, cfg, name="demo_config.yaml")
    _add_machine(cfg, results, clock, busy_before, load_before)
    return results


def _finish(tmp: Path, results: RunResults, report: bool, progress: DemoProgress | None) -> None:
    """The report (timed into the results) and results.json."""
    if report:
        if progress:
            progress("report", 0, 1, "plots")
        t0, c0 = time.perf_counter(), time.process_time()
        write_report(tmp, results)
        results.timings["report"] = round(time.perf_counter() - t0, 2)
        results.timings["total"] = round(results.timings["total"] + results.timings["report"], 2)
        results.cpu_seconds["report"] = round(time.process_time() - c0, 2)
        if progress:
            progress("report", 1, 1, "done")
    write_results(tmp, results)


def _sft_ticks(cfg: DemoConfig, progress: DemoProgress | None):
    steps = cfg.recipe.sft_steps

    def on_sft(p):
        if progress:
            progress("sft", p.step, steps, f"loss {p.loss:.3f}")

    return on_sft


@dataclasses.dataclass
class Evaluated:
    """What the evaluation leaves for the stages after it: the results on the claims' problems, the mixes
    on the validation problems, the store's row of each variant, and the base model's graded samples of
    the SFT problems (prompt, completion, correct), which the toy verifier is trained on."""

    results: RunResults
    validation: list[VariantResult]
    rows: dict[str, VariantRow]
    problem_ids: list[str]
    verifier_samples: list[tuple[str, str, bool]]


def _evaluate(
    cfg: DemoConfig, specs: list[VariantSpec], final: Path, out: Path, progress: DemoProgress | None
) -> Evaluated:
    """Sample, grade and summarise every variant on the claims' problems, then the mixes on the
    validation problems (which choose the mix) and, for the toy verifier, the base on the SFT problems
    (never a test problem), with one model (built from the final checkpoint), one store and one grader."""
    r = cfg.recipe
    task = get_task("toy", seed=r.data_seed, n_sft=r.n_sft, n_test=r.n_test)
    ids = [p.id for p in task.problems]
    parts = [("demo", task.subset(ids[: cfg.n_eval]), specs)]
    if cfg.n_val:
        val = task.subset(ids[cfg.n_eval : cfg.n_eval + cfg.n_val])
        parts.append(("demo-validation", val, [s for s in specs if s.kind == "mix"]))
    if cfg.verifier is not None:
        sft = get_task("toy", seed=r.data_seed, n_sft=r.n_sft, n_test=r.n_test, split="sft")
        parts.append(("demo-verifier", sft, [s for s in specs if s.kind == "base"]))
    engine = hf_engine(final, "cpu", threads=None)
    total = sum(len(t.problems) * len(ss) for _, t, ss in parts)
    ecfg, before, timings, evaluated, samples = cfg.eval_config(), 0, {}, {}, []
    for command, part, part_specs in parts:
        order = {s.name: i for i, s in enumerate(part_specs)}
        tag = {"demo-validation": " (validation)", "demo-verifier": " (SFT problems, for the verifier)"}
        tag = tag.get(command, "")

        def tick(name, stage, done, n_problems, before=before, order=order, tag=tag):
            if progress and stage == "sample":
                progress("eval", before + order[name] * n_problems + done, total, name + tag)

        with EvalSession.open(ecfg, part, engine, out, command, tick, run_config=to_dict(cfg)) as session:
            evaluated[command] = session.evaluate_all(part_specs)
            if command == "demo":
                results, rows = session.results(evaluated[command], None), dict(session.rows)
            if command == "demo-verifier":
                recs = session.records(part_specs[0].name)
                samples = [(rec["prompt"], rec["completion"], bool(rec["correct"])) for rec in recs]
        for k, v in session.timings.as_dict().items():
            timings[f"eval.{k}"] = round(timings.get(f"eval.{k}", 0.0) + v, 3)
        before += len(part.problems) * len(part_specs)
    results.config = to_dict(cfg)
    results.task = {"name": "toy", "n_problems": cfg.n_eval, "source": f"toy generator seed {r.data_seed}"}
    results.timings = timings
    claim_ids = ids[: cfg.n_eval]
    return Evaluated(results, evaluated.get("demo-validation", []), rows, claim_ids, samples)


def add_verifier_scores(cfg: DemoConfig, ev: Evaluated, out: Path, progress: DemoProgress | None) -> dict:
    """Train the toy outcome verifier on the base model's graded samples of the SFT problems, save it as a
    Hugging Face sequence classifier in OUT/verifier, score the final model, the chosen mix and the
    temperatures through `verify_in_store` (the path of `wiseft verify`), and summarise those variants
    again with the scores, so that their summaries and per-problem values gain best@k and wmaj@k.
    Returns the verifier's identity and training record."""
    results, roles = ev.results, ev.results.roles
    names = [roles["final"], roles["mix"], *roles["temperatures"]]
    steps = cfg.verifier.steps
    n_correct = sum(c for _, _, c in ev.verifier_samples)
    if n_correct in (0, len(ev.verifier_samples)):  # nothing to learn: one class only
        return {"skipped": f"the base model got {n_correct} of its {len(ev.verifier_samples)} samples of the "
                "SFT problems right; a verifier needs right and wrong ones to learn from"}  # fmt: skip

    def on_step(step, _steps):
        if progress and (step == steps or step % 25 == 0):
            progress("verifier", step, steps + len(names), "train")

    record = train_toy_verifier(
        ev.verifier_samples, out / "verifier", toy.toy_tokenizer(), cfg.verifier, progress=on_step
    )
    verifier = load_verifier(out / "verifier", "orm")
    ecfg, ranking = cfg.eval_config(), {}
    with SampleStore(store_path(ecfg, out)) as store:
        report = verify_in_store(store, verifier, variants=names, config={"command": "demo"})
        vid, transform = report.identity["id"], report.identity["vote_transform"]
        for i, name in enumerate(names):
            v = results.variant(name)
            per_problem = store.problem_samples(ev.rows[name], ev.problem_ids, cfg.n, verifier=vid)
            v.table = problem_table(per_problem, cfg.ks, seed=ecfg.seed, vote_transform=transform)
            v.summary = summarize(per_problem, cfg.ks, seed=ecfg.seed, n_boot=ecfg.n_boot,
                                  vote_transform=transform, table=v.table)  # fmt: skip
            v.summary["verifier"] = {"id": vid, "vote_transform": transform}
            v.per_problem = tuple(per_problem)
            ranking[name] = heldout_ranking(per_problem)
            if progress:
                progress("verifier", steps + i + 1, steps + len(names), f"scored {name}")
    return {"id": vid, "vote_transform": transform, "trained_on": "the base model's samples of the SFT "
            "problems (no test problem)", "scored": names, **record, "heldout_ranking": ranking}  # fmt: skip


def _add_roles(
    cfg: DemoConfig, results: RunResults, validation: list[VariantResult], base: Path, cached: bool,
    checkpoints: dict,
) -> None:  # fmt: skip
    """The chosen mix and the roles of the variants (early, final, mix, temperatures)."""
    variants = results.variants
    ckpt = {v.step: v.name for v in variants if v.kind == "checkpoint"}
    mixes = [v for v in variants if v.kind == "mix"]
    temps = [v.name for v in variants if v.kind == "temperature"]
    results.best = best = choose_mix(mixes, validation, cfg.select_metric, cfg.deltas, cfg.n_eval, cfg.n_val)
    results.base = {"path": str(base), "cached": cached, "key": cfg.recipe.base_key(),
                    **toy.describe_base(cfg.recipe, base)}  # fmt: skip
    results.roles = {"early": ckpt[cfg.early], "final": ckpt[max(checkpoints)], "mix": best.variant,
                     "temperatures": temps}  # fmt: skip
    results.early_step = cfg.early


def _add_machine(cfg: DemoConfig, results: RunResults, clock: Clock, busy_before: float, load_before: float):
    import torch

    timings = dict(clock.wall)
    timings.update(results.timings or {})
    timings["total"] = clock.total()
    results.timings = {k: round(v, 2) for k, v in timings.items()}
    # CPU seconds of this process per stage: on a busy machine they show what an idle one would take.
    results.cpu_seconds = {k: round(v, 2) for k, v in clock.cpu.items()}
    results.machine = {
        "torch_threads": torch.get_num_threads(),
        "micro_batches": cfg.recipe.micro_batches,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector ISA torch dispatched to
        "cpu_count": os.cpu_count(),
        "busy_cores_before": round(busy_before, 2),
        "loadavg_1min_before": round(load_before, 2),
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
    }

"""The demo's RL stage and claim (f): GRPO from the mix against GRPO from the final SFT checkpoint.

After SFT and the mixes, the same GRPO budget (`RLStageConfig`) runs from three starts: the final SFT
checkpoint, the chosen mix (made in memory, bit-identical to `wiseft merge`'s output) and the early
checkpoint. The RL prompts are fresh toy problems drawn after the SFT ones by the same generator
(`rl_problems`): disjoint from the SFT problems and from every test problem, which the generator draws
first. Each RL result is evaluated like the demo's other variants, through `wiseft.evaluate` on the
claims' problems with the demo's sampling settings and seed (common random numbers), and claim (f) is
checked on paired bootstrap differences (`wiseft.paired`), as claims (a)–(c) are.

Claim (f), fixed before any run: with every k >= 8 that was measured,
  RL from the mix ends with higher Pass@1 than RL from the final checkpoint (the paired 95% interval of
  Pass@1(RL mix) − Pass@1(RL final) lies above zero) and no lower Pass@k (for every such k the paired 95%
  interval of Pass@k(RL mix) − Pass@k(RL final) reaches zero or above: not significantly lower).
The early start is evaluated and reported beside them; it takes no part in the rule.

Every run's per-step log stays beside its checkpoints (`OUT/<start>/grpo_log.jsonl`, `train.steplog`),
where the report finds and draws it (`wiseft.report.rl`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

from wiseft.atomic import write_json
from wiseft.claims import Claim
from wiseft.config import to_dict
from wiseft.errors import ConfigError
from wiseft.evaluate.config import EvalConfig
from wiseft.evaluate.engine import hf_engine
from wiseft.evaluate.plan import VariantSpec
from wiseft.evaluate.session import EvalSession
from wiseft.paired import PairedTables
from wiseft.results import RunResults, VariantResult
from wiseft.tasks import get_task
from wiseft.tasks.base import Task
from wiseft.train import grpo
from wiseft.train.start import Start, load_start

Progress = Callable[[str, int, int, str], None]
STARTS = ("final", "mix", "early")  # run and evaluation order; the report's curve labels
RESULTS_FILE = "rl_results.json"


@dataclasses.dataclass(frozen=True)
class RLStageConfig:
    """The GRPO budget each start gets (the same for all three), and the RL prompts."""

    steps: int = 40
    prompts_per_step: int = 8
    group_size: int = 8
    lr: float = 1e-4
    schedule: str = "constant"
    beta: float = 0.0
    temperature: float = 1.0
    max_completion_length: int = 16  # the demo's max_new_tokens
    n_prompts: int = 256  # fresh toy problems, disjoint from SFT and test
    seed: int = 0
    threads: int = 0

    def __post_init__(self):
        if self.n_prompts < self.prompts_per_step:
            raise ConfigError(
                f"RL stage: n_prompts {self.n_prompts} is smaller than prompts_per_step {self.prompts_per_step}"
            )
        self.grpo_config()  # every GRPO setting checked now, before any stage runs

    def grpo_config(self) -> grpo.GRPOConfig:
        return grpo.GRPOConfig(
            steps=self.steps, prompts_per_step=self.prompts_per_step, group_size=self.group_size,
            beta=self.beta, lr=self.lr, schedule=self.schedule, temperature=self.temperature,
            max_completion_length=self.max_completion_length, seed=self.seed, device="cpu",
            threads=self.threads, save_optimizer=False, grade_workers=1,
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RLStageResult:
    """The three RL runs: their directories (checkpoints and `grpo_log.jsonl`), their evaluations, the
    claim, and wall seconds per part ("train.<start>", "eval")."""

    runs: dict[str, Path]
    variants: dict[str, VariantResult]
    claim: Claim
    seconds: dict[str, float]

    def to_json(self) -> dict:
        return {
            "runs": {k: str(v) for k, v in self.runs.items()},
            "variants": {k: v.to_json() for k, v in self.variants.items()},
            "claim": self.claim.as_dict(),
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


def rl_problems(data_seed: int, n_sft: int, n_test: int, n_prompts: int) -> Task:
    """The RL prompts: the `n_prompts` toy problems the generator draws after the test and SFT problems
    of (`data_seed`, `n_sft`, `n_test`), so none is a test or SFT problem (ids `toy-<seed>-rl-NNNN`)."""
    wide = get_task("toy", seed=data_seed, n_sft=n_sft + n_prompts, n_test=n_test, split="sft")
    taken = {
        p.question for p in get_task("toy", seed=data_seed, n_sft=n_sft, n_test=n_test, split="sft").problems
    }
    taken |= {p.question for p in get_task("toy", seed=data_seed, n_sft=n_sft, n_test=n_test).problems}
    fresh = [
        dataclasses.replace(p, id=f"toy-{data_seed}-rl-{i:04d}") for i, p in enumerate(wide.problems[n_sft:])
    ]
    if len(fresh) != n_prompts or any(p.question in taken for p in fresh):  # the generator's promise
        raise ConfigError(f"toy generator seed {data_seed}: RL prompts overlap the SFT or test problems")
    return dataclasses.replace(wide, problems=fresh, source=f"{wide.source}; RL problems after the SFT ones")


def starts(early: str | os.PathLike, final: str | os.PathLike, delta: float) -> dict[str, Start]:
    """The three starts by label: the final checkpoint, the mix δ·early + (1−δ)·final, the early one."""
    return {
        "final": Start(model=str(final)),
        "mix": Start(init=(str(early), str(final)), delta=float(delta)),
        "early": Start(model=str(early)),
    }


def train_from(
    label: str,
    start: Start,
    task: Task,
    cfg: RLStageConfig,
    out: Path,
    progress=None,
    shown: dict | None = None,
) -> Path:
    """GRPO from `start` into `out`; the last checkpoint's directory. `shown`: the start as the checkpoints
    record it (default `start.describe()`; the demo names its checkpoints where they will be, not in its
    temporary directory)."""
    model, tok = load_start(start, "cpu")
    steps = cfg.steps

    def tick(p):
        if progress:
            progress("rl", p.step, steps, f"from {label}: reward {p.record['reward_mean']:.2f}")

    meta = {"start": shown or start.describe(), "label": label, "task": task.source}
    result = grpo.train(model, tok, task, cfg.grpo_config(), out, meta=meta, on_step=tick)
    return result.checkpoints[max(result.checkpoints)]


def evaluate_runs(
    checkpoints: dict[str, Path], ecfg: EvalConfig, eval_task: Task, out: Path, progress=None
) -> dict[str, VariantResult]:
    """Each RL result evaluated like the demo's variants (one engine, weights switched, one store)."""
    specs = [
        VariantSpec(f"rl-from-{label}", "checkpoint", 1.0, mix=(1.0,), anchors=(str(path),))
        for label, path in checkpoints.items()
    ]
    total = len(specs) * len(eval_task.problems)
    order = {s.name: i for i, s in enumerate(specs)}

    def tick(name, stage, done, n_problems):
        if progress and stage == "sample":
            progress("rl-eval", order[name] * n_problems + done, total, name)

    engine = hf_engine(next(iter(checkpoints.values())), "cpu", threads=None)
    with EvalSession.open(ecfg, eval_task, engine, out, "demo-rl", tick) as session:
        results = session.evaluate_all(specs)
    return dict(zip(checkpoints, results, strict=True))


def claim_rl_from_mix(t: PairedTables, rl_mix: str, rl_final: str, rl_early: str | None = None) -> Claim:
    """Claim (f) on paired tables holding the RL results (the rule: module docstring)."""
    p1 = t.diff(rl_mix, rl_final, "pass@1")
    big = [t.diff(rl_mix, rl_final, f"pass@{k}") for k in t.big_ks()]
    higher = p1.lo > 0
    kept = bool(big) and all(d.hi >= 0 for d in big)
    evidence = "RL from mix − RL from final: " + "; ".join(d.text() for d in [p1, *big])
    numbers = {"mix": rl_mix, "final": rl_final, "diffs": [d.as_dict() for d in [p1, *big]],
               "pass@1_higher": higher, "pass@k_kept": kept}  # fmt: skip
    if rl_early is not None:
        early = [t.diff(rl_early, rl_final, m) for m in ["pass@1"] + [f"pass@{k}" for k in t.big_ks()]]
        evidence += "; RL from early − RL from final: " + "; ".join(d.text() for d in early)
        numbers["early"] = rl_early
        numbers["early_diffs"] = [d.as_dict() for d in early]
    return Claim(
        "f",
        "RL from the mix ended with higher Pass@1 than RL from the final checkpoint and no lower Pass@k",
        bool(big) and higher and kept,
        evidence,
        numbers,
    )


def run_rl_stage(
    cfg: RLStageConfig,
    recipe,
    ecfg: EvalConfig,
    eval_task: Task,
    early: str | os.PathLike,
    final: str | os.PathLike,
    delta: float,
    out: str | os.PathLike,
    progress: Progress | None = None,
    moved: tuple[Path, Path] | None = None,
) -> RLStageResult:
    """GRPO from the three starts on `rl_problems` of the toy `recipe`, each result evaluated on
    `eval_task` with `ecfg`, and claim (f). Writes OUT/<start>/ (checkpoints, grpo_log.jsonl), OUT/samples.db
    and OUT/rl_results.json. `moved` (FROM, TO): paths under FROM are recorded as under TO (a run written
    into a temporary directory that is renamed when complete)."""
    out = Path(out)
    task = rl_problems(recipe.data_seed, recipe.n_sft, recipe.n_test, cfg.n_prompts)
    seconds, checkpoints = {}, {}
    shown = starts(*(_moved(p, moved) for p in (early, final)), delta)
    for label, start in starts(early, final, delta).items():
        t0 = time.perf_counter()
        checkpoints[label] = train_from(
            label, start, task, cfg, out / label, progress, shown[label].describe()
        )
        seconds[f"train.{label}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    variants = evaluate_runs(checkpoints, ecfg, eval_task, out, progress)
    seconds["eval"] = time.perf_counter() - t0
    tables = PairedTables(
        {v.name: v.per_problem for v in variants.values()}, ecfg.k, seed=ecfg.seed, n_boot=ecfg.n_boot
    )
    claim = claim_rl_from_mix(tables, variants["mix"].name, variants["final"].name, variants["early"].name)
    result = RLStageResult({k: out / k for k in checkpoints}, variants, claim, seconds)
    write_json(out / RESULTS_FILE, {"config": to_dict(cfg), "delta": delta, **result.to_json()})
    return result


def _moved(path, moved: tuple[Path, Path] | None) -> str:
    if moved is None or not Path(path).is_relative_to(moved[0]):
        return str(path)
    return str(Path(moved[1]) / Path(path).relative_to(moved[0]))


def add_rl_stage(
    cfg, results: RunResults, checkpoints: dict, early_step: int, out: Path, progress=None, final_out=None
):
    """The demo's hook: run the stage for demo config `cfg` (its `rl` settings) after the claims, from the
    demo's chosen mix, into `out` (the run's temporary directory / "rl"; `final_out`: the run's directory
    when complete); claim (f) is appended to `results.claims` and the stage's seconds to
    `results.timings` ("rl.train.<start>", "rl.eval")."""
    final = checkpoints[max(checkpoints)]
    chosen = results.variant(results.best.variant)
    task = get_task("toy", seed=cfg.recipe.data_seed, n_sft=cfg.recipe.n_sft, n_test=cfg.recipe.n_test)
    task = task.subset([p.id for p in task.problems[: cfg.n_eval]])
    moved = (Path(out).parent, Path(final_out)) if final_out is not None else None
    stage = run_rl_stage(cfg.rl, cfg.recipe, cfg.eval_config(), task, checkpoints[early_step], final,
                         chosen.delta, out, progress, moved)  # fmt: skip
    results.claims = [*(results.claims or []), stage.claim]
    results.timings = {**(results.timings or {}), **{f"rl.{k}": v for k, v in stage.seconds.items()}}
    return stage

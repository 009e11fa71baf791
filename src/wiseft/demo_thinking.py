"""`wiseft demo --thinking`: the Instruct ↔ Thinking interpolation's three stages on the toy world.

1. base: the toy world's sloppy pretrained model (`wiseft demo`'s, cached under the same key), its
   vocabulary extended by `<think>`/`</think>` (`train.toy_thinking.extend_base`);
2. two fine-tunes of that base on the same fresh problems: a toy **Instruct** model that answers directly
   and a toy **Thinking** model that writes its running sums inside `<think>…</think>` first;
3. the interpolation θ(λ) = λ·Thinking + (1−λ)·Instruct over a λ grid fixed in advance (0 to 1 by 0.05),
   each variant sampled with the paper's Thinking settings (T = 0.6, top-p 0.95, top-k 20) through the
   evaluation engine (answers read after the thinking block, Think % and tokens with intervals);
4. the claims below, checked on this run's numbers, and results.json and the report (`report.thinking`).

The rules, fixed before any run (paired intervals are 95% bootstraps over the same problems):

(a) **the switch**: Think % at λ = 0 lies below 10 % and at λ = 1 above 90 % (whole intervals), and the
    switch is sharp: the first λ above 10 % and the first above 90 % (the stage boundaries) lie at most
    0.3 apart;
(b) **thinking costs length**: mean tokens at the first λ above 90 % exceed those at the last λ below the
    10 % boundary (paired interval above 0);
(c) **thinking buys accuracy**: Pass@1 at λ = 1 exceeds Pass@1 at λ = 0 (paired interval above 0);
(d) **stage 3 saturates** (the paper's observation, not required of the toy): from the first λ above 90 %
    to λ = 1, Pass@1 moves by less than 5 points (paired interval inside ±0.05).

The stages "appear" when (a), (b) and (c) hold. `run_thinking_replicates` tells the whole story once per
seed (the base's pretraining, both fine-tunes and sampling seeded by it, each base cached as `wiseft demo
--seeds` caches it) and counts the seeds each claim held on. The library reports progress through
`progress(stage, done, total, detail)` and never prints; the output directory is written atomically.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wiseft.atomic import atomic_dir
from wiseft.claims import Claim, replicate_row, replicate_table
from wiseft.config import to_dict, write_resolved
from wiseft.demo import DemoProgress, check_seeds, default_cache_dir, ensure_base, run_seeds
from wiseft.errors import ConfigError
from wiseft.evaluate.config import EvalConfig
from wiseft.evaluate.engine import hf_engine
from wiseft.evaluate.outputs import write_report, write_results
from wiseft.evaluate.plan import VariantSpec
from wiseft.evaluate.session import EvalSession
from wiseft.evaluate.thinking import add_length_ratios
from wiseft.machine import Clock, busy_cores_now, choose_threads
from wiseft.merge.recipe import Recipe
from wiseft.metrics import bootstrap_ci
from wiseft.paired import PairedTables
from wiseft.report.data import as_stat
from wiseft.report.thinking import stages, sweet_spot
from wiseft.results import RunResults
from wiseft.tasks import get_task
from wiseft.train import toy
from wiseft.train.toy_thinking import STYLES, StyleSFT, extend_base, finetune_style

SWITCH_WIDTH = 0.3  # claim (a): the boundaries at most this far apart
SATURATION = 0.05  # claim (d): Pass@1 moves less than this in stage 3


@dataclasses.dataclass(frozen=True)
class ThinkingDemoConfig:
    """What `wiseft demo --thinking` runs: the base recipe, the two fine-tunes, the λ grid and sampling."""

    # The base and the test problems: `wiseft demo`'s toy recipe with round 10's three-layer model, the base
    # this demo's seeds were measured on (docs/TOY-LOG.md, rounds 5 and 11); cached in `wiseft demo`'s cache.
    recipe: toy.ToyRecipe = toy.ToyRecipe(model=toy.ToyModelConfig(layers=3))
    sft: StyleSFT = StyleSFT()
    lambdas: tuple[float, ...] = tuple(i / 20 for i in range(21))
    n_eval: int = 100
    n: int = 8
    ks: tuple[int, ...] = (1, 8)
    temperature: float = 0.6  # the paper's Thinking (and merged-model) sampling
    top_p: float = 0.95
    top_k: int = 20
    max_new_tokens: int = 40
    sample_seed: int = 0
    n_boot: int = 1000
    threads: int = 0

    def __post_init__(self):
        lams = list(self.lambdas)
        if sorted(lams) != lams or len(set(lams)) != len(lams) or lams[0] != 0 or lams[-1] != 1:
            raise ConfigError(f"the λ grid must rise from 0 to 1 without repeats, got {lams}")
        if not 1 <= self.n_eval <= self.recipe.n_test:
            raise ConfigError(f"--n-eval must lie in 1..{self.recipe.n_test}, got {self.n_eval}")
        if self.n < max(self.ks):
            raise ConfigError(f"--n {self.n} is smaller than the largest k {max(self.ks)}; raise --n")

    def for_seed(self, seed: int) -> ThinkingDemoConfig:
        """This demo with the whole story seeded by `seed` (a replicate): the base's pretraining (its own
        base, cached under its own key), both fine-tunes (their batches and the tags' new embedding rows),
        and sampling with its bootstraps."""
        return dataclasses.replace(
            self, recipe=dataclasses.replace(self.recipe, pretrain_seed=seed, sft_seed=seed),
            sft=dataclasses.replace(self.sft, seed=seed), sample_seed=seed,
        )  # fmt: skip

    def eval_config(self) -> EvalConfig:
        return EvalConfig(
            task="toy", n=self.n, k=self.ks, temperature=(self.temperature,), top_p=self.top_p, top_k=self.top_k,
            max_new_tokens=self.max_new_tokens, seed=self.sample_seed, device="cpu", chunk=self.n_eval,
            n_boot=self.n_boot, generation_config="ignore",
        )  # fmt: skip


def variant_label(lam: float) -> str:
    return f"lambda={lam:.2f}"


def plan(cfg: ThinkingDemoConfig, instruct: Path, thinking: Path) -> list[VariantSpec]:
    """θ(λ) = λ·Thinking + (1−λ)·Instruct for each λ: wise-ft over (Instruct, Thinking) with δ = 1 − λ, so
    that the report reads λ = 1 − δ; λ = 0 and 1 are the two models bit for bit."""
    pair = (str(instruct), str(thinking))
    specs = []
    for lam in cfg.lambdas:
        delta = round(1.0 - lam, 10)
        specs.append(VariantSpec(variant_label(lam), "mix", cfg.temperature, delta=delta,
                                 mix=Recipe(method="wise-ft", models=pair, delta=delta), anchors=pair))  # fmt: skip
    return specs


def run_thinking_demo(
    cfg: ThinkingDemoConfig, out_dir: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
    fresh: bool = False, report: bool = True, force: bool = False, progress: DemoProgress | None = None,
) -> RunResults:  # fmt: skip
    """Run the thinking demo into `out_dir` (atomically) and return its results (claims, stages, timings)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    with atomic_dir(out_dir, force=force) as tmp:
        results = _run_into(cfg, tmp, Path(out_dir), cache, fresh, progress)
        _finish(tmp, results, report)
    return results


def run_thinking_replicates(
    cfg: ThinkingDemoConfig, seeds: Sequence[int], out_dir: str | os.PathLike, *,
    cache_dir: str | os.PathLike | None = None, fresh: bool = False, report: bool = True, force: bool = False,
    progress: DemoProgress | None = None,
) -> RunResults:  # fmt: skip
    """The whole thinking demo once per seed (`ThinkingDemoConfig.for_seed`: each seed its own base,
    cached) into OUT/seed-<s>/, and the seed × claim table (`claims.replicate_table`) as `replicates` of
    OUT/results.json and OUT/report, which are otherwise the first seed's.
    `progress("replicates", i, len(seeds), "seed s")` marks the start of each seed's stages."""
    seeds = check_seeds(seeds)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    with atomic_dir(out_dir, force=force) as tmp:

        def one(seed: int, tmp_sub: Path, out_sub: Path) -> RunResults:
            return _run_into(cfg.for_seed(seed), tmp_sub, out_sub, cache, fresh, progress)

        runs = run_seeds(seeds, one, tmp, Path(out_dir), progress)
        head = runs[0]
        head.replicates = replicate_table([seed_row(s, r) for s, r in zip(seeds, runs, strict=True)])
        _finish(tmp, head, report)
    return head


def _run_into(
    cfg, tmp: Path, out: Path, cache: Path, fresh: bool, progress: DemoProgress | None
) -> RunResults:
    """Base, the two fine-tunes, the λ sweep and the claims in `tmp` (renamed to `out` by the caller)."""
    import torch

    clock = Clock()
    torch.set_num_threads(choose_threads(cfg.threads, busy_cores_now()))
    with clock.stage("base"):
        base, cached = ensure_base(cfg, cache, fresh, progress)  # `wiseft demo`'s base and cache key
        described = {"path": str(base), "cached": cached, "key": cfg.recipe.base_key(),
                     **toy.describe_base(cfg.recipe, base)}  # fmt: skip
        extended = extend_base(base, tmp / "base-think", seed=cfg.sft.seed)
    models = {}
    for style in STYLES:
        with clock.stage(style):
            run = finetune_style(style, extended, tmp / style, cfg.sft, cfg.recipe.splits().test_keys,
                                 on_step=_ticks(style, cfg.sft.steps, progress))  # fmt: skip
            models[style] = run.checkpoints[max(run.checkpoints)]
    with clock.stage("eval"):
        results = _evaluate(cfg, plan(cfg, models["instruct"], models["thinking"]), models["thinking"], tmp,
                            progress)  # fmt: skip
    with clock.stage("claims"):
        results.claims = thinking_claims(cfg, results)
        results.roles = roles(cfg, results)
    results.base = described
    results.paths = {name: str(out / name) for name in STYLES}
    write_resolved(tmp, cfg, name="demo_config.yaml")
    results.timings = {**{k: round(v, 2) for k, v in clock.wall.items()}, **(results.timings or {}),
                       "total": round(clock.total(), 2)}  # fmt: skip
    results.cpu_seconds = {k: round(v, 2) for k, v in clock.cpu.items()}
    results.machine = {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                       "cpu_capability": torch.backends.cpu.get_cpu_capability()}  # fmt: skip
    return results


def _finish(tmp: Path, results: RunResults, report: bool) -> None:
    """The report (timed into the results) and results.json."""
    if report:
        wall, cpu = time.perf_counter(), time.process_time()
        write_report(tmp, results)
        results.timings["report"] = round(time.perf_counter() - wall, 2)
        results.timings["total"] = round(results.timings["total"] + results.timings["report"], 2)
        results.cpu_seconds["report"] = round(time.process_time() - cpu, 2)
    write_results(tmp, results)


def seed_row(seed: int, results: RunResults) -> dict:
    """One seed's line of the replicate table: the claims held, their paired effects (tokens for (b),
    Pass@1 for (c) and (d)), the boundaries, the base and the time."""
    effects = {c.key: _effects(c) for c in results.claims or []}
    by = {v.name: v.summary["metrics"]["pass@1"]["value"] for v in results.variants}
    base, roles_ = results.base or {}, results.roles or {}
    extra = {
        "pretrain_seed": results.config.get("recipe", {}).get("pretrain_seed"),
        "sft_seed": results.config.get("sft", {}).get("seed"),
        "sample_seed": results.config.get("sample_seed"),
        "dir": f"seed-{seed}", "effects": effects, "appeared": stages_appeared(results),
        "switch_start": roles_.get("switch_start"), "switch_end": roles_.get("switch_end"),
        "sweet_spot": roles_.get("sweet_spot"),
        "pass1_instruct": by.get(variant_label(0.0)), "pass1_thinking": by.get(variant_label(1.0)),
        "base_cached": base.get("cached"), "pretrain_steps": base.get("pretrain_steps"),
        "stopped_at_gate": base.get("stopped_at_gate"),
        "seconds": (results.timings or {}).get("total"),
        "cpu_seconds": round(sum((results.cpu_seconds or {}).values()), 2),
    }  # fmt: skip
    return replicate_row(seed, results.claims or [], extra)


def _effects(claim: Claim) -> list[dict]:
    d = claim.numbers.get("diff")
    if not d:
        return []
    return [d if "metric" in d else {"metric": "tokens", **d}]


def _ticks(style: str, steps: int, progress: DemoProgress | None):
    def on_step(p):
        if progress:
            progress(style, p.step, steps, f"loss {p.loss:.3f}")

    return on_step


def _evaluate(cfg, specs, thinking: Path, out: Path, progress: DemoProgress | None) -> RunResults:
    r = cfg.recipe
    task = get_task("toy", seed=r.data_seed, n_sft=r.n_sft, n_test=r.n_test)
    task = task.subset([p.id for p in task.problems[: cfg.n_eval]])
    engine = hf_engine(thinking, "cpu", threads=None)
    order = {s.name: i for i, s in enumerate(specs)}
    total = len(specs) * len(task.problems)

    def tick(name, stage, done, n_problems):
        if progress and stage == "sample":
            progress("eval", order[name] * n_problems + done, total, name)

    ecfg = cfg.eval_config()
    with EvalSession.open(ecfg, task, engine, out, "demo-thinking", tick, run_config=to_dict(cfg)) as session:
        variants = session.evaluate_all(specs)
        results = session.results(variants, None)
    add_length_ratios(variants, variant_label(1.0), cfg.sample_seed, cfg.n_boot)
    results.config = to_dict(cfg)
    results.task = {"name": "toy", "n_problems": cfg.n_eval, "source": f"toy generator seed {r.data_seed}"}
    results.timings = {f"eval.{k}": v for k, v in session.timings.as_dict().items()}
    return results


# --- the claims ------------------------------------------------------------------------------------------
def _think(v) -> dict:
    return v.summary["thinking"]["think_frac"]


def boundaries(cfg: ThinkingDemoConfig, results: RunResults):
    """The stage boundaries (`report.thinking.stages`) of this run's λ grid."""
    return stages(list(cfg.lambdas), [_think(v)["value"] for v in results.variants])


def thinking_claims(cfg: ThinkingDemoConfig, results: RunResults) -> list[Claim]:
    """Claims (a)–(d) of the module docstring, on this run's numbers."""
    by = {v.name: v for v in results.variants}
    first, last = by[variant_label(0.0)], by[variant_label(1.0)]
    st = boundaries(cfg, results)
    tables = PairedTables(
        {v.name: v.per_problem for v in results.variants}, cfg.ks, cfg.sample_seed, cfg.n_boot
    )
    return [
        _claim_switch(st, _think(first), _think(last)),
        _claim_length(cfg, st, by),
        _claim_accuracy(tables, first.name, last.name),
        _claim_saturation(cfg, st, tables, last.name),
    ]


def _pct(m: dict) -> str:
    return f"{100 * m['value']:.1f} % [{100 * m['lo']:.1f}, {100 * m['hi']:.1f}]"


def _claim_switch(st, first: dict, last: dict) -> Claim:
    sharp = st.start is not None and st.end is not None and st.end - st.start <= SWITCH_WIDTH + 1e-9
    held = first["hi"] < 0.10 and last["lo"] > 0.90 and sharp
    evidence = f"Think % at λ=0 {_pct(first)}, at λ=1 {_pct(last)}; {st.text()}"
    return Claim("a", f"thinking switches on within at most {SWITCH_WIDTH:g} of λ (Think % from <10 % to >90 %)",
                 held, evidence, {"start": st.start, "end": st.end})  # fmt: skip


def _claim_length(cfg, st, by) -> Claim:
    statement = "thinking costs length: more tokens after the switch than before it"
    before = [lam for lam in cfg.lambdas if st.start is not None and lam < st.start]
    if st.end is None or not before:
        return Claim("b", statement, False, "no switch to compare across", {})
    a, b = by[variant_label(st.end)], by[variant_label(before[-1])]
    diff = _paired_tokens(a, b, cfg)
    held = diff["lo"] > 0
    evidence = (f"tokens at λ={st.end:g} minus λ={before[-1]:g}: {diff['value']:+.2f} "
                f"[{diff['lo']:+.2f}, {diff['hi']:+.2f}] (paired)")  # fmt: skip
    return Claim("b", statement, held, evidence, {"diff": diff, "after": a.name, "before": b.name})


def _paired_tokens(a, b, cfg) -> dict:
    per = np.array(
        [x.n_tokens.mean() - y.n_tokens.mean() for x, y in zip(a.per_problem, b.per_problem, strict=True)]
    )
    mean, lo, hi = bootstrap_ci(per, seed=cfg.sample_seed, n_boot=cfg.n_boot)
    return {"value": float(mean), "lo": float(lo), "hi": float(hi)}


def _claim_accuracy(tables: PairedTables, instruct: str, thinking: str) -> Claim:
    d = tables.diff(thinking, instruct, "pass@1")
    return Claim("c", "thinking buys accuracy: Pass@1 at λ=1 above λ=0", d.lo > 0,
                 f"λ=1 minus λ=0: {d.text()} (paired)", {"diff": d.as_dict()})  # fmt: skip


def _claim_saturation(cfg, st, tables: PairedTables, thinking: str) -> Claim:
    statement = (
        f"stage 3 saturates: Pass@1 moves less than {100 * SATURATION:g} points from the 90 % boundary to λ=1"
    )
    if st.end is None:
        return Claim("d", statement, False, "no λ above 90 % Think %", {})
    if st.end == 1.0:
        return Claim("d", statement, False, "stage 3 is only λ = 1: nothing to compare", {})
    d = tables.diff(thinking, variant_label(st.end), "pass@1")
    held = -SATURATION < d.lo and d.hi < SATURATION
    return Claim("d", statement, held, f"λ=1 minus λ={st.end:g}: {d.text()} (paired)", {"diff": d.as_dict()})


def stages_appeared(results: RunResults) -> bool:
    """The demo's verdict: claims (a), (b) and (c) held."""
    held = {c.key: c.held for c in results.claims or []}
    return all(held.get(k) for k in "abc")


def roles(cfg: ThinkingDemoConfig, results: RunResults) -> dict:
    """The stage boundaries and the sweet spot (fewest tokens within the best Pass@1's interval)."""
    st = boundaries(cfg, results)
    pts = [(v.summary["tokens"]["mean"], as_stat(v.summary["metrics"]["pass@1"])) for v in results.variants]
    spot = sweet_spot(pts)
    return {"instruct": variant_label(0.0), "thinking": variant_label(1.0), "switch_start": st.start,
            "switch_end": st.end, "sweet_spot": None if spot is None else results.variants[spot].name}  # fmt: skip

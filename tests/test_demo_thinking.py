"""`wiseft demo --thinking` (issue 16): the two toy styles, the claims' rules on constructed samples, the
pipeline on a tiny budget, and the full demo (slow)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from wiseft.demo import DemoConfig, base_path
from wiseft.demo_thinking import (
    ThinkingDemoConfig,
    roles,
    run_thinking_demo,
    run_thinking_replicates,
    stages_appeared,
    thinking_claims,
    variant_label,
)
from wiseft.errors import ConfigError
from wiseft.metrics import summarize
from wiseft.records import ProblemSamples
from wiseft.report.render import md_text
from wiseft.report.thinking import stages
from wiseft.results import RunResults, VariantResult
from wiseft.train import toy
from wiseft.train.toy_thinking import StyleSFT, completion, style_batches, thinking_tokenizer


def test_the_two_styles_answer_the_same_problem_in_their_formats():
    assert completion("instruct", (23, 58, 91, 17)) == "981$"
    assert completion("thinking", (23, 58, 91, 17)) == "<think>18,271,981</think>981$"
    with pytest.raises(ConfigError, match="toy style must be one of instruct, thinking"):
        completion("chatty", (1, 2))


def test_the_tags_are_single_tokens_and_decode_back():
    tok = thinking_tokenizer()
    ids = tok("<think>18</think>9$", add_special_tokens=False)["input_ids"]
    assert len(ids) == 6 and tok.decode(ids, skip_special_tokens=True) == "<think>18</think>9$"


def test_batches_are_fixed_by_seed_and_step_shared_by_the_styles_and_exclude_the_test_problems():
    cfg = StyleSFT(seed=3, batch=64, lo=1, hi=3, n_numbers=2)
    exclude = frozenset({(1, 1), (2, 3)})
    ins, thi = style_batches("instruct", cfg, exclude), style_batches("thinking", cfg, exclude)
    assert ins(5) == style_batches("instruct", cfg, exclude)(5) and ins(5) != ins(6)
    assert [p for p, _ in ins(5)] == [p for p, _ in thi(5)]
    assert not {p for p, _ in ins(5)} & {"1+1=", "2+3="}


# --- the claims on constructed runs ----------------------------------------------------------------------
LAMS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _per_problem(x, i: int) -> float:
    return x[i] if isinstance(x, (list, tuple)) else x


def _variant(lam, correct_frac, think_frac, tokens):
    """20 problems × 8 samples: `correct_frac` of each problem's samples right, `think_frac` closed a
    thinking block, every sample of problem i `tokens + i % 3` long (so a paired difference of tokens is
    exact); each a number, or a list of 20: one per problem."""
    problems = []
    for i in range(20):
        c, t = round(8 * _per_problem(correct_frac, i)), round(8 * _per_problem(think_frac, i))
        problems.append(ProblemSamples(
            correct=np.array([True] * c + [False] * (8 - c)), classes=np.array([0] * c + [1] * (8 - c)),
            n_tokens=np.full(8, _per_problem(tokens, i) + i % 3), think_closed=np.array([True] * t + [False] * (8 - t)),
            thinking_tokens=np.full(8, 0), problem_id=f"p{i}",
        ))  # fmt: skip
    summary = summarize(problems, (1, 8), n_boot=200)
    return VariantResult(variant_label(lam), "mix", 1 - lam, 0.6, None, summary, per_problem=tuple(problems))


def _run(rows):
    return RunResults(config={}, versions={}, variants=[_variant(*r) for r in rows])


CFG = ThinkingDemoConfig(lambdas=LAMS, n_boot=200)


@pytest.mark.parametrize(
    "rows, held",
    [
        # the paper's picture: switch at 0.5–0.75, tokens and accuracy up, flat in stage 3
        ([(0.0, 0.25, 0, 4), (0.25, 0.25, 0, 4), (0.5, 0.5, 0.5, 10), (0.75, 0.875, 1, 16), (1.0, 0.875, 1, 17)],
         {"a": True, "b": True, "c": True, "d": True}),
        # the toy's: the accuracy comes after the switch, so stage 3 does not saturate
        ([(0.0, 0.125, 0, 4), (0.25, 0.0, 0, 4), (0.5, 0.0, 0.5, 10), (0.75, 0.125, 1, 16), (1.0, 0.875, 1, 16)],
         {"a": True, "b": True, "c": True, "d": False}),
        # never thinks: no switch, no boundary to compare across
        ([(lam, 0.25, 0, 4) for lam in LAMS], {"a": False, "b": False, "c": False, "d": False}),
        # a slow switch: 10 % passed at 0.25, 90 % only at 1 (0.75 apart)
        ([(0.0, 0.25, 0, 4), (0.25, 0.25, 0.25, 6), (0.5, 0.5, 0.5, 10), (0.75, 0.5, 0.75, 12), (1.0, 0.875, 1, 16)],
         {"a": False, "b": True, "c": True, "d": False}),
    ],
)  # fmt: skip
def test_claims_follow_their_rules(rows, held):
    results = _run(rows)
    claims = thinking_claims(CFG, results)
    assert {c.key: c.held for c in claims} == held, [c.evidence for c in claims]
    results.claims = claims
    assert stages_appeared(results) == all(held[k] for k in "abc")


# Each row: the λ grid, the variants (λ, Pass@1, Think %, tokens), the claim checked, whether it holds and
# a fragment of its evidence. Pass@1 and Think % are the same on every problem unless given per problem,
# so most intervals are points and the outcome is known exactly.
SLIGHT = [0.25] * 7 + [0.0] * 13  # Think % 8.75 %: below 10 %, but its interval is not
MOSTLY = [0.5] * 2 + [1.0] * 18  # Think % 95 %: above 90 %, but its interval is not
NOISY = [30] * 5 + [5] * 15  # 1.25 more tokens than 10 on average, with an interval across 0
EDGES = [
    ("a: boundaries exactly 0.3 apart", (0.0, 0.3, 0.6, 1.0),
     [(0.0, 0.1, 0, 4), (0.3, 0.1, 0.5, 8), (0.6, 0.9, 1, 16), (1.0, 0.9, 1, 16)],
     "a", True, "first λ above 10 %: λ = 0.3; first λ above 90 %: λ = 0.6"),
    ("a: boundaries 0.4 apart", (0.0, 0.2, 0.6, 1.0),
     [(0.0, 0.1, 0, 4), (0.2, 0.1, 0.5, 8), (0.6, 0.9, 1, 16), (1.0, 0.9, 1, 16)],
     "a", False, "first λ above 10 %: λ = 0.2; first λ above 90 %: λ = 0.6"),
    ("a: λ=0 thinks on 1 sample in 8", LAMS,
     [(0.0, 0.1, 0.125, 4), (0.25, 0.1, 0.125, 4), (0.5, 0.5, 0.5, 10), (0.75, 0.9, 1, 16), (1.0, 0.9, 1, 16)],
     "a", False, "Think % at λ=0 12.5 % [12.5, 12.5]"),
    ("a: λ=0 below 10 % but its interval is not", LAMS,
     [(0.0, 0.1, SLIGHT, 4), (0.25, 0.1, 0, 4), (0.5, 0.5, 0.5, 10), (0.75, 0.9, 1, 16), (1.0, 0.9, 1, 16)],
     "a", False, "Think % at λ=0 8.8 %"),
    ("a: λ=1 thinks on 7 samples in 8", LAMS,
     [(0.0, 0.1, 0, 4), (0.25, 0.1, 0, 4), (0.5, 0.5, 0.5, 10), (0.75, 0.9, 0.875, 16), (1.0, 0.9, 0.875, 16)],
     "a", False, "first λ above 90 %: never"),
    ("a: λ=1 above 90 % but its interval is not", LAMS,
     [(0.0, 0.1, 0, 4), (0.25, 0.1, 0, 4), (0.5, 0.5, 0.5, 10), (0.75, 0.9, 1, 16), (1.0, 0.9, MOSTLY, 16)],
     "a", False, "at λ=1 95.0 %"),
    ("b: exact paired difference", LAMS,
     [(0.0, 0.1, 0, 4), (0.25, 0.1, 0, 4), (0.5, 0.5, 0.5, 10), (0.75, 0.9, 1, 16), (1.0, 0.9, 1, 16)],
     "b", True, "tokens at λ=0.75 minus λ=0.25: +12.00 [+12.00, +12.00] (paired)"),
    ("b: length flat across the switch", LAMS,
     [(0.0, 0.1, 0, 9), (0.25, 0.1, 0, 9), (0.5, 0.5, 0.5, 9), (0.75, 0.9, 1, 9), (1.0, 0.9, 1, 9)],
     "b", False, "+0.00 [+0.00, +0.00]"),
    ("b: length falls across the switch (the paper's stage 2 can)", LAMS,
     [(0.0, 0.1, 0, 20), (0.25, 0.1, 0, 20), (0.5, 0.5, 0.5, 16), (0.75, 0.9, 1, 12), (1.0, 0.9, 1, 12)],
     "b", False, "-8.00 [-8.00, -8.00]"),
    ("b: more tokens on average, but not on the interval", LAMS,
     [(0.0, 0.1, 0, 10), (0.25, 0.1, 0, 10), (0.5, 0.5, 0.5, 10), (0.75, 0.9, 1, NOISY), (1.0, 0.9, 1, 16)],
     "b", False, "tokens at λ=0.75 minus λ=0.25: +1.25 [-"),
    ("b: thinking from λ=0 leaves nothing before the switch", LAMS,
     [(0.0, 0.1, 0.5, 4), (0.25, 0.1, 1, 4), (0.5, 0.5, 1, 10), (0.75, 0.9, 1, 16), (1.0, 0.9, 1, 16)],
     "b", False, "no switch to compare across"),
    ("c: equal Pass@1", LAMS,
     [(0.0, 0.5, 0, 4), (0.25, 0.5, 0, 4), (0.5, 0.5, 0.5, 10), (0.75, 0.5, 1, 16), (1.0, 0.5, 1, 16)],
     "c", False, "λ=1 minus λ=0: pass@1 +0.000 [+0.000, +0.000] (paired)"),
    ("c: Thinking worse than Instruct", LAMS,
     [(0.0, 0.5, 0, 4), (0.25, 0.5, 0, 4), (0.5, 0.5, 0.5, 10), (0.75, 0.25, 1, 16), (1.0, 0.25, 1, 16)],
     "c", False, "λ=1 minus λ=0: pass@1 -0.250 [-0.250, -0.250]"),
    ("d: Pass@1 moves 12.5 points in stage 3", LAMS,
     [(0.0, 0.1, 0, 4), (0.25, 0.1, 0, 4), (0.5, 0.5, 0.5, 10), (0.75, 0.75, 1, 16), (1.0, 0.875, 1, 16)],
     "d", False, "λ=1 minus λ=0.75: pass@1 +0.125 [+0.125, +0.125]"),
    ("d: stage 3 is λ=1 alone", LAMS,
     [(0.0, 0.1, 0, 4), (0.25, 0.1, 0, 4), (0.5, 0.5, 0.5, 10), (0.75, 0.5, 0.75, 16), (1.0, 0.875, 1, 16)],
     "d", False, "stage 3 is only λ = 1"),
    ("d: no λ above 90 %", LAMS,
     [(0.0, 0.1, 0, 4), (0.25, 0.1, 0, 4), (0.5, 0.5, 0.5, 10), (0.75, 0.5, 0.75, 16), (1.0, 0.875, 0.75, 16)],
     "d", False, "no λ above 90 % Think %"),
]  # fmt: skip


@pytest.mark.parametrize("grid, rows, key, held, evidence", [e[1:] for e in EDGES], ids=[e[0] for e in EDGES])
def test_each_claim_at_its_threshold(grid, rows, key, held, evidence):
    claims = {c.key: c for c in thinking_claims(ThinkingDemoConfig(lambdas=grid, n_boot=200), _run(rows))}
    assert claims[key].held is held, claims[key].evidence
    assert evidence in claims[key].evidence


def test_roles_name_the_boundaries_and_the_sweet_spot():
    # Pass@1 0.875 at λ = 0.75 and 1 (a point interval): the sweet spot is the shorter of the two
    rows = [
        (0.0, 0.25, 0, 4),
        (0.25, 0.25, 0, 4),
        (0.5, 0.5, 0.5, 10),
        (0.75, 0.875, 1, 16),
        (1.0, 0.875, 1, 17),
    ]
    assert roles(CFG, _run(rows)) == {
        "instruct": "lambda=0.00", "thinking": "lambda=1.00", "switch_start": 0.5, "switch_end": 0.75,
        "sweet_spot": "lambda=0.75",
    }  # fmt: skip
    # a cheaper variant within the best's interval wins even before the switch
    rows[1] = (0.25, 0.875, 0, 5)
    assert roles(CFG, _run(rows))["sweet_spot"] == "lambda=0.25"


def test_the_terminal_tables_show_every_lambda_the_boundaries_and_each_claim():
    from rich.console import Console

    from wiseft.cli.demo_thinking import show

    rows = [
        (0.0, 0.25, 0, 4),
        (0.25, 0.25, 0, 4),
        (0.5, 0.5, 0.5, 10),
        (0.75, 0.875, 1, 16),
        (1.0, 0.875, 1, 17),
    ]
    results = _run(rows)
    results.task = {"name": "toy", "n_problems": 20}
    results.claims = thinking_claims(CFG, results)
    results.claims[3] = dataclasses.replace(results.claims[3], held=False)  # one claim that did not hold
    results.roles = roles(CFG, results)
    results.timings = {"base": 1.0, "eval": 2.5, "total": 4.0}
    console = Console(width=400, record=True)
    show(results, console, Path("out"), report=False)
    lines = console.export_text().splitlines()
    lam_rows = [
        ln for ln in lines if ln.lstrip("│ ").split(" ")[0] in {"0.00", "0.25", "0.50", "0.75", "1.00"}
    ]
    assert len(lam_rows) == 5
    assert (
        "▸" in lam_rows[2] and "▸" in lam_rows[3] and not any("▸" in r for r in lam_rows[:2] + lam_rows[4:])
    )
    assert "← sweet spot" in lam_rows[3] and sum("sweet spot" in r for r in lam_rows) == 1
    assert "87.5 [87.5, 87.5]" in lam_rows[3] and "100.0 [100.0, 100.0]" in lam_rows[3]  # Pass@1, Think %
    claim_rows = {c.key: next(ln for ln in lines if f"({c.key}) " in ln) for c in results.claims}
    for c in results.claims:
        assert claim_rows[c.key].split("│")[1].strip() == ("held" if c.held else "did not hold")
        assert c.evidence in claim_rows[c.key]
    assert "the three stages appeared on this run (claims a, b and c)" in lines
    assert "time: base 1.0s, eval 2.5s, total 4.0s (CPU 0.0s)" in lines


def test_the_default_base_is_round_10s_three_layer_base_in_wiseft_demos_cache(tmp_path):
    # the thinking demo's seeds were measured on round 10's three-layer base; `wiseft demo` moved to two
    # layers (round 11), so the two demos keep their bases side by side in one cache
    three_layers = dataclasses.replace(DemoConfig().recipe, model=toy.ToyModelConfig(layers=3))
    assert ThinkingDemoConfig().recipe == three_layers
    assert ThinkingDemoConfig().recipe.model == toy.ToyModelConfig()
    assert base_path(ThinkingDemoConfig(), tmp_path).parent == base_path(DemoConfig(), tmp_path).parent
    assert base_path(ThinkingDemoConfig(), tmp_path) != base_path(DemoConfig(), tmp_path)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_a_replicate_seeds_the_whole_story(seed):
    cfg = ThinkingDemoConfig().for_seed(seed)
    assert (cfg.recipe.pretrain_seed, cfg.sft.seed, cfg.sample_seed) == (seed, seed, seed)
    demo_seed = DemoConfig().for_seed(seed).recipe  # `wiseft demo --seeds`'s seeds, with three layers
    assert cfg.recipe.base_key() == dataclasses.replace(demo_seed, model=toy.ToyModelConfig()).base_key()
    assert dataclasses.replace(cfg.recipe, pretrain_seed=0, sft_seed=0) == ThinkingDemoConfig().recipe
    assert cfg.lambdas == ThinkingDemoConfig().lambdas and cfg.sft.steps == ThinkingDemoConfig().sft.steps


def test_bad_demo_settings_are_named():
    with pytest.raises(ConfigError, match="the λ grid must rise from 0 to 1"):
        ThinkingDemoConfig(lambdas=(0.0, 0.5))
    with pytest.raises(ConfigError, match="--n-eval must lie in 1..700"):
        ThinkingDemoConfig(n_eval=0)


# --- the pipeline -----------------------------------------------------------------------------------------
TINY = ThinkingDemoConfig(
    recipe=toy.ToyRecipe(n_sft=8, n_test=12, model=toy.ToyModelConfig(hidden=32, layers=1, heads=2, intermediate=64),
                         pretrain_steps=6, pretrain_batch=16, warmup_steps=1, threads=1),
    sft=StyleSFT(steps=3, batch=4, warmup_steps=1, threads=1), lambdas=(0.0, 0.5, 1.0), n_eval=6, n=2, ks=(1, 2),
    n_boot=50, threads=1,
)  # fmt: skip


TIMES = {"timings", "cpu_seconds", "machine"}
OUTPUT_FILES = {
    "results.json", "demo_config.yaml", "samples.db",
    "instruct/checkpoint-3/model.safetensors", "thinking/checkpoint-3/model.safetensors",
    "report/report.md", "report/report.html", "report/results.json", "report/thinking_lambda.png",
}  # fmt: skip


def test_pipeline_on_a_tiny_budget_writes_results_claims_and_the_thinking_report(tmp_path):
    events = []
    results = run_thinking_demo(TINY, tmp_path / "out", cache_dir=tmp_path / "cache",
                                progress=lambda *e: events.append(e[0]))  # fmt: skip
    out = tmp_path / "out"
    assert {"pretrain", "instruct", "thinking", "eval"} <= set(events)
    assert OUTPUT_FILES <= {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert not list(tmp_path.glob("*.tmp-*"))  # written atomically: no temporary sibling left
    written = json.loads((out / "results.json").read_text())
    in_report = json.loads((out / "report" / "results.json").read_text())  # written before the last timings
    assert {k: v for k, v in written.items() if k not in TIMES} == {
        k: v for k, v in in_report.items() if k not in TIMES
    }
    # the λ grid, the paper's Thinking sampling, thinking statistics and lengths relative to λ = 1
    assert [v["name"] for v in written["variants"]] == ["lambda=0.00", "lambda=0.50", "lambda=1.00"]
    assert [v["delta"] for v in written["variants"]] == [1.0, 0.5, 0.0]
    assert {k: written["config"][k] for k in ("temperature", "top_p", "top_k", "lambdas")} == {
        "temperature": 0.6, "top_p": 0.95, "top_k": 20, "lambdas": [0.0, 0.5, 1.0]}  # fmt: skip
    assert written["task"] == {"name": "toy", "n_problems": 6, "source": "toy generator seed 5"}
    for v in written["variants"]:
        assert set(v["summary"]["thinking"]) == {"think_frac", "thinking_tokens", "answer_tokens"}
        assert v["summary"]["n_problems"] == 6 and v["summary"]["n"] == 2
        assert v["summary"]["tokens"]["length_ratio"]["reference"] == "lambda=1.00"
    assert written["variants"][-1]["summary"]["tokens"]["length_ratio"]["value"] == 1.0
    # the claims are the rules applied to this run, and the roles read the same boundaries
    assert written["claims"] == [c.as_dict() for c in thinking_claims(TINY, results)]
    assert [c["key"] for c in written["claims"]] == ["a", "b", "c", "d"]
    think = [v["summary"]["thinking"]["think_frac"]["value"] for v in written["variants"]]
    st = stages([0.0, 0.5, 1.0], think)
    assert written["claims"][0]["numbers"] == {"start": st.start, "end": st.end}
    assert written["roles"] == roles(TINY, results)
    assert (written["roles"]["switch_start"], written["roles"]["switch_end"]) == (st.start, st.end)
    # provenance and where the time went
    assert written["base"]["cached"] is False and written["base"]["key"] == TINY.recipe.base_key()
    assert written["paths"] == {s: str(out / s) for s in ("instruct", "thinking")}
    assert {"base", "instruct", "thinking", "eval", "claims", "report", "total"} <= set(written["timings"])
    assert written["machine"]["torch_threads"] == 1
    report = (out / "report" / "report.md").read_text()
    assert "## Instruct ↔ Thinking" in report and "## Claims checked on this run" in report
    assert all(md_text(c["statement"]) in report for c in written["claims"])
    again = run_thinking_demo(TINY, tmp_path / "again", cache_dir=tmp_path / "cache", report=False)
    assert again.base["cached"] is True and not (tmp_path / "again" / "report").exists()
    assert [v.summary["metrics"] for v in again.variants] == [
        v["summary"]["metrics"] for v in written["variants"]
    ]  # the same bytes from the same seeds


def test_the_cli_runs_the_thinking_demo(tmp_path, cli, monkeypatch):
    import wiseft.cli.demo_thinking as cli_thinking

    monkeypatch.setattr(cli_thinking, "build_config", lambda args: TINY)
    code, err = cli(
        ["demo", "--thinking", "-o", tmp_path / "o", "--cache-dir", tmp_path / "cache", "--no-report"]
    )
    assert code == 0, err
    written = json.loads((tmp_path / "o" / "results.json").read_text())
    lines = cli.out.splitlines()
    assert "wiseft demo --thinking" in cli.out and "claims, rules fixed in advance" in cli.out
    assert sum(ln.lstrip("│ ").startswith(("0.00", "0.50", "1.00")) for ln in lines) == 3  # one row per λ
    for c in written["claims"]:  # the claims table says what results.json says
        (row,) = [ln for ln in lines if f"({c['key']}) " in ln]
        assert row.split("│")[1].strip() == ("held" if c["held"] else "did not hold"), row
    verdict = "appeared" if all(c["held"] for c in written["claims"][:3]) else "did NOT appear"
    assert f"the three stages {verdict} on this run" in cli.out
    assert f"Results: {tmp_path / 'o' / 'results.json'}" in cli.out.replace("\n", "")
    assert not (tmp_path / "o" / "report").exists()


@pytest.mark.parametrize("flag", ["--delta", "--temperature", "--n-val"])
def test_the_other_demos_grids_are_refused_with_nothing_written(tmp_path, cli, flag):
    code, err = cli(["demo", "--thinking", flag, "1", "-o", tmp_path / "o", "--cache-dir", tmp_path / "c"])
    assert code == 2
    assert err.strip() == (
        f"wiseft demo: error: {flag} is a setting of wiseft demo; the thinking demo sweeps a fixed λ grid at "
        f"the paper's Thinking sampling (T = 0.6): drop {flag} or --thinking"
    )
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()


def test_replicates_tell_the_whole_story_per_seed_each_base_cached(tmp_path):
    out, cache = tmp_path / "reps", tmp_path / "cache"
    events = []
    head = run_thinking_replicates(TINY, [1, 0], out, cache_dir=cache, progress=lambda *e: events.append(e))
    assert [e for e in events if e[0] == "replicates"] == [
        ("replicates", 0, 2, "seed 1"), ("replicates", 1, 2, "seed 0"), ("replicates", 2, 2, "done")]  # fmt: skip
    assert not list(tmp_path.glob(".*wiseft-tmp*"))
    written = json.loads((out / "results.json").read_text())
    per_seed = {s: json.loads((out / f"seed-{s}" / "results.json").read_text()) for s in (1, 0)}
    # each seed its own base, cached under `wiseft demo --seeds`'s key, and its own fine-tunes and sampling
    for s, res in per_seed.items():
        key = TINY.for_seed(s).recipe.base_key()
        assert res["base"]["key"] == key and res["base"]["cached"] is False
        assert (cache / f"toy-base-{key}" / "model.safetensors").is_file()
        assert (res["config"]["recipe"]["pretrain_seed"], res["config"]["sft"]["seed"], res["config"]["sample_seed"]) == (s, s, s)  # fmt: skip
        assert res["paths"] == {st: str(out / f"seed-{s}" / st) for st in ("instruct", "thinking")}
    assert per_seed[1]["base"]["key"] != per_seed[0]["base"]["key"]
    # the head is the first seed's run plus the seed × claim table
    assert written["config"] == per_seed[1]["config"] and written["claims"] == per_seed[1]["claims"]
    rep = written["replicates"]
    assert rep["seeds"] == [1, 0] and rep["claims"] == ["a", "b", "c", "d"] and rep["n"] == 2
    for row, s in zip(rep["rows"], (1, 0), strict=True):
        claims = {c["key"]: c for c in per_seed[s]["claims"]}
        assert row["held"] == {k: c["held"] for k, c in claims.items()} and row["dir"] == f"seed-{s}"
        assert row["appeared"] == all(claims[k]["held"] for k in "abc")
        assert (row["pretrain_seed"], row["sft_seed"], row["sample_seed"]) == (s, s, s)
        assert row["pass1_thinking"] == per_seed[s]["variants"][-1]["summary"]["metrics"]["pass@1"]["value"]
        if "diff" in claims["c"]["numbers"]:
            assert row["effects"]["c"] == [claims["c"]["numbers"]["diff"]]
    assert rep["held"] == {k: sum(r["held"][k] for r in rep["rows"]) for k in "abcd"}
    assert head.replicates == rep
    assert "## Claims over seeds" in (out / "report" / "report.md").read_text()
    # seed 0's replicate is the default run, from the base the replicates cached
    again = run_thinking_demo(TINY, tmp_path / "again", cache_dir=cache, report=False)
    assert again.base["cached"] is True
    assert [v.summary["metrics"] for v in again.variants] == [
        v["summary"]["metrics"] for v in per_seed[0]["variants"]
    ]


def test_the_cli_runs_replicates_and_prints_the_seed_table(tmp_path, cli, monkeypatch):
    import wiseft.cli.demo_thinking as cli_thinking

    monkeypatch.setattr(cli_thinking, "build_config", lambda args: TINY)
    code, err = cli(["demo", "--thinking", "--seeds", "2", "-o", tmp_path / "o", "--cache-dir", tmp_path / "c",
                     "--no-report"])  # fmt: skip
    assert code == 0, err
    written = json.loads((tmp_path / "o" / "results.json").read_text())
    assert written["config"]["recipe"]["pretrain_seed"] == 2 and written["replicates"]["seeds"] == [2]
    assert "wiseft demo --thinking over 1 seeds" in cli.out
    (row,) = [ln for ln in cli.out.splitlines() if ln.lstrip("│ ").startswith("2 ")]
    assert ("yes" if written["replicates"]["rows"][0]["appeared"] else "NO") in row
    assert (tmp_path / "o" / "seed-2" / "results.json").is_file()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seeds", "0,1", "--sample-seed", "3"], "set the pretraining, fine-tuning and sampling seeds; drop --sample-seed"),
        (["--replicates", "2", "--pretrain-seed", "1"], "drop --pretrain-seed/--sft-seed"),
        (["--seeds", "1,1"], "--seeds lists 1 more than once"),
        (["--replicates", "0"], "--replicates must be at least 1"),
    ],
)  # fmt: skip
def test_bad_seed_flags_are_refused_with_nothing_written(tmp_path, cli, flags, message):
    code, err = cli(["demo", "--thinking", *flags, "-o", tmp_path / "o", "--cache-dir", tmp_path / "c"])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_full_thinking_demo_shows_the_stages_with_the_default_seed(tmp_path, cli):
    out = tmp_path / "demo"
    assert cli(["demo", "--thinking", "-o", out, "--cache-dir", tmp_path / "cache"])[0] == 0
    results = RunResults.from_json(json.loads((out / "results.json").read_text()))
    assert stages_appeared(results), [c.evidence for c in results.claims]
    assert (out / "report" / "thinking_lambda.png").is_file()

"""`wiseft demo --thinking` (issue 16): the two toy styles, the claims' rules on constructed samples, the
pipeline on a tiny budget, and the full demo (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wiseft.demo_thinking import (
    ThinkingDemoConfig,
    run_thinking_demo,
    stages_appeared,
    thinking_claims,
    variant_label,
)
from wiseft.errors import ConfigError
from wiseft.metrics import summarize
from wiseft.records import ProblemSamples
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


def _variant(lam, correct_frac, think_frac, tokens):
    """20 problems × 8 samples: `correct_frac` of each problem's samples right, `think_frac` closed a
    thinking block, every sample `tokens` long."""
    problems = []
    for i in range(20):
        c, t = round(8 * correct_frac), round(8 * think_frac)
        problems.append(ProblemSamples(
            correct=np.array([True] * c + [False] * (8 - c)), classes=np.array([0] * c + [1] * (8 - c)),
            n_tokens=np.full(8, tokens + i % 3), think_closed=np.array([True] * t + [False] * (8 - t)),
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


def test_bad_demo_settings_are_named():
    with pytest.raises(ConfigError, match="the λ grid must rise from 0 to 1"):
        ThinkingDemoConfig(lambdas=(0.0, 0.5))
    with pytest.raises(ConfigError, match="--n-eval must lie in 1..400"):
        ThinkingDemoConfig(n_eval=0)


# --- the pipeline -----------------------------------------------------------------------------------------
TINY = ThinkingDemoConfig(
    recipe=toy.ToyRecipe(n_sft=8, n_test=12, model=toy.ToyModelConfig(hidden=32, layers=1, heads=2, intermediate=64),
                         pretrain_steps=6, pretrain_batch=16, warmup_steps=1, threads=1),
    sft=StyleSFT(steps=3, batch=4, warmup_steps=1, threads=1), lambdas=(0.0, 0.5, 1.0), n_eval=6, n=2, ks=(1, 2),
    n_boot=50, threads=1,
)  # fmt: skip


def test_pipeline_on_a_tiny_budget_writes_results_claims_and_the_thinking_report(tmp_path):
    events = []
    run_thinking_demo(TINY, tmp_path / "out", cache_dir=tmp_path / "cache",
                                progress=lambda *e: events.append(e[0]))  # fmt: skip
    assert {"pretrain", "instruct", "thinking", "eval"} <= set(events)
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [v["name"] for v in written["variants"]] == ["lambda=0.00", "lambda=0.50", "lambda=1.00"]
    assert [v["delta"] for v in written["variants"]] == [1.0, 0.5, 0.0]
    assert all("think_frac" in v["summary"]["thinking"] for v in written["variants"])
    assert written["variants"][0]["summary"]["tokens"]["length_ratio"]["reference"] == "lambda=1.00"
    assert [c["key"] for c in written["claims"]] == ["a", "b", "c", "d"]
    assert set(written["roles"]) >= {"switch_start", "switch_end", "sweet_spot"}
    assert written["config"]["temperature"] == 0.6 and written["config"]["top_p"] == 0.95
    for style in ("instruct", "thinking"):
        assert (tmp_path / "out" / style / "checkpoint-3" / "model.safetensors").is_file()
    assert "## Instruct ↔ Thinking" in (tmp_path / "out" / "report" / "report.md").read_text()
    again = run_thinking_demo(TINY, tmp_path / "again", cache_dir=tmp_path / "cache", report=False)
    assert again.base["cached"] is True
    assert [v.summary["metrics"] for v in again.variants] == [
        v["summary"]["metrics"] for v in written["variants"]
    ]


def test_the_cli_runs_the_thinking_demo(tmp_path, cli, monkeypatch):
    import wiseft.cli.demo_thinking as cli_thinking

    monkeypatch.setattr(cli_thinking, "build_config", lambda args: TINY)
    code, err = cli(
        ["demo", "--thinking", "-o", tmp_path / "o", "--cache-dir", tmp_path / "cache", "--no-report"]
    )
    assert code == 0, err
    assert "wiseft demo --thinking" in cli.out and "(a) thinking switches on" in cli.out
    assert "the three stages" in cli.out


@pytest.mark.slow
def test_full_thinking_demo_shows_the_stages_with_the_default_seed(tmp_path, cli):
    out = tmp_path / "demo"
    assert cli(["demo", "--thinking", "-o", out, "--cache-dir", tmp_path / "cache"])[0] == 0
    results = RunResults.from_json(json.loads((out / "results.json").read_text()))
    assert stages_appeared(results), [c.evidence for c in results.claims]
    assert (out / "report" / "thinking_lambda.png").is_file()

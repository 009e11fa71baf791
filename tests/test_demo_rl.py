"""The demo's RL stage and claim (f): the rule on constructed samples, the prompts, the stage on a tiny budget."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from wiseft import demo_rl
from wiseft.cli import main
from wiseft.demo import DemoConfig, run_demo
from wiseft.errors import ConfigError
from wiseft.paired import PairedTables
from wiseft.records import ProblemSamples
from wiseft.tasks import get_task
from wiseft.train import toy

N = 32


def _problems(rhos):
    out = []
    for i, rho in enumerate(rhos):
        c = int(round(rho * N))
        correct = np.array([True] * c + [False] * (N - c))
        out.append(
            ProblemSamples(correct=correct, classes=np.array([0] * c + [1] * (N - c)), problem_id=f"p{i}")
        )
    return out


def _tables(**variants):
    return PairedTables({k: _problems(v) for k, v in variants.items()}, ks=(1, 8, 16, 32), n_boot=300)


COLLAPSED = [1.0] * 140 + [0.0] * 60  # Pass@1 0.70, Pass@32 0.70
BETTER = [1.0] * 140 + [0.25] * 60  # Pass@1 0.775, Pass@32 ≈ 1
SHARPER = [1.0] * 150 + [0.0] * 50  # Pass@1 0.75, Pass@32 0.75
HIGHER_P1_LOWER_PK = [1.0] * 100 + [0.9] * 60 + [0.0] * 40  # Pass@1 0.77, Pass@32 0.80 vs BETTER's 1.0


@pytest.mark.parametrize(
    "mix, final, held, higher, kept",
    [
        (BETTER, COLLAPSED, True, True, True),  # higher Pass@1, higher Pass@k
        (SHARPER, COLLAPSED, True, True, True),  # higher Pass@1, Pass@k higher too (0.75 vs 0.70)
        (COLLAPSED, COLLAPSED, False, False, True),  # the same model: Pass@1 not higher
        (COLLAPSED, BETTER, False, False, False),  # worse on both
        (HIGHER_P1_LOWER_PK, BETTER, False, False, False),  # Pass@1 not significantly higher, Pass@k lower
    ],
)
def test_claim_e_needs_higher_pass1_and_no_lower_pass_k(mix, final, held, higher, kept):
    c = demo_rl.claim_rl_from_mix(_tables(mix=mix, final=final), "mix", "final")
    assert (c.key, c.held, c.numbers["pass@1_higher"], c.numbers["pass@k_kept"]) == ("f", held, higher, kept)
    assert c.evidence.startswith("RL from mix − RL from final: pass@1 ")


def test_claim_e_uses_the_paired_intervals_of_claims_a_to_d():
    t = _tables(mix=BETTER, final=COLLAPSED, early=COLLAPSED)
    c = demo_rl.claim_rl_from_mix(t, "mix", "final", "early")
    assert c.numbers["diffs"] == [
        t.diff("mix", "final", m).as_dict() for m in ("pass@1", "pass@8", "pass@16", "pass@32")
    ]
    assert c.numbers["early_diffs"][0] == t.diff("early", "final", "pass@1").as_dict()
    assert "RL from early − RL from final" in c.evidence


def test_rl_prompts_are_fresh_problems_never_test_or_sft_ones():
    rl = demo_rl.rl_problems(5, 96, 400, 256)
    test = get_task("toy", seed=5, n_sft=96, n_test=400).problems
    sft = get_task("toy", seed=5, n_sft=96, n_test=400, split="sft").problems
    questions = {p.question for p in rl.problems}
    assert len(questions) == 256 and not questions & {p.question for p in test + sft}
    assert rl.problems[0].id == "toy-5-rl-0000" and all(p.gold for p in rl.problems)
    assert [p.question for p in demo_rl.rl_problems(5, 96, 400, 256).problems] == [
        p.question for p in rl.problems
    ]


@pytest.mark.parametrize(
    "kw, message",
    [({"n_prompts": 4, "prompts_per_step": 8}, "n_prompts 4 is smaller than prompts_per_step 8"),
     ({"lr": 0.0}, "--lr must be > 0"), ({"group_size": 1}, "--group-size must be at least 2")],
)  # fmt: skip
def test_the_stage_settings_are_checked_when_made(kw, message):
    with pytest.raises(ConfigError, match=message):
        demo_rl.RLStageConfig(**kw)


TINY = toy.ToyRecipe(
    n_sft=8, n_test=12, model=toy.ToyModelConfig(hidden=32, layers=1, heads=2, intermediate=64), pretrain_steps=6,
    pretrain_batch=16, sft_steps=4, sft_batch=4, sft_halvings=1, warmup_steps=1, threads=1,
)  # fmt: skip
TINY_RL = demo_rl.RLStageConfig(steps=2, prompts_per_step=2, group_size=2, n_prompts=4, lr=1e-3, threads=1)
TINY_DEMO = DemoConfig(recipe=TINY, n=8, ks=(1, 2, 8), deltas=(0.5,), temperatures=(1.5,), n_eval=10, n_val=2,
                       n_boot=50, verifier=None, rl=TINY_RL)  # fmt: skip


@pytest.fixture(autouse=True)
def _keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo-rl")
    events = []
    results = run_demo(
        TINY_DEMO, tmp / "out", cache_dir=tmp / "cache", progress=lambda *e: events.append(e[0])
    )
    return tmp / "out", results, events


def test_the_demo_runs_the_stage_from_three_starts_and_adds_claim_e(demo_run):
    out, results, events = demo_run
    assert {"rl", "rl-eval"} <= set(events)
    written = json.loads((out / "results.json").read_text())
    assert [c["key"] for c in written["claims"]][-1] == "f"
    e = written["claims"][-1]
    assert isinstance(e["held"], bool) and e["evidence"].startswith("RL from mix − RL from final")
    assert {"rl", "rl.train.final", "rl.train.mix", "rl.train.early", "rl.eval"} <= set(written["timings"])
    stage = json.loads((out / "rl" / demo_rl.RESULTS_FILE).read_text())
    assert stage["delta"] == 0.5 and stage["claim"] == e
    for label in demo_rl.STARTS:
        lines = (out / "rl" / label / "grpo_log.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == [1, 2]
        assert (out / "rl" / label / "checkpoint-2" / "model.safetensors").is_file()
        summary = stage["variants"][label]["summary"]
        assert summary["n_problems"] == 10 and summary["n"] == 8


def test_the_mix_start_is_the_merge_of_early_and_final(demo_run, tmp_path):
    out, _, _ = demo_run
    state = json.loads((out / "rl" / "mix" / "checkpoint-2" / "trainer_state.json").read_text())
    start = state["meta"]["start"]
    assert start["delta"] == 0.5  # recorded where the checkpoints are once the run is complete
    assert start["init"] == [str(out / "sft" / "checkpoint-2"), str(out / "sft" / "checkpoint-4")]
    # the same start given to `wiseft merge` and trained by `wiseft train grpo` gives the same weights
    merged = tmp_path / "merged"
    assert main(["merge", *start["init"], "--delta", "0.5", "--dtype", "float32", "-o", str(merged)]) == 0
    stage = demo_rl.train_from("again", demo_rl.Start(model=str(merged)), demo_rl.rl_problems(5, 8, 12, 4),
                               TINY_RL, tmp_path / "again")  # fmt: skip
    ours = load_file(str(out / "rl" / "mix" / "checkpoint-2" / "model.safetensors"))
    theirs = load_file(str(stage / "model.safetensors"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_demo_report_draws_the_three_rl_curves(demo_run):
    out, _, _ = demo_run
    md = (out / "report" / "report.md").read_text()
    assert "## Reinforcement learning (GRPO)" in md and (out / "report" / "rl_reward.png").is_file()
    assert all(f"| {label} | 2 |" in md for label in ("final", "mix", "early"))
    assert "RL from the mix ended with higher Pass@1 than RL from the final checkpoint" in md


def test_cli_rl_flag_builds_the_stage(tmp_path):
    from wiseft.cli import build_parser
    from wiseft.cli.demo import build_config

    args = build_parser().parse_args(["demo", "--rl", "--threads", "1", "-o", str(tmp_path / "x")])
    assert build_config(args).rl == dataclasses.replace(demo_rl.RLStageConfig(), threads=1)
    args = build_parser().parse_args(["demo", "-o", str(tmp_path / "x")])
    assert build_config(args).rl is None

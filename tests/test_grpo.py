"""GRPO: the objective against a float64 reference and TRL's GRPOTrainer, rewards from the grader,
thread-independent bytes, atomic checkpoints, exact resume, the step log, starts from a mix, the CLI."""

import hashlib
import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch

from wiseft.errors import CheckpointError, ConfigError, TaskError, TrainError
from wiseft.grading import Grader
from wiseft.tasks import Problem, Task, get_task
from wiseft.train import grpo, grpo_loss, optim_state, steplog, toy
from wiseft.train.rewards import GraderReward, check_golds

SMALL = toy.ToyModelConfig(hidden=32, layers=1, heads=2, intermediate=64, max_positions=64)


@pytest.fixture(autouse=True)
def _keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _task():
    return get_task("toy", seed=5, n_sft=16, n_test=4, split="sft")


def _model(seed=0):
    tok = toy.toy_tokenizer()
    return toy.toy_model(SMALL, tok, seed), tok


def _cfg(**kw):
    # format_reward gives an untrained model rewards with variance (some completions end in digits).
    base = dict(steps=4, prompts_per_step=3, group_size=4, lr=3e-3, max_completion_length=16, threads=1,
                format_reward=0.5, beta=0.04, grade_workers=1)  # fmt: skip
    base.update(kw)
    return grpo.GRPOConfig(**base)


def _digest(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(group_size=1), "--group-size must be at least 2"),
        (dict(steps=0), "--steps must be at least 1"),
        (dict(prompts_per_step=0), "--prompts-per-step must be at least 1"),
        (dict(temperature=0.0), "--temperature must be > 0"),
        (dict(beta=-0.1), "--beta >= 0"),
        (dict(loss_type="ppo"), "--loss-type must be one of dapo, grpo, dr_grpo"),
        (dict(scale_rewards="std"), "--scale-rewards must be one of group, batch, none"),
        (dict(schedule="step"), "--schedule must be one of constant, linear, cosine"),
        (dict(save_steps=(9,)), r"--save-steps \[9\] lie outside 1..4"),
    ],
)
def test_bad_settings_are_rejected_with_the_flag_named(kw, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**kw)


def test_learning_rate_schedules_follow_transformers():
    linear = _cfg(steps=10, lr=1e-3, schedule="linear")
    assert [linear.lr_at(s) for s in (1, 2, 10)] == pytest.approx([1e-3, 0.9e-3, 0.1e-3])
    warm = _cfg(steps=10, lr=1e-3, schedule="cosine", warmup_steps=2, min_lr=1e-4)
    assert warm.lr_at(1) == pytest.approx(5e-4) and warm.lr_at(3) == pytest.approx(1e-3)
    ref = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * 4 / 8))
    assert warm.lr_at(7) == pytest.approx(ref)
    assert _cfg(schedule="constant", lr=2e-3).lr_at(4) == 2e-3
    assert grpo.pass_ks(8) == [1, 2, 4, 8] and grpo.pass_ks(6) == [1, 2, 4, 6]


# ------------------------------------------------------------------------------------------- objective


def _adv_reference(rewards, group, scale):
    """Plain float64 GRPO advantages (Bessel std, eps 1e-4 as TRL)."""
    out, zero = [], []
    flat = [float(r) for r in rewards]
    mean_all = sum(flat) / len(flat)
    std_all = math.sqrt(sum((r - mean_all) ** 2 for r in flat) / (len(flat) - 1))
    for g in range(0, len(flat), group):
        xs = flat[g : g + group]
        m = sum(xs) / group
        s = math.sqrt(sum((x - m) ** 2 for x in xs) / (group - 1))
        zero.append(s == 0.0)
        for x in xs:
            denom = {"group": s + 1e-4, "batch": std_all + 1e-4, "none": 1.0}[scale]
            out.append((x - m) / denom)
    return out, zero


@pytest.mark.parametrize("scale", grpo_loss.SCALES)
def test_advantages_equal_a_float64_reference(scale):
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 1.1])
    adv, zero = grpo_loss.advantages(rewards, 4, scale)
    ref, ref_zero = _adv_reference(rewards, 4, scale)
    assert adv.tolist() == pytest.approx(ref, rel=1e-6, abs=1e-6)
    assert zero.tolist() == ref_zero == [False, True, False]


def _loss_reference(logps, ref_logps, adv, mask, loss_type, beta, max_len):
    """The per-token GRPO loss at ratio 1 (value only), reduced plainly in float64."""
    rows = []
    for lp, rl, a, m in zip(
        logps.double().tolist(), ref_logps.double().tolist(), adv.tolist(), mask.tolist(), strict=True
    ):
        terms = []
        for x, r, keep in zip(lp, rl, m, strict=True):
            if keep:
                terms.append(-a + beta * (math.exp(r - x) - (r - x) - 1))
        rows.append(terms)
    tokens = sum(len(t) for t in rows)
    if loss_type == "dapo":
        return sum(sum(t) for t in rows) / tokens
    if loss_type == "grpo":
        return sum(sum(t) / len(t) for t in rows) / len(rows)
    return sum(sum(t) for t in rows) / (len(rows) * max_len)


@pytest.mark.parametrize("loss_type", grpo_loss.LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_loss_equals_reference_and_parts_add_up_to_the_batch(loss_type, beta):
    g = torch.Generator().manual_seed(0)
    logps = -torch.rand((6, 5), generator=g, dtype=torch.float64).float() * 3
    ref = logps + 0.2 * torch.randn((6, 5), generator=g)
    adv = torch.randn(6, generator=g)
    mask = torch.ones(6, 5)
    for r, length in enumerate([5, 3, 1, 4, 5, 2]):
        mask[r, length:] = 0
    totals = grpo_loss.BatchTotals(6, int(mask.sum()), 8)
    whole, _ = grpo_loss.part_loss(logps, adv, mask, totals, loss_type, beta, ref)
    assert float(whole) == pytest.approx(_loss_reference(logps, ref, adv, mask, loss_type, beta, 8), rel=1e-5)
    parts = [grpo_loss.part_loss(logps[s], adv[s], mask[s], totals, loss_type, beta, ref[s])[0]
             for s in (slice(0, 2), slice(2, 5), slice(5, 6))]  # fmt: skip
    assert float(sum(parts)) == pytest.approx(float(whole), rel=1e-6)


def test_completion_logps_of_a_padded_part_equal_each_row_alone():
    """Ragged prompts are left-padded (mask + positions), completions right-padded: every row's
    log-probabilities equal those of the row run alone, without any padding."""
    model, _ = _model()
    rows = [([1, 5, 6, 7, 8], [9, 10, 2]), ([1, 5], [6, 7, 8, 9, 2]), ([1, 7, 7], [4])]
    logps, mask = grpo.completion_logps(model, rows, pad=0, device="cpu", temperature=0.7)
    for r, (p, c) in enumerate(rows):
        ids = torch.tensor([p + c])
        logits = model(input_ids=ids).logits[0, len(p) - 1 : -1]
        alone = torch.log_softmax(logits.double() / 0.7, -1).gather(-1, torch.tensor(c)[:, None]).squeeze(-1)
        assert logps[r, : len(c)].tolist() == pytest.approx(alone.tolist(), abs=1e-5)
        assert mask[r].tolist() == [1.0] * len(c) + [0.0] * (mask.shape[1] - len(c))


@pytest.mark.parametrize("loss_type", grpo_loss.LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_loss_and_gradient_equal_trl_grpo_trainer(tmp_path, loss_type, beta):
    """The same batch through TRL 1.16's GRPOTrainer._compute_loss and through ours."""
    pytest.importorskip("trl", reason="TRL is the `train` extra; the comparison needs it")
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    model, tok = _model()
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    args = GRPOConfig(
        output_dir=str(tmp_path / "trl"), use_cpu=True, beta=beta, loss_type=loss_type, temperature=0.7,
        max_completion_length=6, per_device_train_batch_size=4, num_generations=2, report_to="none",
        bf16=False, model_init_kwargs={"dtype": "float32"},
    )  # fmt: skip
    data = datasets.Dataset.from_list([{"prompt": "12+34="}] * 4)
    trainer = GRPOTrainer(model=str(tmp_path / "m"), reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                          args=args, train_dataset=data, processing_class=tok)  # fmt: skip
    trainer.model.eval()  # no accumulation normalisers (our step is one whole batch)
    prompts = [tok("12+34=")["input_ids"], tok("56+78=")["input_ids"], tok("90+12=")["input_ids"]]
    completions = [[5, 6, 7, 2], [8, 2], [9, 9, 9, 9, 9, 9]]
    rows = list(zip(prompts, completions, strict=True))
    adv = torch.tensor([0.7, -1.2, 0.4])
    ref_model = toy.toy_model(SMALL, tok, seed=1)
    with torch.no_grad():
        ref_logps, mask = grpo.completion_logps(ref_model, rows, tok.pad_token_id, "cpu", 0.7)
    ids, _, _, targets, _ = grpo_loss.pack_rows(rows, tok.pad_token_id, "cpu")
    inputs = {
        "prompt_ids": ids[:, : len(prompts[0])], "prompt_mask": torch.ones_like(ids[:, : len(prompts[0])]),
        "completion_ids": targets, "completion_mask": mask.long(), "advantages": adv,
        "num_items_in_batch": mask.sum(), "ref_per_token_logps": ref_logps,
    }  # fmt: skip
    trl_loss = trainer._compute_loss(trainer.model, inputs)
    trl_loss.backward()
    trl_grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters()}

    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.float32).eval()
    logps, _ = grpo.completion_logps(ours, rows, tok.pad_token_id, "cpu", 0.7)
    totals = grpo_loss.BatchTotals(3, int(mask.sum()), 6)
    loss, _ = grpo_loss.part_loss(logps, adv, mask, totals, loss_type, beta, ref_logps)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(float(trl_loss.detach()), rel=1e-5, abs=1e-7)
    for name, p in ours.named_parameters():
        assert torch.allclose(p.grad, trl_grads[name], rtol=1e-4, atol=1e-6), name


# ------------------------------------------------------------------------------------- optimizer state


def _stepped_adamw(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.AdamW(
        [{"params": [net[0].weight, net[1].weight], "weight_decay": 0.1}, {"params": [net[0].bias, net[1].bias]}],
        lr=1e-2, betas=(0.9, 0.98),
    )  # fmt: skip
    for _ in range(3):
        net(torch.randn(5, 4)).square().sum().backward()
        opt.step()
        opt.zero_grad()
    return net, opt


def test_optimizer_state_round_trips_exactly_without_pickle(tmp_path):
    net, opt = _stepped_adamw()
    optim_state.save_optimizer_state(opt, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optimizer.json", "optimizer.safetensors"]
    meta = json.loads((tmp_path / "optimizer.json").read_text())
    assert meta["param_groups"][0]["betas"] == {"tuple": [0.9, 0.98]}
    net2, opt2 = _stepped_adamw(seed=1)  # other values, same structure
    net2.load_state_dict(net.state_dict())
    optim_state.load_optimizer_state(opt2, tmp_path)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid, entry in a["state"].items():
        for key, value in entry.items():
            assert torch.equal(value, b["state"][pid][key]), (pid, key)
    x = torch.randn(5, 4)  # the next step is the same bytes
    for n, o in ((net, opt), (net2, opt2)):
        n(x).square().sum().backward()
        o.step()
    for p, q in zip(net.parameters(), net2.parameters(), strict=True):
        assert torch.equal(p, q)


def test_optimizer_state_that_does_not_fit_is_rejected(tmp_path):
    _, opt = _stepped_adamw()
    optim_state.save_optimizer_state(opt, tmp_path)
    other = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3, 4)), torch.nn.Parameter(torch.zeros(5))])
    with pytest.raises(CheckpointError, match=r"optimizer.json: 2 parameter groups, the optimizer has 1"):
        optim_state.load_optimizer_state(other, tmp_path)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 2))
    wrong = torch.optim.AdamW(
        [{"params": [net[0].weight, net[1].weight]}, {"params": [net[0].bias, net[1].bias]}]
    )
    with pytest.raises(
        CheckpointError, match=r"state.0.exp_avg has shape \[3, 4\] but parameter 0 has \[5, 4\]"
    ):
        optim_state.load_optimizer_state(wrong, tmp_path)
    meta = json.loads((tmp_path / "optimizer.json").read_text())
    meta["state"]["0"]["exp_avg"] = {"tensor": "state.9.nothing"}
    (tmp_path / "optimizer.json").write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError, match="tensor 'state.9.nothing' is referenced but not in optimizer.safetensors"
    ):
        optim_state.load_optimizer_state(opt, tmp_path)
    (tmp_path / "optimizer.json").write_text('{"format": "pickle"}')
    with pytest.raises(CheckpointError, match="not a wiseft optimizer state"):
        optim_state.load_optimizer_state(opt, tmp_path)


# --------------------------------------------------------------------------------------------- rewards


def test_rewards_come_from_the_grader_with_an_optional_format_reward():
    task = _task()
    gold = task.problems[0].gold  # digits in ordinary order; the toy writes them reversed
    right, wrong = gold[::-1] + "$", str(int(gold) + 1)[::-1] + "$"
    with Grader(kind="int") as grader:
        out = GraderReward(task, grader, format_reward=0.25)([gold] * 3, [right, wrong, "+$"])
    assert out.values == [1.25, 0.25, 0.0]
    assert out.correct == [True, False, False]
    assert (out.stats.correct, out.stats.answered, out.stats.timeouts) == (1, 2, 0)


def test_a_completion_that_makes_the_grader_time_out_gets_reward_0_and_is_counted():
    task = Task("m", [Problem("a", "q", "9")])
    with Grader(kind="math", workers=1, timeout=1.0) as grader:
        out = GraderReward(task, grader)(["9", "9"], ["\\boxed{9^{9^{9^{9^9}}}}", "so \\boxed{9}"])
    assert out.values == [0.0, 1.0]
    assert out.stats.timeouts == 1


def test_a_task_without_gold_answers_is_rejected():
    problems = [Problem("a", "1+1=", "2"), Problem("b", "2+2=", " "), Problem("c", "3+3=", "")]
    with pytest.raises(TaskError, match=r"task t: 2 problem\(s\) have no gold answer \(e.g. b, c\)"):
        check_golds("t", problems)
    with pytest.raises(TaskError, match="no problems to train on"):
        check_golds("t", [])


# ------------------------------------------------------------------------------------------- the loop


def test_training_writes_hf_checkpoints_and_a_step_log(tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = _model()
    seen = []
    result = grpo.train(model, tok, _task(), _cfg(save_every=2), tmp_path / "run", on_step=seen.append)
    assert list(result.checkpoints) == [2, 4] and [p.step for p in seen] == [1, 2, 3, 4]
    assert [p.saved is not None for p in seen] == [False, True, False, True]
    last = result.checkpoints[4]
    names = {p.name for p in last.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "trainer_state.json"} <= names
    assert {"optimizer.safetensors", "optimizer.json"} <= names and not any(
        n.endswith((".pt", ".bin", ".pth")) for n in names
    )
    loaded = AutoModelForCausalLM.from_pretrained(last)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    log = steplog.read_log(tmp_path / "run" / grpo.LOG_FILE)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert (
        list(log)
        == list(result.records)
        == json.loads((last / "trainer_state.json").read_text())["log_history"]
    )
    for r in log:
        assert set(r) >= {
            "reward_mean",
            "reward_std",
            "kl",
            "completion_length",
            "zero_std_fraction",
            "pass_at_k",
        }
        assert 0.0 <= r["zero_std_fraction"] <= 1.0 and set(r["pass_at_k"]) == {"1", "2", "4"}
    assert log[0]["kl"] == 0.0 and log[-1]["kl"] > 0.0  # the policy starts at the reference
    assert any(r["reward_std"] > 0 for r in log)
    assert [p.name for p in (tmp_path / "run").iterdir() if "tmp" in p.name] == []


def test_the_same_bytes_for_one_and_two_threads(tmp_path):
    digests = []
    for threads in (1, 2):
        model, tok = _model()
        grpo.train(model, tok, _task(), _cfg(threads=threads, steps=3), tmp_path / f"t{threads}")
        digests.append(_digest(model))
    assert digests[0] == digests[1]


def test_beta_zero_needs_no_reference_and_skips_rows_without_advantage(tmp_path):
    model, tok = _model()
    result = grpo.train(model, tok, _task(), _cfg(beta=0.0, steps=3), tmp_path / "run")
    assert all(r["kl"] is None for r in result.records)
    for r in result.records:  # groups whose rewards all agree contribute no rows
        assert r["rows_skipped"] >= round(r["zero_std_fraction"] * 12)


class _Killed(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_bytes(tmp_path):
    model, tok = _model()
    cfg = _cfg(steps=5, save_every=2)
    grpo.train(model, tok, _task(), cfg, tmp_path / "whole")
    expected = _digest(model)

    def kill_at_3(p):
        if p.step == 3:  # after step 3 was logged, before it was checkpointed
            raise _Killed

    with pytest.raises(_Killed):
        grpo.train(_model()[0], tok, _task(), cfg, tmp_path / "cut", on_step=kill_at_3)
    with pytest.raises(TrainError, match="already holds checkpoints \\[2\\]; pass --resume"):
        grpo.train(_model()[0], tok, _task(), cfg, tmp_path / "cut")
    fresh = _model()[0]
    result = grpo.train(fresh, tok, _task(), cfg, tmp_path / "cut", resume=True)
    assert result.resumed_from == 2 and _digest(fresh) == expected
    log = steplog.read_log(tmp_path / "cut" / grpo.LOG_FILE)
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    whole = steplog.read_log(tmp_path / "whole" / grpo.LOG_FILE)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(log) == strip(whole)


def test_a_run_killed_while_saving_leaves_no_checkpoint_and_resumes_to_the_same_bytes(tmp_path):
    """A real process, killed (os._exit) inside the checkpoint write of step 4."""
    script = textwrap.dedent("""
        import os, sys
        from wiseft.train import grpo, optim_state, toy
        from wiseft.tasks import get_task
        real = optim_state.save_optimizer_state
        def dying(opt, directory):
            real(opt, directory)
            if "checkpoint-4" in str(directory):
                os._exit(9)
        optim_state.save_optimizer_state = dying
        tok = toy.toy_tokenizer()
        model = toy.toy_model(toy.ToyModelConfig(hidden=32, layers=1, heads=2, intermediate=64, max_positions=64), tok, 0)
        task = get_task("toy", seed=5, n_sft=16, n_test=4, split="sft")
        cfg = grpo.GRPOConfig(steps=5, prompts_per_step=3, group_size=4, lr=3e-3, max_completion_length=16,
                              threads=1, format_reward=0.5, beta=0.04, grade_workers=1, save_every=2)
        grpo.train(model, tok, task, cfg, sys.argv[1])
    """)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "run")], capture_output=True, text=True
    )
    assert done.returncode == 9, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-2"
    ]
    assert [r["step"] for r in steplog.read_log(tmp_path / "run" / grpo.LOG_FILE)] == [1, 2, 3, 4]
    model, tok = _model()
    grpo.train(model, tok, _task(), _cfg(steps=5, save_every=2), tmp_path / "run", resume=True)
    whole, _ = _model()
    grpo.train(whole, tok, _task(), _cfg(steps=5, save_every=2), tmp_path / "whole")
    assert _digest(model) == _digest(whole)
    assert [p.name for p in (tmp_path / "run").iterdir() if "tmp" in p.name] == []  # the stale temp is gone


def test_resume_with_other_settings_or_another_start_is_refused(tmp_path):
    model, tok = _model()
    grpo.train(model, tok, _task(), _cfg(steps=2), tmp_path / "run", meta={"start": "a"})
    with pytest.raises(TrainError, match=r"trained with other settings \(--lr 0.003 -> 0.001\)"):
        grpo.train(
            _model()[0],
            tok,
            _task(),
            _cfg(steps=3, lr=1e-3),
            tmp_path / "run",
            resume=True,
            meta={"start": "a"},
        )
    with pytest.raises(TrainError, match="was started from"):
        grpo.train(
            _model()[0], tok, _task(), _cfg(steps=3), tmp_path / "run", resume=True, meta={"start": "b"}
        )
    more = grpo.train(
        _model()[0], tok, _task(), _cfg(steps=3), tmp_path / "run", resume=True, meta={"start": "a"}
    )
    assert more.resumed_from == 2 and [r["step"] for r in more.records] == [3]


def test_a_reward_that_stays_zero_warns_once_through_the_progress_callback(tmp_path):
    model, tok = _model()
    seen = []
    cfg = _cfg(format_reward=0.0, steps=4, warn_zero_reward_after=2, beta=0.0)
    grpo.train(model, tok, _task(), cfg, tmp_path / "run", on_step=seen.append)
    assert all(p.record["all_zero_reward"] for p in seen)  # an untrained model never answers right
    assert [p.warning is not None for p in seen] == [False, True, False, False]
    assert "nothing to learn" in seen[1].warning


def test_a_prompt_longer_than_the_model_allows_is_rejected_before_training(tmp_path):
    model, tok = _model()
    with pytest.raises(
        ConfigError, match=r"plus --max-completion-length 60 exceeds the model's 64 positions"
    ):
        grpo.train(model, tok, _task(), _cfg(max_completion_length=60), tmp_path / "run")


# -------------------------------------------------------------------------------- starts, the CLI


@pytest.fixture(scope="module")
def anchors(tmp_path_factory):
    d = tmp_path_factory.mktemp("anchors")
    tok = toy.toy_tokenizer()
    for name, seed in (("early", 1), ("final", 2)):
        m = toy.toy_model(SMALL, tok, seed)
        with torch.no_grad():  # fresh inits are tiny; make the two anchors clearly different
            for p in m.parameters():
                p.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(seed))
        m.save_pretrained(d / name)
        tok.save_pretrained(d / name)
    return d / "early", d / "final"


def _merged(tmp_path, *args):
    from safetensors.torch import load_file

    from wiseft.cli import main

    assert main(["merge", *args, "--dtype", "float32", "-o", str(tmp_path / "merged")]) == 0
    return load_file(str(tmp_path / "merged" / "model.safetensors"))


def test_a_mix_start_is_bit_identical_to_wiseft_merge_output(anchors, tmp_path):
    from wiseft.train.start import Start, load_start

    early, final = anchors
    written = _merged(tmp_path, str(early), str(final), "--delta", "0.3")
    model, tok = load_start(Start(init=(str(early), str(final)), delta=0.3))
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32
        assert torch.equal(p.data.view(torch.int32), written[name].view(torch.int32)), name
    assert tok.get_vocab() == toy.toy_tokenizer().get_vocab()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"models: [{early}, {final}]\ndelta: 0.25\nrules:\n  - match: 'transformer\\.h\\..*'\n    delta: 0.7\n"
    )
    scheduled = _merged(tmp_path / "r", "--config", str(recipe))
    model, _ = load_start(Start(recipe=str(recipe)))
    for name, p in model.named_parameters():
        assert torch.equal(p.data.view(torch.int32), scheduled[name].view(torch.int32)), name


def test_rl_from_a_mix_equals_rl_from_the_written_mix(anchors, tmp_path):
    from wiseft.train.start import Start, load_start

    early, final = anchors
    _merged(tmp_path, str(early), str(final), "--delta", "0.5")
    digests = []
    for i, start in enumerate(
        [Start(init=(str(early), str(final)), delta=0.5), Start(model=str(tmp_path / "merged"))]
    ):
        model, tok = load_start(start)
        grpo.train(model, tok, _task(), _cfg(steps=2), tmp_path / f"run{i}")
        digests.append(_digest(model))
    assert digests[0] == digests[1]


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(), "give exactly one start"),
        (dict(model="a", recipe="r.yaml"), r"give exactly one start.*got --model, --init-recipe"),
        (dict(init=("a", "b")), "needs --delta"),
        (dict(init=("a",), delta=0.5), "--init takes two checkpoints"),
        (dict(model="a", delta=0.5), "--delta applies to --init"),
    ],
)
def test_a_start_must_be_given_exactly_once(kw, message):
    from wiseft.train.start import Start

    with pytest.raises(ConfigError, match=message):
        Start(**kw)


def _cli(tmp_path, model_args, *extra):
    from wiseft.cli import main

    args = ["train", "grpo", *model_args, "--task", "toy", "--task-option", "split=sft", "--task-option", "n_sft=16",
            "--task-option", "n_test=4", "-o", str(tmp_path / "rl"), "--steps", "2", "--prompts-per-step", "2",
            "--group-size", "4", "--max-completion-length", "16", "--lr", "1e-3", "--format-reward", "0.5",
            "--threads", "1", "--workers", "1", *extra]  # fmt: skip
    return main(args)


def test_cli_trains_resumes_and_refuses_to_overwrite(anchors, tmp_path, capsys):
    early, final = anchors
    init = ["--init", str(early), str(final), "--delta", "0.25"]
    assert _cli(tmp_path, init) == 0
    run = tmp_path / "rl"
    assert (run / "checkpoint-2" / "model.safetensors").is_file() and (run / "grpo_config.yaml").is_file()
    assert [r["step"] for r in steplog.read_log(run / grpo.LOG_FILE)] == [1, 2]
    state = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["meta"]["start"] == {"init": [str(early), str(final)], "delta": 0.25}
    capsys.readouterr()
    assert _cli(tmp_path, init) == 2
    assert "already holds checkpoints [2]; pass --resume" in capsys.readouterr().err
    assert _cli(tmp_path, ["--model", str(final)], "--resume", "--steps", "3") == 2
    assert "was started from" in capsys.readouterr().err
    assert _cli(tmp_path, init, "--resume", "--steps", "3") == 0
    assert [r["step"] for r in steplog.read_log(run / grpo.LOG_FILE)] == [1, 2, 3]


def test_cli_rejects_anchors_that_do_not_match_and_writes_nothing(anchors, tmp_path, capsys):
    from wiseft.testing import save_tiny_model

    other = save_tiny_model(tmp_path / "llama", arch="llama")
    capsys.readouterr()
    assert _cli(tmp_path, ["--init", str(anchors[0]), str(other), "--delta", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wiseft train: error: ") and len(err.strip().splitlines()) == 1
    assert f"{other} is LlamaForCausalLM; only checkpoints of one architecture can be merged" in err
    assert not (tmp_path / "rl").exists()


def test_cli_rejects_a_task_without_gold_answers_and_writes_nothing(anchors, tmp_path, capsys):
    from wiseft.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "1+1=", "answer": "2"}\n{"question": "2+2=", "answer": ""}\n')
    code = main(["train", "grpo", "--model", str(anchors[1]), "--task", "jsonl", "--data", str(data),
                 "--task-option", "grader=int", "-o", str(tmp_path / "rl"), "--steps", "1"])  # fmt: skip
    assert code == 2
    assert "task jsonl: 1 problem(s) have no gold answer (e.g. 1)" in capsys.readouterr().err
    assert not (tmp_path / "rl").exists()

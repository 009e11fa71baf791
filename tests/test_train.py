"""SFT: schedule, completion-only loss, atomic HF checkpoints, exact resume, the toy recipe, the CLI."""

import dataclasses
import json
import math

import pytest
import torch

from wiseft.checkpoints import find_checkpoints
from wiseft.cli import main
from wiseft.errors import ConfigError, TrainError
from wiseft.tasks import toy as world
from wiseft.train import data, optim_state, sft, toy
from wiseft.train import parts as parts_mod

SMALL = toy.ToyModelConfig(hidden=32, layers=1, heads=2, intermediate=64, max_positions=64)


def _pairs(n=12, seed=0):
    return [(p.prompt, p.completion) for p in world.make_splits(seed, n_sft=n, n_test=4).sft]


def _model(seed=0):
    tok = toy.toy_tokenizer()
    return toy.toy_model(SMALL, tok, seed), tok


def _cfg(**kw):
    base = dict(steps=6, batch_size=4, lr=3e-3, min_lr=3e-4, warmup_steps=2, save_every=0, seed=1, threads=1)
    base.update(kw)
    return sft.SFTConfig(**base)


# ---------------------------------------------------------------------------------------------- config


def test_checkpoint_schedule_combines_every_n_explicit_steps_and_the_last():
    assert _cfg(steps=10, save_every=4).checkpoint_steps() == [4, 8, 10]
    assert _cfg(steps=10, save_steps=(1, 3)).checkpoint_steps() == [1, 3, 10]
    assert _cfg(steps=10, save_every=5, save_steps=(5, 7)).checkpoint_steps() == [5, 7, 10]


def test_learning_rate_schedule_against_closed_form():
    cfg = _cfg(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    assert cfg.lr_at(5) == pytest.approx(5e-4)
    assert cfg.lr_at(10) == pytest.approx(1e-3)
    for s in (11, 40, 77, 100):
        ref = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * (s - 10) / 90))
        assert cfg.lr_at(s) == pytest.approx(ref)
    assert cfg.lr_at(100) == pytest.approx(1e-4)
    const = _cfg(steps=100, warmup_steps=10, schedule="constant")
    assert const.lr_at(60) == const.lr


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(steps=0), "--steps must be at least 1"),
        (dict(batch_size=0), "--batch-size"),
        (dict(schedule="linear"), "--schedule must be"),
        (dict(save_steps=(7,)), r"--save-steps \[7\] lie outside 1..6"),
        (dict(lr=0.0), "--lr must be > 0"),
        (dict(micro_batches=5), r"--micro-batches must be between 1 and --batch-size \(4\)"),
        (dict(micro_batches=0), "--micro-batches"),
        (dict(micro_split="random"), "--micro-split must be one of length, rows, got 'random'"),
    ],
)
def test_bad_config_is_rejected_with_the_flag_named(kw, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**kw)


# ------------------------------------------------------------------------------------------------ data


def test_collator_labels_only_completion_tokens_and_appends_eos():
    tok = toy.toy_tokenizer()
    col = data.Collator(tok)
    ids, mask, labels = col([("12+3=", "31$"), ("1+1=", "2$")])
    first = tok("12+3=31$", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ids[0].tolist() == first
    assert labels[0].tolist() == [-100] * 5 + first[5:]
    second = tok("1+1=2$", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ids[1].tolist() == second + [tok.pad_token_id] * 2  # right-padded
    assert labels[1].tolist() == [-100] * 4 + second[4:] + [-100] * 2
    assert mask[1].tolist() == [1] * 7 + [0] * 2


def _collate_reference(tok, pairs, max_length):
    """The collator written plainly: one tokenizer call per text, one row at a time."""
    rows = []
    for prompt, completion in pairs:
        p = tok(prompt, add_special_tokens=True)["input_ids"]
        ids = p + tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append((ids[:max_length] if max_length else ids, len(p)))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (ids, n) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        mask[r, : len(ids)] = 1
        labels[r, n : len(ids)] = torch.tensor(ids)[n:]
    return input_ids, mask, labels


@pytest.mark.parametrize("max_length", [0, 10, 16])
def test_collator_batches_equal_a_row_by_row_reference(max_length):
    tok = toy.toy_tokenizer()
    col = data.Collator(tok, max_length)
    pairs = _pairs(10)
    batches = [pairs[:6], pairs[3:9] + pairs[:1], pairs[:6]]  # fresh pairs, a repeat, cache hits
    for batch in batches:
        if max_length == 10:  # every completion cut away (12-token prompts): the collator refuses the batch
            with pytest.raises(TrainError, match="no completion tokens"):
                col(batch)
            continue
        got, want = col(batch), _collate_reference(tok, batch, max_length)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == torch.long and torch.equal(g, w)


def test_completion_loss_matches_a_float64_reference():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 1], [-100, 2, 6, -100, -100]])
    got = sft.completion_loss(logits, labels)
    terms = []
    for b in range(2):
        for t in range(4):
            y = int(labels[b, t + 1])
            if y != -100:
                lp = torch.log_softmax(logits[b, t].double(), -1)[y]
                terms.append(-float(lp))
    assert float(got) == pytest.approx(sum(terms) / len(terms), rel=1e-6)


def test_epoch_batches_cover_every_example_once_per_epoch_and_are_seeded():
    pairs = _pairs(10)
    batch_at = data.epoch_batches(pairs, 4, seed=3)
    seen = [p for s in range(1, 6) for p in batch_at(s)]  # 20 = two epochs
    assert sorted(seen[:10]) == sorted(pairs) and sorted(seen[10:]) == sorted(pairs)
    assert seen != pairs + pairs  # shuffled
    assert batch_at(4) == data.epoch_batches(pairs, 4, seed=3)(4)


def test_jsonl_reader_names_the_line_and_field(tmp_path):
    good = tmp_path / "d.jsonl"
    good.write_text('{"prompt": "1+1=", "completion": "2$"}\n\n{"prompt": "2+2=", "completion": "4$"}\n')
    assert data.read_jsonl_pairs(good) == [("1+1=", "2$"), ("2+2=", "4$")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1=", "completion": "2$"}\n{"prompt": "x"}\n')
    with pytest.raises(TrainError, match=r"bad.jsonl:2: field 'completion' is missing"):
        data.read_jsonl_pairs(bad)
    (tmp_path / "nojson.jsonl").write_text("{oops\n")
    with pytest.raises(TrainError, match=r"nojson.jsonl:1: not valid JSON"):
        data.read_jsonl_pairs(tmp_path / "nojson.jsonl")
    with pytest.raises(TrainError, match="does not exist"):
        data.read_jsonl_pairs(tmp_path / "missing.jsonl")


# ------------------------------------------------------------------------------------ training, resume


def test_training_writes_loadable_hf_checkpoints_and_lowers_the_loss(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = _model()
    cfg = _cfg(steps=30, save_every=10, lr=1e-2)
    result = sft.train(model, tok, data.epoch_batches(_pairs(), 4, 1), cfg, tmp_path / "run")
    assert list(result.checkpoints) == [10, 20, 30]
    assert sum(result.losses[-5:]) < sum(result.losses[:5])
    last = result.checkpoints[30]
    assert {"config.json", "model.safetensors", "tokenizer.json", "trainer_state.json"} <= {
        p.name for p in last.iterdir()
    }
    assert not (last / optim_state.TENSORS_FILE).exists()  # only with save_optimizer
    loaded = AutoModelForCausalLM.from_pretrained(last)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert AutoTokenizer.from_pretrained(last).decode([7, 6]) == tok.decode([7, 6])
    state = json.loads((last / "trainer_state.json").read_text())
    assert state["step"] == 30 and state["seed"] == 1 and len(state["loss_history"]) == 30
    assert [p.name for p in (tmp_path / "run").iterdir() if "tmp" in p.name] == []


@pytest.mark.parametrize("split", ["length", "rows"])
def test_micro_batches_give_the_same_weights_for_any_thread_count(tmp_path, split):
    """Two micro-batches (cut either way) run side by side on two threads, or one after the other on one:
    the weights are the same bytes. And the summed micro-batch gradient is the batch's gradient (to
    rounding), so the run follows the plain one closely."""
    pairs = _pairs()
    runs = {}
    for name, kw in (
        ("plain", {}),
        ("one", dict(micro_batches=2, micro_split=split)),
        ("two", dict(micro_batches=2, micro_split=split, threads=2)),
    ):
        model, tok = _model()
        result = sft.train(model, tok, data.epoch_batches(pairs, 4, 1), _cfg(steps=4, **kw), tmp_path / name)
        runs[name] = (model.state_dict(), result.losses)
    for key, value in runs["one"][0].items():
        assert torch.equal(value, runs["two"][0][key]), key
        torch.testing.assert_close(value, runs["plain"][0][key], rtol=1e-4, atol=1e-5)
    assert runs["one"][1] == runs["two"][1]
    assert runs["one"][1] == pytest.approx(runs["plain"][1], rel=1e-5)


class _Stop(Exception):
    pass


def _padded(lengths, part):
    return len(part) * max(max(1, lengths[i]) for i in part)


def _best_padded(lengths, parts):
    """Brute force: the least possible largest padded size over every split of the sorted rows into at
    most `parts` runs."""
    import itertools

    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = None
    for k in range(1, parts + 1):
        for inner in itertools.combinations(range(1, len(order)), k - 1):
            bounds = [0, *inner, len(order)]
            cost = max(_padded(lengths, order[a:b]) for a, b in itertools.pairwise(bounds))
            best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize(
    ("lengths", "parts"),
    [
        ([5, 3, 9, 9, 1, 2], 2),
        ([4] * 8, 2),
        ([4] * 7, 3),
        ([1], 3),
        ([3, 1, 2], 3),
        ([0, 0, 7], 2),
        ([25, 9, 14, 17, 22, 11, 8, 19, 25, 13], 2),
        ([25, 9, 14, 17, 22, 11, 8, 19, 25, 13], 4),
        (list(range(1, 30)), 3),
    ],
)
def test_length_parts_cover_every_row_once_and_even_out_the_padding(lengths, parts):
    """Every row in exactly one non-empty part, parts in length order with rows sorted by length (ties in
    row order), at most `parts` of them, and the largest padded size the least any split achieves."""
    split = parts_mod.length_parts(lengths, parts)
    flat = [i for part in split for i in part]
    assert sorted(flat) == list(range(len(lengths))) and all(split) and len(split) <= parts
    assert flat == sorted(range(len(lengths)), key=lambda i: lengths[i])
    assert max(_padded(lengths, p) for p in split) == _best_padded(lengths, parts)


def test_length_parts_pad_less_than_equal_rows_on_toy_batches():
    """On the demo's pretraining batches the parts cut by length pad at most as much as equal row counts,
    and less in total."""
    recipe = toy.ToyRecipe()
    tok = toy.toy_tokenizer()
    batch_at = world.sloppy_batches(0, 128, recipe.sloppy)
    for step in (1, 2, 3):
        _ids, mask, _labels = data.Collator(tok)(batch_at(step))
        lengths = mask.sum(dim=1).tolist()
        split = parts_mod.length_parts(lengths, 2)
        halves = [list(range(64)), list(range(64, 128))]
        assert max(_padded(lengths, p) for p in split) <= max(_padded(lengths, p) for p in halves)
        assert sum(_padded(lengths, p) for p in split) < sum(_padded(lengths, p) for p in halves)


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_part_gradients_are_summed_in_part_order_to_the_same_bits(parts):
    torch.manual_seed(0)
    shapes = [(5, 3), (7,), (2, 2)]
    per_part = [[torch.randn(s) * 10 ** (i - j) for i, s in enumerate(shapes)] for j in range(parts)]
    per_part[0][1] = None  # a parameter one part does not reach
    if parts > 1:
        per_part[-1][2] = None
    want = []
    for j in range(len(shapes)):  # the plain loop: clone the first, add the others in part order
        grad = None
        for grads in per_part:
            if grads[j] is not None:
                grad = grads[j].clone() if grad is None else grad.add_(grads[j])
        want.append(grad)
    originals = [[None if g is None else g.clone() for g in grads] for grads in per_part]
    got = sft.sum_part_grads(per_part)
    for g, w in zip(got, want, strict=True):
        assert (g is None and w is None) or torch.equal(g, w)
    for grads, before in zip(per_part, originals, strict=True):  # the parts' own tensors untouched
        for g, b in zip(grads, before, strict=True):
            assert (g is None and b is None) or torch.equal(g, b)


def test_an_interrupted_micro_batch_run_leaves_no_worker_threads(tmp_path):
    import threading

    model, tok = _model()
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(_Stop):
        sft.train(
            model,
            tok,
            data.epoch_batches(_pairs(), 4, 1),
            _cfg(steps=4, micro_batches=2, threads=2),
            tmp_path / "r",
            on_step=_interrupt_at(2),
        )
    assert {t.ident for t in threading.enumerate() if t.is_alive()} <= before


def test_each_batch_is_made_once_in_step_order_the_next_one_while_a_step_trains(tmp_path):
    """The prefetch (`sft._Prefetch`) asks the source for step s+1 in its own thread while step s trains,
    once per step and in order (so a source with state sees what it saw without it), never past the run's
    last step; a run that a stop rule ends has made one batch it does not use."""
    import threading

    pairs = _pairs()
    source = data.epoch_batches(pairs, 4, 1)
    calls: list[tuple[int, str]] = []

    def batch_at(step):
        calls.append((step, threading.current_thread().name))
        return source(step)

    model, tok = _model()
    sft.train(model, tok, batch_at, _cfg(steps=5), tmp_path / "a")
    assert [s for s, _ in calls] == [1, 2, 3, 4, 5]
    assert calls[0][1] == threading.current_thread().name
    assert all(name.startswith("wiseft-batches") for _, name in calls[1:])
    calls.clear()
    model, tok = _model()
    sft.train(model, tok, batch_at, _cfg(steps=5), tmp_path / "b", stop_when=lambda step, m: step == 3)
    assert [s for s, _ in calls] == [1, 2, 3, 4]


def test_a_batch_that_cannot_be_made_fails_its_own_step_and_leaves_no_thread(tmp_path):
    import threading

    source = data.epoch_batches(_pairs(), 4, 1)
    trained: list[int] = []

    def batch_at(step):
        if step == 3:
            raise TrainError("bad example at step 3")
        return source(step)

    model, tok = _model()
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(TrainError, match="step 3"):
        sft.train(
            model, tok, batch_at, _cfg(steps=5), tmp_path / "r", on_step=lambda p: trained.append(p.step)
        )
    assert trained == [1, 2]
    assert {t.ident for t in threading.enumerate() if t.is_alive()} <= before


def _interrupt_at(step):
    def on_step(p):
        if p.step == step:
            raise _Stop

    return on_step


def test_resume_with_optimizer_state_is_identical_to_an_uninterrupted_run(tmp_path):
    pairs = _pairs()
    cfg = _cfg(steps=6, save_steps=(3,), save_optimizer=True)
    model, tok = _model()
    full = sft.train(model, tok, data.epoch_batches(pairs, 4, 1), cfg, tmp_path / "full")

    model2, _ = _model()
    with pytest.raises(_Stop):
        sft.train(
            model2, tok, data.epoch_batches(pairs, 4, 1), cfg, tmp_path / "cut", on_step=_interrupt_at(4)
        )
    assert list(find_checkpoints(tmp_path / "cut", strict=False)) == [3]
    fresh, _ = _model(seed=99)  # the weights come from the checkpoint, not from this init
    resumed = sft.train(fresh, tok, data.epoch_batches(pairs, 4, 1), cfg, tmp_path / "cut")
    assert resumed.resumed_from == 3 and len(resumed.losses) == 3
    assert resumed.losses == full.losses[3:]
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    state = json.loads((tmp_path / "cut" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["optimizer_restored"] is True and state["loss_history"] == list(full.losses)


def test_resume_without_optimizer_state_continues_and_says_so(tmp_path):
    cfg = _cfg(steps=6, save_steps=(3,))
    model, tok = _model()
    with pytest.raises(_Stop):
        sft.train(
            model, tok, data.epoch_batches(_pairs(), 4, 1), cfg, tmp_path / "r", on_step=_interrupt_at(5)
        )
    model2, _ = _model()
    result = sft.train(model2, tok, data.epoch_batches(_pairs(), 4, 1), cfg, tmp_path / "r")
    assert result.resumed_from == 3 and list(result.checkpoints) == [3, 6]
    state = json.loads((tmp_path / "r" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["optimizer_restored"] is False
    # a finished run has nothing left to do
    again = sft.train(model2, tok, data.epoch_batches(_pairs(), 4, 1), cfg, tmp_path / "r")
    assert again.losses == () and again.resumed_from == 6


def test_a_stop_rule_ends_the_run_with_a_checkpoint_and_resume_keeps_it_ended(tmp_path):
    pairs = _pairs()
    model, tok = _model()
    full = sft.train(model, tok, data.epoch_batches(pairs, 4, 1), _cfg(steps=12), tmp_path / "full")
    asked = []

    def stop_when(step, m):
        asked.append(step)
        return step == 7

    cfg = _cfg(steps=12, save_steps=(3,))
    model2, _ = _model()
    stopped = sft.train(
        model2, tok, data.epoch_batches(pairs, 4, 1), cfg, tmp_path / "s", stop_when=stop_when
    )
    assert asked == list(range(1, 8)) and stopped.losses == full.losses[:7]
    assert list(stopped.checkpoints) == [3, 7]
    state = json.loads((tmp_path / "s" / "checkpoint-7" / "trainer_state.json").read_text())
    assert state["stopped_early"] is True and state["step"] == 7
    again = sft.train(
        _model()[0], tok, data.epoch_batches(pairs, 4, 1), cfg, tmp_path / "s", stop_when=stop_when
    )
    assert again.losses == () and list(again.checkpoints) == [3, 7] and asked == list(range(1, 8))


def test_a_run_killed_before_its_stop_rule_resumes_to_the_same_stop(tmp_path):
    pairs = _pairs()
    cfg = _cfg(steps=12, save_steps=(3,), save_optimizer=True)

    def stop_when(step, m):
        return step == 8

    model, tok = _model()
    whole = sft.train(model, tok, data.epoch_batches(pairs, 4, 1), cfg, tmp_path / "w", stop_when=stop_when)
    with pytest.raises(_Stop):
        sft.train(_model()[0], tok, data.epoch_batches(pairs, 4, 1), cfg, tmp_path / "c",
                  on_step=_interrupt_at(5), stop_when=stop_when)  # fmt: skip
    fresh, _ = _model(seed=99)
    resumed = sft.train(fresh, tok, data.epoch_batches(pairs, 4, 1), cfg, tmp_path / "c", stop_when=stop_when)
    assert list(resumed.checkpoints) == [3, 8] and resumed.losses == whole.losses[3:]
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_existing_checkpoints_without_resume_are_refused_untouched(tmp_path):
    model, tok = _model()
    sft.train(model, tok, data.epoch_batches(_pairs(), 4, 1), _cfg(steps=2), tmp_path / "r")
    before = sorted(p.name for p in (tmp_path / "r").rglob("*"))
    with pytest.raises(TrainError, match="already holds checkpoints.*--resume"):
        sft.train(model, tok, data.epoch_batches(_pairs(), 4, 1), _cfg(steps=4), tmp_path / "r", resume=False)
    assert sorted(p.name for p in (tmp_path / "r").rglob("*")) == before


def test_toy_recipe_on_a_tiny_budget_gives_a_base_and_an_sft_trajectory(tmp_path):
    from transformers import AutoModelForCausalLM

    from wiseft.sampling.base import SamplingParams
    from wiseft.sampling.hf import HFSampler

    recipe = toy.ToyRecipe(
        n_sft=8,
        n_test=16,
        model=SMALL,
        pretrain_steps=4,
        pretrain_batch=16,
        sft_steps=8,
        sft_batch=4,
        sft_halvings=2,
        warmup_steps=1,
        threads=1,
    )
    pre = toy.pretrain(recipe, tmp_path / "pre")
    assert list(pre.checkpoints) == [4]
    run = toy.finetune(recipe, pre.checkpoints[4], tmp_path / "sft")
    assert list(run.checkpoints) == recipe.checkpoint_steps() == [2, 4, 8] and recipe.early_step == 2
    model = AutoModelForCausalLM.from_pretrained(run.checkpoints[8])
    assert type(model).__name__ == "GPT2LMHeadModel"
    sampler = HFSampler.from_pretrained(run.checkpoints[8], device="cpu")
    out = sampler.generate(["12+34="], 2, SamplingParams(max_new_tokens=8, stop=("$",)))
    assert len(out[0]) == 2 and all(set(c.text) <= set(world.ALPHABET) for c in out[0])
    # the base key changes with anything that changes the base, and only with that
    assert recipe.base_key() != toy.ToyRecipe(pretrain_seed=1).base_key()
    assert recipe.base_key() == toy.ToyRecipe(**{**recipe.__dict__, "sft_steps": 100, "n_sft": 5}).base_key()
    assert recipe.base_key() != toy.ToyRecipe(**{**recipe.__dict__, "n_test": 17}).base_key()
    assert recipe.base_key() != toy.ToyRecipe(**{**recipe.__dict__, "micro_batches": 1}).base_key()
    assert recipe.base_key() != toy.ToyRecipe(**{**recipe.__dict__, "micro_split": "length"}).base_key()
    gelu_new = dataclasses.replace(SMALL, activation="gelu_new")
    assert recipe.base_key() != toy.ToyRecipe(**{**recipe.__dict__, "model": gelu_new}).base_key()


def test_chain_probability_is_the_mean_probability_of_writing_each_gold_chain():
    model, tok = _model()
    model.eval()
    pairs = _pairs(3)
    direct = []
    for prompt, completion in pairs:
        ids = tok(prompt)["input_ids"]
        p = 1.0
        for t in tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]:
            with torch.no_grad():
                probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)
            p *= float(probs[t])
            ids = ids + [t]
        direct.append(p)
    assert toy.chain_probability(model, tok, pairs) == pytest.approx(sum(direct) / 3, rel=1e-5)


def test_gate_problems_are_distinct_seeded_and_never_test_problems():
    splits = world.make_splits(5, n_sft=8, n_test=300)
    gate = world.gate_problems(5, 200, exclude=splits.test_keys)
    keys = [p.numbers for p in gate]
    assert len(set(keys)) == 200 and not set(keys) & splits.test_keys
    assert all(len(k) == 4 and all(10 <= x <= 99 for x in k) for k in keys)
    assert gate == world.gate_problems(5, 200, exclude=splits.test_keys)
    assert gate[:50] == world.gate_problems(5, 50, exclude=splits.test_keys)


def test_the_pretraining_gate_ends_pretraining_at_a_check_step(tmp_path):
    recipe = toy.ToyRecipe(n_sft=8, n_test=16, model=SMALL, pretrain_steps=12, pretrain_batch=8,
                           pretrain_gate=1e-300, gate_every=5, n_gate=4, warmup_steps=1, threads=1)  # fmt: skip
    pre = toy.pretrain(recipe, tmp_path / "pre")
    assert list(pre.checkpoints) == [5] and len(pre.losses) == 5  # the first check passes
    never = dataclasses.replace(recipe, pretrain_gate=0.999999)
    assert list(toy.pretrain(never, tmp_path / "never").checkpoints) == [12]
    assert recipe.base_key() != never.base_key() != dataclasses.replace(recipe, pretrain_gate=0).base_key()
    with pytest.raises(ConfigError, match="pretraining gate must lie in"):
        dataclasses.replace(recipe, pretrain_gate=1.0)


def _second_attempt_gate(recipe, tok):
    """A gate that passes only once pretraining has started again (its step count went back down): the
    stand-in for a first initialisation stuck on its plateau."""
    seen = []

    def stop_when(step, model):
        restarted = bool(seen) and step < seen[-1]
        seen.append(step if not restarted else -1)
        return -1 in seen and step % recipe.gate_every == 0

    return stop_when


def test_a_stuck_pretraining_starts_again_from_a_fresh_seed_and_a_passing_one_never_does(
    tmp_path, monkeypatch
):
    recipe = toy.ToyRecipe(n_sft=8, n_test=16, model=SMALL, pretrain_steps=10, pretrain_batch=8,
                           pretrain_gate=1e-300, gate_every=5, n_gate=4, warmup_steps=1, threads=1,
                           pretrain_attempts=3)  # fmt: skip
    one = dataclasses.replace(recipe, pretrain_attempts=1)
    # passing on the first attempt: the same bytes as without the rule, and no restart
    first = toy.build_base(recipe, tmp_path / "first")
    plain = toy.build_base(one, tmp_path / "plain")
    assert (first / "model.safetensors").read_bytes() == (plain / "model.safetensors").read_bytes()
    assert toy.describe_base(recipe, first)["attempt"] == 1
    assert recipe.base_key() != one.base_key()
    # stuck on the first: attempt 2 starts from attempt_seed(seed, 2) and its base is kept
    monkeypatch.setattr(toy, "pretraining_gate", _second_attempt_gate)
    steps = []
    base = toy.build_base(recipe, tmp_path / "restarted", on_step=lambda p: steps.append(p.step))
    assert steps == list(range(1, 16))  # 10 steps of attempt 1, then attempt 2's first 5, numbered on
    info = toy.describe_base(recipe, base)
    assert info["attempt"] == 2 and info["pretrain_steps"] == 5 and info["stopped_at_gate"]
    seed2 = toy.attempt_seed(recipe.pretrain_seed, 2)
    assert seed2 not in (recipe.pretrain_seed, toy.attempt_seed(recipe.pretrain_seed, 3))
    again = toy.pretrain(dataclasses.replace(one, pretrain_seed=seed2, pretrain_steps=5), tmp_path / "direct")
    direct = again.checkpoints[max(again.checkpoints)] / "model.safetensors"
    assert (base / "model.safetensors").read_bytes() == direct.read_bytes()
    # stuck on every attempt: the last attempt's model, marked as not having passed the gate
    monkeypatch.setattr(toy, "pretraining_gate", lambda r, t: lambda step, model: False)
    never = toy.describe_base(recipe, toy.build_base(recipe, tmp_path / "never"))
    assert never["attempt"] == 3 and never["pretrain_steps"] == 10 and not never["stopped_at_gate"]
    with pytest.raises(ConfigError, match="pretrain_attempts"):
        dataclasses.replace(recipe, pretrain_attempts=0)
    ungated = dataclasses.replace(recipe, pretrain_gate=0)  # no gate: nothing decides a restart
    assert ungated.base_key() == dataclasses.replace(ungated, pretrain_attempts=1).base_key()


@pytest.mark.parametrize("steps, halvings", [(600, 5), (640, 0), (8, 4)])
def test_toy_recipe_refuses_checkpoints_that_do_not_halve_evenly(steps, halvings):
    with pytest.raises(ConfigError, match="multiple of 2\\^sft_halvings"):
        toy.ToyRecipe(sft_steps=steps, sft_halvings=halvings)


# ------------------------------------------------------------------------------------------------- CLI


def _cli_model(tmp_path, arch="llama"):
    """Any causal LM: the shared tiny test checkpoints (Llama, Qwen2), not the toy model."""
    from wiseft.testing import save_tiny_model

    save_tiny_model(tmp_path / "m", arch=arch)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in _pairs(8)))
    return tmp_path / "m", data


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_cli_train_sft_writes_the_schedule_and_refuses_to_overwrite(tmp_path, capsys, arch):
    from transformers import AutoModelForCausalLM

    model_dir, data = _cli_model(tmp_path, arch)
    out = tmp_path / "run"
    args = ["train", "sft", "--model", str(model_dir), "--data", str(data), "-o", str(out)]
    args += [
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--save-steps",
        "1,3",
        "--threads",
        "1",
        "--warmup-steps",
        "1",
    ]
    assert main(args) == 0
    assert list(find_checkpoints(out, strict=False)) == [1, 3, 4]
    assert (out / "train_config.yaml").is_file()
    assert AutoModelForCausalLM.from_pretrained(out / "checkpoint-4").config.model_type == arch
    assert main(args) == 2
    assert "already holds checkpoints; pass --resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--save-steps", "2,x"], "--save-steps must be comma-separated integers"),
        (["--save-steps", "9"], "--save-steps [9] lie outside 1..4"),
        (["--prompt-field", "question"], "field 'question' is missing"),
    ],
)
def test_cli_train_sft_bad_input_writes_nothing(tmp_path, capsys, extra, message):
    model_dir, data = _cli_model(tmp_path)
    out = tmp_path / "run"
    args = ["train", "sft", "--model", str(model_dir), "--data", str(data), "-o", str(out), "--steps", "4"]
    assert main(args + extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_train_sft_needs_a_model_directory(tmp_path, capsys):
    _, data = _cli_model(tmp_path)
    assert (
        main(["train", "sft", "--model", str(tmp_path), "--data", str(data), "-o", str(tmp_path / "o")]) == 2
    )
    assert "is not a Hugging Face model directory (no config.json)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_toy_base_then_sft_on_its_data(tmp_path):
    out = tmp_path / "toy"
    args = ["train", "toy-base", "-o", str(out), "--steps", "2", "--batch-size", "8", "--n-sft", "4"]
    assert main(args + ["--n-test", "8", "--threads", "1"]) == 0
    assert (out / "base" / "model.safetensors").is_file()
    rows = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(world.extract_answer(r["completion"]) == r["answer"] for r in rows)
    assert len((out / "test.jsonl").read_text().splitlines()) == 8
    run = tmp_path / "run"
    sft_args = [
        "train",
        "sft",
        "--model",
        str(out / "base"),
        "--data",
        str(out / "sft.jsonl"),
        "-o",
        str(run),
    ]
    assert (
        main(sft_args + ["--steps", "2", "--batch-size", "2", "--warmup-steps", "1", "--threads", "1"]) == 0
    )
    assert list(find_checkpoints(run, strict=False)) == [2]
    assert main(args + ["--n-test", "8"]) == 2  # exists, no --force


def test_cli_toy_base_refuses_a_gate_outside_its_range_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "toy"
    assert main(["train", "toy-base", "-o", str(out), "--steps", "2", "--gate", "1.5"]) == 2
    assert "pretraining gate must lie in [0, 1)" in capsys.readouterr().err
    assert not out.exists()


def test_chain_probability_is_the_same_bits_for_any_thread_count():
    """The chains are scored in fixed parts, one thread each: one or two threads give the same float."""
    model, tok = _model()
    model.eval()
    pairs = _pairs(9)
    before = torch.get_num_threads()
    try:
        values = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            values.append(toy.chain_probability(model, tok, pairs))
            assert torch.get_num_threads() == threads  # restored
    finally:
        torch.set_num_threads(before)
    assert values[0] == values[1]


def test_the_toy_recipe_keeps_the_base_key_and_the_split_of_its_validated_rounds():
    """Round 11b's recipe (validated on 10 runs) is the default: round 9's pretraining (equal-row
    micro-batches, the tanh GELU, 700 test problems, up to 3 attempts of 1,600 steps) on a two-layer model,
    SFT batches of 16; the base keys are the ones their cached bases carry (docs/TOY-LOG.md: round 8
    measured the alternatives, round 11 the depth)."""
    recipe = toy.ToyRecipe()
    assert recipe.micro_split == "rows" and recipe.pretrain_config().micro_split == "rows"
    assert recipe.sft_config().micro_split == "rows" and recipe.model.activation == "gelu_pytorch_tanh"
    assert (recipe.n_test, recipe.pretrain_steps, recipe.pretrain_attempts) == (700, 1600, 3)
    assert (recipe.model.layers, recipe.sft_batch, recipe.sft_config().batch_size) == (2, 16, 16)
    assert recipe.pretrain_ceiling == 4800  # what the progress bars count to
    assert recipe.base_key() == "733df3cb38f1"
    # round 10's three-layer base (the thinking demo's) keeps its key, so its bases stay where they were cached
    round10 = dataclasses.replace(recipe, model=toy.ToyModelConfig(), sft_batch=32)
    assert round10.base_key() == "691eb1291c01"
    # round 6's recipe keeps its key, so its bases stay where they were cached
    round6 = dataclasses.replace(round10, n_test=400, pretrain_steps=2400, pretrain_attempts=1)
    assert round6.base_key() == "8d0955d993d3"

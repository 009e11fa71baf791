"""The toy world: reversed-digit sums, running partial sums, seeded disjoint splits, sloppy text."""

import random

import pytest

from wiseft.errors import ConfigError
from wiseft.tasks import toy as world
from wiseft.train import toy


def test_reversal_and_partial_sums_match_the_documented_example():
    # docs/TOY.md: `32+85+19+71=` means 23+58+91+17, completion `18,271,981$` (81, 172, 189).
    nums = (23, 58, 91, 17)
    assert world.prompt_text(nums) == "32+85+19+71="
    assert world.partial_sums(nums) == [81, 172, 189]
    assert world.completion_text(world.partial_sums(nums)) == "18,271,981$"
    assert world.parse_prompt("32+85+19+71=") == list(nums)
    p = world.ToyProblem("x", nums)
    assert (p.prompt, p.completion, p.answer) == ("32+85+19+71=", "18,271,981$", "189")


def test_reversal_round_trips_on_every_number_up_to_ten_thousand():
    for n in range(10_000):
        assert world.unrev(world.rev(n)) == n
        assert world.rev(n) == "".join(reversed(str(n)))
    with pytest.raises(ValueError, match="non-negative"):
        world.rev(-1)


def test_partial_sums_against_brute_force():
    rng = random.Random(1)
    for _ in range(200):
        nums = [rng.randint(1, 99) for _ in range(rng.randint(2, 6))]
        sums = world.partial_sums(nums)
        assert sums == [sum(nums[: i + 1]) for i in range(1, len(nums))]
        assert sums[-1] == sum(nums)


@pytest.mark.parametrize(
    "completion, answer",
    [
        ("18,271,981$", "189"),
        ("18,271,981", "189"),  # never wrote the end marker: still the last field
        ("18,271,981$junk,5", "189"),  # text after the end marker is ignored
        ("04$", "40"),  # reversed with a leading zero digit
        ("", None),
        ("$", None),
        ("18,271,$", None),
        ("18,2+1$", None),
    ],
)
def test_extract_answer_reads_the_last_partial_sum_unreversed(completion, answer):
    assert world.extract_answer(completion) == answer


@pytest.mark.parametrize(
    "completion, labels",
    [
        ("18,271,981", "1111111111"),  # 23+58 = 81, 81+91 = 172, 172+17 = 189: every step right
        ("18,271,981$", "11111111111"),  # the end marker after the last sum due is right
        ("18,281,991", "1111010111"),  # 182 is wrong (its 8 and its comma), but 199 = 182+17 is right
        ("19,281,991", "1001111111"),  # 91 is wrong (the 9 and the comma closing it); 91+91 = 182 right
        ("18,271,982", "1111111110"),  # the last digit of the answer
        ("18,271", "111111"),  # cut short: every step written is right (the outcome says the rest)
        ("18,271$", "1111110"),  # the end marker before the last sum
        ("18,271,981,1", "111111111100"),  # a sum past the last one due, and its comma
        ("18,,981", "1110111"),  # an empty sum: its comma is wrong, the next step checked from 172
        ("1+,271,981", "1001111111"),  # a character that is neither a digit nor a comma
        ("18,2719", "1111110"),  # a digit past the sum's length
        ("18,271,981$5", "111111111110"),  # after the end marker everything is wrong
        ("", ""),
    ],
)
def test_step_labels_check_each_step_against_the_completions_own_previous_sum(completion, labels):
    got = world.step_labels((23, 58, 91, 17), completion)
    assert "".join(map(str, got)) == labels and len(got) == len(completion)


def test_step_labels_are_all_right_exactly_on_the_gold_chain():
    rng = random.Random(2)
    for _ in range(200):
        nums = [rng.randint(1, 99) for _ in range(rng.randint(2, 5))]
        gold = world.completion_text(world.partial_sums(nums))
        assert all(world.step_labels(nums, gold))
        slipped = gold.replace(gold[0], str((int(gold[0]) + 1) % 10), 1)
        assert not all(world.step_labels(nums, slipped))


def test_splits_are_seeded_disjoint_and_sized():
    a = world.make_splits(5, n_sft=32, n_test=400)
    b = world.make_splits(5, n_sft=32, n_test=400)
    c = world.make_splits(6, n_sft=32, n_test=400)
    assert a == b
    assert a.test != c.test
    assert len(a.sft) == 32 and len(a.test) == 400
    sft_keys = {p.numbers for p in a.sft}
    assert len(sft_keys) == 32 and len(a.test_keys) == 400
    assert not sft_keys & a.test_keys
    for p in a.sft + a.test:
        assert len(p.numbers) == 4 and all(10 <= x <= 99 for x in p.numbers)
        assert int(p.answer) == sum(p.numbers)
        assert world.extract_answer(p.completion) == p.answer
    assert len({p.id for p in a.sft + a.test}) == 432


def test_splits_reject_impossible_sizes():
    with pytest.raises(ConfigError, match="only 100 exist"):
        world.make_splits(0, n_sft=30, n_test=30, n_numbers=2, lo=1, hi=10)
    with pytest.raises(ConfigError, match="non-negative"):
        world.make_splits(0, n_sft=-1)


def test_sloppy_text_is_seeded_slips_carry_forward_and_test_problems_are_excluded():
    cfg = world.SloppyConfig()
    batch_at = world.sloppy_batches(3, 64, cfg)
    assert batch_at(7) == world.sloppy_batches(3, 64, cfg)(7)
    assert batch_at(7) != batch_at(8)
    slipped, steps = 0, 0
    for step in range(1, 40):
        for prompt, completion in batch_at(step):
            nums = world.parse_prompt(prompt)
            assert 2 <= len(nums) <= 4 and all(1 <= x <= 99 for x in nums)
            assert completion.endswith("$")
            written = [world.unrev(s) for s in completion[:-1].split(",")]
            assert len(written) == len(nums) - 1
            prev = nums[0]
            for x, w in zip(nums[1:], written, strict=True):
                # each written sum is the previous *written* sum plus the number, up to one slip
                assert w - (prev + x) in (0, *world.SLIPS)
                slipped += w != prev + x
                steps += 1
                prev = w
    assert 0.25 < slipped / steps < 0.35  # 30% slip rate

    # Exclusion: a problem in `exclude` is never emitted.
    small = world.SloppyConfig(min_numbers=2, max_numbers=2, lo=1, hi=3)
    exclude = {(1, 1), (2, 3)}
    seen = {
        tuple(world.parse_prompt(p))
        for s in range(1, 30)
        for p, _ in world.sloppy_batches(0, 32, small, exclude)(s)
    }
    assert seen and not seen & exclude


def test_clean_sloppy_config_writes_exact_sums():
    cfg = world.SloppyConfig(slip_prob=0.0)
    for prompt, completion in world.sloppy_batches(0, 100, cfg)(1):
        nums = world.parse_prompt(prompt)
        assert completion == world.completion_text(world.partial_sums(nums))


def test_tokenizer_round_trips_every_toy_string(tmp_path):
    from transformers import AutoTokenizer

    tok = toy.toy_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    split = world.make_splits(1, n_sft=8, n_test=8)
    for p in split.sft + split.test:
        text = p.prompt + p.completion
        ids = loaded(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text)  # one token per character
        assert loaded.decode(ids) == text
        assert ids == tok(text, add_special_tokens=False)["input_ids"]
    assert len(tok) == 4 + len(world.ALPHABET)


@pytest.mark.parametrize("arch, cls", [("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM")])
def test_toy_model_is_a_standard_hf_model_of_about_0_6m_parameters(arch, cls):
    tok = toy.toy_tokenizer()
    cfg = toy.ToyModelConfig(arch=arch, intermediate=512 if arch == "gpt2" else 352)
    model = toy.toy_model(cfg, tok, seed=0)
    assert type(model).__name__ == cls
    n = sum(p.numel() for p in model.parameters())
    assert 550_000 < n < 650_000
    again = toy.toy_model(cfg, tok, seed=0)
    assert all((a == b).all() for a, b in zip(model.parameters(), again.parameters(), strict=True))
    dollar = tok.convert_tokens_to_ids("$")
    assert model.generation_config.eos_token_id == [tok.eos_token_id, dollar]
    with pytest.raises(ConfigError, match="arch must be"):
        toy.ToyModelConfig(arch="rnn")

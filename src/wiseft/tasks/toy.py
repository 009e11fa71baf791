"""The toy world's task: summing a list of numbers with a written chain of thought.

A problem is a list of numbers written least-significant digit first, e.g. ``32+85+19+71=`` means
23+58+91+17. The completion is the running partial sums (from the second number on), also reversed and
comma-separated, ending with the end marker ``$``: ``18,271,981$`` (81, 172, 189). The answer is the last
partial sum. Reversed digits let a tiny model add left to right, the way it writes.

Two kinds of data come out of this module:
- *sloppy* pretraining text: fresh random problems whose partial sums slip now and then (±1, ±2 or ±10),
  the slip carrying forward like a careless solver's. It gives a broad, diverse, imperfect base model.
- *clean* problems for SFT and test, from a seeded generator, with the test problems disjoint from the SFT
  ones and filtered out of pretraining.

As a task of the registry (`get_task("toy", seed=5, split="test")`, or `--data test.jsonl` as written by
`wiseft train toy-base`): the prompt is the problem text itself, the grader is exact integer comparison
("int"), generation stops at the end marker ``$``, and the answer is read by the task's own extractor (the
last partial sum, un-reversed), since the generic rules would read the digits backwards. The model and
the two training stages that use this data live in `wiseft.train.toy`.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from wiseft.atomic import atomic_write_text
from wiseft.errors import ConfigError, TaskError
from wiseft.jsonl import iter_objects
from wiseft.tasks.base import Problem, Task, register_task

# The problems of the demo's recipe (`wiseft.train.toy.ToyRecipe` uses these defaults too).
DATA_SEED = 5
N_SFT = 48  # docs/TOY-LOG.md round 6
N_TEST = 700  # round 9: 600 claims problems and 100 that choose the mix
SPLITS = ("test", "sft")

ALPHABET = "0123456789+=,$"
END = "$"
SEP = ","


def rev(n: int) -> str:
    """The decimal digits of a non-negative integer, least significant first: 172 -> '271'."""
    if n < 0:
        raise ValueError(f"toy numbers are non-negative, got {n}")
    return str(n)[::-1]


def unrev(text: str) -> int:
    """Inverse of `rev`: '271' -> 172."""
    if not text or not text.isdigit():
        raise ValueError(f"not a reversed number: {text!r}")
    return int(text[::-1])


def partial_sums(numbers: Sequence[int]) -> list[int]:
    """Running sums from the second number on: [23, 58, 91, 17] -> [81, 172, 189]."""
    if len(numbers) < 2:
        raise ValueError("a toy problem has at least two numbers")
    out, acc = [], numbers[0]
    for x in numbers[1:]:
        acc += x
        out.append(acc)
    return out


def prompt_text(numbers: Sequence[int]) -> str:
    """'32+85+19+71=' for [23, 58, 91, 17]."""
    return "+".join(rev(x) for x in numbers) + "="


def completion_text(sums: Sequence[int]) -> str:
    """'18,271,981$' for [81, 172, 189]."""
    return SEP.join(rev(s) for s in sums) + END


def parse_prompt(prompt: str) -> list[int]:
    """Inverse of `prompt_text` (used to filter test problems out of pretraining text)."""
    body = prompt[:-1] if prompt.endswith("=") else prompt
    return [unrev(part) for part in body.split("+")]


def extract_answer(completion: str) -> str | None:
    """The final answer of a completion, in ordinary digit order, or None when there is none.

    Reads up to the end marker (or the whole text when the model never wrote it), takes the last
    comma-separated field, and un-reverses it. '18,271,981$' -> '189'.
    """
    text = completion.split(END, 1)[0].strip()
    if not text:
        return None
    last = text.split(SEP)[-1].strip()
    if not last.isdigit():
        return None
    return str(unrev(last))


def step_labels(numbers: Sequence[int], completion: str) -> tuple[int, ...]:
    """One label per character of `completion`: 1 where the character is what a correct step writes
    *given the completion's own previous partial sum*, 0 where it is not (a process label that checks each
    step locally, not against the reference chain).

    Partial sum i (0-based) should be the previous partial sum as written (the first number for i = 0)
    plus number i + 1; its j-th reversed digit is right when it is that sum's j-th reversed digit, the comma
    after it when the sum is complete and another one is due. A character past the last sum due, or one
    that is neither a digit nor a comma, is wrong. After an unreadable sum (e.g. empty) the next step is
    checked from the correct running sum. The end marker, when present, is right once the last sum due is
    complete. `step_labels([23, 58, 91], "18,271")` → all 1; `"18,281"`: the 8 of 281 is 0;
    `"19,281"`: the 9 of 19 and the comma closing 19 are 0, but 281 is right given 19 (91 + 91 = 182).
    """
    if len(numbers) < 2:
        raise ValueError("a toy problem has at least two numbers")
    labels: list[int] = []
    i, body, ended = 0, "", False  # the sum being written, its characters so far, the end marker seen
    prev = truth = numbers[0]  # the previous sum as written (when readable) and the correct one
    want = rev(prev + numbers[1])
    for ch in completion:
        due = i < len(numbers) - 1
        if ended or ch not in "0123456789" + SEP + END:
            labels.append(0)
            body += "" if ended else ch
        elif ch.isdigit():
            labels.append(int(due and len(body) < len(want) and ch == want[len(body)]))
            body += ch
        else:  # a comma or the end marker closes sum i
            more = i + 1 < len(numbers) - 1
            labels.append(int(due and body == want and (more if ch == SEP else not more)))
            ended = ch == END
            truth += numbers[i + 1] if due else 0
            prev = int(body[::-1]) if body.isdigit() else truth
            i, body = i + 1, ""
            want = rev(prev + numbers[i + 1]) if i < len(numbers) - 1 else ""
    return tuple(labels)


@dataclasses.dataclass(frozen=True)
class ToyProblem:
    """One clean problem: its numbers (ordinary order), prompt, gold completion and gold answer."""

    id: str
    numbers: tuple[int, ...]

    @property
    def prompt(self) -> str:
        return prompt_text(self.numbers)

    @property
    def completion(self) -> str:
        return completion_text(partial_sums(self.numbers))

    @property
    def answer(self) -> str:
        return str(sum(self.numbers))


@dataclasses.dataclass(frozen=True)
class ToySplits:
    """The SFT problems and the held-out test problems; disjoint by construction."""

    sft: tuple[ToyProblem, ...]
    test: tuple[ToyProblem, ...]
    seed: int

    @property
    def test_keys(self) -> frozenset[tuple[int, ...]]:
        return frozenset(p.numbers for p in self.test)


def make_splits(
    seed: int, n_sft: int = N_SFT, n_test: int = N_TEST, n_numbers: int = 4, lo: int = 10, hi: int = 99
):
    """Draw `n_test` test problems, then `n_sft` SFT problems not among them; all numbers distinct tuples.

    Four two-digit numbers by default (answers 40..396, so guessing is negligible even at k = 32).
    """
    if n_sft < 0 or n_test < 0:
        raise ConfigError(f"toy split sizes must be non-negative (n_sft={n_sft}, n_test={n_test})")
    if not 1 <= lo <= hi:
        raise ConfigError(f"toy numbers need 1 <= lo <= hi, got lo={lo}, hi={hi}")
    space = (hi - lo + 1) ** n_numbers
    if n_sft + n_test > space // 2:
        raise ConfigError(
            f"asked for {n_sft + n_test} distinct toy problems but only {space} exist with "
            f"{n_numbers} numbers in {lo}..{hi}; lower --n-sft/--n-test"
        )
    rng = random.Random(f"toy-splits-{seed}")
    seen: set[tuple[int, ...]] = set()
    drawn: list[tuple[int, ...]] = []
    while len(drawn) < n_test + n_sft:
        nums = tuple(rng.randint(lo, hi) for _ in range(n_numbers))
        if nums in seen:
            continue
        seen.add(nums)
        drawn.append(nums)
    test = tuple(ToyProblem(f"toy-{seed}-test-{i:04d}", nums) for i, nums in enumerate(drawn[:n_test]))
    sft = tuple(ToyProblem(f"toy-{seed}-sft-{i:04d}", nums) for i, nums in enumerate(drawn[n_test:]))
    return ToySplits(sft=sft, test=test, seed=seed)


def gate_problems(seed: int, n_gate: int, exclude: Iterable[tuple[int, ...]]) -> tuple[ToyProblem, ...]:
    """`n_gate` distinct clean problems of the test problems' shape from their own seeded stream, none in
    `exclude` (the test problems): what the toy recipe's pretraining checks its base on."""
    excluded, seen, drawn = frozenset(exclude), set(), []
    rng = random.Random(f"toy-gate-{seed}")
    while len(drawn) < n_gate:
        nums = tuple(rng.randint(10, 99) for _ in range(4))
        if nums not in excluded and nums not in seen:
            seen.add(nums)
            drawn.append(ToyProblem(f"toy-{seed}-gate-{len(drawn):04d}", nums))
    return tuple(drawn)


SLIPS = (-10, -2, -1, 1, 2, 10)


@dataclasses.dataclass(frozen=True)
class SloppyConfig:
    """How pretraining text is drawn: 2-4 numbers in 1..99, each partial sum slipping with `slip_prob`."""

    min_numbers: int = 2
    max_numbers: int = 4
    lo: int = 1
    hi: int = 99
    slip_prob: float = 0.3


def sloppy_example(
    rng: random.Random, cfg: SloppyConfig, exclude: frozenset = frozenset()
) -> tuple[str, str]:
    """One (prompt, completion) pair of pretraining text; problems in `exclude` are redrawn.

    A slip changes the running sum by one of ±1, ±2, ±10 and the error carries into later sums, as when a
    person miscarries a digit. Slips that would make a sum negative are not drawn.
    """
    while True:
        count = rng.randint(cfg.min_numbers, cfg.max_numbers)
        nums = tuple(rng.randint(cfg.lo, cfg.hi) for _ in range(count))
        if nums not in exclude:
            break
    sums, acc = [], nums[0]
    for x in nums[1:]:
        acc += x
        if rng.random() < cfg.slip_prob:
            acc += rng.choice([s for s in SLIPS if acc + s >= 0])
        sums.append(acc)
    return prompt_text(nums), completion_text(sums)


def sloppy_batches(seed: int, batch_size: int, cfg: SloppyConfig, exclude: Iterable[tuple[int, ...]] = ()):
    """Batch source for pretraining: `batch_at(step)` is a fresh batch of sloppy pairs fixed by (seed, step).

    Fixing each batch by its step (not by a running stream) makes an interrupted run resume exactly.
    """
    excluded = frozenset(tuple(x) for x in exclude)

    def batch_at(step: int) -> list[tuple[str, str]]:
        rng = random.Random(f"toy-pretrain-{seed}-{step}")
        return [sloppy_example(rng, cfg, excluded) for _ in range(batch_size)]

    return batch_at


def sft_pairs(splits: ToySplits) -> list[tuple[str, str]]:
    return [(p.prompt, p.completion) for p in splits.sft]


def write_split_jsonl(splits: ToySplits, directory) -> dict[str, str]:
    """Write `sft.jsonl` and `test.jsonl` (id, prompt, completion, answer per line) into `directory`."""
    paths = {}
    for name, problems in (("sft", splits.sft), ("test", splits.test)):
        lines = [
            json.dumps({"id": p.id, "prompt": p.prompt, "completion": p.completion, "answer": p.answer})
            for p in problems
        ]
        path = Path(directory) / f"{name}.jsonl"
        atomic_write_text(path, "\n".join(lines) + "\n")
        paths[name] = str(path)
    return paths


def task_answer(completion: str) -> tuple[str, str] | None:
    """(answer, rule) for the grader: the last partial sum of the completion, in ordinary digit order."""
    answer = extract_answer(completion)
    return None if answer is None else (answer, "toy-last-partial-sum")


def problems_of(splits: ToySplits, which: str = "test") -> list[Problem]:
    if which not in SPLITS:
        raise TaskError(f"toy task: split must be one of {', '.join(SPLITS)}, got {which!r}")
    source = splits.test if which == "test" else splits.sft
    return [
        Problem(id=p.id, question=p.prompt, gold=p.answer,
                meta={"numbers": list(p.numbers), "completion": p.completion})
        for p in source
    ]  # fmt: skip


def problems_from_jsonl(path: str | Path) -> list[Problem]:
    """Problems from a JSONL file as `write_split_jsonl` writes it (`id`, `prompt`, `answer` per line)."""
    out = []
    for where, row in iter_objects(path, TaskError):
        if not all(isinstance(row.get(k), str) for k in ("id", "prompt", "answer")):
            raise TaskError(f"{where}: a toy problem needs string fields 'id', 'prompt' and 'answer'")
        out.append(Problem(id=row["id"], question=row["prompt"], gold=row["answer"],
                           meta={"completion": row.get("completion")}))  # fmt: skip
    return out


@register_task("toy")
def make_toy_task(
    data=None, seed: int = DATA_SEED, n_sft: int = N_SFT, n_test: int = N_TEST, split: str = "test", **options
) -> Task:
    """The toy task: generated from (`seed`, `n_sft`, `n_test`) and cut to `split` (the demo's problems by
    default), or read from `data`: a JSONL file written by `wiseft train toy-base`, or a data directory
    holding `toy/<split>.jsonl` (a data directory without one, such as the one of the other tasks, leaves
    the problems generated)."""
    if options:
        raise TaskError(
            f"toy task: unknown option(s) {', '.join(sorted(options))}; known: seed, n_sft, n_test, split"
        )
    if data is not None and Path(data).is_dir():
        data = (
            Path(data) / "toy" / f"{split}.jsonl"
            if (Path(data) / "toy" / f"{split}.jsonl").is_file()
            else None
        )
    if data is not None:
        problems, source = problems_from_jsonl(data), f"toy problems from {data}"
    else:
        splits = make_splits(int(seed), n_sft=int(n_sft), n_test=int(n_test))
        problems = problems_of(splits, split)
        source = f"toy generator (seed {seed}, {n_sft} SFT / {n_test} test problems)"
    return Task(
        name="toy",
        problems=problems,
        grader_kind="int",
        stop=(END,),
        template="{question}",
        instruction="",
        extract_answer=task_answer,
        source=source,
        options={"seed": int(seed), "n_sft": int(n_sft), "n_test": int(n_test), "split": split},
    )

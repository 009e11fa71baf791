"""A scripted metric for greedy-soup tests, served through the real evaluation path.

`SoupOracle` is a sampler (built by a `sampler_factory` from the engine's live model) that recognises which
soup the weight space wrote into the model (the uniform average of which candidates, from a probe of the
embedding matrix) and answers the toy task's first `table[soup]` validation problems correctly and the
rest wrongly. A soup the table does not hold is an error, so a test also checks that only the soups the
recipe should try are evaluated. `fail_at` makes the call with that index (0-based) raise, to interrupt a
run.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch

from wiseft.checkpoints import Checkpoint
from wiseft.sampling import Completion
from wiseft.tasks.toy import completion_text, parse_prompt, partial_sums

PROBE = "model.embed_tokens.weight"
PROBE_SIZE = 64

# Four candidates (0..3) and validation pass@1 × 10 of each soup the greedy recipe tries, by hand:
# alone A=4, B=7, C=7, D=2 → order B, C, A, D (B before C: a tie keeps the order given);
# {B,C} 6 < 7: C left out; {A,B} 7 = 7: A kept (a tie keeps); {A,B,D} 8 ≥ 7: D kept → soup {A,B,D}, 0.8.
TABLE = {(0,): 4, (1,): 7, (2,): 7, (3,): 2, (1, 2): 6, (0, 1): 7, (0, 1, 3): 8}
EXPECTED = {
    "order": (1, 2, 0, 3),
    "steps": [(2, (1, 2), 0.6, 0.7, False), (0, (0, 1), 0.7, 0.7, True), (3, (0, 1, 3), 0.8, 0.7, True)],
    "kept": (0, 1, 3),
    "final": 0.8,
}


class SoupOracle:
    def __init__(self, model, candidates: Sequence[str], table: Mapping[tuple[int, ...], int],
                 ranked: Sequence[str], fail_at: int | None = None):  # fmt: skip
        self.model = model
        self.table = dict(table)
        self.ranked = {prompt: i for i, prompt in enumerate(ranked)}
        self.fail_at = fail_at
        self.calls = 0
        self.prompts: list[str] = []
        self.soups: list[tuple[int, ...]] = []  # the soup of each call
        probes = [Checkpoint.open(c).load(PROBE).reshape(-1)[:PROBE_SIZE].double() for c in candidates]
        self.means = {
            soup: torch.stack([probes[i] for i in soup]).mean(0)
            for r in range(1, len(candidates) + 1)
            for soup in itertools.combinations(range(len(candidates)), r)
        }

    def soup(self) -> tuple[int, ...]:
        """The candidates whose uniform average the model holds."""
        live = dict(self.model.named_parameters())[PROBE].detach().reshape(-1)[:PROBE_SIZE].double()
        found = [s for s, mean in self.means.items() if torch.allclose(live, mean, rtol=0, atol=1e-6)]
        assert len(found) == 1, f"the model holds no single soup of the candidates ({found})"
        return found[0]

    def generate(self, prompts, n, params):
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("interrupted by the test")
        self.calls += 1
        soup = self.soup()
        assert soup in self.table, f"the greedy recipe should not try the soup {soup}"
        self.soups.append(soup)
        self.prompts.extend(prompts)
        out = []
        for prompt in prompts:
            right = self.ranked[prompt] < self.table[soup]
            text = completion_text(partial_sums(parse_prompt(prompt))) if right else "0$"
            out.append([Completion(text[:-1], len(text), "stop") for _ in range(n)])
        return out

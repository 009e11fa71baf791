"""A scripted engine for tests and the scheduling benchmark: no model, known answers, a cost per token.

`ScriptedEngine(script, per_token)` is a picklable actor-side factory (`ActorSetup -> Engine`) that can
also be called in this process (`ScriptedEngine(...)(None)`) to get the same engine locally. Its sampler
answers sample i of a prompt with `script(variant, prompt, i, params)` (through
`sampling.fake.ScriptedSampler`, which applies stop strings and the length limit as a real backend would)
and then sleeps `per_token` seconds per generated token, like an engine with a fixed cost per token. Its
weight source only records which variant it holds (`materialise`), so the text shows whether a unit was
sampled under the right variant.

`uneven_answer` is a script whose answers vary in length from problem to problem (a fixed function of the
variant, prompt and sample index): some chunks take far longer than others.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from wiseft.evaluate.engine import Engine
from wiseft.evaluate.plan import VariantSpec
from wiseft.sampling import Completion, SamplingParams
from wiseft.sampling.fake import ScriptedSampler


def uneven_answer(variant: str, prompt: str, i: int, params: SamplingParams) -> str:
    """A deterministic answer of 4 to ~100 characters; one prompt in eight gets a long one."""
    h = int.from_bytes(hashlib.sha256(f"{variant}\x00{prompt}\x00{i}".encode()).digest()[:8], "little")
    long = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:1], "little") % 8 == 0
    size = 4 + h % (96 if long else 12)
    return f"{variant}#{i}:" + "x" * size + f" The answer is {h % 10}."


class VariantWeights:
    """A weight source that only remembers the variant it was asked for."""

    def __init__(self) -> None:
        self.current = ""
        self.switches = 0

    def materialise(self, spec: VariantSpec) -> None:
        self.current = spec.name
        self.switches += 1

    def fingerprints(self, spec: VariantSpec) -> dict[str, str]:
        return {}


class PacedSampler:
    """`ScriptedSampler` answers, delivered after `per_token` seconds per generated token."""

    def __init__(self, inner: ScriptedSampler, per_token: float):
        self.inner = inner
        self.per_token = per_token

    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> list[list[Completion]]:
        out = self.inner.generate(prompts, n, params)
        if self.per_token:
            time.sleep(self.per_token * sum(c.n_tokens for row in out for c in row))
        return out


@dataclass(frozen=True)
class ScriptedEngine:
    """An actor-side factory: `script(variant, prompt, i, params)` answers, `per_token` seconds a token."""

    script: object = uneven_answer
    per_token: float = 0.0

    def __call__(self, setup=None) -> Engine:
        weights = VariantWeights()
        script = self.script

        def answer(prompt: str, i: int, params: SamplingParams) -> str:
            return script(weights.current, prompt, i, params)  # type: ignore[operator]

        return Engine(PacedSampler(ScriptedSampler(answer), self.per_token), weights, tokenizer=None)

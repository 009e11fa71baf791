"""The sampler seam: what every backend takes and returns.

A sampler turns prompts into `n` completions each. It knows nothing about tasks, grading or the store;
the sweep gives it prompt strings and stores what comes back. Backends: `hf.HFSampler` (transformers, CPU
and CUDA) and `fake.ScriptedSampler` (scripted text, for tests of everything downstream).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from wiseft.errors import SamplingError

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. `temperature=0` is greedy; `top_k=0` and `top_p=1` switch those filters off.

    `stop` strings end a completion (the text is cut before the stop string, as an end-of-sequence token
    would be); `max_new_tokens` ends it otherwise (finish reason "length"). `seed` fixes the random
    stream: the same seed, prompt and device give the same completions.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise SamplingError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise SamplingError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise SamplingError(f"top_k must be >= 0 (0 switches it off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise SamplingError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if isinstance(self.stop, str):  # a bare string would be read as a tuple of characters
            object.__setattr__(self, "stop", (self.stop,))
        if any(not s for s in self.stop):
            raise SamplingError(f"stop strings must be non-empty, got {self.stop!r}")


@dataclass(frozen=True)
class Completion:
    """One generated continuation: its text (prompt and stop string excluded), how many tokens were
    generated (the token that ended it included), and why it ended ("stop" or "length"). `token_ids`,
    when the backend gives them, are the `n_tokens` sampled ids, the ending token included (RL trains on
    exactly the tokens sampled; re-tokenising the text need not give them back)."""

    text: str
    n_tokens: int
    finish_reason: FinishReason
    token_ids: tuple[int, ...] | None = field(default=None, compare=False, repr=False)


@runtime_checkable
class Sampler(Protocol):
    """Anything that samples `n` completions for each prompt, in prompt order."""

    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> list[list[Completion]]: ...


def check_request(prompts: list[str], n: int) -> None:
    """Reject requests no backend can serve, with a message that says which argument is wrong."""
    if n < 1:
        raise SamplingError(f"n (samples per prompt) must be >= 1, got {n}")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise SamplingError(f"prompt {i} is a {type(p).__name__}, not a string")


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut `text` before the earliest occurrence of any stop string; say whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    if cut < 0:
        return text, False
    return text[:cut], True


def prompt_seed(seed: int, prompt: str) -> int:
    """The seed of one prompt's random stream: a function of the run seed and the prompt text only.

    Keying the stream by the prompt (not by its position in a batch) is what makes sampling independent
    of batching: a resumed sweep that samples only the missing problems draws exactly what the first run
    would have drawn for them. (Two problems with identical prompts get identical samples.)
    """
    digest = hashlib.sha256(f"{int(seed)}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)

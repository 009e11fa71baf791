"""A scripted sampler for tests of everything downstream of sampling (store, grading, sweep, CLI).

`ScriptedSampler(script)` answers each prompt from `script`, which is either a mapping
prompt -> list of completion texts (sample i gets entry i modulo its length) or a callable
`(prompt, sample_idx, params) -> str`. Stop strings and `max_new_tokens` are applied as a real backend
would: the text is cut before a stop string (finish "stop"), or truncated to `max_new_tokens` tokens
(finish "length"); otherwise it ends as if by an end-of-sequence token (finish "stop"). One token is one
character. `calls` records every prompt it was asked for, so tests can check what a resumed run redid;
`delay` (seconds per call) lets a test kill a process in the middle of a sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from wiseft.errors import SamplingError
from wiseft.sampling.base import Completion, SamplingParams, check_request, cut_at_stop

Script = Mapping[str, list[str]] | Callable[[str, int, SamplingParams], str]


class ScriptedSampler:
    def __init__(self, script: Script, default: str | None = None, delay: float = 0.0):
        self.script = script
        self.default = default
        self.delay = delay
        self.calls: list[str] = []

    def _text(self, prompt: str, i: int, params: SamplingParams) -> str:
        if callable(self.script):
            return self.script(prompt, i, params)
        texts = self.script.get(prompt)
        if not texts:
            if self.default is None:
                raise SamplingError(f"ScriptedSampler has no script for prompt {prompt[:60]!r}")
            return self.default
        return texts[i % len(texts)]

    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> list[list[Completion]]:
        check_request(prompts, n)
        if self.delay:
            time.sleep(self.delay)
        out = []
        for prompt in prompts:
            self.calls.append(prompt)
            row = []
            for i in range(n):
                raw = self._text(prompt, i, params)
                text, stopped = cut_at_stop(raw, params.stop)
                if stopped and len(text) < params.max_new_tokens:
                    row.append(Completion(text, len(text) + 1, "stop"))  # + the token that stopped it
                elif len(raw) >= params.max_new_tokens:
                    row.append(Completion(raw[: params.max_new_tokens], params.max_new_tokens, "length"))
                else:
                    row.append(Completion(raw, len(raw) + 1, "stop"))  # + the end-of-sequence token
            out.append(row)
        return out

"""How a (problem, completion) pair becomes the text a reward model reads.

- "chat": the tokenizer's chat template over [system (optional), user = problem, assistant = completion],
  without a generation prompt, tokenized without adding special tokens (the template writes its own).
  This is how Skywork-Reward and Qwen2.5-Math-PRM are fed in their model cards.
- "plain" (models without a chat template, e.g. the toy verifier): the problem followed directly by the
  completion, `prompt + completion`, as the sampler produced them (the completion continues the prompt),
  tokenized with the tokenizer's own special tokens (a BOS if it adds one).
- "auto": "chat" when the tokenizer has a chat template, else "plain".

Process reward models read the completion as steps: it is split at `step_delimiter` ("\\n\\n" by default,
as Qwen2.5-Math-PRM's card does), each step stripped, empty steps dropped (a completion with no
non-empty step is one empty step), and the separator token written after every step. A separator string
already inside the completion is removed first, so that only the separators written here are read.
"""

from __future__ import annotations

from typing import Any

from wiseft.errors import VerifierError

TEMPLATES = ("auto", "chat", "plain")


def resolve_template(tokenizer: Any, template: str, where: str) -> str:
    """ "chat" or "plain" for `template` ("auto" picks by whether the tokenizer has a chat template)."""
    if template not in TEMPLATES:
        raise VerifierError(f"template must be one of {', '.join(TEMPLATES)}, got {template!r}")
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "auto":
        return "chat" if has_chat else "plain"
    if template == "chat" and not has_chat:
        raise VerifierError(f"{where}: the tokenizer has no chat template; use template 'plain' or 'auto'")
    return template


def check_system(template: str, system: str | None, where: str) -> None:
    if system and template != "chat":
        raise VerifierError(
            f"{where}: a system prompt needs a chat template, and this verifier reads plain text"
        )


def encode_pair(tokenizer: Any, prompt: str, completion: str, template: str, system: str | None) -> list[int]:
    """Token ids of the pair under a resolved template ("chat" or "plain")."""
    return encode_pairs(tokenizer, [(prompt, completion)], template, system)[0]


def encode_pairs(
    tokenizer: Any, pairs: list[tuple[str, str]], template: str, system: str | None
) -> list[list[int]]:
    """Token ids of each (prompt, completion) under a resolved template ("chat": the tokenizer's chat
    template, no special tokens added; "plain": prompt + completion with the tokenizer's own), the texts
    tokenised in one call (the same ids as one call each: no padding, no truncation)."""
    if not pairs:
        return []
    if template == "plain":
        texts, special = [prompt + completion for prompt, completion in pairs], True
    else:
        texts, special = (
            [_chat_text(tokenizer, prompt, completion, system) for prompt, completion in pairs],
            False,
        )
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=special)["input_ids"]]


def _chat_text(tokenizer: Any, prompt: str, completion: str, system: str | None) -> str:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def split_steps(completion: str, delimiter: str, separator: str) -> list[str]:
    """The completion's steps (see the module doc)."""
    if not delimiter:
        raise VerifierError("the step delimiter must be a non-empty string (e.g. '\\n\\n')")
    text = completion.replace(separator, "")
    steps = [s.strip() for s in text.split(delimiter)]
    return [s for s in steps if s] or [""]


def with_separators(steps: list[str], separator: str) -> str:
    """'step1<sep>step2<sep>': the separator after every step, as the PRM was trained to read."""
    return "".join(step + separator for step in steps)


def single_token_id(tokenizer: Any, token: str, what: str, where: str) -> int:
    """The id of `token`, which must be one token of the vocabulary (not split, not unknown)."""
    tid = tokenizer.convert_tokens_to_ids(token)
    unk = getattr(tokenizer, "unk_token_id", None)
    if not isinstance(tid, int) or tid < 0 or (tid == unk and token != getattr(tokenizer, "unk_token", None)):
        raise VerifierError(
            f"{where}: the tokenizer has no token {token!r} for the {what}; name the one the model was "
            "trained with (e.g. '<extra_0>' for Qwen2.5-Math-PRM)"
        )
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if list(ids) != [tid]:
        raise VerifierError(
            f"{where}: the {what} {token!r} encodes to {len(ids)} tokens {list(ids)} in text, not to its "
            f"single id {tid}; name a token the tokenizer keeps whole"
        )
    return tid

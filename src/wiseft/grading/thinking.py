"""Thinking blocks: split a completion into its reasoning and its answer, and count the tokens of each.

The rule is the one the interpolation paper's evaluator applies (OpenCompass
`extract_non_reasoning_content`) to completions of Thinking models whose chat template opens the block
itself (Qwen3 Thinking-2507 and DeepSeek-R1 templates end the prompt with ``<think>``, so the completion
holds only the closing tag):

- a completion **closed** its thinking block when the closing tag occurs anywhere in it;
- the **answer** is the text after the LAST closing tag; the **thinking** is everything before that tag,
  less one opening tag at its very start (after whitespace) when the model wrote it itself;
- when no closing tag occurs, the whole completion is the answer (the paper grades the whole text) and
  the thinking is empty.

What follows from the rule, each case tested:

- nested-looking text inside the reasoning (``a <think>aside</think> b</think>answer``) stays in the
  thinking, because only the last closing tag counts;
- an opening tag written inside the answer stays in the answer;
- a closing tag written inside the answer moves the boundary: the answer starts after it. This is the
  one cost of the rule, and the paper's evaluator pays it too;
- text before an opening tag the model wrote itself (``Sure.<think>…``) belongs to the thinking;
- tags match exactly (case and spelling); other families pass their own (``close_tag="◁/think▷"``).

`split_thinking` returns the parts as verbatim substrings of the completion;
`graded_text` is what a grader reads: the answer stripped of surrounding whitespace when the block
closed (templates put blank lines after the tag), the completion unchanged when it did not.

Token counts (`count_thinking_tokens`): the tokenizer encodes each part on its own, with the closing tag
counted in the thinking (it is a generated token, and the paper's Token #N counts every generated
token). Where the closing tag is one of the tokenizer's added tokens (``</think>`` is in Qwen3's and
DeepSeek-R1's vocabularies), Hugging Face tokenizers cut the text at it before anything else, so the two
counts add up exactly to the count of the whole completion; for a tag the vocabulary spells in pieces,
the sum can differ from the whole by the token or two that straddle the boundary. When the sampler kept
the generated ids, `split_token_ids` counts from them and is exact for any tokenizer. A block that never
closed is all thinking when it was opened (by the template, ``opened=True``, or by the completion's own
opening tag) and all answer otherwise; grading still reads the whole text, as said above.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from wiseft.errors import GradingError

CLOSE_TAG = "</think>"
OPEN_TAG = "<think>"


class ThinkingSplit(NamedTuple):
    """The parts of one completion (see the module docstring for the rule)."""

    thinking: str
    answer: str
    closed: bool


class ThinkingTokens(NamedTuple):
    """Token counts of the thinking part (closing tag included) and of the answer part."""

    thinking: int
    answer: int
    closed: bool


def _check_tags(close_tag: Any, open_tag: Any) -> None:
    if not isinstance(close_tag, str) or not close_tag:
        raise GradingError(f"thinking close tag must be a non-empty string, got {close_tag!r}")
    if open_tag is not None and not isinstance(open_tag, str):
        raise GradingError(f"thinking open tag must be a string or None, got {open_tag!r}")


def _boundary(text: str, close_tag: str) -> int | None:
    """The index just after the last closing tag, None when the tag never occurs."""
    k = text.rfind(close_tag)
    return None if k < 0 else k + len(close_tag)


def _starts_open(text: str, open_tag: str | None) -> bool:
    return bool(open_tag) and text.lstrip().startswith(open_tag)


def split_thinking(text: str, close_tag: str = CLOSE_TAG, open_tag: str | None = OPEN_TAG) -> ThinkingSplit:
    """(thinking, answer, closed): the answer after the last `close_tag`, or the whole text unclosed."""
    _check_tags(close_tag, open_tag)
    if not isinstance(text, str):
        raise GradingError(f"split_thinking: the completion must be a string, got {type(text).__name__}")
    end = _boundary(text, close_tag)
    if end is None:
        return ThinkingSplit("", text, False)
    thinking = text[: end - len(close_tag)]
    if _starts_open(thinking, open_tag):
        thinking = thinking.lstrip()[len(open_tag) :]  # type: ignore[arg-type]
    return ThinkingSplit(thinking, text[end:], True)


def graded_text(text: str, close_tag: str = CLOSE_TAG, open_tag: str | None = OPEN_TAG) -> str:
    """The text a grader reads: the stripped answer when the block closed, else the whole completion."""
    part = split_thinking(text, close_tag, open_tag)
    return part.answer.strip() if part.closed else text


def _encode_len(tokenizer: Any, text: str) -> int:
    if not text:
        return 0
    return len(tokenizer.encode(text, add_special_tokens=False))


def count_thinking_tokens(
    text: str,
    tokenizer: Any,
    close_tag: str = CLOSE_TAG,
    open_tag: str | None = OPEN_TAG,
    opened: bool = False,
) -> ThinkingTokens:
    """Tokens of the thinking part (up to and including the last closing tag) and of the answer part.

    `tokenizer` is anything with ``encode(text, add_special_tokens=False) -> list``; `opened` says the
    prompt opened the block (a Thinking chat template), which makes an unclosed completion all thinking.
    """
    _check_tags(close_tag, open_tag)
    end = _boundary(text, close_tag)
    if end is None:
        n = _encode_len(tokenizer, text)
        thinking = opened or _starts_open(text, open_tag)
        return ThinkingTokens(n if thinking else 0, 0 if thinking else n, False)
    return ThinkingTokens(_encode_len(tokenizer, text[:end]), _encode_len(tokenizer, text[end:]), True)


def split_token_ids(
    ids: Sequence[int],
    close_ids: Sequence[int],
    open_ids: Sequence[int] | None = None,
    opened: bool = False,
) -> ThinkingTokens:
    """The same counts from generated token ids: the thinking ends after the last run of `close_ids`."""
    close = list(close_ids)
    if not close:
        raise GradingError("split_token_ids: close_ids (the closing tag's token ids) must not be empty")
    seq = list(ids)
    m = len(close)
    for start in range(len(seq) - m, -1, -1):
        if seq[start : start + m] == close:
            return ThinkingTokens(start + m, len(seq) - start - m, True)
    opener = list(open_ids or [])
    thinking = opened or (bool(opener) and seq[: len(opener)] == opener)
    return ThinkingTokens(len(seq) if thinking else 0, 0 if thinking else len(seq), False)

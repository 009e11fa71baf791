"""Thinking blocks: the answer after the last closing tag, the whole text when none closes, token counts."""

import pytest

from wiseft.chartok import char_tokenizer
from wiseft.errors import GradingError
from wiseft.grading.thinking import (
    ThinkingSplit,
    ThinkingTokens,
    count_thinking_tokens,
    graded_text,
    split_thinking,
    split_token_ids,
)


@pytest.mark.parametrize(
    "text,expected",
    [
        # closed by the template's block: the completion holds only the closing tag
        (
            "Let me add 2 and 3.</think>\n\nThe answer is 5.",
            ("Let me add 2 and 3.", "\n\nThe answer is 5.", True),
        ),
        # the model opened the block itself (leading whitespace before the tag is dropped with it)
        ("  <think>sum is 5</think>Answer: 5", ("sum is 5", "Answer: 5", True)),
        # never closed: no thinking, the whole text is the answer (the paper grades it whole)
        ("The answer is 5.", ("", "The answer is 5.", False)),
        (
            "<think>still thinking when the budget ran out",
            ("", "<think>still thinking when the budget ran out", False),
        ),
        ("", ("", "", False)),
        # nested-looking text in the reasoning stays in the thinking: only the LAST closing tag counts
        (
            "a <think>aside</think> b</think>final",
            ("a <think>aside</think> b", "final", True),
        ),
        (
            "<think>outer <think>inner</think> more</think> ok",
            ("outer <think>inner</think> more", " ok", True),
        ),
        # an opening tag inside the answer stays in the answer
        ("r</think>Write <think> to open a block.", ("r", "Write <think> to open a block.", True)),
        # a closing tag inside the answer moves the boundary (the rule's one cost, as in the paper's evaluator)
        ("r</think>Write </think> to close it.", ("r</think>Write ", " to close it.", True)),
        # text before a self-written opening tag belongs to the thinking
        ("Sure.<think>r</think>A", ("Sure.<think>r", "A", True)),
        # whitespace only after the tag: closed, with an empty answer
        ("r</think>\n\n  ", ("r", "\n\n  ", True)),
        # tags are matched exactly: other spellings are text
        ("r</Think>A", ("", "r</Think>A", False)),
        ("r< /think>A", ("", "r< /think>A", False)),
    ],
)
def test_split_thinking_table(text, expected):
    assert split_thinking(text) == ThinkingSplit(*expected)


@pytest.mark.parametrize(
    "text,close,open_,expected",
    [
        ("◁think▷r◁/think▷A", "◁/think▷", "◁think▷", ("r", "A", True)),
        (
            "r<|end_of_thought|>A<|end_of_thought|>B",
            "<|end_of_thought|>",
            None,
            ("r<|end_of_thought|>A", "B", True),
        ),
        ("<think>r</think>A", "</think>", None, ("<think>r", "A", True)),  # no open tag: nothing dropped
        ("<think>r</think>A", "</think>", "", ("<think>r", "A", True)),
    ],
)
def test_split_thinking_configurable_tags(text, close, open_, expected):
    assert split_thinking(text, close_tag=close, open_tag=open_) == ThinkingSplit(*expected)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("r</think>\n\nThe answer is 5.\n", "The answer is 5."),
        ("  no block at all \n", "  no block at all \n"),  # unclosed: the completion unchanged
        ("r</think>   ", ""),
    ],
)
def test_graded_text(text, expected):
    assert graded_text(text) == expected


@pytest.mark.parametrize("bad", ["", None, 3])
def test_bad_close_tag_is_an_error(bad):
    with pytest.raises(GradingError, match="close tag must be a non-empty string"):
        split_thinking("x", close_tag=bad)


def test_non_string_completion_is_an_error():
    with pytest.raises(GradingError, match="must be a string, got int"):
        split_thinking(5)


class _Words:
    """A whitespace tokenizer: the count is easy to read off the text."""

    def encode(self, text, add_special_tokens=True):
        assert add_special_tokens is False
        return text.split()


@pytest.mark.parametrize(
    "text,opened,expected",
    [
        ("a b c </think> x y", False, (4, 2, True)),  # the closing tag counts as thinking
        ("a </think> b </think> x", False, (4, 1, True)),
        ("a b c", False, (0, 3, False)),  # unclosed, never opened: all answer
        ("a b c", True, (3, 0, False)),  # unclosed, the template opened it: all thinking
        ("<think> a b", False, (3, 0, False)),  # unclosed, the completion opened it
        ("</think>", False, (1, 0, True)),
        ("", True, (0, 0, False)),
    ],
)
def test_count_thinking_tokens_table(text, opened, expected):
    assert count_thinking_tokens(text, _Words(), opened=opened) == ThinkingTokens(*expected)


@pytest.mark.parametrize(
    "text",
    [
        "12+3=15</think>\n\nThe answer is 15.",
        "<think>x</think>y</think>z",
        "no tag here",
        "</think>",
    ],
)
def test_counts_add_up_when_the_tag_is_an_added_token(text):
    tok = char_tokenizer("0123456789+=.:<>/ \nabcdefghijklmnopqrstuvwxyzT")
    tok.add_tokens(["<think>", "</think>"], special_tokens=True)
    counts = count_thinking_tokens(text, tok)
    ids = tok.encode(text, add_special_tokens=False)
    assert counts.thinking + counts.answer == len(ids)
    # and the id-based count agrees exactly
    close_ids = tok.encode("</think>", add_special_tokens=False)
    open_ids = tok.encode("<think>", add_special_tokens=False)
    assert len(close_ids) == 1
    assert split_token_ids(ids, close_ids, open_ids) == counts


@pytest.mark.parametrize(
    "ids,close,open_,opened,expected",
    [
        ([1, 2, 9, 3, 4], [9], None, False, (3, 2, True)),
        ([1, 9, 2, 9, 3], [9], None, False, (4, 1, True)),  # last closing run
        ([1, 7, 8, 2, 7, 8], [7, 8], None, False, (6, 0, True)),  # multi-token tag at the very end
        ([1, 7, 2, 8], [7, 8], None, False, (0, 4, False)),  # pieces apart are not the tag
        ([5, 1, 2], [9], [5], False, (3, 0, False)),  # unclosed, opened by the completion
        ([1, 2], [9], None, True, (2, 0, False)),  # unclosed, opened by the template
        ([], [9], None, False, (0, 0, False)),
    ],
)
def test_split_token_ids_table(ids, close, open_, opened, expected):
    assert split_token_ids(ids, close, open_, opened=opened) == ThinkingTokens(*expected)


def test_split_token_ids_needs_a_tag():
    with pytest.raises(GradingError, match="close_ids"):
        split_token_ids([1, 2], [])

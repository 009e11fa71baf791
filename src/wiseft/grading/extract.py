"""Find the final answer in a completion, and normalise it for caching.

Pure string code (no regex with nested quantifiers, linear in the text), so it runs in the main process
even on pathological 100 kB completions. Rules, tried in this order; the first that fires is recorded:

- ``boxed``: the content of the last ``\\boxed{…}`` or ``\\fbox{…}`` with balanced braces (nested braces
  handled; an unclosed box, e.g. a completion cut by the length limit, is skipped), or ``\\boxed 5``;
- ``hash``: the number after the last ``####`` (GSM8K style; a markdown "#### Step 2" is not an answer);
- ``answer_is``: what follows the last "the answer is" / "final answer:" up to the end of the sentence;
- ``last_number``: the last number in the text, only for tasks that allow it (GSM8K, AIME).
"""

from __future__ import annotations

import re

from wiseft.latex import last_boxed

_ANSWER_IS = re.compile(r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*:?\s*", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SPACES = re.compile(r"\s+")
_SIZING = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_SPACING_COMMANDS = re.compile(r"\\\\|\\[,!;: ]|\\q?quad\b|~")
RULES = ("boxed", "hash", "answer_is", "last_number")


# One run of blanks, then an optional "$" with its own blanks: two adjacent `[ \t]*` around an optional
# "$" would split a long run of blanks in n ways and make the search quadratic.
_HASH = re.compile(r"####[ \t]*(?:\$[ \t]*)?(-?[\d.,]*\d)")


def _after_hash(text: str) -> str | None:
    """The number after the last "#### " (GSM8K's answer line); markdown headings do not count."""
    last = None
    for m in _HASH.finditer(text):
        last = m
    return last.group(1) if last else None


def _after_answer_is(text: str) -> str | None:
    last = None
    for m in _ANSWER_IS.finditer(text):
        last = m
    if last is None:
        return None
    tail = text[last.end() : last.end() + 500]
    if tail.startswith("$"):
        # "$…$" or "$$…$$": take the math span.
        fence = "$$" if tail.startswith("$$") else "$"
        close = tail.find(fence, len(fence))
        if close > 0:
            return tail[len(fence) : close].strip() or None
    # Up to the end of the line or of the sentence (a period followed by a space or the end).
    line = tail.split("\n", 1)[0]
    m = re.search(r"\.(?:\s|$)", line)
    answer = (line[: m.start()] if m else line).strip().strip("$").strip()
    return answer or None


def _last_number(text: str) -> str | None:
    last = None
    for m in _NUMBER.finditer(text):
        last = m
    return last.group(0).rstrip(",") if last else None


def extract_answer(text: str, last_number: bool = False) -> tuple[str, str] | None:
    """(answer, rule) for the first rule that fires, or None when the completion holds no answer."""
    boxed = last_boxed(text)
    if boxed:
        return boxed, "boxed"
    for rule, finder in (("hash", _after_hash), ("answer_is", _after_answer_is)):
        found = finder(text)
        if found:
            return found, rule
    if last_number:
        found = _last_number(text)
        if found:
            return found, "last_number"
    return None


def normalise(answer: str) -> str:
    """A cosmetic normal form used as the cache key: two answers with the same form are the same answer.

    Only changes that cannot alter the meaning: outer ``$``, spacing commands, ``\\left``/``\\right``,
    ``\\dfrac``/``\\tfrac``, a currency sign ``\\$``, a trailing period, thousands separators of a plain
    number, and whitespace (kept only between two letters or digits, where it separates tokens).
    """
    s = answer.strip().rstrip(".").strip()
    while len(s) >= 2 and s.startswith("$") and s.endswith("$"):
        s = s[1:-1].strip().rstrip(".").strip()
    s = _SPACING_COMMANDS.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else " ", s)
    s = _SIZING.sub("", s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\$", "")
    s = _SPACES.sub(" ", s).strip().rstrip(".").strip()
    s = re.sub(r"(?<=[^0-9A-Za-z]) | (?=[^0-9A-Za-z])", "", s)
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s

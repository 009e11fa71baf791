"""LaTeX text helpers shared by the tasks (gold answers of MATH solutions) and the grader (answers of
completions): the content of the last ``\\boxed{…}``, with balanced braces, in one linear pass."""

from __future__ import annotations

import re

BOX_COMMANDS = ("\\boxed", "\\fbox")
_BOX = re.compile("|".join(re.escape(c) for c in BOX_COMMANDS))
_BRACE_TOKENS = re.compile(r"\\.|[{}]", re.S)  # an escaped character, or a brace


def closing_braces(text: str, start: int = 0) -> dict[int, int]:
    """For every unescaped "{" at or after `start` that is closed, the index of its "}"."""
    stack: list[int] = []
    match: dict[int, int] = {}
    for m in _BRACE_TOKENS.finditer(text, start):
        ch = m.group()
        if ch == "{":
            stack.append(m.start())
        elif ch == "}" and stack:
            match[stack.pop()] = m.start()
    return match


def braced(text: str, start: int) -> int | None:
    """The index of the "}" closing the "{" at text[start], or None when it is never closed."""
    depth = 0
    for m in _BRACE_TOKENS.finditer(text, start):
        ch = m.group()
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return m.start()
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{…}`` / ``\\fbox{…}`` (or ``\\boxed X``) in `text`.

    The last box is usually complete and closes soon, so it is scanned alone; only when it is not (a
    completion cut by the length limit) are all braces matched, in one pass, for the earlier boxes.
    """
    positions = [(m.start(), m.end() - m.start()) for m in _BOX.finditer(text)]
    match: dict[int, int] | None = None
    for n, (pos, length) in enumerate(reversed(positions)):
        after = pos + length
        rest = text[after : after + 1]
        if rest == "{":
            if n == 0:
                close = braced(text, after)
            else:
                if match is None:
                    match = closing_braces(text, positions[0][0])
                close = match.get(after)
            if close is not None:
                return text[after + 1 : close].strip()
        elif rest == " ":
            # "\\boxed 5": the command takes the next token.
            m = re.match(r" +([^\s$\\{}]+)", text[after : after + 200])
            if m:
                return m.group(1).rstrip(".")
    return None

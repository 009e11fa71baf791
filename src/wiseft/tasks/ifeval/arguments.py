"""The arguments (kwargs) of IFEval instructions, checked when a task is loaded.

The reference draws a random value for a missing or out-of-range argument; here such a record is rejected
with a one-line reason, so nothing is guessed.
Keys whose value is null are dropped first, as the Hugging Face copy of the data writes every argument
of every instruction with null for the unused ones.
"""

from __future__ import annotations

from wiseft.tasks.ifeval.checkers import INSTRUCTIONS, LANGUAGES, RELATIONS

_COUNTS = {
    "num_placeholders", "num_bullets", "num_highlights", "num_sections", "num_paragraphs", "num_sentences",
    "num_words", "frequency", "let_frequency", "capital_frequency", "nth_paragraph",
}  # fmt: skip
_TEXTS = {"keyword", "first_word", "end_phrase", "section_spliter", "postscript_marker", "prompt_to_repeat"}
_TEXT_LISTS = {"keywords", "forbidden_words"}


def _check_arg(name: str, value: object) -> str | None:
    """Why `value` is not a valid argument `name`, or None when it is."""
    if name in _COUNTS:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return "a whole number ≥ 0"
    elif name.endswith("relation"):
        if value not in RELATIONS:
            return "'less than' or 'at least'"
    elif name in _TEXTS:
        if not isinstance(value, str) or not value.strip():
            return "a non-blank string"
    elif name in _TEXT_LISTS:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            return "a non-empty list of non-empty strings"
    elif name == "letter":
        if not isinstance(value, str) or len(value) != 1:
            return "a single character"
    elif name == "language":
        if value not in LANGUAGES:
            return f"one of the codes {', '.join(sorted(LANGUAGES))}"
    return None


def validate_kwargs(instruction_id: str, kwargs: object) -> dict:
    """The arguments of one instruction, checked: every required one present and valid, no other one
    (keys whose value is null are dropped, as in the Hugging Face copy of the data). Raises ValueError
    with a one-line reason; the reference would draw a random value instead."""
    entry = INSTRUCTIONS.get(instruction_id)
    if entry is None:
        raise ValueError(f"unknown instruction id {instruction_id!r}")
    if not isinstance(kwargs, dict):
        raise ValueError(f"{instruction_id}: arguments must be a JSON object, got {type(kwargs).__name__}")
    given = {k: v for k, v in kwargs.items() if v is not None}
    missing = [a for a in entry.args if a not in given]
    extra = sorted(set(given) - set(entry.args))
    if missing or extra:
        raise ValueError(
            f"{instruction_id} takes the arguments ({', '.join(entry.args) or 'none'}); "
            f"missing: {', '.join(missing) or '-'}, unexpected: {', '.join(extra) or '-'}"
        )
    for name in entry.args:
        want = _check_arg(name, given[name])
        if want is not None:
            raise ValueError(f"{instruction_id}: argument {name} must be {want}, got {given[name]!r}")
    if "nth_paragraph" in given and not 1 <= given["nth_paragraph"] <= given["num_paragraphs"]:
        raise ValueError(
            f"{instruction_id}: nth_paragraph must lie in 1..num_paragraphs ({given['num_paragraphs']}), "
            f"got {given['nth_paragraph']}"
        )
    return given

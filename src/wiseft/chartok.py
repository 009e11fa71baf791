"""A character-level tokenizer saved in standard Hugging Face format (tokenizer.json + config).

Used by the toy world and by tests, so that tiny models come with a real tokenizer that
`AutoTokenizer.from_pretrained` loads offline like any other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)


def char_tokenizer(alphabet: Iterable[str], model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """One token per character of `alphabet` (order kept), after the four special tokens."""
    chars = list(dict.fromkeys(alphabet))
    for ch in chars:
        if len(ch) != 1:
            raise ValueError(f"alphabet entries must be single characters, got {ch!r}")
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    return fast


def save_char_tokenizer(path: str | os.PathLike, alphabet: Iterable[str]) -> PreTrainedTokenizerFast:
    tok = char_tokenizer(alphabet)
    tok.save_pretrained(str(path))
    return tok

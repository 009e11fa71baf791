"""Float64 references of tokenizer policies: the union's token order and mergekit's PermutedEmbeddings,
written plainly from tokenizer files (used by the union, WeightSpace and slice tests)."""

from __future__ import annotations

import torch
from transformers import AutoTokenizer

from support.merge import load_dir
from wiseft.testing import ALPHABET, save_char_tokenizer, save_tiny_model

# Three character vocabularies that differ: B has other ids, lacks y and z and adds two letters; C lacks z,
# shares Ä with B and has ß only itself.
ALPHABETS = {
    "A": ALPHABET,
    "B": ALPHABET[::-1].replace("z", "").replace("y", "") + "ÄÖ",
    "C": ALPHABET.replace("z", "") + "Äß",
}


def vocab_models(root, rows, layers=None, alphabets=ALPHABETS):
    """Tiny bf16 Llama models A, B, C (seeds 1, 2, 3) with `rows[k]` embedding rows, `layers[k]` layers
    when given, and character tokenizers of `alphabets[k]`; {name: path}."""
    out = {}
    for k, seed in (("A", 1), ("B", 2), ("C", 3)):
        extra = {"layers": layers[k]} if layers else {}
        path = save_tiny_model(
            root / k, arch="llama", seed=seed, dtype=torch.bfloat16, vocab=rows[k], tokenizer=False, **extra
        )
        save_char_tokenizer(path, alphabets[k])
        out[k] = path
    return out


def vocab_of(path):
    return AutoTokenizer.from_pretrained(str(path)).get_vocab()


def union_tokens(models, order, extra=()):
    """The documented order: the first input's tokens by id; then each input's new plain tokens by id;
    then each input's new added tokens by id; then the tokens named in tokenizer_tokens."""
    vocabs = [vocab_of(models[k]) for k in order]
    added = [set(AutoTokenizer.from_pretrained(str(models[k])).added_tokens_encoder) for k in order]
    tokens = sorted(vocabs[0], key=vocabs[0].get)
    for want_added in (False, True):
        for v, a in zip(vocabs, added, strict=True):
            tokens += [t for t in sorted(v, key=v.get) if (t in a) == want_added and t not in tokens]
    return tokens + [t for t in extra if t not in tokens]


def permuted(models, order, tokens, name, base=None, specs=None, pad=None):
    """mergekit's PermutedEmbeddings written plainly in float64: per model, the row of each output token
    (own row; else the spec's source, one model's row, zeros, the base's row, or the mean), the default
    rows rounded to the inputs' dtype as stored, padding rows the mean of the token rows."""
    specs = specs or {}
    vocabs = {k: vocab_of(models[k]) for k in order}
    tensors = {k: load_dir(models[k])[name].double() for k in order}
    result = {}
    for k in order:
        rows = []
        for tok in tokens:
            spec = specs.get(tok)
            if tok in vocabs[k] and not (spec and spec.get("force")):
                rows.append(tensors[k][vocabs[k][tok]])
                continue
            if spec is not None:
                donors = [] if spec["source"] is None else [spec["source"]]
            else:
                have = [(j, vocabs[j][tok]) for j in order if tok in vocabs[j]]
                base_row = [(base, vocabs[base][tok])] if base is not None and tok in vocabs[base] else None
                donors = have if len(have) <= 1 else (base_row or have)
            mean = sum(
                (tensors[j][r] for j, r in donors), torch.zeros(tensors[k].shape[1], dtype=torch.float64)
            )
            rows.append((mean / max(1, len(donors))).to(torch.bfloat16).double())
        out = torch.stack(rows)
        if pad:
            n = -(-len(tokens) // pad) * pad
            fill = out.mean(dim=0).to(torch.bfloat16).double()
            out = torch.cat([out, fill.expand(n - len(tokens), -1)])
        result[k] = out
    return result

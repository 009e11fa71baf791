"""wiseft against mergekit 0.1.5 on nearswap, arcee_fusion and tokenizer unions (a correctness check).

Needs mergekit in its own environment (`make venv-mergekit`, or MERGEKIT_YAML=/path/to/mergekit-yaml).
Tiny random Llama checkpoints: X and Y share a tokenizer (nearswap, arcee_fusion); A, B, C have
character tokenizers with different ids and tokens (B adds a special chat token), merged with
`tokenizer_source: union` and with a `tokenizer:` block (tokens with sources and force,
pad_to_multiple_of), over whole models and over layer slices (a passthrough frankenmerge, and task
arithmetic slice by slice). Every configuration uses `dtype: float64, out_dtype: bfloat16` (mergekit computes in
float64 and rounds once, as wiseft does). Prints, per configuration, the differing elements of the tensors
that are not token matrices, and of the token matrices compared token by token (the two tools may give
new tokens different ids), and whether the token sets and a decode round trip agree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from rich.console import Console
from rich.table import Table
from safetensors.torch import load_file
from tokenizers import AddedToken
from transformers import AutoTokenizer

from wiseft.testing import ALPHABET, save_char_tokenizer, save_tiny_model

ROOT = Path(__file__).resolve().parents[1]
MERGEKIT = Path(os.environ.get("MERGEKIT_YAML", ROOT / ".venv-mergekit" / "bin" / "mergekit-yaml"))
ALPHABETS = {
    "A": ALPHABET,
    "B": ALPHABET[::-1].replace("z", "").replace("y", "") + "ÄÖ",
    "C": ALPHABET.replace("z", "") + "Äß",
}
TOKEN_MATRICES = ("model.embed_tokens.weight", "lm_head.weight")
TEXT = "<|im_start|>ab Ä+ßÖ=z<tool>"


def models(root: Path) -> dict[str, str]:
    out = {}
    for k, seed in (("A", 1), ("B", 2), ("C", 3), ("X", 4), ("Y", 5)):
        rows = {"A": 64, "X": 64, "Y": 64}.get(k, 66)
        path = save_tiny_model(
            root / k, arch="llama", seed=seed, dtype=torch.bfloat16, vocab=rows, tokenizer=False
        )
        tok = save_char_tokenizer(path, ALPHABETS.get(k, ALPHABET))
        if k == "B":
            tok.add_tokens([AddedToken("<|im_start|>", special=True, normalized=False)], special_tokens=True)
            tok.save_pretrained(str(path))
        out[k] = str(path)
    return out


def configs(m: dict[str, str]) -> dict[str, dict]:
    exact = {"dtype": "float64", "out_dtype": "bfloat16"}
    pair = [{"model": m["X"]}, {"model": m["Y"]}]
    block = {
        "source": "union",
        "tokens": {
            "<tool>": {"source": {"kind": "zero"}},
            "<x>": {"source": {"kind": "model_token", "model": m["B"], "token": "a"}},
            "Ä": {"source": m["C"], "force": True},
        },
        "pad_to_multiple_of": 16,
    }
    weights = [{"model": m[k], "parameters": {"weight": w}} for k, w in (("A", 0.5), ("B", 0.3), ("C", 0.2))]
    return {
        "nearswap": {"merge_method": "nearswap", "base_model": m["X"], "models": pair, "parameters": {"t": 0.01}, **exact},
        "arcee_fusion": {"merge_method": "arcee_fusion", "base_model": m["X"], "models": pair, **exact},
        "union (linear)": {"merge_method": "linear", "models": weights, "tokenizer_source": "union", **exact},
        "tokenizer block (task arithmetic)": {
            "merge_method": "task_arithmetic", "base_model": m["A"],
            "models": [{"model": m["B"], "parameters": {"weight": 1.0}}, {"model": m["C"], "parameters": {"weight": 0.5}}],
            "tokenizer": block, **exact,
        },
        "passthrough slices (union)": {
            "merge_method": "passthrough", "tokenizer_source": "union", **exact,
            "slices": [{"sources": [{"model": m[k], "layer_range": r}]} for k, r in (("A", [0, 2]), ("C", [1, 2]), ("B", [0, 1]))],
        },
        "slices + tokenizer block (task arithmetic)": {
            "merge_method": "task_arithmetic", "base_model": m["A"], "tokenizer": block, **exact,
            "slices": [{"sources": [{"model": m["A"], "layer_range": r},
                                    {"model": m["B"], "layer_range": r, "parameters": {"weight": 1.0}},
                                    {"model": m["C"], "layer_range": r, "parameters": {"weight": 0.5}}]}
                       for r in ([0, 1], [1, 2], [1, 2])],
        },
    }  # fmt: skip


def tensors(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def compare(ours: Path, theirs: Path) -> list[str]:
    a, b = tensors(ours), tensors(theirs)
    rest = [n for n in a if n not in TOKEN_MATRICES]
    diff = sum(int((a[n] != b[n]).sum()) for n in rest)
    cells = [f"{diff} of {sum(a[n].numel() for n in rest)}"]
    va = AutoTokenizer.from_pretrained(str(ours))
    vb = AutoTokenizer.from_pretrained(str(theirs))
    ids_a, ids_b = va.get_vocab(), vb.get_vocab()
    for name in TOKEN_MATRICES:
        if name not in a:
            cells.append("—")
            continue
        rows = sum(int((a[name][ids_a[t]] != b[name][ids_b[t]]).sum()) for t in ids_a if t in ids_b)
        pad = a[name][len(ids_a) :]
        pads = (
            f"; padding {int((pad != b[name][len(ids_b) :]).sum())} of {pad.numel()}" if pad.numel() else ""
        )
        cells.append(f"{rows}{pads}")
    cells.append("same" if set(ids_a) == set(ids_b) else f"differ ({len(ids_a)} / {len(ids_b)})")
    cells.append("same ids" if ids_a == ids_b else "other ids for new tokens")
    round_trip = [t.decode(t(TEXT, add_special_tokens=False)["input_ids"]) for t in (va, vb)]
    cells.append("agree" if round_trip[0] == round_trip[1] else f"{round_trip[0]!r} vs {round_trip[1]!r}")
    return cells


def main() -> int:
    if not MERGEKIT.exists():
        print(f"mergekit is not installed ({MERGEKIT}); run `make venv-mergekit` first", file=sys.stderr)
        return 2
    table = Table(title="wiseft vs mergekit 0.1.5, dtype float64 → bfloat16 (elements that differ)")
    for col in (
        "configuration",
        "other tensors",
        "embed_tokens by token",
        "lm_head by token",
        "tokens",
        "ids",
        "decode",
    ):
        table.add_column(col)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        m = models(root)
        for i, (name, config) in enumerate(configs(m).items()):
            path = root / f"config-{i}.yml"
            path.write_text(yaml.safe_dump(config, allow_unicode=True))
            ours, theirs = root / f"ours-{i}", root / f"theirs-{i}"
            wiseft = [
                sys.executable,
                "-m",
                "wiseft",
                "merge",
                "--config",
                str(path),
                "-o",
                str(ours),
                "--force",
            ]
            subprocess.run(wiseft, check=True, capture_output=True)
            subprocess.run(
                [str(MERGEKIT), str(path), str(theirs), "--copy-tokenizer"], check=True, capture_output=True
            )
            table.add_row(name, *compare(ours, theirs))
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

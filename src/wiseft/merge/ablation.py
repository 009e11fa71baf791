"""Layer and module ablations of a mix, from tensor names alone, as recipe rules.

An ablation interpolates only part of the model and takes every other tensor from one anchor (the
"rest" anchor). It is an ordinary `Recipe` whose rules say which tensors move: nothing new is needed to
materialise it, and `wiseft merge` of the same recipe writes the same bits.

Which tensors a choice names, from the checkpoint's tensor names (Llama, Qwen2/Qwen3, Gemma, Mistral,
Mixtral, Qwen2-MoE/Qwen3-MoE and GPT-2 spellings):

- **layers** `A:B` (half-open, 0-based: the paper's "[0, 11]" is `0:12`): every tensor of blocks A … B−1
  (`…layers.L.…`, GPT-2's `h.L.`, `blocks.L.`), per-layer norms included; `all` is every block;
- **modules**, inside every block (or the blocks of `--layers`):
  - `attention` (`attn`): the attention sub-layer — `self_attn.*` (q/k/v/o projections and their biases,
    Qwen3's q_norm/k_norm), GPT-2's `attn.*`;
  - `mlp` (`ffn`): the feed-forward sub-layer — `mlp.*`, Mixtral's `block_sparse_moe.*`. In a mixture
    of experts this is all of it: the routed experts, the router (`mlp.gate`) and the shared expert with
    its gate (`mlp.shared_expert.*`, `mlp.shared_expert_gate`);
  - `experts`, `router`, `shared_expert`: those parts of an MoE feed-forward alone;
  - `norm`: the per-layer norms (`input_layernorm`, `post_attention_layernorm`, Gemma's pre/post
    feed-forward norms, GPT-2's `ln_1`/`ln_2`), which belong to neither sub-layer;
  - `no-KIND` (e.g. `no-attention`, the paper's "w/o Attn"): everything the mix moves except that kind.
- Outside the blocks: input embeddings (`embed_tokens`, GPT-2's `wte`/`wpe`), the final norm and an
  untied `lm_head` are never moved by a `--layers` or `--modules KIND` choice: they come from the rest
  anchor (the paper does not say what it did; its layer table keeps the Instruct model's, the first
  anchor by default). A `no-KIND` choice moves them, since it is the whole mix less one kind.

`ablation_rules(choice, names, mix, rest)` returns the rules and default coefficient of one choice, and
`moved(recipe, names, rest)` lists what a resolved recipe moves (the dry run, and the check that the rules
name exactly the tensors the classification names).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from wiseft.errors import ConfigError, MergeError
from wiseft.grids import MODULE_ALIASES, parse_layers, parse_modules
from wiseft.merge.recipe import Recipe, Rule, layer_count

# Sub-layer kinds: the part of the name after `<prefix>.<layer>.` that each kind fully matches.
KINDS: dict[str, str] = {
    "attention": r"(?:self_attn|attn|self_attention)\..+",
    "mlp": r"(?:mlp|block_sparse_moe)\..+",
    "experts": r"(?:mlp|block_sparse_moe)\.experts\..+",
    "router": r"(?:mlp|block_sparse_moe)\.(?:gate|router)\..+",
    "shared_expert": r"mlp\.shared_experts?(?:_gate)?\..+",
    "norm": r"(?:input_layernorm|post_attention_layernorm|pre_feedforward_layernorm|"
    r"post_feedforward_layernorm|ln_1|ln_2)\..+",
}
__all__ = ["KINDS", "ALIASES", "Choice", "parse_layers", "parse_modules", "choices", "classify", "selected",
           "check_choice", "ablation_rules", "resolve", "group_names"]  # fmt: skip
ALIASES = MODULE_ALIASES  # the flag parsers (torch-free, for the CLI) live in wiseft.grids
_LAYER = re.compile(r"^(.*?(?:^|\.)(?:layers|h|blocks)\.)(\d+)\.(.+)$")


@dataclass(frozen=True)
class Choice:
    """One ablation: a half-open layer range (None: every block) and a module kind (None: every tensor
    of those blocks); `exclude` reverses the kind (everything the mix moves except it)."""

    layers: tuple[int, int] | None = None
    module: str | None = None
    exclude: bool = False

    @property
    def label(self) -> str:
        """`layers=0:12`, `modules=attention`, `layers=12:36,modules=no-mlp` ('' for the plain mix)."""
        parts = []
        if self.layers is not None:
            parts.append(f"layers={self.layers[0]}:{self.layers[1]}")
        if self.module is not None:
            parts.append(f"modules={'no-' if self.exclude else ''}{self.module}")
        return ",".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "layers": None if self.layers is None else list(self.layers),
            "modules": None if self.module is None else ("no-" if self.exclude else "") + self.module,
        }


def choices(layers: Sequence[str] | None, modules: Sequence[str] | None) -> list[Choice]:
    """The grid of choices, layers × modules ([Choice()] when neither flag is given)."""
    spans = [None if s == "all" else tuple(map(int, s.split(":"))) for s in (layers or ["all"])]
    kinds = [None if m == "all" else m for m in (modules or ["all"])]
    return [
        Choice(span, None if k is None else k.removeprefix("no-"), bool(k and k.startswith("no-")))  # type: ignore[arg-type]
        for span in spans
        for k in kinds
    ]


# --- classification --------------------------------------------------------------------------------
def classify(name: str) -> tuple[int | None, str]:
    """(block index or None, kind) of a tensor name: the kinds of `KINDS` that fully match the part after
    the block prefix (`mlp` before its MoE parts), 'other' for a block tensor of no kind; outside the
    blocks 'embedding', 'final_norm', 'lm_head' or 'other'."""
    m = _LAYER.match(name)
    if m is None:
        if re.search(r"embed|(?:^|\.)(?:wte|wpe)\.", name):
            return None, "embedding"
        if name.split(".")[0] == "lm_head":
            return None, "lm_head"
        if re.search(r"(?:^|\.)(?:norm|ln_f|final_layernorm)\.", name):
            return None, "final_norm"
        return None, "other"
    rest = m.group(3)
    for kind in ("attention", "mlp", "norm"):
        if re.fullmatch(KINDS[kind], rest):
            return int(m.group(2)), kind
    return int(m.group(2)), "other"


def selected(choice: Choice, names: Iterable[str]) -> list[str]:
    """The tensors a choice moves, by the classification alone (independent of the regex rules)."""
    out = []
    for name in names:
        layer, kind = classify(name)
        in_span = layer is not None and (
            choice.layers is None or choice.layers[0] <= layer < choice.layers[1]
        )
        sub = layer is not None and _is_kind(name, choice.module)
        if choice.module is None:
            hit = in_span
        elif choice.exclude:
            hit = (in_span and not sub) or (choice.layers is None and layer is None)
        else:
            hit = in_span and sub
        if hit:
            out.append(name)
    return out


def _is_kind(name: str, module: str | None) -> bool:
    m = _LAYER.match(name)
    return m is not None and module is not None and re.fullmatch(KINDS[module], m.group(3)) is not None


# --- rules -------------------------------------------------------------------------------------------
def check_choice(choice: Choice, names: Sequence[str]) -> None:
    """A layer range inside the model's depth and a module kind that names some tensor (ConfigError
    naming the flag otherwise)."""
    depth = layer_count(names)
    if choice.layers is not None and choice.layers[1] > depth:
        start, stop = choice.layers
        raise ConfigError(
            f"--layers {start}:{stop} lies outside the model's depth: it has {depth} blocks (0:{depth} is all)"
        )
    if choice.module is not None and not any(_is_kind(n, choice.module) for n in names):
        raise ConfigError(
            f"--modules {choice.module}: no tensor of the model is of that kind (e.g. router/experts need a "
            "mixture-of-experts model); run with --dry-run to see its tensors"
        )


def ablation_rules(choice: Choice, names: Sequence[str], mix: Any, rest: Any) -> tuple[tuple[Rule, ...], Any]:
    """(rules, default value) that move exactly `selected(choice, names)` with `mix` and give every other
    tensor `rest`; values are what the recipe's `delta`/`weights` take."""
    check_choice(choice, names)
    prefixes = sorted({m.group(1) for m in map(_LAYER.match, names) if m})
    if not prefixes:
        raise MergeError(
            "the model has no block tensors (…layers.N.…, h.N.); a layer/module ablation needs them"
        )
    if choice.layers is None:
        index = r"\d+"
    else:
        index = "(?:" + "|".join(str(i) for i in range(*choice.layers)) + ")"
    block = "(?:" + "|".join(re.escape(p) for p in prefixes) + ")" + index + r"\."
    field = "delta" if not isinstance(mix, tuple) else "weights"
    if choice.module is None:
        return (Rule(block + ".+", **{field: mix}),), rest
    kind = block + KINDS[choice.module]
    if not choice.exclude:
        return (Rule(kind, **{field: mix}),), rest
    if choice.layers is None:  # the whole mix less one kind
        return (Rule(kind, **{field: rest}),), mix
    return (Rule(kind, **{field: rest}), Rule(block + ".+", **{field: mix})), rest


def resolve(choice: Choice, names: Sequence[str]) -> list[str]:
    """The tensors `choice` moves, read back from its rules (with probe coefficients, so that a mix equal
    to the rest anchor still shows what its rules name), after checking that they are exactly the ones
    the classification selects (a guard on both)."""
    rules, default = ablation_rules(choice, names, _PROBE_MIX, _PROBE_REST)
    probe = Recipe(method="wise-ft", models=("rest", "mix"), delta=default, rules=rules)
    n_layers = layer_count(names)
    got = [n for n in names if probe.coefficients(n, n_layers)[0] == (_PROBE_MIX,)]
    want = selected(choice, names)
    if got != want:
        extra = sorted(set(got) ^ set(want))[:3]
        raise MergeError(
            f"ablation {choice.label or 'all'}: the recipe rules and the tensor classification disagree on "
            f"{extra}; please report this with the model's tensor names"
        )
    return got


_PROBE_MIX, _PROBE_REST = 0.5, 1.0


def group_names(names: Sequence[str]) -> list[str]:
    """Tensor names with block (and expert) indices folded, for listing:
    `model.layers.{0-11}.self_attn.q_proj.weight`, `model.layers.{0-1}.mlp.experts.{0-3}.up_proj.weight`
    (expert indices are folded only where the names are every block × expert combination)."""
    groups: dict[str, list[tuple[int, ...]]] = {}
    for name in names:
        m = _LAYER.match(name)
        e = _EXPERT.match(m.group(3)) if m else None
        if m is None:
            groups.setdefault(name, [])
        elif e is None:
            groups.setdefault(f"{m.group(1)}{{}}.{m.group(3)}", []).append((int(m.group(2)),))
        else:
            key = f"{m.group(1)}{{}}.{e.group(1)}{{}}.{e.group(3)}"
            groups.setdefault(key, []).append((int(m.group(2)), int(e.group(2))))
    out = []
    for key, idx in groups.items():
        if not idx:
            out.append(key)
            continue
        sets = [sorted({t[i] for t in idx}) for i in range(len(idx[0]))]
        if len(set(idx)) == math.prod(len(s) for s in sets):
            out.append(key.format(*("{" + _ranges(s) + "}" for s in sets)))
        else:  # experts differ between blocks: one line per block
            for layer in sets[0]:
                experts = [t[1] for t in idx if t[0] == layer]
                out.append(key.format(str(layer), "{" + _ranges(experts) + "}"))
    return out


_EXPERT = re.compile(r"^(.*?experts\.)(\d+)\.(.+)$")


def _ranges(values: list[int]) -> str:
    values = sorted(set(values))
    out, start = [], values[0]
    for prev, cur in zip(values, values[1:] + [None], strict=True):
        if cur is None or cur != prev + 1:
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ",".join(out)

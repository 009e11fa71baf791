"""What a run adds for thinking models once its variants are evaluated.

- `add_length_ratios(variants, reference, ...)`: every variant's mean length relative to a named reference
  variant (the paper's "Length Ratio": Token #N over the Thinking model's), with a paired bootstrap
  interval, as `summary["tokens"]["length_ratio"] = {"reference", "value", "lo", "hi"}`;
- `unclosed_thinking(name, records, tags)`: the warning for a variant whose samples are meant to think —
  their prompt ends with the opening tag (the chat template opened the block) or their text holds it —
  but where the closing tag occurs in none of them; with the count, since their answers were then graded
  on the whole text.
"""

from __future__ import annotations

from collections.abc import Sequence

from wiseft.errors import ConfigError
from wiseft.metrics import length_ratio
from wiseft.results import VariantResult


def check_reference(reference: str | None, names: Sequence[str]) -> None:
    """A --length-reference must name a variant of the run (checked before anything is sampled)."""
    if reference is not None and reference not in names:
        shown = ", ".join(list(names)[:8]) + (" …" if len(names) > 8 else "")
        raise ConfigError(
            f"--length-reference {reference!r} is not a variant of this run; its variants: {shown}"
        )


def add_length_ratios(
    variants: Sequence[VariantResult], reference: str | None, seed: int, n_boot: int
) -> None:
    """Set each variant's `summary["tokens"]["length_ratio"]` against `reference` (nothing when None)."""
    ref = next((v for v in variants if v.name == reference), None)
    if ref is None or not ref.per_problem:
        return
    for v in variants:
        if len(v.per_problem) != len(ref.per_problem):
            continue
        ratio = length_ratio(v.per_problem, ref.per_problem, seed=seed, n_boot=n_boot)
        if ratio is not None:
            v.summary["tokens"]["length_ratio"] = {"reference": reference, **ratio}


def unclosed_thinking(name: str, records: Sequence[dict], tags: tuple[str, str | None] | None) -> str | None:
    """The one-line warning for variant `name` when samples meant to think never close the block (None
    when thinking is off, nothing was meant to think, or some sample closed it)."""
    if tags is None or not records:
        return None
    close, opener = tags
    if any(close in r["completion"] for r in records):
        return None
    meant = [
        r for r in records
        if opener and (str(r.get("prompt") or "").rstrip().endswith(opener) or opener in r["completion"])
    ]  # fmt: skip
    if not meant:
        return None
    cut = sum(r.get("finish_reason") == "length" for r in meant)
    return (
        f"variant {name}: {len(meant)} of {len(records)} samples open a thinking block ({opener!r} in the "
        f"prompt or the text) but none closes it with {close!r} ({cut} hit --max-new-tokens); their answers "
        "were graded on the whole text — check --thinking-tag or raise --max-new-tokens"
    )

"""A sample store written as the per-sample files of lm-evaluation-harness and lighteval, so that their
viewers and scripts read wiseft's samples (`wiseft store export --format lm-eval|lighteval`).

- `export_store(store, out, fmt, ...)`: check everything (format, variants graded, one n per variant,
  the output), then write the whole tree at once; returns what it wrote;
- `lmeval_samples` / `lighteval_details`: the two layouts, each documented field by field;
- `common`: gathering a variant's graded samples per problem, names, the output tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wiseft.errors import ConfigError
from wiseft.harness import lighteval_details, lmeval_samples
from wiseft.harness.common import check_date_id, check_output, date_id, gather, output_tree
from wiseft.store import SampleStore

WRITERS = {"lm-eval": lmeval_samples.write, "lighteval": lighteval_details.write}
FORMATS = tuple(WRITERS)


@dataclass(frozen=True)
class HarnessExport:
    """What an export wrote: the files (final paths), the variants and the problems per variant."""

    files: list[Path]
    variants: list[str]
    problems: list[int]
    date_id: str


def check_format(fmt: str) -> str:
    if fmt not in WRITERS:
        raise ConfigError(f"--format must be one of jsonl, {', '.join(FORMATS)}; got {fmt!r}")
    return fmt


def export_store(
    store: SampleStore, out: str | Path, fmt: str, *, variants: Sequence[str] | None = None,
    ks: Sequence[int] | None = None, force: bool = False, date: str | None = None, verifier: str | None = None,
) -> HarnessExport:  # fmt: skip
    """Write the graded samples of `variants` (names; default all) of an open store as `fmt` files under
    `out`. Nothing is written when any check fails. Scored samples carry the score and verifier id of one
    verifier (`verifier`, else the only one; `SampleStore.choose_verifier`) in their per-sample lists."""
    check_format(fmt)
    out = Path(out)
    check_output(out, force)
    if fmt == "lighteval":
        lighteval_details.require_pyarrow()
    date = check_date_id(date) if date is not None else date_id()
    rows = [store.find_variant(name) for name in dict.fromkeys(variants)] if variants else store.variants()
    if not rows:
        raise ConfigError(f"sample store {store.path} holds no variants to export")
    gathered = gather(store, rows, ks, verifier)
    with output_tree(out, force) as tmp:
        written = WRITERS[fmt](gathered, tmp, date)
    files = [out / p.relative_to(tmp) for p in written]
    return HarnessExport(files, [vd.variant.name for vd in gathered], [len(vd.docs) for vd in gathered], date)

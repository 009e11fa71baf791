"""What hashing the weights as they stream costs a merge (issue 13: provenance that identifies the weights).

`wiseft merge` feeds every byte it reads and writes to xxh3-128 content hashes (merge/hashing.py). This
bench merges the Qwen2.5-shaped bf16 pair of bench/merge.py (built there, cached in ~/.cache/wiseft-bench)
with wise-ft, in this process, alternating runs with the hashes and runs with a no-op in their place (the
same pipeline otherwise), inputs in the page cache, ≥ 3 runs each; prints the medians and the overhead.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from merge import build, files_of, warm  # noqa: E402  (bench/merge.py: the same cached checkpoints)

from wiseft.merge import Recipe, driver  # noqa: E402
from wiseft.merge.hashing import MergeHashes  # noqa: E402
from wiseft.merge.plan import plan  # noqa: E402


class _NoDigest:
    def feed(self, *args) -> None:
        pass

    def feed_info(self, *args) -> None:
        pass


class NoHashes(MergeHashes):
    """The same interface, hashing nothing (the baseline)."""

    def __init__(self, n_inputs: int) -> None:
        super().__init__(n_inputs)
        self.inputs = [_NoDigest() for _ in range(n_inputs)]
        self.output = _NoDigest()

    def empty_outputs(self, tensors) -> None:
        pass

    def provenance(self, inputs, out_config):
        return [{} for _ in inputs], {}


def once(p, out: Path, hashes_class) -> float:
    driver.MergeHashes = hashes_class
    try:
        t0 = time.perf_counter()
        driver.merge(p, out, force=True)
        return time.perf_counter() - t0
    finally:
        driver.MergeHashes = MergeHashes
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="0.5b", choices=("0.5b", "1.5b"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    early, final = build(args.shape, "early", 1), build(args.shape, "final", 2)
    warm(files_of(early) + files_of(final), bytearray(1 << 24))
    p = plan(Recipe(models=(str(early), str(final)), delta=0.25))
    times: dict[str, list[float]] = {"with content hashes": [], "without (baseline)": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(max(3, args.runs)):
            times["without (baseline)"].append(once(p, Path(tmp) / "out", NoHashes))
            times["with content hashes"].append(once(p, Path(tmp) / "out", MergeHashes))
    base = statistics.median(times["without (baseline)"])
    table = Table(
        title=f"wise-ft merge of the Qwen2.5-{args.shape} bf16 pair, in process (median of {len(times['with content hashes'])})"
    )
    for column in ("variant", "median s", "runs", "vs baseline"):
        table.add_column(column)
    for name, values in times.items():
        med = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        table.add_row(name, f"{med:.2f}", runs, f"{(med / base - 1) * 100:+.1f}%")
    Console().print(table)
    print(f"bytes hashed per merge: {(p.bytes_read + p.bytes_written) / 1e9:.2f} GB (inputs + output)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the content hash of a model costs, against reading its bytes alone, in the same run.

Uses the Qwen2.5-0.5B-shaped bf16 checkpoint of `bench/merge.py` (built once, cached). For each of ≥3
runs, after one warm-up read that puts the files in the page cache:
  - floor: read every tensor into one reused buffer (`Checkpoint.read_into`), no hashing;
  - content_hash: the same reads with xxh3-128 over the bytes (`wiseft.checkpoints.content_hash`);
  - model_fingerprint: content hash plus config (what the sample store keys a variant by);
  - sha256: the same reads with hashlib's sha256, the cryptographic alternative.
Prints medians, GB/s and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from wiseft.checkpoints import Checkpoint, content_hash, model_fingerprint

sys.path.insert(0, str(Path(__file__).parent))
from merge import build  # noqa: E402  (bench/merge.py builds and caches the checkpoint)

BLOCK = 16 << 20


def read_all(path: Path, update=None) -> None:
    ckpt = Checkpoint.open(path)
    buf = memoryview(bytearray(BLOCK))
    for info in ckpt.tensors.values():
        for start in range(0, info.nbytes, BLOCK):
            piece = buf[: min(BLOCK, info.nbytes - start)]
            ckpt.read_into(info, piece, start)
            if update is not None:
                update(piece)
    ckpt.close()


def sha256_all(path: Path) -> None:
    h = hashlib.sha256()
    read_all(path, h.update)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="0.5b", choices=("0.5b", "1.5b"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    model = build(args.shape, "early", seed=1)
    size = Checkpoint.open(model).total_bytes
    read_all(model)  # warm the page cache
    cases = {
        "floor: read only": lambda: read_all(model),
        "content_hash (xxh3-128)": lambda: content_hash(model),
        "model_fingerprint": lambda: model_fingerprint(model),
        "sha256 over the same reads": lambda: sha256_all(model),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):  # interleaved, so load on the machine hits every case alike
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    floor = statistics.median(times["floor: read only"])
    table = Table(
        title=f"content hash of a {args.shape} bf16 checkpoint ({size / 1e9:.2f} GB), {args.runs} runs"
    )
    for col in ("case", "median s", "GB/s", "× floor"):
        table.add_column(col, justify="right" if col != "case" else "left")
    for name, ts in times.items():
        med = statistics.median(ts)
        table.add_row(name, f"{med:.3f}", f"{size / med / 1e9:.2f}", f"{med / floor:.2f}")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()

"""RL step logs for report tests: records shaped as `wiseft train grpo` writes them (`train.grpo._record`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def rl_records(steps: int, start: float, slope: float, seed: int, group: int = 8, kl: bool = False) -> list:
    """`steps` records whose reward climbs from `start` by `slope` a step, with noise (seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(1, steps + 1):
        p1 = float(np.clip(start + slope * s + rng.normal(0, 0.04), 0, 1))
        pk = float(np.clip(p1 + 0.3 * (1 - p1), 0, 1))
        out.append({
            "step": s, "reward_mean": p1, "reward_std": 0.3, "kl": 0.01 * s if kl else None,
            "completion_length": 9.0 + rng.normal(0, 0.3), "zero_std_fraction": float(np.clip(1 - pk + p1 ** 4, 0, 1)),
            "accuracy": p1, "pass_at_k": {"1": p1, "2": (p1 + pk) / 2, "4": pk, str(group): pk},
            "answered": 1.0, "timeouts": 0, "all_zero_reward": False, "loss": 0.0, "grad_norm": 0.1,
            "lr": 1e-4, "rows_skipped": 0, "seconds": {"generate": 0.3, "reward": 0.001, "update": 0.02},
        })  # fmt: skip
    return out


def write_log(path: Path, records: list, tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")
    return path


def make_rl_dir(run_dir: Path, steps: int = 40) -> Path:
    """The demo's layout: RUN/rl/{final,mix,early}/grpo_log.jsonl."""
    for i, (label, start, slope) in enumerate(
        (("final", 0.55, 0.002), ("mix", 0.45, 0.006), ("early", 0.3, 0.006))
    ):
        write_log(run_dir / "rl" / label / "grpo_log.jsonl", rl_records(steps, start, slope, seed=i))
    return run_dir

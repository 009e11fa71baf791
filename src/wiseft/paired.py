"""Paired bootstrap differences between variants evaluated on the same problems.

All variants of a run answer the same problems with common random numbers, so the difference of a metric
between two variants is bootstrapped over problems as one paired series: far tighter than comparing two
separate intervals. `PairedTables` holds each variant's per-problem metric values
(`metrics.per_problem_values`); `diff(a, b, metric)` is the mean difference with its 95% interval.
bias² = (1−E[ρ])² and Var[ρ] are not means of per-problem values, so `bias_variance_diff(a, b)`
recomputes both for both variants on each resample of problems (the same resamples) and takes the
differences of those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from wiseft.metrics import ProblemTable, bias_variance_boot, bootstrap_ci, per_problem_values
from wiseft.records import ProblemSamples

BIG_K_MIN = 8


@dataclass(frozen=True)
class Diff:
    """A paired difference (a − b) of one metric, with its 95% bootstrap interval."""

    metric: str
    value: float
    lo: float
    hi: float

    def as_dict(self) -> dict:
        return {"metric": self.metric, "value": self.value, "lo": self.lo, "hi": self.hi}

    def text(self) -> str:
        return f"{self.metric} {self.value:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}]"


class PairedTables:
    """Per-problem metric values of each variant, for paired bootstrap differences."""

    def __init__(
        self, samples: dict[str, Sequence[ProblemSamples]], ks: Sequence[int], seed: int = 0, n_boot=1000,
        known: Mapping[str, ProblemTable | None] | None = None,
    ):  # fmt: skip
        """`known`: variants' `problem_table`s already computed (e.g. by their summaries); one is used
        where it was computed for these ks and seed with the default vote transform, as these tables are."""
        self.ks = sorted(set(ks))
        self.seed = seed
        self.n_boot = n_boot
        known = known or {}
        self.tables: dict[str, tuple[list[str], np.ndarray]] = {}
        for name, problems in samples.items():
            table = known.get(name)
            if table is not None and table.matches(self.ks, seed):
                self.tables[name] = (list(table.names), table.values)
            else:
                self.tables[name] = per_problem_values(list(problems), self.ks, seed=seed)

    def value(self, variant: str, metric: str) -> float:
        names, table = self.tables[variant]
        return float(table[:, names.index(metric)].mean())

    def interval(self, variant: str, metric: str) -> tuple[float, float, float]:
        names, table = self.tables[variant]
        mean, lo, hi = bootstrap_ci(table[:, names.index(metric)], seed=self.seed, n_boot=self.n_boot)
        return float(mean), float(lo), float(hi)

    def diff(self, a: str, b: str, metric: str) -> Diff:
        names_a, ta = self.tables[a]
        names_b, tb = self.tables[b]
        if ta.shape[0] != tb.shape[0]:
            raise ValueError(f"variants {a} and {b} cover different numbers of problems")
        d = ta[:, names_a.index(metric)] - tb[:, names_b.index(metric)]
        mean, lo, hi = bootstrap_ci(d, seed=self.seed, n_boot=self.n_boot)
        return Diff(metric, float(mean), float(lo), float(hi))

    def rho(self, variant: str) -> np.ndarray:
        """Per-problem Pass@1 ρ of a variant."""
        names, table = self.tables[variant]
        return table[:, names.index("pass@1")]

    def bias_variance(self, variant: str) -> tuple[float, float]:
        """(bias², Var[ρ]) of a variant over its problems."""
        rho = self.rho(variant)
        return float((1.0 - rho.mean()) ** 2), float(rho.var())

    def bias_variance_diff(self, a: str, b: str) -> tuple[Diff, Diff]:
        """Paired differences (a − b) of bias² and of Var[ρ], with 95% intervals from one bootstrap over
        problems that recomputes both quantities for both variants on the same resamples."""
        ra, rb = self.rho(a), self.rho(b)
        if ra.shape[0] != rb.shape[0]:
            raise ValueError(f"variants {a} and {b} cover different numbers of problems")
        boots = bias_variance_boot(np.stack([ra, rb], axis=1), seed=self.seed, n_boot=self.n_boot)
        delta = boots[:, 1:, 0] - boots[:, 1:, 1]  # n_boot × (bias², Var)
        lo, hi = np.quantile(delta, [0.025, 0.975], axis=0)
        va, vb = self.bias_variance(a), self.bias_variance(b)
        return (
            Diff("bias²", va[0] - vb[0], float(lo[0]), float(hi[0])),
            Diff("Var[ρ]", va[1] - vb[1], float(lo[1]), float(hi[1])),
        )

    def big_ks(self) -> list[int]:
        return [k for k in self.ks if k >= BIG_K_MIN]

"""Metrics over graded samples, exactly as DESIGN §4 defines them. Pure functions, no I/O.

Modules: `estimators` (Pass@k, maj@k, best@k), `weighted` (wmaj@k and vote transforms), `intervals`
(the bootstrap and the bias–variance decomposition), `summary` (`summarize`, breakdowns, diversity,
tokens, thinking, `score_records`). Everything public is importable from `wiseft.metrics`.

Input is one `ProblemSamples` per problem: per-sample correctness, the answer equivalence class of each
sample (−1 when no answer was extracted), and optionally reward-model scores, token counts and whether the
length limit cut the sample. `summarize` turns a list of them into the dictionary every consumer (CLI,
sweep, report) reads; its shape is fixed in docs/ARCHITECTURE.md.

Why the estimators look the way they do:
- Pass@k uses the product form of 1 − C(n−c, k)/C(n, k): no huge binomials, no cancellation.
- maj@k is an expectation over all k-subsets. Enumerating them is hopeless for n = 64, so it is counted:
  for the correct class at count j, a small dynamic programme over the other classes counts the subsets
  in which no class exceeds j and t classes tie at j (credit 1/(t+1)). Exact in float64 up to n = 1000;
  beyond that (binomials overflow) a fixed-seed Monte Carlo over subsets is used.
- best@k is the closed form of Σ_i correct_(i)·C(n−i, k−1)/C(n, k) over samples sorted by score; tied
  scores get their group's mean correctness, which is the exact expectation over random tie-breaking.
- weighted maj@k (wmaj@k) has no counting shortcut (votes are sums of real weights), so the k-subsets
  are enumerated when there are at most WMAJ_EXACT_MAX_SUBSETS of them, else a fixed-seed Monte Carlo
  over MAJ_MC_SUBSETS subsets is used. Votes are the raw scores mapped to weights ≥ 0 by a named
  transform (VOTE_TRANSFORMS): each verifier documents its own (wiseft.verify).
- Intervals: one bootstrap over problems (a fixed-seed multinomial resample matrix) shared by all
  metrics, so a whole summary costs one small matrix product. `n_boot` is at most `MAX_N_BOOT` (`wiseft.limits`), and the
  n_boot × problems resample matrix is drawn and multiplied in row blocks of at most `BOOT_CHUNK_BYTES`,
  so memory stays bounded (the bootstrap means themselves take n_boot × metrics × 8 bytes). Blocks are
  consecutive draws of one generator, so the resamples do not depend on the block size, and at the
  default n_boot = 1000 the whole matrix is one block up to 8,388 problems.
"""

from wiseft.limits import MAX_N_BOOT, check_n_boot
from wiseft.metrics.estimators import MAJ_EXACT_MAX_N, MAJ_MC_SUBSETS, best_at_k, maj_at_k, pass_at_k
from wiseft.metrics.intervals import (
    BOOT_CHUNK_BYTES,
    RHO_EDGES,
    bias_variance,
    bias_variance_boot,
    bootstrap_ci,
    resample_blocks,
    resample_weights,
)
from wiseft.metrics.summary import (
    ProblemTable,
    breakdown,
    diversity,
    length_ratio,
    per_problem_values,
    problem_table,
    score_records,
    summarize,
    thinking_stats,
    token_stats,
)
from wiseft.metrics.weighted import (
    DEFAULT_VOTE_TRANSFORM,
    VOTE_TRANSFORMS,
    WMAJ_EXACT_MAX_SUBSETS,
    WMAJ_TIE_RTOL,
    vote_weights,
    weighted_maj_at_k,
)
from wiseft.records import ProblemSamples

__all__ = [
    "ProblemTable",
    "BOOT_CHUNK_BYTES",
    "DEFAULT_VOTE_TRANSFORM",
    "MAJ_EXACT_MAX_N",
    "MAJ_MC_SUBSETS",
    "MAX_N_BOOT",
    "ProblemSamples",
    "RHO_EDGES",
    "VOTE_TRANSFORMS",
    "WMAJ_EXACT_MAX_SUBSETS",
    "WMAJ_TIE_RTOL",
    "best_at_k",
    "bias_variance",
    "bias_variance_boot",
    "bootstrap_ci",
    "breakdown",
    "check_n_boot",
    "diversity",
    "length_ratio",
    "maj_at_k",
    "pass_at_k",
    "per_problem_values",
    "problem_table",
    "resample_blocks",
    "resample_weights",
    "score_records",
    "summarize",
    "thinking_stats",
    "token_stats",
    "vote_weights",
    "weighted_maj_at_k",
]

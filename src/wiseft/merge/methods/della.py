"""`della` and `della_linear`: DELLA-merging (Deep et al. 2024) as mergekit runs it: per row, keep each
task-vector entry with a probability from density − ε (smallest magnitude) to density + ε (largest),
seeded (merge/rng.py), rescale (`l1` by default as mergekit; `inverse` divides by each entry's keep
probability, as the paper), then the TIES sign election (della) or a linear sum (della_linear).
merge/taskvectors.py has the exact definitions."""

from __future__ import annotations

from wiseft.merge.methods import Param
from wiseft.merge.methods.ties import family

EPSILON = (Param("epsilon", "model", 0.15, doc="keep probabilities span density ± epsilon"),)

DELLA = family(
    "della",
    "θ_base + λ·Σ_agree w_i·rescale(m_i ⊙ δ_i) / Σ_agree w_i, m_i ~ Bernoulli(p by rank in row)",
    "della",
    consensus=True,
    normalize=True,
    rescale="l1",
    extra=EPSILON,
    reference="https://arxiv.org/abs/2406.11617",
)

DELLA_LINEAR = family(
    "della_linear",
    "θ_base + λ·Σ w_i·rescale(m_i ⊙ δ_i), m_i ~ Bernoulli(p by rank in row)",
    "della",
    consensus=False,
    normalize=False,
    rescale="l1",
    extra=EPSILON,
    reference="https://arxiv.org/abs/2406.11617",
)

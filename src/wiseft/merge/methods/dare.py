"""`dare_linear` and `dare_ties`: DARE (Yu et al. 2023): drop each task-vector element with probability
1 − density (seeded, merge/rng.py) and rescale the kept ones: `rescale: l1` (mergekit's default, keeps
Σ|δ_i|), `inverse` (the paper's 1/(1 − p) = 1/density) or `none`; then a linear sum (dare_linear) or the
TIES sign election (dare_ties). merge/taskvectors.py has the exact definitions."""

from __future__ import annotations

from wiseft.merge.methods.ties import family

DARE_LINEAR = family(
    "dare_linear",
    "θ_base + λ·Σ w_i·rescale(m_i ⊙ δ_i), m_i ~ Bernoulli(density) (seeded)",
    "random",
    consensus=False,
    normalize=False,
    rescale="l1",
    reference="https://arxiv.org/abs/2311.03099",
)

DARE_TIES = family(
    "dare_ties",
    "θ_base + λ·Σ_agree w_i·rescale(m_i ⊙ δ_i) [÷ Σ_agree w_i]: DARE drop, TIES sign election",
    "random",
    consensus=True,
    normalize=False,
    rescale="l1",
    reference="https://arxiv.org/abs/2311.03099",
)

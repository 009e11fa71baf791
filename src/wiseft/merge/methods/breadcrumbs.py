"""`breadcrumbs` and `breadcrumbs_ties`: Model Breadcrumbs (Davari & Belilovsky 2023): drop the `gamma`
fraction of largest-magnitude entries of each task vector and enough of the smallest that `density` of
it is kept; then a linear sum (breadcrumbs) or the TIES sign election (breadcrumbs_ties).
merge/taskvectors.py has the exact definitions (mergekit's counts; ties broken by index)."""

from __future__ import annotations

from wiseft.merge.methods import Param
from wiseft.merge.methods.ties import family

GAMMA = (Param("gamma", "model", 0.01, doc="fraction of largest magnitudes dropped, in [0, 1)"),)

BREADCRUMBS = family(
    "breadcrumbs",
    "θ_base + λ·Σ w_i·δ_i|middle: drop the gamma largest and the smallest so density is kept",
    "outliers",
    consensus=False,
    normalize=False,
    rescale="none",
    extra=GAMMA,
    reference="https://arxiv.org/abs/2312.06795",
)

BREADCRUMBS_TIES = family(
    "breadcrumbs_ties",
    "breadcrumbs' trimming, then TIES sign election and λ·Σ_agree w_i·δ_i [÷ Σ_agree w_i]",
    "outliers",
    consensus=True,
    normalize=False,
    rescale="none",
    extra=GAMMA,
    reference="https://arxiv.org/abs/2312.06795",
)

"""`arcee_fusion`: keep the model's changes where they matter most (mergekit's Arcee Fusion).

With a the base and b the one model, per tensor, rows along the last dimension (a 1-D tensor is one row):

    p = softmax(b_row) + 1e-8,  q = softmax(a_row) + 1e-8,  kl_row = Σ p·log(p/q)
    importance = |b − a| · kl_row
    τ = Q2 + 1.5·(Q3 − Q1),   Q_k = the element of ascending rank ⌊k·(n−1)/4⌋ of the importances
    θ = a + (b − a)·[importance ≥ τ]

Computed in float64 and rounded once. Two deliberate differences from mergekit, both about
reproducibility: the quartiles are exact order statistics of the whole tensor (found in streaming passes,
merge/select.py), where mergekit (0.1.5) estimates them from 1,000,000 elements drawn at random from
torch's global generator, which it does not seed, once a tensor has more, so its thresholds are
approximate and depend on the order tensors are processed in; and kl_row is clamped at 0 (it is ≥ 0
mathematically; rounding can make it −1e−17, which would make the keys of the selection negative).
On tensors of at most 1,000,000 elements mergekit's quartiles are exact too. No parameters.
merge(A, A) = A: the importances are all 0, every element is kept, and b − a = 0.
"""

from __future__ import annotations

import torch

from wiseft.merge import select
from wiseft.merge.methods import Method, TensorContext, register
from wiseft.merge.select import Selector
from wiseft.merge.tensorwise import Job, as_float64

EPS = 1e-8  # mergekit's smoothing of the two distributions
QUARTILES = (1, 2, 3)
IQR_FACTOR = 1.5


def quartile_positions(n: int) -> tuple[int, ...]:
    """Ascending ranks of Q1, Q2, Q3 among n values: mergekit's ⌊q·(n − 1)⌋ for q = 1/4, 1/2, 3/4."""
    return tuple(k * (n - 1) // 4 for k in QUARTILES)


def importance(a: torch.Tensor, b: torch.Tensor, cols: int, scratch) -> torch.Tensor:
    """|b − a|·KL(softmax(b_row) + ε ‖ softmax(a_row) + ε) per element, float64 chunks of whole rows,
    in scratch.tmp (non-negative: kl is clamped at 0 and −0 turned into +0)."""
    m = a.numel()
    work = scratch.rows("fusion", 2, m)
    p, q = work[0].view(-1, cols), work[1].view(-1, cols)
    torch.softmax(b.view(-1, cols), dim=-1, out=p)
    torch.softmax(a.view(-1, cols), dim=-1, out=q)
    p.add_(EPS)
    q.add_(EPS)
    torch.div(p, q, out=q)
    q.log_().mul_(p)
    kl = q.sum(dim=-1, keepdim=True).clamp_(min=0.0)
    out = scratch.tmp[:m]
    torch.sub(b, a, out=out).abs_()
    out.view(-1, cols).mul_(kl)
    return out.add_(0.0)


class FusionJob(Job):
    """Observation passes find the three quartiles of the importances exactly; the output pass keeps the
    model's value where the importance reaches τ."""

    cache_key = ("arcee_fusion",)  # the threshold depends on the values only

    def __init__(self, ctx: TensorContext):
        self.cols = ctx.shape[-1] if len(ctx.shape) >= 2 else max(1, ctx.numel)
        self.granularity = self.cols
        cap = max(select.MIN_CAP, select.TOTAL_CAP // len(QUARTILES))
        self.selectors = [Selector(p, cap) for p in quartile_positions(ctx.numel)]
        self.threshold: float | None = None

    def needs_observation(self) -> bool:
        return self.threshold is None

    def observe(self, xs, start, scratch) -> None:
        a, b = as_float64(xs, scratch)
        keys = importance(a, b, self.cols, scratch).view(torch.int64)
        for s in self.selectors:
            s.observe(keys)

    def end_pass(self) -> bool:
        pending = [s.end_pass() for s in self.selectors]
        if any(pending):
            return True
        q1, q2, q3 = (_value(s.result.value) for s in self.selectors)
        self.threshold = q2 + IQR_FACTOR * (q3 - q1)
        return False

    def stats(self) -> float | None:
        return self.threshold

    def use_stats(self, stats) -> None:
        self.threshold = stats

    def compute(self, xs, start, acc, scratch) -> None:
        a, b = as_float64(xs, scratch)
        keep = torch.ge(importance(a, b, self.cols, scratch), self.threshold)
        torch.sub(b, a, out=acc).mul_(keep).add_(a)


def _value(key: int) -> float:
    return torch.tensor([key], dtype=torch.int64).view(torch.float64).item()


def _job(ctx: TensorContext, coeffs: tuple[float, ...]) -> FusionJob:
    return FusionJob(ctx)


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    return None


ARCEE_FUSION = register(
    Method(
        name="arcee_fusion",
        summary="a + (b−a)·[|b−a|·KL_row(b‖a) ≥ Q2 + 1.5·IQR]: the base a takes the model b's most important changes",
        coefficient="none",
        needs_base=True,
        min_models=1,
        max_models=1,
        check=_check,
        job=_job,
        reference="https://www.arcee.ai/blog/meet-mergekit-v0-1-arcee-fusion-expanded-model-support-multi-gpu-acceleration",
    )
)

__all__ = ["ARCEE_FUSION", "FusionJob", "importance", "quartile_positions"]

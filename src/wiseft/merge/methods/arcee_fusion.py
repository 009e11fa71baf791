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
    return weigh(a, b, row_kl(a, b, cols, scratch), cols, scratch)


def row_kl(a: torch.Tensor, b: torch.Tensor, cols: int, scratch) -> torch.Tensor:
    """KL(softmax(b_row) + ε ‖ softmax(a_row) + ε) of each row of the chunk, clamped at 0: [rows, 1]."""
    m = a.numel()
    work = scratch.rows("fusion", 2, m)
    p, q = work[0].view(-1, cols), work[1].view(-1, cols)
    torch.softmax(b.view(-1, cols), dim=-1, out=p)
    torch.softmax(a.view(-1, cols), dim=-1, out=q)
    p.add_(EPS)
    q.add_(EPS)
    torch.div(p, q, out=q)
    q.log_().mul_(p)
    return q.sum(dim=-1, keepdim=True).clamp_(min=0.0)


def weigh(a: torch.Tensor, b: torch.Tensor, kl: torch.Tensor, cols: int, scratch) -> torch.Tensor:
    """|b − a| times its row's kl ([rows, 1]), in scratch.tmp, −0 turned into +0."""
    out = scratch.tmp[: a.numel()]
    torch.sub(b, a, out=out).abs_()
    out.view(-1, cols).mul_(kl)
    return out.add_(0.0)


class FusionJob(Job):
    """Observation passes find the three quartiles of the importances exactly; the output pass keeps the
    model's value where the importance reaches τ.

    Each row's kl (two softmaxes and a log over the row: most of the arithmetic) is computed once, in
    the first pass over the tensor, and kept for the passes after it (8 bytes a row), which only weigh
    |b − a| by it: the same values, bit for bit. In the first pass the three selectors' histograms are
    the same, so one selector counts and the others take its bins (`select.share_first_pass`)."""

    cache_key = ("arcee_fusion",)  # the threshold depends on the values only

    def __init__(self, ctx: TensorContext):
        self.cols = ctx.shape[-1] if len(ctx.shape) >= 2 else max(1, ctx.numel)
        self.granularity = self.cols
        cap = max(select.MIN_CAP, select.TOTAL_CAP // len(QUARTILES))
        self.selectors = [Selector(p, cap) for p in quartile_positions(ctx.numel)]
        self.threshold: float | None = None
        self.n_rows = max(1, ctx.numel // self.cols)
        self._kl: torch.Tensor | None = None  # [n_rows, 1], filled by the first pass
        self._kl_ready = False

    def _importance(self, xs, start: int, scratch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The chunk's a, b (float64) and importances."""
        a, b = as_float64(xs, scratch)
        rows = slice(start // self.cols, (start + a.numel()) // self.cols)
        if not self._kl_ready:
            if self._kl is None:
                self._kl = torch.empty(self.n_rows, 1, dtype=torch.float64)
            self._kl[rows] = row_kl(a, b, self.cols, scratch)
        return a, b, weigh(a, b, self._kl[rows], self.cols, scratch)

    def needs_observation(self) -> bool:
        return self.threshold is None

    def observe(self, xs, start, scratch) -> None:
        keys = self._importance(xs, start, scratch)[2].view(torch.int64)
        sharing = [s for s in self.selectors if s.in_first_pass][1:]  # take the first one's bins (end_pass)
        for s in self.selectors:
            if s not in sharing:
                s.observe_array(keys)

    def end_pass(self) -> bool:
        select.share_first_pass(self.selectors)
        self._kl_ready = self._kl is not None  # the first pass has seen every row
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
        a, b, weighed = self._importance(xs, start, scratch)
        keep = torch.ge(weighed, self.threshold)
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

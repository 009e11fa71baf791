"""How the task-vector family combines its sparse task vectors s_i into θ, in float64: linear
(`base_plus` with the coefficients of `scales`) or by sign consensus (TIES, `consensus`). The exact
definitions are in merge/taskvectors.py's docstring; merge/sparsify.py makes the s_i.
"""

from __future__ import annotations

import math

import torch

from wiseft.merge.methods.linear import NORMALIZE_EPS


def scales(weights, lam: float, normalize: bool) -> tuple[float, ...]:
    """c_i = λ·w_i/D with D = Σ w (|D| < 1e-8 → 1, as mergekit) when normalising, else 1. λ = 1 and no
    normalisation give c_i = w_i exactly."""
    divisor = math.fsum(weights) if normalize else 1.0
    if abs(divisor) < NORMALIZE_EPS:
        divisor = 1.0
    if lam == 1.0 and divisor == 1.0:
        return tuple(weights)
    return tuple(lam * w / divisor for w in weights)


def base_plus(base64, deltas, coeffs, acc, scratch) -> None:
    """acc ← base + Σ c_i·δ_i in float64 (base and δ_i float64 chunks); zero c_i are skipped.

    With one non-zero c this is `base + c·δ`; with more, the terms (the base among them) are added
    smallest value first (`canonical_sum`), so the order of the models does not matter."""
    m = acc.numel()
    active = [(d, c) for d, c in zip(deltas, coeffs, strict=True) if c != 0.0]
    if len(active) <= 1:
        acc.copy_(base64)
        for d, c in active:
            tmp = scratch.tmp[:m]
            tmp.copy_(d)
            if c != 1.0:
                tmp.mul_(c)
            acc.add_(tmp)
        return
    stack = scratch.stack(len(active) + 1, m)
    stack[0].copy_(base64)
    for row, (d, c) in zip(stack[1:], active, strict=True):
        row.copy_(d)
        if c != 1.0:
            row.mul_(c)
    scratch.canonical_sum(stack, acc)


def consensus(base, sparse, weights, lam: float, normalize: bool, acc, scratch) -> None:
    """acc ← base + λ·(Σ agreeing t_i) [÷ Σ agreeing w_i], t_i = w_i·s_i (module docstring)."""
    n, m_len = len(sparse), acc.numel()
    t = scratch.rows("weighted", n, m_len)
    for row, s, w in zip(t, sparse, weights, strict=True):
        row.copy_(s)
        if w != 1.0:
            row.mul_(w)
    elected = scratch.rows("elected", 1, m_len)[0]
    sum_rows(t, elected, scratch)
    positive = elected >= 0
    agree = scratch.rows("agree", n, m_len, torch.bool)
    for i in range(n):
        torch.where(positive, t[i] > 0, t[i] < 0, out=agree[i])
    chosen = scratch.rows("chosen", n, m_len)
    dissent = agree.logical_not()
    chosen.copy_(t).masked_fill_(dissent, 0.0)
    mixed = elected
    sum_rows(chosen, mixed, scratch)
    if normalize:
        for i, w in enumerate(weights):
            chosen[i].fill_(w).masked_fill_(dissent[i], 0.0)
        divisor = scratch.rows("divisor", 1, m_len)[0]
        sum_rows(chosen, divisor, scratch)
        divisor.masked_fill_(divisor == 0, 1.0)
        mixed.div_(divisor)
    if lam != 1.0:
        mixed.mul_(lam)
    torch.add(base, mixed, out=acc)


def sum_rows(rows: torch.Tensor, out: torch.Tensor, scratch) -> None:
    """out ← Σ rows: one row copied, two added, more added smallest first (canonical_sum)."""
    if rows.shape[0] == 1:
        out.copy_(rows[0])
    elif rows.shape[0] == 2:
        torch.add(rows[0], rows[1], out=out)
    else:
        scratch.canonical_sum(rows, out)

"""Float64 reference implementations of the merge methods, written plainly from the papers and mergekit's
docs (docs/merge_methods.md, its sparsify/consensus description), on whole tensors, independently of the
kernels: no chunks, no Gram matrices, no radix selection. Each takes float64 tensors of one tensor's
values and returns the float64 result; the tests round it once to the output dtype.

Orders of summation follow the project's documented contract (two terms a + b; three or more added
smallest value first, `float64_sum`). Reductions over a whole tensor (norms, dot products, L1 sums) are
plain torch sums here, which differ from the kernels' block sums in the last bits: the tests allow one
unit in the last place of the output dtype there (see `assert_matches`).
"""

from __future__ import annotations

import hashlib
import math

import torch

from support.merge import float64_sum


# --- spherical -------------------------------------------------------------------------------------------
def slerp(a, b, t):
    """mergekit's slerp: normalise (if norm > 1e-8), dot, lerp above 0.9995, else the slerp formula."""
    na, nb = a.norm(), b.norm()
    ua = a / na if na > 1e-8 else a
    ub = b / nb if nb > 1e-8 else b
    dot = float((ua * ub).sum())
    if abs(dot) > 0.9995:
        return (1 - t) * a + t * b
    theta0 = math.acos(dot)
    s0 = math.sin(theta0 - theta0 * t) / math.sin(theta0)
    s1 = math.sin(theta0 * t) / math.sin(theta0)
    return s0 * a + s1 * b


def _nuslerp_vectors(v0, v1, t):
    """v0, v1: [k, d], slerp each of the k pairs of vectors (mergekit's nuslerp on the last dimension)."""
    n0 = v0.norm(dim=-1, keepdim=True).clamp(min=1e-7)
    n1 = v1.norm(dim=-1, keepdim=True).clamp(min=1e-7)
    cos = ((v0 / n0) * (v1 / n1)).sum(dim=-1, keepdim=True).clamp(-1, 1)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    s0 = torch.sin((1 - t) * theta) / sin
    s1 = torch.sin(t * theta) / sin
    colinear = sin.abs() < 1e-8
    s0 = torch.where(colinear, torch.full_like(s0, 1 - t), s0)
    s1 = torch.where(colinear, torch.full_like(s1, t), s1)
    return s0 * v0 + s1 * v1


def nuslerp(models, base, w, shape, flatten=True, row_wise=False):
    t = 0.5 if abs(w[0] + w[1]) < 1e-6 else w[1] / (w[0] + w[1])
    v0, v1 = (m - base if base is not None else m for m in models)
    if flatten or len(shape) < 2:
        out = _nuslerp_vectors(v0.view(1, -1), v1.view(1, -1), t).view(-1)
    elif row_wise:  # vectors along the first dimension
        d0 = shape[0]
        out = _nuslerp_vectors(v0.view(d0, -1).T, v1.view(d0, -1).T, t).T.reshape(-1)
    else:
        cols = shape[-1]
        out = _nuslerp_vectors(v0.view(-1, cols), v1.view(-1, cols), t).view(-1)
    return out + base if base is not None else out


def multislerp(models, base, weights, normalize=True, eps=1e-8):
    xs = torch.stack([m - base if base is not None else m for m in models])
    w = torch.tensor(weights, dtype=torch.float64)
    if normalize:
        w = w / w.sum()
    norms = xs.norm(dim=-1, keepdim=True)
    units = xs / (norms + eps)
    mean = (units * w.view(-1, 1)).sum(0)
    mean_norm = mean.norm()
    if mean_norm < eps:
        result = xs[0] * w[0] + xs[1] * w[1]
    else:
        mean = mean / mean_norm
        dots = (units * mean).sum(-1, keepdim=True)
        tangent = ((units - dots * mean) * w.view(-1, 1)).sum(0)
        tn = tangent.norm() + eps
        result = (mean * torch.cos(tn) + tangent * (torch.sin(tn) / tn)) * (norms.squeeze(-1) * w).sum()
    return result + base if base is not None else result


def karcher(models, weights, max_iter=10, tol=1e-5):
    """mergekit's karcher_merge_tensors with the weights honoured (alphas = w/Σw)."""
    alphas = [w / sum(weights) for w in weights]
    norms = [float(m.norm()) for m in models]
    units = [m / n if n > 0 else torch.zeros_like(m) for m, n in zip(models, norms, strict=True)]
    valid = [i for i, n in enumerate(norms) if n > tol]
    if not valid:
        return torch.zeros_like(models[0])
    a = {i: alphas[i] / sum(alphas[j] for j in valid) for i in valid}
    u = sum(a[i] * units[i] for i in valid)
    nu = float(u.norm())
    u = units[valid[0]].clone() if nu < tol else u / nu
    for _ in range(max_iter):
        step = torch.zeros_like(u)
        for i in valid:
            dot = min(1.0, max(-1.0, float(torch.dot(u, units[i]))))
            theta = math.acos(dot)
            if theta < tol:
                continue
            step = step + a[i] * (theta / math.sin(theta)) * (units[i] - dot * u)
        ns = float(step.norm())
        if ns < tol:
            break
        u = math.cos(ns) * u + math.sin(ns) * (step / ns)
        nu = float(u.norm())
        if nu > tol:
            u = u / nu
    return sum(al * n for al, n in zip(alphas, norms, strict=True)) * u


def model_stock(models, base, shape, filter_wise=False):
    n = len(models)
    cols = shape[-1] if filter_wise else base.numel()
    deltas = [(m - base).view(-1, cols) for m in models]
    cosines = []
    for i in range(n):
        for j in range(i + 1, n):
            product = (deltas[i].norm(dim=-1) * deltas[j].norm(dim=-1)).clamp(min=1e-6)
            cosines.append(((deltas[i] * deltas[j]).sum(-1) / product).clamp(-1, 1))
    cos = float64_sum(cosines) / len(cosines) if len(cosines) > 2 else sum(cosines) / len(cosines)
    t = (n * cos / (1 + (n - 1) * cos)).view(-1, 1)
    mean = (float64_sum(list(models)) / n).view(-1, cols)
    return (t * mean + (1 - t) * base.view(-1, cols)).view(-1)


# --- the task-vector family -----------------------------------------------------------------------------
def rank_order(magnitude):
    """Flat indices in ascending rank: by magnitude, and among equal magnitudes the lower index ranks
    higher (a stable descending sort, reversed)."""
    return torch.sort(magnitude, descending=True, stable=True).indices.flip(0)


def uniform(seed, tensor, model, n, block):
    """The documented random numbers (merge/rng.py's spec, written out again)."""
    out = []
    for b in range((n + block - 1) // block):
        digest = hashlib.sha256(f"wiseft-rng/{seed}/{tensor}/{model}/{b}".encode()).digest()
        g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
        out.append(torch.rand(block, generator=g).double())
    return torch.cat(out)[:n]


def sparsify(delta, kind, density, shape, rescale, gamma=0.0, epsilon=0.0, u=None):
    """(sparse task vector) per mergekit's sparsify.py semantics, ties broken by index."""
    n = delta.numel()
    if density >= 1:
        return delta.clone()
    magnitude = delta.abs()
    keep = torch.zeros(n, dtype=torch.bool)
    probability = density
    if kind == "magnitude":
        k = int(density * n)
        keep[rank_order(magnitude)[n - k :]] = True
    elif kind == "outliers":
        target, top = int(density * n), int(gamma * n)
        bottom = n - target - top
        if bottom < 0:
            top, bottom = top + bottom, 0
        keep[rank_order(magnitude)[bottom : n - top]] = True
    elif kind == "random":
        keep = u < density
    else:  # della
        cols = shape[-1] if len(shape) >= 1 else 1
        rows = magnitude.view(-1, cols)
        ranks = torch.empty(rows.shape, dtype=torch.float64)
        for r in range(rows.shape[0]):
            ranks[r, rank_order(rows[r])] = torch.arange(cols, dtype=torch.float64)
        norm = ranks / (cols - 1) if cols > 1 else torch.zeros_like(ranks)
        probability = ((density - epsilon) + norm * 2 * epsilon).view(-1)
        keep = u < probability
    masked = torch.where(keep, delta, torch.zeros_like(delta))
    if rescale == "inverse":
        return masked / probability
    if rescale == "l1":
        before, after = float(delta.abs().sum()), float(masked.abs().sum())
        if before >= 1e-7 and after >= 1e-7:
            return masked * (before / after)
    return masked


def task_vector_merge(base, sparse, weights, lam, normalize, consensus):
    if not consensus:
        divisor = math.fsum(weights) if normalize else 1.0
        divisor = 1.0 if abs(divisor) < 1e-8 else divisor
        cs = list(weights) if (lam == 1 and divisor == 1) else [lam * w / divisor for w in weights]
        terms = [c * s for c, s in zip(cs, sparse, strict=True) if c != 0]
        if len(terms) <= 1:
            return base + terms[0] if terms else base.clone()
        return float64_sum([base, *terms])
    t = [s * w if w != 1 else s for s, w in zip(sparse, weights, strict=True)]
    elected = torch.where(float64_sum(t) >= 0, 1.0, -1.0).double()
    agree = [torch.sign(x) == elected for x in t]
    mixed = float64_sum([torch.where(a, x, torch.zeros_like(x)) for a, x in zip(agree, t, strict=True)])
    if normalize:
        divisor = float64_sum([_where(a, w) for a, w in zip(agree, weights, strict=True)])
        divisor[divisor == 0] = 1
        mixed = mixed / divisor
    if lam != 1:
        mixed = mixed * lam
    return base + mixed


def _where(mask, value: float) -> torch.Tensor:
    """value where mask, else 0.0, in float64."""
    return torch.where(mask, torch.tensor(value, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))


def sce(models, base, topk):
    deltas = [m - base for m in models]
    n = len(deltas)
    if topk < 1:
        mean = float64_sum(list(deltas)) / n
        var = float64_sum([(d - mean) * (d - mean) for d in deltas]) / n
        k = int(int((var != 0).sum()) * topk) if topk > 0 else 0
        mask = torch.zeros_like(var, dtype=torch.bool)
        if k:
            mask[rank_order(var)[var.numel() - k :]] = True
        deltas = [torch.where(mask, d, torch.zeros_like(d)) for d in deltas]
    elected = torch.where(float64_sum(list(deltas)) >= 0, 1.0, -1.0).double()
    squares = [float((d * d).sum()) / d.numel() for d in deltas]
    total = math.fsum(squares)
    omega = [1 / n] * n if abs(total) < 1e-6 else [s / total for s in squares]
    weights = [_where(torch.sign(d) == elected, w) for d, w in zip(deltas, omega, strict=True)]
    merged = float64_sum([d * w for d, w in zip(deltas, weights, strict=True)])
    return base + merged / float64_sum(weights).clamp(min=1e-6)


# --- comparing -------------------------------------------------------------------------------------------
# --- nearswap and arcee_fusion (mergekit's merge_methods/nearswap.py and arcee_fusion.py, docs) ---------
def nearswap(a, b, t):
    """w = clamp(t / max(|a − b|, 1e-6), 0, 1); w·b + (1 − w)·a (t / d a true division)."""
    w = (torch.full_like(a, t) / (a - b).abs().clamp(min=1e-6)).clamp(0, 1)
    return w * b + (1 - w) * a


def arcee_fusion(a, b, shape):
    """importance = |b − a|·KL(softmax(b) + 1e-8 ‖ softmax(a) + 1e-8) per last-dimension row; keep the
    change where importance ≥ median + 1.5·IQR, quartiles at sorted index ⌊q·(n − 1)⌋ of all elements."""
    cols = shape[-1] if len(shape) >= 2 else a.numel()
    a2, b2 = a.view(-1, cols), b.view(-1, cols)
    p = torch.softmax(b2, dim=-1) + 1e-8
    q = torch.softmax(a2, dim=-1) + 1e-8
    kl = (p * torch.log(p / q)).sum(dim=-1, keepdim=True).clamp(min=0)
    imp = ((b2 - a2).abs() * kl).view(-1)
    ordered = imp.sort().values
    n = imp.numel()
    q1, q2, q3 = (float(ordered[k * (n - 1) // 4]) for k in (1, 2, 3))
    keep = imp >= q2 + 1.5 * (q3 - q1)
    return a + (b - a) * keep


def assert_matches(got: torch.Tensor, ref64: torch.Tensor, exact: bool, name: str = "") -> None:
    """got equals ref64 rounded once to got's dtype; with `exact` False (reductions summed in another
    order), elements may differ by one unit in the last place, at most 1 in 1000 of them."""
    ref = ref64.to(got.dtype).view(got.shape)
    if exact:
        assert torch.equal(got, ref), name
        return
    differ = got != ref
    assert int(differ.sum()) <= max(1, got.numel() // 1000), (name, int(differ.sum()))
    a, b = got[differ].double(), ref[differ].double()
    one_ulp = torch.finfo(got.dtype).eps * torch.maximum(
        b.abs(), torch.tensor(torch.finfo(got.dtype).tiny).double()
    )
    assert bool(((a - b).abs() <= one_ulp).all()), name

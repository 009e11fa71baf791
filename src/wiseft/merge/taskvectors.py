"""Generalized task arithmetic: sparsify each task vector δ_i = θ_i − θ_base, then combine (mergekit's
ties / dare / breadcrumbs / della family), in float64 with one rounding.

Sparsifiers (per model i, skipped when density_i ≥ 1):
- magnitude (TIES): keep the k = int(density·numel) largest |δ_i|;
- outliers (breadcrumbs): with target = int(density·n), n_top = int(gamma·n), n_bot = n − target − n_top
  (when negative, n_top shrinks by that much and n_bot = 0): drop the n_top largest and the n_bot smallest;
- random (DARE): keep each element with probability density (merge/rng.py);
- della (DELLA): per row (last dimension), rank r = 0…c−1 by |δ_i| ascending, keep with probability
  p = (density − ε) + (r/(c−1))·2·ε.
Ranks order by |δ|; among equal magnitudes the lower flat index ranks higher (merge/select.py).
Rescale of the kept entries: `none`; `l1` (mergekit's `rescale: true`): × Σ|δ_i| / Σ|kept δ_i| (both
summed per tensor; no rescale when either is < 1e-7); `inverse` (the DARE/DELLA papers): ÷ the keep
probability (density, or DELLA's p).

Combination of the sparse s_i with weights w_i and λ:
- linear: θ = θ_base + Σ c_i·s_i, c_i = λ·w_i (÷ Σ w with `normalize`; |Σ w| < 1e-8 → no division), the
  terms and the base added smallest first (task_arithmetic's kernel);
- sign consensus (TIES): t_i = w_i·s_i; the elected sign is + where Σ t_i ≥ 0, else −; mixed = Σ of the
  t_i with that sign; with `normalize`, divided by Σ of their w_i (0 → 1); times λ; θ = θ_base + mixed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from wiseft.merge import compiled, rng, select, tensorwise
from wiseft.merge.methods import Param, TensorContext
from wiseft.merge.methods.linear import NORMALIZE_EPS
from wiseft.merge.select import Keep, Selector, keep_range
from wiseft.merge.spherical import rows_of
from wiseft.merge.tensorwise import BlockSums, Job, task_vectors


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


RESCALE = ("none", "l1", "inverse")
RESCALE_EPS = 1e-7


def common_params(normalize: bool, rescale: str) -> tuple[Param, ...]:
    return (
        Param("weight", "model", None, doc="w_i, the scale of model i's task vector"),
        Param("density", "model", 1.0, doc="fraction of each task vector kept, in (0, 1]"),
        Param("lambda", "global", 1.0, doc="scale of the merged task vector"),
        Param("normalize", "global", normalize, kind="bool", doc="divide by the sum of the weights"),
        Param(
            "rescale", "global", rescale, kind="choice", choices=RESCALE, aliases={True: "l1", False: "none"},
            doc="kept entries: none, l1 (mergekit: norm kept), inverse (÷ keep probability)",
        ),
        Param("int8_mask", "global", False, kind="bool", doc="accepted for mergekit; no effect (exact masks)"),
    )  # fmt: skip


class _Model:
    """One task vector's sparsification state across the passes."""

    def __init__(self, index: int, kind: str, density: float, numel: int, gamma: float = 0.0):
        self.index, self.kind, self.density = index, kind, density
        self.selectors: list[Selector | None] = [None, None]
        self.first, self.last = 0, numel
        self.stage = "dense" if density >= 1.0 else "ready"
        if self.stage == "dense" or kind not in ("magnitude", "outliers"):
            return
        if kind == "magnitude":
            self.first = numel - int(density * numel)
        else:
            target, top = int(density * numel), int(gamma * numel)
            bottom = numel - target - top
            if bottom < 0:
                top, bottom = top + bottom, 0
            self.first, self.last = keep_range(numel, bottom, numel - top)
        if self.first >= self.last:
            self.stage = "none"
            return
        if self.first > 0:
            self.selectors[0] = Selector(self.first)
        if self.last < numel:
            self.selectors[1] = Selector(self.last - 1)
        self.stage = "select" if self.active_selectors() else "ready"

    def active_selectors(self) -> list[Selector]:
        return [s for s in self.selectors if s is not None]

    def keep(self) -> Keep:
        low, high = (s.result if s is not None else None for s in self.selectors)
        return Keep(self.first, self.last, low, high)


class TaskVectorJob(Job):
    """The family's per-tensor job (module docstring)."""

    def __init__(self, ctx: TensorContext, c, kind: str | None, consensus: bool):
        n = ctx.n_models
        self.ctx, self.kind, self.consensus = ctx, kind, consensus
        self.weights, self.lam, self.normalize = c.weight, c["lambda"], c.normalize
        self.rescale = getattr(c, "rescale", "none")
        self.epsilon = getattr(c, "epsilon", (0.0,) * n)
        gamma = getattr(c, "gamma", (0.0,) * n)
        self.models = [
            _Model(i, kind or "none", c.density[i] if kind else 1.0, ctx.numel, gamma[i]) for i in range(n)
        ]
        selectors = [s for m in self.models for s in m.active_selectors()]
        for s in selectors:
            s.cap = max(select.MIN_CAP, select.TOTAL_CAP // len(selectors))
        self.l1 = self.rescale == "l1"
        self.factors = [1.0] * n
        self.sums: dict[int, tuple[BlockSums, BlockSums]] = {}
        self._bits: dict[int, np.ndarray] = {}  # per model: packed keep decisions of the l1 pass (compiled)
        self._keeps: dict[int, Keep] = {}
        self.granularity = self._granularity()
        if self.l1:
            for m in self.models:
                if m.stage in ("ready", "select"):
                    m.stage = "norm" if m.stage == "ready" else "select"
        self.cache_key = self._cache_key()

    def _granularity(self) -> int:
        g = rows_of(self.ctx.shape) if self.kind == "della" else 1
        if self.l1:
            g = g * tensorwise.REDUCE_BLOCK // math.gcd(g, tensorwise.REDUCE_BLOCK)
        return g

    def _cache_key(self):
        if self.kind not in ("magnitude", "outliers") or self.l1:
            return None  # random masks are cheap to redraw; l1 sums depend on the seed too
        return ("select",) + tuple((m.first, m.last) for m in self.models)

    # --- observation passes: selection, then the l1 sums ----------------------------------------------
    def needs_observation(self) -> bool:
        self._start_pass()
        return any(m.stage in ("select", "norm") for m in self.models)

    def _start_pass(self) -> None:
        self._keeps = {m.index: m.keep() for m in self.models if m.stage == "norm" and m.kind != "random"}
        self.sums = {m.index: (BlockSums(), BlockSums()) for m in self.models if m.stage == "norm"}

    def observe(self, xs, start, scratch) -> None:
        if compiled.supports(xs):
            self._observe_compiled(xs, start, scratch)
            return
        _, deltas = task_vectors(xs, scratch)
        m_len = xs[0].numel()
        for model in self.models:
            delta = deltas[model.index]
            if model.stage == "select":
                keys = torch.abs(delta, out=scratch.tmp[:m_len]).view(torch.int64)
                for selector in model.active_selectors():
                    selector.observe(keys)
            elif model.stage == "norm":
                before, after = self.sums[model.index]
                magnitude = torch.abs(delta, out=scratch.aux[:m_len])
                before.add(magnitude)
                kept = self._sparse(model, delta, start, scratch, rescale=False)
                after.add(torch.abs(kept, out=kept))

    def end_pass(self) -> bool:
        for model in self.models:
            if model.stage == "select":
                pending = [s.end_pass() for s in model.active_selectors()]
                if not any(pending) and all(s.done for s in model.active_selectors()):
                    model.stage = "norm" if self.l1 else "ready"
            elif model.stage == "norm":
                before, after = (s.total() for s in self.sums[model.index])
                if before >= RESCALE_EPS and after >= RESCALE_EPS:
                    self.factors[model.index] = before / after
                model.stage = "ready"
        more = any(m.stage in ("select", "norm") for m in self.models)
        self._start_pass()
        return more

    def stats(self):
        return tuple(tuple(s.result if s else None for s in m.selectors) for m in self.models)

    def use_stats(self, stats) -> None:
        for model, results in zip(self.models, stats, strict=True):
            for selector, result in zip(model.selectors, results, strict=True):
                if selector is not None:
                    selector.result = result
            if model.stage == "select":
                model.stage = "ready"

    def _observe_compiled(self, xs, start, scratch) -> None:
        arrays = compiled.arrays(xs)
        for model in self.models:
            if model.stage == "select":
                for selector in model.active_selectors():
                    selector.observe_compiled(arrays, model.index)
        norm = [m for m in self.models if m.stage == "norm"]
        if not norm:
            return
        if start == 0:
            self._pass_arrays = KeepArrays(self.models, only=[m.index for m in norm])
        a = self._pass_arrays
        u, p = self._draws(xs, start, scratch)
        m, n = xs[0].numel(), len(self.models)
        blocks = -(-m // tensorwise.REDUCE_BLOCK)
        before, after = np.empty((n, blocks)), np.empty((n, blocks))
        kept = scratch.rows("kept", n, m, torch.uint8).numpy()
        compiled.kernel("l1_sums")(arrays, a.kinds, a.density, a.has_low, a.low, a.has_high, a.high, a.ties,
                                   a.seen, u, p, kept, tensorwise.REDUCE_BLOCK, before, after)  # fmt: skip
        for model in norm:
            self.sums[model.index][0].extend(before[model.index])
            self.sums[model.index][1].extend(after[model.index])
            if model.kind in ("random", "della"):  # kept for the output pass: no second draw, no second sort
                if model.index not in self._bits:
                    self._bits[model.index] = np.zeros(-(-self.ctx.numel // 8), dtype=np.uint8)
                packed = np.packbits(kept[model.index])
                self._bits[model.index][start // 8 : start // 8 + packed.shape[0]] = packed

    def _draws(self, xs, start, scratch, skip=()):
        """Uniform numbers (random, della) and DELLA's keep probabilities of this chunk, [models, m]."""
        m = xs[0].numel()
        n = len(self.models)
        u = scratch.rows("u", n, m)
        p = scratch.rows("p", n, m)
        for model in self.models:
            if (
                model.stage in ("dense", "none")
                or model.kind not in ("random", "della")
                or model.index in skip
            ):
                continue
            rng.uniform(self.ctx.seed, self.ctx.name, model.index, start, m, u[model.index])
            if model.kind == "della":
                delta = scratch.rows("della", 1, m)[0]
                delta.copy_(xs[model.index + 1]).sub_(scratch.rows("della-base", 1, m)[0].copy_(xs[0]))
                probability = della_probabilities(
                    delta, rows_of(self.ctx.shape), model.density, self.epsilon[model.index], scratch
                )
                p[model.index].copy_(probability)
        return u.numpy(), p.numpy()

    def compute_out(self, xs, start, out, scratch) -> bool:
        if not compiled.supports(xs, out.dtype):
            return False
        if start == 0:
            self._out_arrays = KeepArrays(self.models, factors=self.factors)
            for j in self._bits:
                self._out_arrays.kinds[j] = compiled.KEPT
        a = self._out_arrays
        m, n = xs[0].numel(), len(self.models)
        u, p = self._draws(xs, start, scratch, skip=self._bits)
        kept = np.zeros((n, 1), dtype=np.uint8)
        if self._bits:
            kept = scratch.rows("kept", n, m, torch.uint8).numpy()
            for j, bits in self._bits.items():
                kept[j] = np.unpackbits(bits[start // 8 : -(-(start + m) // 8)], count=m)
        weights = np.array(self.weights, dtype=np.float64)
        cs = np.array(scales(self.weights, self.lam, self.normalize), dtype=np.float64)
        compiled.kernel("task_vectors")(
            compiled.arrays(xs), a.kinds, a.density, a.has_low, a.low, a.has_high, a.high, a.ties, a.seen, u, p,
            kept, compiled.RESCALE_CODES[self.rescale], a.factors, weights, cs, self.consensus,
            bool(self.normalize), float(self.lam), compiled.out_array(out),
        )  # fmt: skip
        return True

    # --- the output pass ---------------------------------------------------------------------------
    def compute(self, xs, start, acc, scratch) -> None:
        if start == 0:
            self._keeps = {m.index: m.keep() for m in self.models if m.kind in ("magnitude", "outliers")}
        base, deltas = task_vectors(xs, scratch)
        sparse = [self._sparse(m, deltas[m.index], start, scratch, rescale=True) for m in self.models]
        if self.consensus:
            consensus(base, sparse, self.weights, self.lam, self.normalize, acc, scratch)
        else:
            base_plus(base, sparse, scales(self.weights, self.lam, self.normalize), acc, scratch)

    def _sparse(self, model: _Model, delta, start: int, scratch, rescale: bool) -> torch.Tensor:
        """model's sparsified task vector for this chunk, in the scratch row "sparse/i"."""
        m_len = delta.numel()
        out = scratch.rows(f"sparse/{model.index}", 1, m_len)[0]
        if model.stage == "dense" or model.kind == "none":
            return out.copy_(delta)
        if model.stage == "none":
            return out.zero_()
        keep = scratch.rows("keep", 1, m_len, torch.bool)[0]
        probability = self._keep_mask(model, delta, start, keep, scratch)
        out.copy_(delta).masked_fill_(keep.logical_not(), 0.0)
        if rescale and self.rescale == "inverse":
            out.div_(probability)
        elif rescale and self.factors[model.index] != 1.0:
            out.mul_(self.factors[model.index])
        return out

    def _keep_mask(self, model: _Model, delta, start: int, keep, scratch):
        """keep ← which elements survive; returns their keep probability (a float or a tensor)."""
        m_len = delta.numel()
        if model.kind in ("magnitude", "outliers"):
            keys = torch.abs(delta, out=scratch.aux[:m_len]).view(torch.int64)
            self._keeps[model.index].mask(keys, keep)
            return model.density
        u = rng.uniform(self.ctx.seed, self.ctx.name, model.index, start, m_len, scratch.aux)
        if model.kind == "random":
            torch.lt(u, model.density, out=keep)
            return model.density
        p = della_probabilities(
            delta, rows_of(self.ctx.shape), model.density, self.epsilon[model.index], scratch
        )
        torch.lt(u, p, out=keep)
        return p


class KeepArrays:
    """Every model's keep decision as arrays for the compiled loop: kind codes, densities, thresholds,
    tie ranges (value, a, b) and tie counters (fresh for each pass), l1 factors. `only`: the models that
    take part in this pass (others count as dense)."""

    def __init__(self, models: list[_Model], only: list[int] | None = None, factors=None):
        n = len(models)
        self.kinds = np.full(n, compiled.DENSE, dtype=np.int64)
        self.density = np.array([m.density for m in models], dtype=np.float64)
        self.has_low, self.has_high = np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_)
        self.low, self.high = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        self.ties = np.zeros((n, 2, 3), dtype=np.int64)
        self.seen = np.zeros((n, 2), dtype=np.int64)
        self.factors = np.array(factors if factors is not None else [1.0] * n, dtype=np.float64)
        codes = {
            "magnitude": compiled.THRESHOLD,
            "outliers": compiled.THRESHOLD,
            "random": compiled.RANDOM,
            "della": compiled.DELLA,
        }
        for m in models:
            if only is not None and m.index not in only:
                continue
            if m.stage == "dense" or m.kind == "none":
                continue
            if m.stage == "none":
                self.kinds[m.index] = compiled.ZERO
                continue
            self.kinds[m.index] = codes[m.kind]
            if m.kind in ("magnitude", "outliers"):
                self._thresholds(m)

    def _thresholds(self, m: _Model) -> None:
        keep = m.keep()
        j = m.index
        if keep.low is not None:
            self.has_low[j], self.low[j] = True, keep.low.value
        if keep.high is not None:
            self.has_high[j], self.high[j] = True, keep.high.value
        for e, (value, (a, b)) in enumerate(keep.ties.items()):
            self.ties[j, e] = (value, a, b)


def della_probabilities(delta, cols: int, density: float, epsilon: float, scratch) -> torch.Tensor:
    """DELLA's keep probability of each element of whole rows: (density − ε) + rank/(c−1)·2·ε, rank by |δ|
    ascending within the row, the lower index ranking higher among equal magnitudes."""
    m_len = delta.numel()
    magnitude = torch.abs(delta).view(-1, cols).flip(1)  # flipped: a stable sort puts lower indices last
    order = torch.sort(magnitude, dim=1, stable=True).indices
    rows = order.shape[0]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, (cols - 1) - order, torch.arange(cols).expand(rows, cols))
    out = scratch.rows("probability", 1, m_len)[0].view(rows, cols)
    out.copy_(ranks)
    if cols > 1:
        out.div_(cols - 1)
    out.mul_(2).mul_(epsilon).add_(density - epsilon)
    return out.view(-1)


def consensus(base, sparse, weights, lam: float, normalize: bool, acc, scratch) -> None:
    """acc ← base + λ·(Σ agreeing t_i) [÷ Σ agreeing w_i], t_i = w_i·s_i (module docstring)."""
    n, m_len = len(sparse), acc.numel()
    t = scratch.rows("weighted", n, m_len)
    for row, s, w in zip(t, sparse, weights, strict=True):
        row.copy_(s)
        if w != 1.0:
            row.mul_(w)
    elected = scratch.rows("elected", 1, m_len)[0]
    _sum_rows(t, elected, scratch)
    positive = elected >= 0
    agree = scratch.rows("agree", n, m_len, torch.bool)
    for i in range(n):
        torch.where(positive, t[i] > 0, t[i] < 0, out=agree[i])
    chosen = scratch.rows("chosen", n, m_len)
    dissent = agree.logical_not()
    chosen.copy_(t).masked_fill_(dissent, 0.0)
    mixed = elected
    _sum_rows(chosen, mixed, scratch)
    if normalize:
        for i, w in enumerate(weights):
            chosen[i].fill_(w).masked_fill_(dissent[i], 0.0)
        divisor = scratch.rows("divisor", 1, m_len)[0]
        _sum_rows(chosen, divisor, scratch)
        divisor.masked_fill_(divisor == 0, 1.0)
        mixed.div_(divisor)
    if lam != 1.0:
        mixed.mul_(lam)
    torch.add(base, mixed, out=acc)


def _sum_rows(rows: torch.Tensor, out: torch.Tensor, scratch) -> None:
    """out ← Σ rows: one row copied, two added, more added smallest first (canonical_sum)."""
    if rows.shape[0] == 1:
        out.copy_(rows[0])
    elif rows.shape[0] == 2:
        torch.add(rows[0], rows[1], out=out)
    else:
        scratch.canonical_sum(rows, out)


def check_family(coeffs: dict, n: int) -> str | None:
    """Pre-flight checks of density, gamma, epsilon and normalisable weights (messages without the tensor)."""
    for i, d in enumerate(coeffs["density"]):
        if not 0.0 < d <= 1.0:
            return f"density {d:g} of model {i} is outside (0, 1]"
    for i, g in enumerate(coeffs.get("gamma", ())):
        if not 0.0 <= g < 1.0:
            return f"gamma {g:g} of model {i} is outside [0, 1)"
    for i, (e, d) in enumerate(zip(coeffs.get("epsilon", ()), coeffs["density"], strict=False)):
        if e < 0.0 or (d < 1.0 and not (d - e > 0.0 and d + e < 1.0)):
            return f"epsilon {e:g} of model {i}: density ± epsilon ({d:g} ± {e:g}) must lie inside (0, 1)"
    if coeffs["normalize"] and not coeffs["consensus"] and abs(math.fsum(coeffs["weight"])) < 1e-8:
        return f"weights {list(coeffs['weight'])} sum to 0, so they cannot be normalised; change them or set normalize: false"
    return None

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

The sparsifiers are in merge/sparsify.py, the combinations in merge/combine.py; this module holds the
family's parameters, its per-tensor job (the passes over a tensor) and its pre-flight checks.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from wiseft.merge import compiled, rng, select, tensorwise
from wiseft.merge.combine import base_plus, consensus, scales
from wiseft.merge.methods import Param, TensorContext
from wiseft.merge.select import Keep
from wiseft.merge.sparsify import KeepArrays, Sparsifier, della_probabilities, della_probabilities_compiled
from wiseft.merge.spherical import rows_of
from wiseft.merge.tensorwise import BlockSums, Job, task_vectors

RESCALE = ("none", "l1", "inverse")
RESCALE_EPS = 1e-7
_NONE = np.zeros((0, 0))  # the loops' draws where no model draws (TaskVectorJob.compute_step)


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
            Sparsifier(i, kind or "none", c.density[i] if kind else 1.0, ctx.numel, gamma[i])
            for i in range(n)
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

    def observe_step(self, xs, step: int) -> int:
        if compiled.supports(xs) and not any(m.stage == "norm" for m in self.models):
            return tensorwise.long_step(self, xs, step)  # selection only: the compiled loops need no scratch
        return step

    def compute_step(self, xs, out, step: int) -> int:
        if compiled.supports(xs, out.dtype) and not self._draws_out():  # thresholds only: no draws,
            return tensorwise.long_step(self, xs, step)  # no stored decisions, no scratch
        return step

    def _draws_out(self) -> bool:
        """Whether the output pass draws or reads stored keep decisions (rows of the scratch)."""
        drawn = any(m.kind in ("random", "della") and m.stage not in ("dense", "none") for m in self.models)
        return drawn or bool(self._bits)

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
                select.share_first_pass(model.active_selectors())
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
                select.observe_all_compiled(model.active_selectors(), arrays, model.index)
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
        block = tensorwise.REDUCE_BLOCK

        def part(lo: int, hi: int, seen) -> None:  # parts start on block boundaries: whole blocks' sums
            compiled.kernel("l1_sums")(arrays, a.kinds, a.density, a.has_low, a.low, a.has_high, a.high, a.ties,
                                       seen, u, p, kept, block, before, after, lo, hi)  # fmt: skip

        in_parts(a, arrays, compiled.spans(m, align=block), part)
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
            if model.kind == "della" and compiled.supports(xs):
                della_probabilities_compiled(
                    compiled.arrays(xs), model.index, rows_of(self.ctx.shape), model.density,
                    self.epsilon[model.index], p[model.index],
                )  # fmt: skip
            elif model.kind == "della":
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
        u, p = self._draws(xs, start, scratch, skip=self._bits) if self._draws_out() else (_NONE, _NONE)
        kept = np.zeros((n, 1), dtype=np.uint8)
        if self._bits:
            kept = scratch.rows("kept", n, m, torch.uint8).numpy()
            for j, bits in self._bits.items():
                kept[j] = np.unpackbits(bits[start // 8 : -(-(start + m) // 8)], count=m)
        weights = np.array(self.weights, dtype=np.float64)
        cs = np.array(scales(self.weights, self.lam, self.normalize), dtype=np.float64)
        arrays, target = compiled.arrays(xs), compiled.out_array(out)
        rescale = compiled.RESCALE_CODES[self.rescale]

        def part(lo: int, hi: int, seen) -> None:  # element-wise, so any cut gives the same bits
            compiled.kernel("task_vectors")(
                arrays, a.kinds, a.density, a.has_low, a.low, a.has_high, a.high, a.ties, seen, u, p, kept,
                rescale, a.factors, weights, cs, self.consensus, bool(self.normalize), float(self.lam), target,
                lo, hi,
            )  # fmt: skip

        in_parts(a, arrays, compiled.spans(m), part)
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

    def _sparse(self, model: Sparsifier, delta, start: int, scratch, rescale: bool) -> torch.Tensor:
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

    def _keep_mask(self, model: Sparsifier, delta, start: int, keep, scratch):
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


def in_parts(a: KeepArrays, arrays: tuple, parts: list[tuple[int, int]], call) -> None:
    """call(lo, hi, seen) for each part side by side. Tie ranks count in index order, so where magnitudes
    tie at a threshold (`a.in_order()`) each part starts from the ties counted before it
    (`_kernels.tie_counts`; compiled.run_parts_in_order)."""

    def count(lo: int, hi: int, seen) -> None:
        compiled.kernel("tie_counts")(arrays, a.kinds, a.ties, lo, hi, seen)

    compiled.run_parts_in_order(call, parts, a.seen, count if a.in_order() else None)


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

"""The numba loops of merge/compiled.py, at module level so numba caches them on disk.

Imported only by `compiled._build()` (numba is optional at run time). See merge/compiled.py for what
each loop computes and why its bits equal the torch path's.

One file on purpose: numba's on-disk cache is invalidated only by a change to the file that defines a
cached function, not to the files of the functions it calls, so kernels split across files would keep
running stale machine code after an edit to a shared helper (load_block, canonical, cast_out).
"""

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload


@intrinsic
def bits_to_f32(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def f32_to_bits(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def f64_to_bits(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


def widen(x):
    pass


@overload(widen)
def _widen(x):
    if isinstance(x, types.Integer):  # bfloat16 bits
        return lambda x: np.float64(bits_to_f32(np.uint32(np.uint16(x)) << np.uint32(16)))
    return lambda x: np.float64(x)


def cast_out(sample, v):
    pass


@overload(cast_out)
def _cast_out(sample, v):
    if isinstance(sample, types.Integer):  # bfloat16 bits, rounded through float32 as torch does

        def to_bf16(sample, v):
            f = np.float32(v)
            if f != f:
                return np.int16(0x7FC0)
            u = np.uint32(f32_to_bits(f))
            u = np.uint32(u + ((u >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF))
            return np.int16(u >> np.uint32(16))  # truncating to 16 bits keeps the bit pattern

        return to_bf16
    return lambda sample, v: np.float32(v)


# Element loops call no jitted function with array arguments (each such call costs reference-count
# updates, ~20x the arithmetic): inputs are loaded and results stored a block of BLOCK elements at a
# time by helpers, and the element loops in between only index arrays.
BLOCK = 256


@numba.njit(nogil=True, cache=True)
def load_block(xs, start, width, over_base, v, base_row):
    """v[j, e] ← x_j (or x_j − base, base = xs[0], also in base_row) at start + e."""
    if over_base:
        b = xs[0][start : start + width]
        for e in range(width):
            base_row[e] = widen(b[e])
        for j in range(1, len(xs)):
            x, row = xs[j][start : start + width], v[j - 1]
            for e in range(width):
                row[e] = widen(x[e]) - base_row[e]
    else:
        for j in range(len(xs)):
            x, row = xs[j][start : start + width], v[j]
            for e in range(width):
                row[e] = widen(x[e])


@numba.njit(nogil=True, cache=True)
def canonical(t, count, width, res):
    """res[e] ← Σ_q t[q, e]: 0 → 0.0, one term, two added, more sorted ascending and added in order
    (t's columns are sorted in place)."""
    if count == 0:
        for e in range(width):
            res[e] = 0.0
    elif count == 1:
        for e in range(width):
            res[e] = t[0, e]
    elif count == 2:
        for e in range(width):
            res[e] = t[0, e] + t[1, e]
    else:
        for e in range(width):
            for a in range(1, count):
                value = t[a, e]
                b = a - 1
                while b >= 0 and t[b, e] > value:
                    t[b + 1, e] = t[b, e]
                    b -= 1
                t[b + 1, e] = value
            total = t[0, e]
            for a in range(1, count):
                total += t[a, e]
            res[e] = total


@numba.njit(nogil=True, cache=True)
def store_block(out, start, width, res):
    sample = out[0]
    o = out[start : start + width]
    for e in range(width):
        o[e] = cast_out(sample, res[e])


@numba.njit(nogil=True, cache=True)
def gram(xs, over_base, block, out):
    """out[b, p] ← Σ over block b (left to right from 0.0) of v_a·v_c, pairs p = (a ≤ c) in order."""
    n = len(xs) - 1 if over_base else len(xs)
    m = xs[0].shape[0]
    v = np.empty((n, BLOCK))
    base_row = np.empty(BLOCK)
    acc = np.zeros(out.shape[1])
    b = 0
    start = 0
    while start < m:
        width = min(BLOCK, block - start % block, m - start)  # never across a block boundary
        load_block(xs, start, width, over_base, v, base_row)
        if n == 2:  # three independent chains, in registers
            s0, s1, s2 = acc[0], acc[1], acc[2]
            for e in range(width):
                x, y = v[0, e], v[1, e]
                s0 += x * x
                s1 += x * y
                s2 += y * y
            acc[0], acc[1], acc[2] = s0, s1, s2
        else:
            p = 0
            for a in range(n):
                for c in range(a, n):
                    total = acc[p]
                    for e in range(width):
                        total += v[a, e] * v[c, e]
                    acc[p] = total
                    p += 1
        start += width
        if start % block == 0 or start == m:
            for q in range(acc.shape[0]):
                out[b, q] = acc[q]
                acc[q] = 0.0
            b += 1


@numba.njit(nogil=True, cache=True)
def combine(xs, coeffs, over_base, out):
    """out ← round(Σ c_j·v_j (+ base)), zero coefficients skipped (merge/methods/linear.weighted_sum)."""
    n = coeffs.shape[0]
    m = out.shape[0]
    active = np.array([j for j in range(n) if coeffs[j] != 0.0], dtype=np.int64)
    v = np.empty((n, BLOCK))
    t = np.empty((max(1, active.shape[0]), BLOCK))
    base_row = np.empty(BLOCK)
    res = np.empty(BLOCK)
    for start in range(0, m, BLOCK):
        width = min(BLOCK, m - start)
        load_block(xs, start, width, over_base, v, base_row)
        for q in range(active.shape[0]):
            j = active[q]
            c = coeffs[j]
            for e in range(width):
                t[q, e] = v[j, e] * c if c != 1.0 else v[j, e]
        canonical(t, active.shape[0], width, res)
        if over_base:
            for e in range(width):
                res[e] = res[e] + base_row[e]
        store_block(out, start, width, res)


@numba.njit(nogil=True, cache=True)
def stock(xs, t, out):
    """model_stock: out ← round(t·mean + (1 − t)·base), mean = (Σ models)/N, xs[0] the base."""
    n = len(xs) - 1
    m = out.shape[0]
    v = np.empty((n + 1, BLOCK))
    terms = np.empty((max(n, 2), BLOCK))
    base_row = np.empty(BLOCK)
    mean = np.empty(BLOCK)
    res = np.empty(BLOCK)
    for start in range(0, m, BLOCK):
        width = min(BLOCK, m - start)
        load_block(xs, start, width, False, v, base_row)
        for j in range(n):
            for e in range(width):
                terms[j, e] = v[j + 1, e]
        canonical(terms, n, width, mean)
        count = 0
        if t != 0.0:
            for e in range(width):
                terms[count, e] = mean[e] / n * t if t != 1.0 else mean[e] / n
            count += 1
        if 1.0 - t != 0.0:
            for e in range(width):
                terms[count, e] = v[0, e] * (1.0 - t) if 1.0 - t != 1.0 else v[0, e]
            count += 1
        canonical(terms, count, width, res)
        store_block(out, start, width, res)


@numba.njit(nogil=True, cache=True)
def observe_keys(x, base, mode, lo, hi, shift, counts, gathered, filled):
    """A selection pass over the |x − base| keys (merge/select.py): mode 0 the first histogram,
    1 a histogram inside [lo, hi], 2 gathering [lo, hi]. Returns (below lo, filled, zeros).
    Modes 1 and 2 are branch-free (whether a key lies below or inside is a coin toss near a median, and
    mispredicted branches cost 6x the arithmetic): a key outside adds 0 to bin 0, and every key is written
    to gathered[filled], which advances only for keys inside, so `gathered` needs one slot of slack."""
    below = 0
    zeros = 0
    mask = np.int64(0x7FFFFFFFFFFFFFFF)
    m = x.shape[0]
    if mode == 0:
        for i in range(m):
            key = f64_to_bits(widen(x[i]) - widen(base[i])) & mask
            counts[key >> 47] += 1
            zeros += key == 0
    elif mode == 1:
        for i in range(m):
            key = f64_to_bits(widen(x[i]) - widen(base[i])) & mask
            below += key < lo
            inside = (key >= lo) & (key <= hi)
            counts[((key - lo) >> shift) if inside else 0] += inside
    else:
        for i in range(m):
            key = f64_to_bits(widen(x[i]) - widen(base[i])) & mask
            below += key < lo
            gathered[filled] = key
            filled += (key >= lo) & (key <= hi)
    return below, filled, zeros


@numba.njit(nogil=True, cache=True)
def observe_key_array(keys, mode, lo, hi, shift, counts, gathered, filled):
    """observe_keys for keys given as an array (non-negative int64: the bits of non-negative float64
    values, e.g. arcee_fusion's importances), with the same modes, returns and slack."""
    below = 0
    zeros = 0
    m = keys.shape[0]
    if mode == 0:
        for i in range(m):
            key = keys[i]
            counts[key >> 47] += 1
            zeros += key == 0
    elif mode == 1:
        for i in range(m):
            key = keys[i]
            below += key < lo
            inside = (key >= lo) & (key <= hi)
            counts[((key - lo) >> shift) if inside else 0] += inside
    else:
        for i in range(m):
            key = keys[i]
            below += key < lo
            gathered[filled] = key
            filled += (key >= lo) & (key <= hi)
    return below, filled, zeros


@numba.njit(nogil=True, cache=True)
def tie_counts(xs, kind, ties, first, stop, seen):
    """seen[j, e] += how many |x_j − base| keys in [first, stop) equal tie value e of magnitude model j
    (kind 2), the count magnitude_block advances over the same span (xs: base first)."""
    mask = np.int64(0x7FFFFFFFFFFFFFFF)
    b = xs[0][first:stop]
    for j in range(kind.shape[0]):
        if kind[j] != 2:
            continue
        x = xs[j + 1][first:stop]
        for e in range(2):
            if ties[j, e, 2] <= ties[j, e, 1]:
                continue
            value, count = ties[j, e, 0], 0
            for i in range(x.shape[0]):
                count += (f64_to_bits(widen(x[i]) - widen(b[i])) & mask) == value
            seen[j, e] += count


@numba.njit(nogil=True, cache=True)
def sparse_block(v, start, width, j, kind, density, has_low, low, has_high, high, ties, seen, u, p, rescale,
                 factor, s, kept):  # fmt: skip
    """s[j, e] ← model j's sparsified task-vector element (TaskVectorJob._sparse) for the block;
    rescale 0 none, 1 l1 (× factor), 2 inverse (÷ keep probability), -1 none (l1 observation).
    kept[j, i]: the keep decisions, read (kind KEPT) or, with rescale -1, written. One loop per kind,
    the model's parameters in locals."""
    k = kind[j]
    if k == 0:
        for e in range(width):
            s[j, e] = v[j, e]
        return
    if k == 1:
        for e in range(width):
            s[j, e] = 0.0
        return
    if k == 2:  # (keep decisions are stored only for the random kinds)
        magnitude_block(v, width, j, has_low[j], low[j], has_high[j], high[j], ties, seen, s)
    else:
        random_block(v, start, width, j, k, density[j], u, p, kept, rescale == -1 and kept.shape[1] > 1, s)
    if rescale == 2:
        if k == 4:
            p_j, s_j = p[j, start : start + width], s[j]
            for e in range(width):
                s_j[e] = s_j[e] / p_j[e]
        else:
            d_j = density[j]
            for e in range(width):
                s[j, e] = s[j, e] / d_j
    elif rescale == 1 and factor[j] != 1.0:
        f_j = factor[j]
        for e in range(width):
            s[j, e] = s[j, e] * f_j


@numba.njit(nogil=True, cache=True)
def magnitude_block(v, width, j, lo_on, lo, hi_on, hi, ties, seen, s):
    """s[j, e] ← v[j, e] where its magnitude key lies in (lo, hi), else 0; of the elements equal to a tie
    value, those whose rank (in index order, counted in seen[j]) falls in the tie's range are kept.
    The element loop is branch-free and indexes sliced rows, so it vectorises: a side that is off, or an
    unused tie, is a bound no key can cross or equal (keys are ≥ 0 and < 2⁶³ − 1), and ties are counted,
    not tested with a short-circuit `or` (that alone made the loop 3x slower)."""
    mask = np.int64(0x7FFFFFFFFFFFFFFF)
    lo_e = lo if lo_on else np.int64(-1)
    hi_e = hi if hi_on else mask
    t0 = ties[j, 0, 0] if ties[j, 0, 2] > ties[j, 0, 1] else np.int64(-1)
    t1 = ties[j, 1, 0] if ties[j, 1, 2] > ties[j, 1, 1] else np.int64(-1)
    v_j, s_j = v[j], s[j]
    tied = 0
    for e in range(width):
        d = v_j[e]
        key = f64_to_bits(d) & mask
        s_j[e] = d if (key > lo_e) & (key < hi_e) else 0.0
        tied += (key == t0) | (key == t1)
    if tied:  # rare: tie ranks count in index order
        a0, b0, a1, b1 = ties[j, 0, 1], ties[j, 0, 2], ties[j, 1, 1], ties[j, 1, 2]
        seen0, seen1 = seen[j, 0], seen[j, 1]
        for e in range(width):
            key = f64_to_bits(v_j[e]) & mask
            if key == t0:
                if a0 <= seen0 < b0:
                    s_j[e] = v_j[e]
                seen0 += 1
            if key == t1:
                if a1 <= seen1 < b1:
                    s_j[e] = v_j[e]
                seen1 += 1
        seen[j, 0], seen[j, 1] = seen0, seen1


@numba.njit(nogil=True, cache=True)
def random_block(v, start, width, j, k, d_j, u, p, kept, write, s):
    """s[j, e] ← v[j, e] where it is kept, else 0: kind 3 keeps u < density, 4 u < p (per element), else
    the stored decision kept[j, i]; with `write` the drawn decisions are stored in kept. Rows are sliced
    once, so the element loops index from 0 (and vectorise)."""
    v_j, s_j = v[j], s[j]
    if k == 3:
        u_j = u[j, start : start + width]
        for e in range(width):
            s_j[e] = v_j[e] if u_j[e] < d_j else 0.0
    elif k == 4:
        u_j, p_j = u[j, start : start + width], p[j, start : start + width]
        for e in range(width):
            s_j[e] = v_j[e] if u_j[e] < p_j[e] else 0.0
    else:
        kept_j = kept[j, start : start + width]
        for e in range(width):
            s_j[e] = v_j[e] if kept_j[e] != 0 else 0.0
    if write:
        kept_j, u_j = kept[j, start : start + width], u[j, start : start + width]
        if k == 3:
            for e in range(width):
                kept_j[e] = 1 if u_j[e] < d_j else 0
        else:
            p_j = p[j, start : start + width]
            for e in range(width):
                kept_j[e] = 1 if u_j[e] < p_j[e] else 0


@numba.njit(nogil=True, cache=True)
def task_vectors(xs, kind, density, has_low, low, has_high, high, ties, seen, u, p, kept, rescale, factor,
                 weights, scales, consensus, normalize, lam, out, first, stop):  # fmt: skip
    """out[first:stop] ← round(the task-vector family's result) (merge/taskvectors.py)."""
    n = kind.shape[0]
    v = np.empty((n, BLOCK))
    s = np.empty((n, BLOCK))
    t = np.empty((n + 1, BLOCK))
    base_row = np.empty(BLOCK)
    res = np.empty(BLOCK)
    total = np.empty(BLOCK)
    agree = np.empty((n, BLOCK), dtype=np.bool_)
    active = np.array([j for j in range(n) if scales[j] != 0.0], dtype=np.int64)
    for start in range(first, stop, BLOCK):
        width = min(BLOCK, stop - start)
        load_block(xs, start, width, True, v, base_row)
        for j in range(n):
            sparse_block(v, start, width, j, kind, density, has_low, low, has_high, high, ties, seen, u, p,
                         rescale, factor, s, kept)  # fmt: skip
        if not consensus and active.shape[0] == 2:
            sum_of_three(base_row, s, active[0], active[1], scales[active[0]], scales[active[1]], width, res)
        elif consensus and n == 2:
            consensus_of_two(base_row, s, weights[0], weights[1], normalize, lam, width, res)
        elif not consensus:
            linear_sum(base_row, s, scales, active, width, t, res)
        else:
            consensus_sum(base_row, s, weights, normalize, lam, width, t, total, agree, res)
        store_block(out, start, width, res)


@numba.njit(nogil=True, cache=True)
def sum_of_three(base_row, s, a, b, c0, c1, width, res):
    """res ← base + c0·s_a + c1·s_b, fused: the three terms sorted by a network, then added in order."""
    for e in range(width):
        x, y, z = base_row[e], s[a, e] * c0, s[b, e] * c1
        if x > y:
            x, y = y, x
        if y > z:
            y, z = z, y
        if x > y:
            x, y = y, x
        res[e] = (x + y) + z


@numba.njit(nogil=True, cache=True)
def consensus_of_two(base_row, s, w0, w1, normalize, lam, width, res):
    """The sign-consensus sum of two task vectors, fused and branch-free (x·1 = x, so weights and λ of 1
    need no test)."""
    for e in range(width):
        t0 = s[0, e] * w0
        t1 = s[1, e] * w1
        positive = t0 + t1 >= 0.0
        a0 = t0 > 0.0 if positive else t0 < 0.0
        a1 = t1 > 0.0 if positive else t1 < 0.0
        mixed = (t0 if a0 else 0.0) + (t1 if a1 else 0.0)
        if normalize:
            divisor = (w0 if a0 else 0.0) + (w1 if a1 else 0.0)
            mixed = mixed / (divisor if divisor != 0.0 else 1.0)
        res[e] = base_row[e] + mixed * lam


@numba.njit(nogil=True, cache=True)
def linear_sum(base_row, s, scales, active, width, t, res):
    """res ← base + Σ scale_j·s_j over the active models (a scale of 1 not multiplied), in canonical
    order (t is scratch)."""
    if active.shape[0] <= 1:
        for e in range(width):
            res[e] = base_row[e]
        for q in range(active.shape[0]):
            c = scales[active[q]]
            for e in range(width):
                res[e] = base_row[e] + (s[active[q], e] * c if c != 1.0 else s[active[q], e])
        return
    for e in range(width):
        t[0, e] = base_row[e]
    for q in range(active.shape[0]):
        c = scales[active[q]]
        for e in range(width):
            t[q + 1, e] = s[active[q], e] * c if c != 1.0 else s[active[q], e]
    canonical(t, active.shape[0] + 1, width, res)


@numba.njit(nogil=True, cache=True)
def consensus_sum(base_row, s, weights, normalize, lam, width, t, total, agree, res):
    """res ← base + λ·(the weighted task vectors that agree with the sign of their sum, summed; divided
    by the agreeing weights with `normalize`), each sum in canonical order (t, total, agree: scratch;
    s is weighted in place)."""
    n = s.shape[0]
    for j in range(n):
        w = weights[j]
        if w != 1.0:
            for e in range(width):
                s[j, e] = s[j, e] * w
        for e in range(width):
            t[j, e] = s[j, e]
    canonical(t, n, width, total)
    for j in range(n):
        for e in range(width):
            agree[j, e] = s[j, e] > 0.0 if total[e] >= 0.0 else s[j, e] < 0.0
            t[j, e] = s[j, e] if agree[j, e] else 0.0
    canonical(t, n, width, res)
    if normalize:
        for j in range(n):
            w = weights[j]
            for e in range(width):
                t[j, e] = w if agree[j, e] else 0.0
        canonical(t, n, width, total)
        for e in range(width):
            res[e] = res[e] / (total[e] if total[e] != 0.0 else 1.0)
    for e in range(width):
        if lam != 1.0:
            res[e] = res[e] * lam
        res[e] = base_row[e] + res[e]


@numba.njit(nogil=True, cache=True)
def l1_sums(xs, kind, density, has_low, low, has_high, high, ties, seen, u, p, kept, block, before, after,
            first, stop):  # fmt: skip
    """Block sums (left to right from 0.0) of |δ_j| and |kept δ_j| over [first, stop) (first a multiple
    of `block`) for the models with kind ≥ 2, into before/after[j, first // block …]; the keep decisions
    are written into kept[j, i] (when it has a column per element)."""
    n = kind.shape[0]
    v = np.empty((n, BLOCK))
    s = np.empty((n, BLOCK))
    base_row = np.empty(BLOCK)
    factor = np.ones(n)
    acc_before = np.zeros(n)
    acc_after = np.zeros(n)
    b = first // block
    start = first
    while start < stop:
        width = min(BLOCK, block - start % block, stop - start)  # never across a block boundary
        load_block(xs, start, width, True, v, base_row)
        for j in range(n):
            if kind[j] >= 2:
                sparse_block(v, start, width, j, kind, density, has_low, low, has_high, high, ties, seen, u,
                             p, -1, factor, s, kept)  # fmt: skip
                total_before, total_after = acc_before[j], acc_after[j]
                for e in range(width):
                    total_before += abs(v[j, e])
                    total_after += abs(s[j, e])
                acc_before[j], acc_after[j] = total_before, total_after
        start += width
        if start % block == 0 or start == stop:
            for j in range(n):
                before[j, b] = acc_before[j]
                after[j, b] = acc_after[j]
                acc_before[j] = 0.0
                acc_after[j] = 0.0
            b += 1


@numba.njit(nogil=True, cache=True)
def mt_twist(state):
    """One MT19937 state transition, in place (state: 624 uint32 words)."""
    upper, lower, matrix = np.uint32(0x80000000), np.uint32(0x7FFFFFFF), np.uint32(0x9908B0DF)
    one = np.uint32(1)
    for i in range(227):
        y = (state[i] & upper) | (state[i + 1] & lower)
        state[i] = state[i + 397] ^ (y >> one) ^ (matrix * (y & one))
    for i in range(227, 623):
        y = (state[i] & upper) | (state[i + 1] & lower)
        state[i] = state[i - 227] ^ (y >> one) ^ (matrix * (y & one))
    y = (state[623] & upper) | (state[0] & lower)
    state[623] = state[396] ^ (y >> one) ^ (matrix * (y & one))


@numba.njit(nogil=True, cache=True)
def mt_uniform(seed, skip, out):
    """out[i] ← the (skip + i)-th number of `torch.rand` (float32, widened) from a CPU generator after
    `manual_seed(seed)`: torch's MT19937 seeded with the low 32 bits, each number (y & (2^24 − 1))·2^−24
    of one tempered 32-bit output (merge/rng.py; tests compare it with torch bit for bit). The state is
    held in uint32 and the tempering loop indexes slices from 0, so both vectorise (3.5× the uint64
    version's speed, bench/RESULTS.md)."""
    state = np.empty(624, dtype=np.uint32)
    state[0] = np.uint32(seed & np.uint64(0xFFFFFFFF))
    for j in range(1, 624):
        prev = state[j - 1]
        state[j] = np.uint32(1812433253) * (prev ^ (prev >> np.uint32(30))) + np.uint32(j)
    scale = 1.0 / 16777216.0
    position = 0  # numbers drawn so far
    done = 0
    n = out.shape[0]
    while done < n:
        mt_twist(state)
        first = min(max(skip - position, 0), 624)
        last = min(624, skip + n - position)
        if last > first:
            words, target = state[first:last], out[done : done + (last - first)]
            for k in range(last - first):
                y = words[k]
                y ^= y >> np.uint32(11)
                y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
                y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
                y ^= y >> np.uint32(18)
                target[k] = np.float64(y & np.uint32(0xFFFFFF)) * scale
            done += last - first
        position += 624


@numba.njit(nogil=True, cache=True)
def row_ranks(delta, cols, density, epsilon, out):
    """out ← DELLA's keep probability of each element of whole rows of `cols` (merge/sparsify.py's
    della_probabilities, the same float64 operations): rank by |δ| ascending within the row, the lower index
    ranking higher among equal magnitudes (`rank_row`)."""
    work = rank_work(cols, density, epsilon)
    keys = work[0]
    for r in range(delta.shape[0] // cols):
        row = delta[r * cols : (r + 1) * cols]
        for c in range(cols):  # the row from its last element to its first
            keys[c] = f64_to_bits(abs(row[cols - 1 - c]))
        rank_row(*work, out[r * cols : (r + 1) * cols])


@numba.njit(nogil=True, cache=True)
def row_ranks_of(x, base, cols, density, epsilon, out):
    """row_ranks of δ = x − base, from the inputs (bfloat16 bits or float32) without a float64 copy of δ."""
    work = rank_work(cols, density, epsilon)
    keys = work[0]
    for r in range(x.shape[0] // cols):
        lo = r * cols
        for c in range(cols):
            i = lo + cols - 1 - c
            keys[c] = f64_to_bits(abs(widen(x[i]) - widen(base[i])))
        rank_row(*work, out[lo : lo + cols])


@numba.njit(nogil=True, cache=True)
def rank_work(cols, density, epsilon):
    """The buffers of rank_row for rows of `cols` (keys first), and the keep probability of each rank,
    computed once with the torch path's operations: (density − ε) + rank/(c−1)·2·ε."""
    probability = np.empty(cols)
    for k in range(cols):
        v = np.float64(k)
        if cols > 1:
            v = v / (cols - 1)
        probability[k] = v * 2.0 * epsilon + (density - epsilon)
    return (
        np.empty(cols, dtype=np.int64),
        np.empty(cols, dtype=np.int64),
        np.empty(cols, dtype=np.int64),
        np.empty(cols, dtype=np.int64),
        np.empty((8, 256), dtype=np.int64),
        np.empty(8, dtype=np.int64),
        probability,
    )


@numba.njit(nogil=True, cache=True)
def rank_row(keys, spare_keys, index, spare_index, all_counts, digits, probability, target):
    """target[c] ← the probability of the rank of the key given for column c, the keys given from the
    row's last element to its first. A stable LSD radix sort of the keys (bit patterns of non-negative
    float64 values order like the values), so equal magnitudes keep the higher index first, i.e. the lower
    index ranks higher. Bytes where no key differs from another (no bit of the row's OR and AND differs)
    are skipped, and not even counted; the digits' counts come from one pass over the keys (they do not
    change as the keys move)."""
    cols = target.shape[0]
    any_bits, all_bits = np.int64(0), np.int64(-1)
    for c in range(cols):
        index[c] = cols - 1 - c
        any_bits |= keys[c]
        all_bits &= keys[c]
    varying = any_bits ^ all_bits
    used = 0
    for b in range(8):
        if (varying >> (8 * b)) & 255:
            digits[used] = 8 * b
            used += 1
    all_counts[:used] = 0
    for c in range(cols):
        key = keys[c]
        for q in range(used):
            all_counts[q, (key >> digits[q]) & 255] += 1
    for q in range(used):
        shift = digits[q]
        counts = all_counts[q]
        total = 0
        for d in range(256):
            count = counts[d]
            counts[d] = total
            total += count
        for c in range(cols):
            d = (keys[c] >> shift) & 255
            spare_keys[counts[d]] = keys[c]
            spare_index[counts[d]] = index[c]
            counts[d] += 1
        keys, spare_keys = spare_keys, keys
        index, spare_index = spare_index, index
    for k in range(cols):
        target[index[k]] = probability[k]


# --- sce (merge/methods/sce.py) ---------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True)
def canonical_copy(rows, t, width, res):
    """res ← the canonical sum of the rows (copied into t first: canonical sorts its terms in place)."""
    n = rows.shape[0]
    for j in range(n):
        r_j, t_j = rows[j], t[j]
        for e in range(width):
            t_j[e] = r_j[e]
    canonical(t, n, width, res)


@numba.njit(nogil=True, cache=True)
def sce_variance(v, width, t, mean, var):
    """var[e] ← the population variance of v[0…n−1, e] as sce.variance computes it: mean = Σ/n, then
    Σ (v − mean)²/n, both sums in canonical order (t is scratch)."""
    n = v.shape[0]
    canonical_copy(v, t, width, mean)
    for e in range(width):
        mean[e] = mean[e] / n
    for j in range(n):
        v_j, t_j = v[j], t[j]
        for e in range(width):
            d = v_j[e] - mean[e]
            t_j[e] = d * d
    canonical(t, n, width, var)
    for e in range(width):
        var[e] = var[e] / n


@numba.njit(nogil=True, cache=True)
def sce_keep(var, width, select, low, tie, a, b, seen, keep):
    """keep[e] ← whether position e is selected: select 0 all, 1 none, 2 variance key > low, or equal to
    the tie value with a tie rank (in index order, counted in seen[0]) in [a, b)."""
    if select == 0:
        for e in range(width):
            keep[e] = True
        return
    if select == 1:
        for e in range(width):
            keep[e] = False
        return
    tied = 0
    for e in range(width):
        key = f64_to_bits(var[e])
        keep[e] = key > low
        tied += key == tie
    if tied:
        count = seen[0]
        for e in range(width):
            if f64_to_bits(var[e]) == tie:
                keep[e] = a <= count < b
                count += 1
        seen[0] = count


@numba.njit(nogil=True, cache=True)
def sce_work(n):
    """The block buffers of the sce loops for n models: task vectors, scratch, base, mean, variance."""
    return np.empty((n, BLOCK)), np.empty((n, BLOCK)), np.empty(BLOCK), np.empty(BLOCK), np.empty(BLOCK)


@numba.njit(nogil=True, cache=True)
def sce_load(xs, start, width, select, v, t, base_row, mean, var):
    """v ← the task vectors of the block at `start` (base_row the base) and, when positions are selected by
    variance (select 2), var ← their variances."""
    load_block(xs, start, width, True, v, base_row)
    if select == 2:
        sce_variance(v, width, t, mean, var)


@numba.njit(nogil=True, cache=True)
def sce_selected(xs, start, width, select, low, tie, a, b, seen, keep, v, t, base_row, mean, var):
    """sce_load, then the task vectors zeroed outside the selected positions (sce_keep)."""
    sce_load(xs, start, width, select, v, t, base_row, mean, var)
    sce_keep(var, width, select, low, tie, a, b, seen, keep)
    for j in range(v.shape[0]):
        v_j = v[j]
        for e in range(width):
            v_j[e] = v_j[e] if keep[e] else 0.0


@numba.njit(nogil=True, cache=True)
def sce_keys(xs, keys, first, stop):
    """keys[i] ← the bits of the variance of the task vectors at position i, i in [first, stop)."""
    work = sce_work(len(xs) - 1)
    var = work[4]
    for start in range(first, stop, BLOCK):
        width = min(BLOCK, stop - start)
        sce_load(xs, start, width, 2, *work)
        k = keys[start : start + width]
        for e in range(width):
            k[e] = f64_to_bits(var[e])


@numba.njit(nogil=True, cache=True)
def sce_tie_count(xs, tie, first, stop):
    """How many positions in [first, stop) have the variance key `tie` (what sce_keep counts there)."""
    work = sce_work(len(xs) - 1)
    var = work[4]
    count = 0
    for start in range(first, stop, BLOCK):
        width = min(BLOCK, stop - start)
        sce_load(xs, start, width, 2, *work)
        for e in range(width):
            count += f64_to_bits(var[e]) == tie
    return count


@numba.njit(nogil=True, cache=True)
def sce_sums(xs, select, low, tie, a, b, seen, block, sums, first, stop):
    """sums[j, k] ← Σ over block k (left to right from 0.0) of the selected δ_j², for the blocks of
    [first, stop) (first a multiple of `block`, k counted from first // block)."""
    n = len(xs) - 1
    work = sce_work(n)
    v = work[0]
    keep = np.empty(BLOCK, dtype=np.bool_)
    acc = np.zeros(n)
    k = first // block
    start = first
    while start < stop:
        width = min(BLOCK, block - start % block, stop - start)  # never across a block boundary
        sce_selected(xs, start, width, select, low, tie, a, b, seen, keep, *work)
        for j in range(n):
            v_j, total = v[j], acc[j]
            for e in range(width):
                total += v_j[e] * v_j[e]
            acc[j] = total
        start += width
        if start % block == 0 or start == stop:
            for j in range(n):
                sums[j, k] = acc[j]
                acc[j] = 0.0
            k += 1


@numba.njit(nogil=True, cache=True)
def sce_out(xs, select, low, tie, a, b, seen, omega, eps, out, first, stop):
    """out[first:stop] ← round(sce's result) (merge/methods/sce.py SceJob.compute): the selected δ_j,
    signs elected by their canonical sum, θ_base + Σ ω_j·agreeing δ_j / max(Σ agreeing ω_j, eps)."""
    n = len(xs) - 1
    work = sce_work(n)
    v, t, base_row = work[0], work[1], work[2]
    total = np.empty(BLOCK)
    divisor = np.empty(BLOCK)
    res = np.empty(BLOCK)
    keep = np.empty(BLOCK, dtype=np.bool_)
    w = np.empty((n, BLOCK))
    for start in range(first, stop, BLOCK):
        width = min(BLOCK, stop - start)
        sce_selected(xs, start, width, select, low, tie, a, b, seen, keep, *work)
        canonical_copy(v, t, width, total)
        for j in range(n):
            v_j, t_j, w_j, o_j = v[j], t[j], w[j], omega[j]
            for e in range(width):
                d = v_j[e]
                agree = (d > 0.0) if total[e] >= 0.0 else (d < 0.0)
                w_j[e] = o_j if agree else 0.0
                t_j[e] = d * w_j[e]
        canonical(t, n, width, res)
        canonical_copy(w, t, width, divisor)
        for e in range(width):
            res[e] = base_row[e] + res[e] / max(divisor[e], eps)
        store_block(out, start, width, res)

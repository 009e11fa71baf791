"""One-pass float64 kernels for two-term weighted sums into float32, compiled with numba.

The float64 kernel of `merge/compute.py` is six torch passes per chunk (convert, multiply, convert,
multiply, add, round) and compute-bound: about 2.4x a plain lerp on the CPU. This module does the same
arithmetic in one pass per element: each input is widened to float64, multiplied by its weight (one
rounding each), the two products are added (one rounding) and the sum is rounded once to float32. numba
compiles without fast-math, so LLVM does not contract the multiply-add into a fused multiply-add, and the
bits are those of the float64 kernel (tested against it element by element).

Inputs may be bfloat16 (read as their 16 bits and widened exactly by a shift) or float32; the output is
float32. Anything else, a machine without numba, or WISEFT_NO_FUSED=1 uses the torch kernels.
Measured on the Qwen2.5-0.5B shape (bench/sweep.py, 2 cores): a switch in 169 ms against 213 ms for one
plain float32 lerp pass (the inputs are bf16, so fewer bytes move than in the lerp).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import torch

_KERNELS = None
_BUILDING = threading.Lock()  # one build, also when a warm-up thread and a switch ask at once


def _build():
    """Compile (once, cached on disk by numba) the kernels; None when numba is unavailable."""
    with _BUILDING:
        return _build_once()


def _build_once():
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS or None
    if os.environ.get("WISEFT_NO_FUSED"):  # to measure or debug the torch kernels
        _KERNELS = False
        return None
    try:
        import numba
        import numpy as np
        from llvmlite import ir
        from numba.core import types
        from numba.extending import intrinsic
    except ImportError:
        _KERNELS = False
        return None

    @intrinsic
    def bits_to_float32(typingctx, bits):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return types.float32(types.uint32), codegen

    @numba.njit(nogil=True, cache=True)
    def widen_bf16(x):
        return np.float64(bits_to_float32(np.uint32(np.uint16(x)) << np.uint32(16)))

    @numba.njit(nogil=True, cache=True)
    def two_f32(a, b, w0, w1, out):
        for i in range(out.shape[0]):
            out[i] = np.float32(np.float64(a[i]) * w0 + np.float64(b[i]) * w1)

    @numba.njit(nogil=True, cache=True)
    def two_bf16(a, b, w0, w1, out):
        for i in range(out.shape[0]):
            out[i] = np.float32(widen_bf16(a[i]) * w0 + widen_bf16(b[i]) * w1)

    @numba.njit(nogil=True, cache=True)
    def one_f32(a, w0, out):
        for i in range(out.shape[0]):
            out[i] = np.float32(np.float64(a[i]) * w0)

    @numba.njit(nogil=True, cache=True)
    def one_bf16(a, w0, out):
        for i in range(out.shape[0]):
            out[i] = np.float32(widen_bf16(a[i]) * w0)

    _KERNELS = {
        ("two", torch.float32): two_f32,
        ("two", torch.bfloat16): two_bf16,
        ("one", torch.float32): one_f32,
        ("one", torch.bfloat16): one_bf16,
    }
    return _KERNELS


def available() -> bool:
    return _build() is not None


def warm() -> None:
    """Import numba and load each kernel's compiled code from numba's cache (a call on one element per
    kernel, with the argument types of `combine`): ~0.6 s in a fresh process, and 3-4 s when the VM has
    dropped numba's and llvmlite's files from its page cache, which a run's first weight switch paid."""
    kernels = _build()
    if kernels is None:
        return
    import numpy as np

    out = np.zeros(1, np.float32)
    for (terms, dtype), kernel in kernels.items():
        x = np.zeros(1, np.int16 if dtype == torch.bfloat16 else np.float32)
        kernel(*([x] * (2 if terms == "two" else 1)), *([0.5] * (2 if terms == "two" else 1)), out)


def warm_in_background() -> threading.Thread:
    """`warm` in a daemon thread, started now: a caller that switches weights later (an engine, the demo
    before its SFT) overlaps it with other work; a switch that comes first waits for the same build."""
    thread = threading.Thread(target=_warm_quietly, name="wiseft-fused-warm", daemon=True)
    thread.start()
    return thread


def _warm_quietly() -> None:
    try:
        warm()
    except Exception:  # noqa: BLE001 - a head start only: the switch builds (and raises) on its own
        pass


def supports(xs: Sequence[torch.Tensor], weights: Sequence[float], out_dtype: torch.dtype) -> bool:
    """Whether `combine` handles this case: a float32 output, at most two non-zero weights, CPU inputs of
    one dtype among bfloat16 and float32."""
    terms = [x for x, w in zip(xs, weights, strict=True) if w != 0.0]
    if out_dtype != torch.float32 or not 1 <= len(terms) <= 2 or not available():
        return False
    dtypes = {x.dtype for x in terms}
    return (
        len(dtypes) == 1
        and dtypes <= {torch.float32, torch.bfloat16}
        and all(x.device.type == "cpu" for x in terms)
    )


def _array(x: torch.Tensor):
    if x.dtype == torch.bfloat16:
        return x.view(torch.int16).numpy()
    return x.numpy()


def combine(out: torch.Tensor, xs: Sequence[torch.Tensor], weights: Sequence[float]) -> None:
    """out (float32, flat, CPU) ← round(Σ w_i·x_i in float64); only where `supports` says so."""
    kernels = _build()
    terms = [(x, float(w)) for x, w in zip(xs, weights, strict=True) if w != 0.0]
    dtype = terms[0][0].dtype
    dst = out.numpy()
    if len(terms) == 1:
        (x, w) = terms[0]
        kernels[("one", dtype)](_array(x), w, dst)
    else:
        (a, w0), (b, w1) = terms
        kernels[("two", dtype)](_array(a), _array(b), w0, w1, dst)

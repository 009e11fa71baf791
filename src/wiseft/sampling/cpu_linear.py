"""Linear layers with prepacked oneDNN weights, for float32 decoding on CPU.

A decode step of a model of a few hundred million parameters is almost all matrix products of a few
dozen rows against every weight matrix. torch's default CPU path for them (MKL sgemm
on the weights as stored) re-reads each weight in its plain layout; oneDNN with the weight reordered once
into its blocked layout (what vLLM-CPU does, and torch's compiler with weight prepacking) is faster, and
its results do not depend on the number of threads, where MKL's do. `packed_linears(model)` reorders
the weights of the model's `nn.Linear` and GPT-2 `Conv1D` layers and routes their forward through
oneDNN for the duration, then restores the modules.

The packed copies are made when the context is entered: a caller (the sweep) may rewrite the model's
weights in place between two `generate` calls, so nothing is reused across them. They take as much
memory as the weights they copy, and are freed on exit. Numerics: the same float32 products, summed in
oneDNN's order instead of MKL's (results differ in the last bits, as between any two GEMM libraries).

Column-parallel layers (`packed_linears(model, parts=k)`): each weight is packed as k slices of its output
features, and a forward computes the slices on k Python threads (torch releases the GIL inside the op),
each single-threaded, and concatenates them. This is intra-op parallelism for the matrix products only,
without OpenMP: libgomp's worker threads spin while they wait for each other, and on a machine whose
cores are shared with other processes (a descheduled thread leaves the other spinning) one decode step
took about five times the CPU time it takes on one thread; threads waiting on a Python future sleep.
Every output element is the same dot product over the same input features whichever slice holds it, so
the results are the same bits for any k (tested; for the packing used here the blocking of the reduction
does not depend on the number of output features).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

# The batch size oneDNN is told to expect when it chooses the packed layout (a hint; any size works).
PACK_ROWS = 32
# Column-parallel slices are cut at multiples of this many output features (oneDNN's blocking)...
SLICE_ALIGN = 64
# ...and only layers with at least this many multiply-adds per input row are split (below, a thread
# hand-off costs more than the slice saves), into slices of at least MIN_SLICE output features.
SPLIT_MIN_MACS = 1 << 18
MIN_SLICE = 256


def available() -> bool:
    """Whether this torch build can run prepacked oneDNN linear layers."""
    ops = getattr(torch.ops, "mkldnn", None)
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


def eligible(model) -> bool:
    """Whether `model`'s linear layers can be packed: float32 weights on the CPU, a oneDNN build."""
    param = next(model.parameters(), None)
    return param is not None and param.device.type == "cpu" and param.dtype == torch.float32 and available()


def _layers(model) -> Iterator[tuple[torch.nn.Module, torch.Tensor, torch.Tensor | None]]:
    """(module, weight as (out, in), bias) of every linear layer: `nn.Linear` and transformers'
    `Conv1D` (GPT-2's, whose weight is stored (in, out))."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            yield module, module.weight, module.bias
        elif type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
            if module.weight.dim() == 2:
                yield module, module.weight.t(), module.bias


def _pack(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), PACK_ROWS)


def _packed_forward(packed: torch.Tensor, bias: torch.Tensor | None):
    linear = torch.ops.mkldnn._linear_pointwise

    def forward(x: torch.Tensor) -> torch.Tensor:
        return linear(x, packed, bias, "none", [], "")

    return forward


def slices(out_features: int, in_features: int, parts: int) -> list[tuple[int, int]]:
    """(start, stop) of the output features each of at most `parts` threads computes: whole
    SLICE_ALIGN blocks, as even as they go, at least MIN_SLICE features each; one slice for a layer too
    small to split."""
    blocks = -(-out_features // SLICE_ALIGN)
    parts = min(parts, blocks, max(1, out_features // MIN_SLICE))
    if parts <= 1 or out_features * in_features < SPLIT_MIN_MACS:
        return [(0, out_features)]
    bounds = [min(out_features, (blocks * i // parts) * SLICE_ALIGN) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _split_forward(weight: torch.Tensor, bias: torch.Tensor | None, cuts, pool: ThreadPoolExecutor):
    """A forward over column slices of `weight`, the first in the caller's thread, the rest on `pool`."""
    parts = [_packed_forward(_pack(weight[a:b]), None if bias is None else bias[a:b]) for a, b in cuts]

    def forward(x: torch.Tensor) -> torch.Tensor:
        futures = [pool.submit(part, x) for part in parts[1:]]
        first = parts[0](x)
        return torch.cat([first, *(f.result() for f in futures)], dim=-1)

    return forward


@contextlib.contextmanager
def packed_linears(model, parts: int = 1) -> Iterator[int]:
    """Run `model`'s linear layers on prepacked oneDNN weights inside the context; yields how many
    layers were packed (0 when `eligible(model)` is false, and then nothing changes). With `parts` > 1
    the layers are column-parallel over `parts` threads (see the module docstring); the caller runs
    torch single-threaded inside the context."""
    if not eligible(model):
        yield 0
        return
    patched: list[torch.nn.Module] = []
    pool = None
    if parts > 1:  # each pool thread runs its slices on one core
        pool = ThreadPoolExecutor(parts - 1, "wiseft-linear", torch.set_num_threads, (1,))
    try:
        with torch.no_grad():
            for module, weight, bias in _layers(model):
                cuts = slices(weight.shape[0], weight.shape[1], parts)
                if pool is None or len(cuts) == 1:
                    module.forward = _packed_forward(_pack(weight), bias)
                else:
                    module.forward = _split_forward(weight, bias, cuts, pool)
                patched.append(module)
        yield len(patched)
    finally:
        for module in patched:
            del module.forward  # the class's own forward again
        if pool is not None:
            pool.shutdown()

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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

# The batch size oneDNN is told to expect when it chooses the packed layout (a hint; any size works).
PACK_ROWS = 32


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


def _packed_forward(packed: torch.Tensor, bias: torch.Tensor | None):
    linear = torch.ops.mkldnn._linear_pointwise

    def forward(x: torch.Tensor) -> torch.Tensor:
        return linear(x, packed, bias, "none", [], "")

    return forward


@contextlib.contextmanager
def packed_linears(model) -> Iterator[int]:
    """Run `model`'s linear layers on prepacked oneDNN weights inside the context; yields how many
    layers were packed (0 when `eligible(model)` is false, and then nothing changes)."""
    if not eligible(model):
        yield 0
        return
    patched: list[torch.nn.Module] = []
    try:
        with torch.no_grad():
            for module, weight, bias in _layers(model):
                packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), PACK_ROWS)
                module.forward = _packed_forward(packed, bias)
                patched.append(module)
        yield len(patched)
    finally:
        for module in patched:
            del module.forward  # the class's own forward again

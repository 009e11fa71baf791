"""`passthrough`: each output tensor is one input tensor, times an optional `scale` (mergekit's semantics).

With layer `slices` (merge/slices.py) this stacks layers of several models into one deeper model
(mergekit's "frankenmerges"); every output tensor has exactly one source. `scale` (per model, default 1)
multiplies it, in float64, rounded once; a scale of 1 copies the bytes.
"""

from __future__ import annotations

from wiseft.merge.methods import Method, Param, register
from wiseft.merge.methods.linear import weighted_sum


def _kernel(xs, coeffs, acc, scratch) -> None:
    if len(xs) != 1:  # the plan gives passthrough tensors one source (merge/slices.py)
        raise ValueError(f"passthrough takes one source per tensor, got {len(xs)}")
    weighted_sum(xs, coeffs, acc, scratch)


def _check(coeffs: tuple[float, ...], extrapolate: bool) -> str | None:
    return None


PASSTHROUGH = register(
    Method(
        name="passthrough",
        summary="one model's tensor × scale; with slices: layers stacked from several models",
        coefficient="scale",
        needs_base=False,
        min_models=1,
        max_models=None,
        check=_check,
        kernel=_kernel,
        weights=lambda coeffs: coeffs,
        params=(Param("scale", "model", 1.0, doc="multiplies the model's tensors (mergekit's scale)"),),
        reference="https://github.com/arcee-ai/mergekit (passthrough)",
    )
)

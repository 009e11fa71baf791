"""Variants switched in place inside a running vLLM engine: no checkpoint written, nothing reloaded.

    sampler = VLLMSampler.start(final_dir, EngineOptions(...))
    weights = VLLMWeights(sampler)
    weights.load([early_dir, final_dir])     # each vLLM worker reads the anchors once
    weights.apply(0.25)                      # θ = 0.25·early + 0.75·final, now in the engine
    sampler.generate(prompts, n, params)
    weights.apply(recipe)                    # any wiseft.merge.Recipe; a list is linear / task weights

The mix is computed inside each worker (`vllm_worker.WeightMixExtension`) by `WeightSpace` with the merge
kernels, in the engine's dtype, so a variant has the bits `wiseft merge --dtype <engine dtype>` writes for
the same recipe; vLLM's in-place reload then puts it into the model through the same weight loaders a
fresh start uses, and the prefix cache (KV blocks computed with the previous weights) is reset. Only the
recipe crosses the process boundary. Errors raised in the worker come back with their wiseft type.

`materialise(spec)` is the evaluation engine's WeightSource call, for a spec with `anchors`, `base` and
`mix` (None: the first anchor as it is) - the same rules as `AnchorWeights`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wiseft import errors
from wiseft.errors import ConfigError, SamplingError
from wiseft.merge.recipe import Recipe, recipe_to_dict


@dataclass(frozen=True)
class SwitchTiming:
    """Seconds of one switch: computing θ, vLLM's reload, resetting the prefix cache, and in all (the
    slowest worker's mix and reload)."""

    mix: float
    reload: float
    reset: float
    total: float


def variant_message(variant: Any) -> tuple[str, Any]:
    """(kind, value) of a variant as the worker takes it: a float is δ, a sequence weights, a Recipe
    its dict (plain data, which any of vLLM's process transports carries)."""
    if isinstance(variant, Recipe):
        return "recipe", recipe_to_dict(variant)
    if isinstance(variant, (int, float)) and not isinstance(variant, bool):
        return "delta", float(variant)
    if isinstance(variant, Sequence) and not isinstance(variant, str):
        return "weights", [float(w) for w in variant]
    raise ConfigError(f"cannot apply {variant!r}: give δ (float), weights (list) or a Recipe")


def raise_worker_errors(results: list[dict[str, Any]], what: str) -> None:
    """Re-raise the first worker failure with its wiseft error type."""
    for result in results:
        if not isinstance(result, dict):
            raise SamplingError(
                f"{what}: a vLLM worker answered {result!r}; is the engine started by VLLMSampler?"
            )
        if "error" in result:
            cls = getattr(errors, result["error"], None)
            if not (isinstance(cls, type) and issubclass(cls, errors.WiseftError)):
                cls = SamplingError
            raise cls(result["message"])


class VLLMWeights:
    """The weight source of the vLLM engine (see the module docstring).

    `loaded_from` names the model directory the engine was started on, so that a variant that is that
    model as it is needs no switch."""

    def __init__(self, sampler, loaded_from: str | os.PathLike | None = None, direct: bool = True):
        self.sampler = sampler
        self.direct = direct  # the workers' direct reload where it applies (`vllm_worker.DirectReload`)
        self.direct_used = False  # whether the workers switch with it (after `load`)
        self.bound = False  # whether the last switch wrote θ straight into the engine's tensors
        self.in_engine = 0  # after `digest`: mixed tensors that are the engine's own
        self.llm = sampler.llm
        if loaded_from is None:
            loaded_from = getattr(sampler, "info", {}).get("model")
        self._current = str(loaded_from) if loaded_from is not None else None
        self._key: tuple | None = None
        self.variant: tuple[str, Any] | None = None
        self.last_timing: SwitchTiming | None = None

    def _rpc(self, method: str, *args) -> list[dict[str, Any]]:
        try:
            results = self.llm.collective_rpc(method, args=args)
        except AttributeError as exc:
            raise SamplingError(
                f"the vLLM workers have no {method}: start the engine with VLLMSampler.start (it installs "
                "the wiseft worker extension)"
            ) from exc
        except Exception as exc:  # a failure inside vLLM's reload, or a dead engine
            message = " ".join(str(exc).split())[:300]
            raise SamplingError(f"{method} failed in a vLLM worker: {type(exc).__name__}: {message}") from exc
        raise_worker_errors(results, method)
        return results

    def load(self, anchors: Sequence[str | os.PathLike], base: str | os.PathLike | None = None) -> None:
        """Have every worker read `anchors` (EARLY, FINAL for two) and `base` (task arithmetic) once."""
        if not anchors:
            raise ConfigError("VLLMWeights needs at least one anchor model")
        key = (tuple(str(a) for a in anchors), str(base) if base is not None else None)
        if key == self._key:
            return
        self._key = None
        results = self._rpc("wiseft_load_anchors", list(key[0]), key[1], self.direct)
        self.direct_used = all(r.get("direct", False) for r in results)
        self._key = key

    def apply(self, variant: float | Sequence[float] | Recipe, extrapolate: bool = False) -> SwitchTiming:
        """Put `variant` into the running engine (see `WeightSpace.apply` for the forms of `variant`)."""
        if self._key is None:
            raise ConfigError("no anchors loaded; call VLLMWeights.load(anchors) before apply()")
        kind, value = variant_message(variant)
        start = time.perf_counter()
        results = self._rpc("wiseft_apply", kind, value, bool(extrapolate))
        switched = time.perf_counter()
        if not self.llm.reset_prefix_cache():
            raise SamplingError(
                "vLLM could not reset its prefix cache (requests still running); retry when idle"
            )
        done = time.perf_counter()
        self.variant = (kind, value)
        self.bound = all(r.get("bound", False) for r in results)
        self._current = None
        self.last_timing = SwitchTiming(
            mix=max(r["mix_seconds"] for r in results),
            reload=max(r["reload_seconds"] for r in results),
            reset=done - switched,
            total=done - start,
        )
        return self.last_timing

    def digest(self) -> dict[str, str]:
        """The sha256 of each mixed tensor's bytes as the first worker holds it (tests compare a switch
        with `WeightSpace` bit for bit); `self.in_engine` then counts those that are the
        engine's own tensors."""
        result = self._rpc("wiseft_digest")[0]
        self.in_engine = result["in_engine"]
        return result["digests"]

    def release(self) -> None:
        """Drop the anchors held by the workers."""
        self._rpc("wiseft_release")
        self._key = None

    def materialise(self, spec) -> None:
        """The WeightSource call: `spec.mix` None is the first anchor as it is (no switch when the engine
        already holds it); otherwise the mix of `spec.anchors` (and `spec.base`)."""
        if spec.mix is None:
            if str(spec.anchors[0]) == self._current:
                return
            self.load((spec.anchors[0],), None)
            self.apply([1.0])
            self._current = str(spec.anchors[0])
            return
        self.load(spec.anchors, spec.base)
        self.apply(spec.mix)

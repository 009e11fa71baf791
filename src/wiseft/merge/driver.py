"""The streaming merge driver: read chunk, compute, round, write — through reused buffers.

Every output tensor is produced in pieces of `plan.io_chunk` elements. Per piece, each input's bytes are
read with `pread` into a preallocated buffer, the method's kernel computes in float64 (`combine_into`, in
cache-sized runs of `plan.chunk`), and the rounded bytes go to the sharded writer, whose headers were
computed before the first byte. A reader thread
prefetches the next chunk and a writer thread writes the previous one while the main thread computes, so
disk copies and arithmetic overlap on two cores; file I/O and torch kernels release the GIL. Memory is a
few fixed buffers, whatever the model size.

Everything is written into a temporary sibling of OUT (`wiseft.atomic.atomic_dir`) and renamed into place
only when complete; on any error (a full disk included) the temporary directory is removed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from wiseft import __version__
from wiseft.atomic import atomic_dir, write_json
from wiseft.checkpoints import TOKENIZER_FILES, ShardWriter, plan_shards
from wiseft.checkpoints.safetensors_format import DTYPES
from wiseft.config import write_resolved
from wiseft.errors import ConfigError, MergeError, OutputError, WiseftError
from wiseft.merge.compute import Scratch, all_finite, combine_into
from wiseft.merge.hashing import MergeHashes
from wiseft.merge.plan import ST_NAMES, Plan, TensorPlan
from wiseft.merge.recipe import recipe_to_dict
from wiseft.merge.tensorwise import compute_span, observe_span, step_for
from wiseft.merge.union import write_tokenizer
from wiseft.merge.vocab import RowMap

Progress = Callable[[int, int], None]  # (bytes done, bytes total); bytes = read + written


@dataclass(frozen=True)
class MergeResult:
    out: Path
    n_tensors: int
    bytes_read: int
    bytes_written: int
    seconds: float
    shards: int
    nonfinite: tuple[str, ...]  # tensors with non-finite output values (only with allow_nonfinite)
    direct_io: bool  # whether the shards went to disk with O_DIRECT (False: asked, or refused)


def _checked_extra(prov: dict, provenance_extra: Mapping[str, object] | None) -> dict:
    """The caller's extra wiseft.json sections; one that the driver writes itself is a ConfigError."""
    extra = dict(provenance_extra or {})
    clash = sorted(set(extra) & (set(prov) | {"output"}))
    if clash:
        raise ConfigError(
            f"provenance_extra key {clash[0]!r} is a section wiseft.json already has; name it otherwise"
        )
    return extra


def _metadata(prov: dict) -> dict[str, str]:
    """The safetensors metadata of every shard: the format, wiseft's version, the recipe and the inputs."""
    return {
        "format": "pt",
        "wiseft_version": __version__,
        "wiseft_recipe": json.dumps(prov["recipe"], sort_keys=True),
        "wiseft_inputs": json.dumps(
            [{k: i[k] for k in ("name", "tensor_bytes", "sha256")} for i in prov["inputs"]]
        ),
    }


def check_output_location(plan: Plan, out: Path) -> None:
    """OUT must not be (inside) an input directory, nor contain one (a --force would delete it)."""
    target = out.resolve()
    for ck in plan.inputs:
        src = ck.path.resolve()
        if target == src or src in target.parents:
            raise OutputError(
                f"output {out} is inside the input directory {ck.path}; choose an -o outside it"
            )
        if target in src.parents:
            raise OutputError(f"output {out} contains the input {ck.path}; choose another -o")


def provenance(plan: Plan, shard_size: int) -> dict:
    return {
        "wiseft_version": __version__,
        "recipe": recipe_to_dict(plan.recipe),
        "out_dtype": ST_NAMES.get(plan.out_dtype, plan.out_dtype) if plan.out_dtype else "inputs",
        "inputs": [ck.identity() for ck in plan.inputs],
        "config_from": plan.inputs[plan.config_from].name,
        "tokenizer_from": plan.inputs[plan.tokenizer_from].name,
        "dropped": list(plan.dropped),
        "n_tensors": len(plan.tensors),
        "tensor_bytes": plan.bytes_written,
        "shard_size": shard_size,
    }


def merge(
    plan: Plan,
    out: str | Path,
    force: bool = False,
    shard_size: int = 5 * 10**9,
    allow_nonfinite: bool = False,
    progress: Progress | None = None,
    provenance_extra: Mapping[str, object] | None = None,
    direct_io: bool = True,
) -> MergeResult:
    """Write the merge described by `plan` into the model directory `out` (atomically).

    `direct_io`: write the shards with O_DIRECT where the file system takes it (checkpoints/writer.py);
    False writes through the page cache.

    `provenance_extra`: more top-level sections of the output's wiseft.json (e.g. `wiseft soup`'s
    `soup`), written with the rest in its one write; a key the driver writes itself is a ConfigError."""
    out = Path(out)
    check_output_location(plan, out)
    start = time.perf_counter()
    prov = provenance(plan, shard_size)
    extra = _checked_extra(prov, provenance_extra)
    shards = plan_shards([(t.name, t.out_dtype, t.shape) for t in plan.tensors], shard_size, _metadata(prov))
    try:
        with atomic_dir(out, force=force) as tmp:
            writer = ShardWriter(tmp, shards, direct=direct_io)
            hashes = MergeHashes(len(plan.inputs))
            try:
                nonfinite = _stream(plan, writer, hashes, allow_nonfinite, progress)
            finally:
                writer.abort()
            writer.close(index_metadata={"wiseft_version": __version__})
            config = output_config(plan)
            hashes.empty_outputs(plan.tensors)
            per_input, prov["output"] = hashes.provenance(plan.inputs, config)
            for entry, digests in zip(prov["inputs"], per_input, strict=True):
                entry.update(digests)
            prov.update(extra)
            _write_side_files(plan, tmp, prov, config)
    except WiseftError:
        raise
    except OSError as exc:
        raise OutputError(
            f"writing {out} failed: {exc.strerror or exc}; nothing was written (free space or choose another -o)"
        ) from exc
    return MergeResult(
        out=out,
        n_tensors=len(plan.tensors),
        bytes_read=plan.bytes_read,
        bytes_written=plan.bytes_written,
        seconds=time.perf_counter() - start,
        shards=len(shards),
        nonfinite=tuple(nonfinite),
        direct_io=writer.direct,
    )


def output_config(plan: Plan) -> dict:
    """The output's config.json: the config input's, with the output dtype."""
    config = dict(plan.out_config if plan.out_config is not None else plan.inputs[plan.config_from].config)
    if plan.out_dtype is not None:
        config["dtype"] = ST_NAMES[plan.out_dtype]
        if "torch_dtype" in config:
            config["torch_dtype"] = ST_NAMES[plan.out_dtype]
    return config


def _write_side_files(plan: Plan, tmp: Path, prov: dict, config: dict) -> None:
    write_json(tmp / "config.json", config)
    tokenizer_files(plan.inputs[plan.tokenizer_from].path, tmp, plan.new_tokens, plan.first_new_id)
    if plan.recipe.chat_template:
        _write_chat_template(plan, tmp)
    write_json(tmp / "wiseft.json", prov)
    write_resolved(tmp, prov["recipe"], name="recipe.yaml")


def tokenizer_files(source: Path, dest: Path, new_tokens=(), first_new_id: int = 0) -> None:
    """The output's tokenizer files in `dest`: `source`'s, with `new_tokens` appended (a union
    vocabulary, or tokens named in tokenizer_tokens; merge/union.py)."""
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, dest / name)
    if new_tokens:
        write_tokenizer(dest, new_tokens, first_new_id)


def chat_template(plan: Plan) -> str | None:
    """The recipe's chat template; `auto`: the template most inputs have (the first input's on a tie,
    none when no input has one)."""
    value = plan.recipe.chat_template
    if value != "auto":
        return value
    templates = [t for t in (_template_of(ck.path) for ck in plan.inputs) if t]
    if not templates:
        return None
    return max(templates, key=lambda t: (templates.count(t), -templates.index(t)))


def _template_of(path: Path) -> str | None:
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text().strip()
    config = path / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text()).get("chat_template")
        if isinstance(template, dict):
            template = template.get("default")
        return template.strip() if isinstance(template, str) else None
    return None


def _write_chat_template(plan: Plan, tmp: Path) -> None:
    template = chat_template(plan)
    if template is None:
        return
    config_file = tmp / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    config["chat_template"] = template
    write_json(config_file, config)
    (tmp / "chat_template.jinja").unlink(missing_ok=True)  # it would take precedence over the config


# --- the streaming loop ----------------------------------------------------------------------------------
#
# The chunks are read in a walk over the tensors: each tensor's chunks in order, once per pass. A tensor
# of an elementwise method has one pass (the output). A tensor of a per-tensor job has its observation
# passes first; after the last chunk of an observation pass the job says whether another observation pass
# follows, but either way the next chunk is the tensor's first chunk again, so the reader can prefetch it
# before the decision. After the output pass the walk moves to the next tensor.
# A per-tensor job's tensor of at most RESIDENT_BYTES of inputs is read once: its first pass reads into
# the resident buffers (its first chunk into a staging set, like every tensor's, and copied there: the
# reader prefetches it while the tensor before may still be computed from the resident buffers), and
# its later passes read nothing.


_DONE: Future = Future()  # the read of a step whose inputs are held already
_DONE.set_result(None)


@dataclass
class _Buffers:
    inputs: list[torch.Tensor]  # uint8, one per input
    views: list[memoryview]
    out: torch.Tensor  # uint8 staging for rounded output bytes
    out_view: memoryview


@dataclass(frozen=True)
class _Step:
    index: int  # into plan.tensors
    start: int
    n: int
    last: bool  # the tensor's last chunk
    pass_: int = 0  # the tensor's pass this chunk belongs to
    into: str = "staging"  # where its read goes: "staging", "resident" or "none" (held since pass 0)


@dataclass
class _State:
    """A tensor's progress: its job (None: elementwise or copied), the pass it is in, passes done."""

    job: object
    observing: bool
    passes: int = 0
    resident: bool = False  # its inputs are held in the resident buffers across its passes


class _Walk:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.states: dict[int, _State] = {}
        self.sizes: dict[int, int] = {}

    def state(self, index: int) -> _State:
        if index not in self.states:
            self.states.clear()  # one tensor at a time
            t = self.plan.tensors[index]
            job = self.plan.job(t)
            observing = job is not None and job.needs_observation()
            self.states[index] = _State(job, observing, resident=observing and self.plan.holds_resident(t))
        return self.states[index]

    def step(self, index: int, start: int, pass_: int = 0) -> _Step | None:
        tensors = self.plan.tensors
        while index < len(tensors) and tensors[index].numel == 0:
            index += 1
        if index >= len(tensors):
            return None
        t = tensors[index]
        if index not in self.sizes:
            self.sizes[index] = self.plan.io_step(t)
        n = min(self.sizes[index], t.numel - start)
        into = "staging"
        state = self.states.get(index)  # None for a tensor's first chunk: read before its state exists
        if state is not None and state.resident:
            into = "resident" if pass_ == 0 else "none"
        return _Step(index, start, n, start + n >= t.numel, pass_, into)

    def following(self, step: _Step, again: bool) -> _Step | None:
        """The chunk after `step`; `again`: the tensor is gone over once more (it was an observation pass)."""
        if not step.last:
            return self.step(step.index, step.start + step.n, step.pass_)
        return self.step(step.index, 0, step.pass_ + 1) if again else self.step(step.index + 1, 0)


class _Resident:
    """The resident buffers (one per source position, sized by plan.resident_sizes, allocated once): a
    held tensor's inputs at their element offsets, for all its passes."""

    def __init__(self, plan: Plan):
        self.inputs = [torch.empty(size, dtype=torch.uint8) for size in plan.resident_sizes]
        self.views = [memoryview(b.numpy()) for b in self.inputs]

    def at(self, step: _Step, t: TensorPlan, staging: _Buffers) -> _Buffers:
        """The step's inputs in the resident buffers (and the staging set's output buffer)."""
        offsets = [step.start * (s.nbytes // t.numel) for s in t.sources]
        return _Buffers(
            [b[o:] for b, o in zip(self.inputs, offsets, strict=False)],
            [v[o:] for v, o in zip(self.views, offsets, strict=False)],
            staging.out,
            staging.out_view,
        )

    def hold(self, step: _Step, t: TensorPlan, staging: _Buffers) -> None:
        """Copy a chunk read into a staging set (a held tensor's first) into the resident buffers."""
        for b, s, src in zip(self.inputs, t.sources, staging.inputs, strict=False):
            size = s.nbytes // t.numel
            b[step.start * size : (step.start + step.n) * size].copy_(src[: step.n * size])


def _stream(
    plan: Plan, writer: ShardWriter, hashes: MergeHashes, allow_nonfinite: bool, progress: Progress | None
) -> list[str]:
    # One torch thread: the pipeline already keeps both cores busy (reader, writer, compute), and torch's
    # own worker threads spin against them; under load that made merges ten times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _pipeline(plan, writer, hashes, allow_nonfinite, progress)
    finally:
        torch.set_num_threads(threads)


def _buffers(plan: Plan) -> list[_Buffers]:
    sizes = [plan._max_itemsize(i) for i in range(plan.n_sources)]
    out_size = max((t.out_bytes // max(t.numel, 1) for t in plan.tensors), default=1)
    step = plan.max_io_step
    sets = []
    for _ in range(2):  # double buffering: one set is being read/written while the other is computed
        ins = [torch.empty(step * size, dtype=torch.uint8) for size in sizes]
        outb = torch.empty(step * out_size, dtype=torch.uint8)
        sets.append(_Buffers(ins, [memoryview(b.numpy()) for b in ins], outb, memoryview(outb.numpy())))
    return sets


def _pipeline(
    plan: Plan, writer: ShardWriter, hashes: MergeHashes, allow_nonfinite: bool, progress: Progress | None
) -> list[str]:
    sets = _buffers(plan)
    resident = _Resident(plan)
    scratch = Scratch(plan.chunk)
    total = plan.bytes_read + plan.bytes_written
    done = 0
    nonfinite: list[str] = []
    walk = _Walk(plan)
    reader = ThreadPoolExecutor(1, thread_name_prefix="wiseft-read")
    writer_pool = ThreadPoolExecutor(1, thread_name_prefix="wiseft-write")
    pending_writes: list[Future | None] = [None, None]
    try:
        step = walk.step(0, 0)
        next_read = reader.submit(_read, plan, step, sets[0], hashes) if step else None
        k = 0
        while step is not None:
            buf = sets[k % 2]
            next_read.result()
            state = walk.state(step.index)
            following = walk.following(step, again=state.observing)
            if following is not None:
                t_next = plan.tensors[following.index]
                target = sets[(k + 1) % 2]
                if following.into == "resident":
                    target = resident.at(following, t_next, target)
                next_read = (
                    _DONE
                    if following.into == "none"
                    else reader.submit(_read, plan, following, target, hashes)
                )
            if state.resident:
                t = plan.tensors[step.index]
                if step.into == "staging":
                    resident.hold(step, t, buf)
                buf = resident.at(step, t, buf)
            if state.observing:
                _observe(plan, step, buf, scratch, state, allow_nonfinite, nonfinite)
            else:
                if pending_writes[k % 2] is not None:
                    pending_writes[k % 2].result()  # the staging buffer we are about to fill is free again
                nbytes = _compute(plan, step, buf, scratch, state, allow_nonfinite, nonfinite)
                pending_writes[k % 2] = writer_pool.submit(
                    _write, writer, hashes, plan.tensors[step.index], step.start, buf.out_view[:nbytes]
                )
                done += step.n * _itemsizes(plan.tensors[step.index])
                if progress is not None:
                    progress(done, total)
            step = following
            k += 1
        for fut in pending_writes:
            if fut is not None:
                fut.result()
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        writer_pool.shutdown(wait=True, cancel_futures=True)
    return nonfinite


def _itemsizes(t: TensorPlan) -> int:
    """Bytes read and written per element of `t`."""
    return sum(s.nbytes // max(t.numel, 1) for s in t.sources) + t.out_bytes // max(t.numel, 1)


def _read(plan: Plan, step: _Step, buf: _Buffers, hashes: MergeHashes) -> None:
    """Read the step's chunk of every input (reader thread) and feed it to the input's content hash."""
    t = plan.tensors[step.index]
    which = t.inputs or range(len(plan.inputs))
    for i, src, view in zip(which, t.sources, buf.views, strict=False):
        size = src.nbytes // t.numel
        if isinstance(src, RowMap):  # embeddings re-indexed to the output vocabulary (merge/vocab.py)
            src.read_into(plan.inputs, view[: step.n * size], step.start * size)
            continue  # not the input's own bytes: its content hash reads the tensor after the stream
        plan.inputs[i].read_into(src, view[: step.n * size], step.start * size)
        hashes.inputs[i].feed_info(src, step.start * size, view[: step.n * size])


def _write(writer: ShardWriter, hashes: MergeHashes, t: TensorPlan, start: int, data: memoryview) -> None:
    """Write a chunk of output tensor `t` (writer thread) and feed it to the output's content hash."""
    writer.write(data)
    hashes.output.feed(t.name, t.out_dtype, t.shape, t.out_bytes, start * (t.out_bytes // t.numel), data)


def _inputs(step: _Step, t: TensorPlan, buf: _Buffers) -> list[torch.Tensor]:
    return [
        b[: step.n * (s.nbytes // t.numel)].view(DTYPES[s.dtype])
        for b, s in zip(buf.inputs, t.sources, strict=False)  # buffers: one per source position
    ]


def _check_inputs(plan: Plan, t: TensorPlan, xs, allow_nonfinite: bool, nonfinite: list[str]) -> None:
    # Inputs are checked even where their coefficient is 0 (a NaN there is still a broken checkpoint).
    for x, ck in zip(xs, plan.sources_of(t), strict=True):
        if not all_finite(x):
            _nonfinite(
                f"tensor {t.name} of {ck.path} contains non-finite values (nan/inf); fix the input or pass "
                "--allow-nonfinite to merge anyway",
                t.name,
                allow_nonfinite,
                nonfinite,
            )


def _observe(plan, step: _Step, buf, scratch, state: _State, allow_nonfinite, nonfinite) -> None:
    t = plan.tensors[step.index]
    xs = _inputs(step, t, buf)
    if state.passes == 0:
        _check_inputs(plan, t, xs, allow_nonfinite, nonfinite)
    job = state.job
    step_size = step_for(job, scratch.size)
    scratch.ensure(step_size)
    observe_span(job, xs, step.start, step_size, scratch)
    if step.last:
        state.passes += 1
        state.observing = job.end_pass()


def _compute(plan, step: _Step, buf, scratch, state: _State, allow_nonfinite, nonfinite) -> int:
    t = plan.tensors[step.index]
    xs = _inputs(step, t, buf)
    out_dtype = DTYPES[t.out_dtype]
    out_bytes = step.n * (t.out_bytes // t.numel)
    out = buf.out[:out_bytes].view(out_dtype)
    if t.kind == "copy":
        cks = plan.sources_of(t)
        for x, ck in zip(xs[1:], cks[1:], strict=True):
            if not torch.equal(x, xs[0]):
                raise MergeError(
                    f"{t.sources[0].dtype} tensor {t.name} differs between {cks[0].path} and {ck.path}; "
                    "integer/bool tensors are copied, so they must be identical in every input"
                )
        out.copy_(xs[0])
        return out_bytes
    if state.passes == 0:
        _check_inputs(plan, t, xs, allow_nonfinite, nonfinite)
    if state.job is None:
        combine_into(out, xs, plan.method, t.coeffs, scratch)
    else:
        step_size = step_for(state.job, scratch.size)
        scratch.ensure(step_size)
        compute_span(out, xs, state.job, step.start, step_size, scratch)
    # the output is checked for overflow of the output dtype (extrapolation, or float32 inputs to float16)
    if not all_finite(out):
        _nonfinite(
            f"tensor {t.name}: the merged values overflow {ST_NAMES[t.out_dtype]} (inf); use a wider --dtype, "
            "smaller coefficients, or pass --allow-nonfinite",
            t.name,
            allow_nonfinite,
            nonfinite,
        )
    return out_bytes


def _nonfinite(message: str, name: str, allowed: bool, seen: list[str]) -> None:
    if not allowed:
        raise MergeError(message)
    if name not in seen:
        seen.append(name)

"""Content hashes of a merge's inputs and output, fed from the bytes the driver streams anyway.

Issue 13 ("provenance that identifies the weights"): `wiseft.json` names each input and the output by
the content hash of its weights (`wiseft.checkpoints.content`, xxh3-128 per tensor, then over the
sorted tensor digests) and by its model fingerprint (content hash + config, what the sample store keys a
variant by). The hashes are exactly `content_hash(dir)` / `model_fingerprint(dir)` of those directories.

The reader thread feeds each chunk it reads to its input tensor's digest, the writer thread each chunk it
writes to the output tensor's digest; a tensor read again (the observation passes of a per-tensor job)
is hashed on its first pass only. Tensors the merge does not read (an lm_head tied to the embeddings,
empty tensors, layers a passthrough slice leaves out) are read and hashed after the stream.
"""

from __future__ import annotations

from wiseft.checkpoints import Checkpoint, ContentHash, TensorDigest, TensorInfo
from wiseft.checkpoints.content import ALGORITHM, READ_BLOCK, fingerprint, tensor_digest


class StreamDigest:
    """The content hash of one model, fed each tensor's bytes in order (chunks of any size)."""

    def __init__(self) -> None:
        self.total = ContentHash()
        self._partial: dict[str, tuple[TensorDigest, int]] = {}

    def feed(self, name: str, dtype: str, shape, nbytes: int, start: int, data) -> None:
        """Bytes [start, start + len(data)) of tensor `name`; ignored unless they continue its digest."""
        if name in self.total.digests:
            return
        digest, pos = self._partial.get(name) or (TensorDigest(name, dtype, shape), 0)
        if start != pos:
            return
        digest.update(data)
        pos += len(data)
        if pos >= nbytes:
            self._partial.pop(name, None)
            self.total.add(name, digest.hexdigest())
        else:
            self._partial[name] = (digest, pos)

    def feed_info(self, info: TensorInfo, start: int, data) -> None:
        self.feed(info.name, info.dtype, info.shape, info.nbytes, start, data)

    def complete(self, ckpt: Checkpoint, block: int = READ_BLOCK) -> str:
        """Hash the tensors of `ckpt` not fed yet (read now), and return its content hash."""
        missing = [info for info in ckpt.tensors.values() if info.name not in self.total.digests]
        if missing:
            buf = memoryview(bytearray(max(1, min(block, max(i.nbytes for i in missing)))))
            for info in missing:
                self._partial.pop(info.name, None)
                self.total.add(info.name, tensor_digest(ckpt, info, buf))
        return self.total.hexdigest()


class MergeHashes:
    """A digest per input of a plan and one for the output."""

    def __init__(self, n_inputs: int) -> None:
        self.inputs = [StreamDigest() for _ in range(n_inputs)]
        self.output = StreamDigest()

    def empty_outputs(self, tensors) -> None:
        """Output tensors with no elements (the stream skips them): their digest is their header alone."""
        for t in tensors:
            if t.numel == 0:
                self.output.feed(t.name, t.out_dtype, t.shape, 0, 0, b"")

    def provenance(self, inputs: tuple[Checkpoint, ...], out_config: dict) -> tuple[list[dict], dict]:
        """([{content_hash, fingerprint} per input], the output's) once the stream is done."""
        per_input = []
        for ck, digest in zip(inputs, self.inputs, strict=True):
            weights = digest.complete(ck)
            per_input.append({"content_hash": weights, "fingerprint": fingerprint(weights, ck.config)})
        weights = self.output.total.hexdigest()
        output = {"hash": ALGORITHM, "content_hash": weights, "fingerprint": fingerprint(weights, out_config)}
        return per_input, output

"""A Hugging Face model directory seen through its headers: config, index, tensor table, lazy reads.

`Checkpoint.open(path_or_hub_name)` reads config.json, the index (when sharded) and every safetensors
header, and validates them; no tensor data is read. Tensor bytes are then read on demand with `pread`
into a caller's reusable buffer (`read_into`), so that nothing ever holds a whole model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wiseft.checkpoints.hub import resolve
from wiseft.checkpoints.safetensors_format import TensorInfo, read_header
from wiseft.errors import CheckpointError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
# Files copied next to the merged weights from a chosen input (when present).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)


@dataclass
class Checkpoint:
    """One input model: where it is, its config and the location of every tensor."""

    name: str  # as the user gave it (path or Hub name)
    path: Path  # resolved local directory
    config: dict[str, Any]
    tensors: dict[str, TensorInfo]  # in file order (file, offset)
    files: list[Path]
    index_file: Path | None
    _fds: dict[Path, int] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, name: str | os.PathLike) -> Checkpoint:
        path = resolve(str(name))
        config_path = path / "config.json"
        if not config_path.is_file():
            raise CheckpointError(
                f"{path} has no config.json; pass a Hugging Face model directory (config.json + *.safetensors)"
            )
        try:
            config = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{config_path} is not valid JSON: {exc}") from exc
        index_file = path / INDEX_NAME
        if index_file.is_file():
            files = _files_from_index(index_file)
        elif (path / SINGLE_NAME).is_file():
            index_file = None
            files = [path / SINGLE_NAME]
        else:
            found = sorted(path.glob("*.safetensors"))
            if not found:
                bins = sorted(p.name for p in path.glob("*.bin"))
                hint = (
                    f" (it has {', '.join(bins[:3])}: wiseft reads safetensors only; re-save with "
                    "save_pretrained(safe_serialization=True))"
                    if bins
                    else ""
                )
                raise CheckpointError(f"{path} contains no safetensors weights{hint}")
            if len(found) > 1:
                raise CheckpointError(
                    f"{path} has {len(found)} safetensors files but no {INDEX_NAME}; add the index or "
                    "keep one model.safetensors"
                )
            index_file = None
            files = found
        tensors: dict[str, TensorInfo] = {}
        for file in files:
            found_tensors, _, _ = read_header(file)
            for tname, info in found_tensors.items():
                if tname in tensors:
                    raise CheckpointError(
                        f"{path}: tensor {tname!r} appears in both {tensors[tname].file.name} and {file.name}"
                    )
                tensors[tname] = info
        if index_file is not None:
            _check_index(index_file, tensors)
        ordered = dict(sorted(tensors.items(), key=lambda kv: (files.index(kv[1].file), kv[1].offset)))
        return cls(str(name), path, config, ordered, files, index_file)

    # --- facts used by the pre-flight -------------------------------------------------------------
    @property
    def architecture(self) -> str:
        archs = self.config.get("architectures") or []
        return ",".join(archs) if archs else str(self.config.get("model_type", "?"))

    @property
    def vocab_size(self) -> int | None:
        vocab = self.config.get("vocab_size")
        if vocab is None and isinstance(self.config.get("text_config"), dict):
            vocab = self.config["text_config"].get("vocab_size")
        return vocab

    @property
    def tied_embeddings(self) -> bool:
        """Whether lm_head shares the input embedding (config flag; else: no lm_head tensor stored)."""
        flag = self.config.get("tie_word_embeddings")
        if flag is None:
            return "lm_head.weight" not in self.tensors
        return bool(flag)

    @property
    def num_layers(self) -> int | None:
        return self.config.get("num_hidden_layers") or self.config.get("n_layer")

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def identity(self) -> dict[str, Any]:
        """Provenance: where the model is, how big, and hashes of its small descriptive files."""
        hashed = [self.path / "config.json"]
        hashed += [self.index_file] if self.index_file else []
        hashes = {p.name: _sha256(p.read_bytes()) for p in hashed}
        if self.index_file is None:  # no index: hash the safetensors header, which lists every tensor
            hashes[self.files[0].name + ":header"] = _sha256(_header_bytes(self.files[0]))
        return {
            "name": self.name,
            "path": str(self.path),
            "tensor_bytes": self.total_bytes,
            "file_bytes": sum(f.stat().st_size for f in self.files),
            "sha256": hashes,
        }

    # --- lazy reads --------------------------------------------------------------------------------
    def read_into(self, info: TensorInfo, buf: memoryview, start: int = 0) -> None:
        """Read `len(buf)` bytes of tensor `info`, beginning `start` bytes into it, into `buf`."""
        if start < 0 or start + len(buf) > info.nbytes:
            raise ValueError(f"read of {info.name} out of range")
        fd = self._fd(info.file)
        pos = info.offset + start
        view = memoryview(buf).cast("B")
        while len(view):
            try:
                got = os.preadv(fd, [view], pos)
            except OSError as exc:
                raise CheckpointError(
                    f"cannot read tensor {info.name!r} from {info.file}: {exc.strerror}"
                ) from exc
            if got <= 0:
                raise CheckpointError(
                    f"{info.file} ended early while reading tensor {info.name!r}; the file changed or is "
                    "truncated; re-download it"
                )
            view = view[got:]
            pos += got

    def load(self, name: str) -> torch.Tensor:
        """The whole tensor `name` as a new CPU tensor in its stored dtype (used by WeightSpace)."""
        info = self.tensors[name]
        raw = torch.empty(info.nbytes, dtype=torch.uint8)
        if info.nbytes:
            self.read_into(info, memoryview(raw.numpy()))
        return raw.view(info.torch_dtype).reshape(info.shape)

    def _fd(self, file: Path) -> int:
        fd = self._fds.get(file)
        if fd is None:
            try:
                fd = os.open(file, os.O_RDONLY)
            except OSError as exc:
                raise CheckpointError(f"cannot open {file}: {exc.strerror}") from exc
            self._fds[file] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:  # file descriptors only; nothing else to release
        try:
            self.close()
        except Exception:
            pass


def _files_from_index(index_file: Path) -> list[Path]:
    try:
        index = json.loads(index_file.read_text())
        weight_map = index["weight_map"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{index_file} is not a valid safetensors index (needs a weight_map): {exc}"
        ) from exc
    names = list(dict.fromkeys(weight_map.values()))
    files = []
    for fname in names:
        file = index_file.parent / fname
        if not file.is_file():
            raise CheckpointError(f"{index_file} lists {fname}, which is missing from {index_file.parent}")
        files.append(file)
    return files


def _check_index(index_file: Path, tensors: dict[str, TensorInfo]) -> None:
    weight_map = json.loads(index_file.read_text())["weight_map"]
    for tname, fname in weight_map.items():
        info = tensors.get(tname)
        if info is None:
            raise CheckpointError(
                f"{index_file} lists tensor {tname!r} in {fname}, but that file does not contain it"
            )
        if info.file.name != fname:
            raise CheckpointError(
                f"{index_file} puts tensor {tname!r} in {fname}, but it is in {info.file.name}"
            )
    extra = [t for t in tensors if t not in weight_map]
    if extra:
        raise CheckpointError(
            f"{index_file} does not list tensor(s) {', '.join(extra[:5])} found in the shards"
        )


def _header_bytes(file: Path) -> bytes:
    with open(file, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        return fh.read(n)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""A Hugging Face model directory seen through its headers: config, index, tensor table, lazy reads.

`Checkpoint.open(path_or_hub_name)` reads config.json, the index (when sharded) and every safetensors
header, and validates them; no tensor data is read. Tensor bytes are then read on demand with `pread`
into a caller's reusable buffer (`read_into`), so that nothing ever holds a whole model.

`validate_model_dir(path)` is the pre-flight every command runs before it hands a model directory to
transformers or safetensors: the same checks as `Checkpoint.open`, headers only (cheap: it reads
config.json, the index and N + 8 bytes of each shard).

Shard names in `model.safetensors.index.json` are untrusted: an entry must be a relative path ending in
`.safetensors`, with no `..` component, and is refused before anything is opened otherwise. A shard may
be a symlink inside the model directory pointing elsewhere (the Hugging Face cache is built of them:
`snapshots/REV/model.safetensors -> ../../blobs/SHA`); any other path that resolves outside the model
directory (e.g. through a symlinked subdirectory) is refused.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch

from wiseft.checkpoints.hub import resolve
from wiseft.checkpoints.safetensors_format import MAX_HEADER, TensorInfo, read_header
from wiseft.errors import CheckpointError
from wiseft.jsonl import loads

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
MAX_JSON_BYTES = 64 * 1024**2  # config.json / index: a 1000-shard index of a 100B model is ~2 MiB
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
        config = _read_config(path)
        index_file, files, weight_map = _weight_files(path)
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
            _check_index(index_file, weight_map, tensors)
        ordered = dict(sorted(tensors.items(), key=lambda kv: (files.index(kv[1].file), kv[1].offset)))
        return cls(str(name), path, config, ordered, files, index_file)

    # --- facts used by the pre-flight -------------------------------------------------------------
    @property
    def architecture(self) -> str:
        archs = self.config.get("architectures") or []
        if isinstance(archs, list) and archs:
            return ",".join(str(a) for a in archs)
        return str(self.config.get("model_type", "?"))

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
        layers = self.config.get("num_hidden_layers") or self.config.get("n_layer")
        return layers if type(layers) is int and layers > 0 else None

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


def validate_model_dir(name: str | os.PathLike) -> Path:
    """Pre-flight of a model directory (or Hub name): config.json, the index and every shard header
    pass the checks of `Checkpoint.open` (headers only, no tensor data); returns the local directory.
    Raises CheckpointError (or HubError) naming the file at fault."""
    ckpt = Checkpoint.open(name)
    ckpt.close()
    return ckpt.path


def _read_config(path: Path) -> dict[str, Any]:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{path} has no config.json; pass a Hugging Face model directory (config.json + *.safetensors)"
        )
    config = loads(_read_small(config_path), str(config_path), CheckpointError)
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object (the model config)")
    return config


def _read_small(file: Path) -> bytes:
    """A JSON side file (config, index), refused above MAX_JSON_BYTES before it is read."""
    try:
        size = file.stat().st_size
        if size > MAX_JSON_BYTES:
            raise CheckpointError(
                f"{file} is {size} bytes, more than the {MAX_JSON_BYTES // 1024**2} MiB wiseft reads for "
                "a JSON side file; is it the right file?"
            )
        return file.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {file}: {exc.strerror or exc}") from exc


def _weight_files(path: Path) -> tuple[Path | None, list[Path], dict[str, str]]:
    """(index file or None, shard files in order, weight_map) of a model directory."""
    index_file = path / INDEX_NAME
    if index_file.is_file():
        weight_map = _read_weight_map(index_file)
        names = list(dict.fromkeys(weight_map.values()))
        return index_file, [_shard_path(index_file, n) for n in names], weight_map
    if (path / SINGLE_NAME).is_file():
        return None, [path / SINGLE_NAME], {}
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
    return None, found, {}


def _read_weight_map(index_file: Path) -> dict[str, str]:
    index = loads(_read_small(index_file), str(index_file), CheckpointError)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"{index_file} is not a valid safetensors index: it needs a non-empty weight_map object"
        )
    bad = [t for t, f in weight_map.items() if not isinstance(f, str)]
    if bad:
        raise CheckpointError(f"{index_file}: weight_map entry {bad[0][:200]!r} must name a file (a string)")
    return weight_map


def _shard_path(index_file: Path, fname: str) -> Path:
    """The shard `fname` of an index, refused (before it is opened) when it could lie outside the model."""
    root = index_file.parent
    shown = repr(fname[:200])
    pure = PurePosixPath(fname)
    if (
        not fname
        or "\x00" in fname
        or "\\" in fname
        or pure.is_absolute()
        or PureWindowsPath(fname).drive
        or ".." in pure.parts
        or not fname.endswith(".safetensors")
    ):
        raise CheckpointError(
            f"{index_file} lists shard {shown}; a shard must be a relative path ending in .safetensors "
            "without '..' (is this index from a trusted source?)"
        )
    file = root / fname
    if not file.is_file():
        raise CheckpointError(f"{index_file} lists {fname[:200]}, which is missing from {root}")
    if not _inside(file, root):
        raise CheckpointError(
            f"{index_file} lists shard {shown}, which resolves outside {root} through a symlinked "
            "directory; only the shard file itself may be a symlink"
        )
    return file


def _inside(file: Path, root: Path) -> bool:
    """Whether `file` resolves inside `root`, or is itself a symlink whose directory does (the Hub cache)."""
    real_root = root.resolve()
    target = file.parent.resolve() if file.is_symlink() else file.resolve()
    return target == real_root or real_root in target.parents


def _check_index(index_file: Path, weight_map: dict[str, str], tensors: dict[str, TensorInfo]) -> None:
    for tname, fname in weight_map.items():
        info = tensors.get(tname)
        if info is None:
            raise CheckpointError(
                f"{index_file} lists tensor {tname!r} in {fname}, but that file does not contain it"
            )
        if info.file != index_file.parent / fname:
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
        return fh.read(min(n, MAX_HEADER))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""A torch optimizer's state without pickle: tensors in `optimizer.safetensors`, the rest in `optimizer.json`.

`torch.save(optimizer.state_dict())` writes a pickle, and a checkpoint is untrusted input. Here the state
dict (``{"state": {param_id: {name: value}}, "param_groups": [{...,"params": [ids]}]}``) is split: every
tensor goes into a safetensors file under a name that says where it came from (``state.3.exp_avg``,
``param_groups.0.lr`` when a group value is a tensor), and everything else (numbers, booleans, None,
strings, tuples such as AdamW's betas) into JSON with references to those names. Loading validates the
JSON against the optimizer it is loaded into (groups, parameter ids, tensor names, shapes) and raises
`CheckpointError` naming the file and key at fault; then `optimizer.load_state_dict` takes the result.

    save_optimizer_state(optimizer, directory)   # writes optimizer.safetensors + optimizer.json
    load_optimizer_state(optimizer, directory)   # reads them back into `optimizer`
    tensors, meta = to_safetensors(state_dict)   # the pure conversion, both ways
    state_dict = from_safetensors(tensors, meta, where)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from wiseft.atomic import atomic_write_bytes, write_json
from wiseft.errors import CheckpointError

TENSORS_FILE = "optimizer.safetensors"
META_FILE = "optimizer.json"
FORMAT = "wiseft-optimizer-state/1"
MAX_META_BYTES = 64 << 20  # the JSON holds group settings and parameter ids only


# ------------------------------------------------------------------------------------- pure conversion


def _encode(value: Any, name: str, tensors: dict) -> Any:
    """A JSON-able form of one value; tensors are stored under `name` and referenced."""
    import torch

    if isinstance(value, torch.Tensor):
        tensors[name] = value.detach().cpu().contiguous().clone()
        return {"tensor": name}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(
        f"optimizer state value {name} is a {type(value).__name__}; only tensors, numbers, strings, "
        "booleans, None, lists and tuples can be stored"
    )


def to_safetensors(state_dict: dict) -> tuple[dict, dict]:
    """(tensors for safetensors, JSON-able metadata) of an optimizer `state_dict()`."""
    tensors: dict = {}
    state = {
        str(pid): {key: _encode(v, f"state.{pid}.{key}", tensors) for key, v in entry.items()}
        for pid, entry in state_dict["state"].items()
    }
    groups = [
        {key: _encode(v, f"param_groups.{i}.{key}", tensors) for key, v in group.items()}
        for i, group in enumerate(state_dict["param_groups"])
    ]
    return tensors, {"format": FORMAT, "state": state, "param_groups": groups}


def _decode(value: Any, tensors: dict, where: str, used: set) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, where, used) for v in value]
    if isinstance(value, dict):
        if set(value) == {"tensor"} and isinstance(value["tensor"], str):
            name = value["tensor"]
            if name not in tensors:
                raise CheckpointError(f"{where}: tensor {name!r} is referenced but not in {TENSORS_FILE}")
            used.add(name)
            return tensors[name]
        if set(value) == {"tuple"} and isinstance(value["tuple"], list):
            return tuple(_decode(v, tensors, where, used) for v in value["tuple"])
        if set(value) == {"float"} and value["float"] in ("inf", "-inf", "nan"):
            return float(value["float"])
        raise CheckpointError(f"{where}: unexpected object {sorted(value)} in the optimizer state")
    return value


def from_safetensors(tensors: dict, meta: Any, where: str = META_FILE) -> dict:
    """The optimizer `state_dict()` that `to_safetensors` split; raises CheckpointError when malformed."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a wiseft optimizer state (expected format {FORMAT!r})")
    state_in, groups_in = meta.get("state"), meta.get("param_groups")
    if not isinstance(state_in, dict) or not isinstance(groups_in, list):
        raise CheckpointError(f"{where}: 'state' must be an object and 'param_groups' a list")
    used: set = set()
    state = {}
    for pid, entry in state_in.items():
        if not pid.isdigit() or not isinstance(entry, dict):
            raise CheckpointError(f"{where}: state key {pid!r} must be a parameter id holding an object")
        state[int(pid)] = {k: _decode(v, tensors, f"{where} state.{pid}.{k}", used) for k, v in entry.items()}
    groups = []
    for i, group in enumerate(groups_in):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise CheckpointError(f"{where}: param_groups[{i}] must be an object with a 'params' list")
        groups.append(
            {k: _decode(v, tensors, f"{where} param_groups.{i}.{k}", used) for k, v in group.items()}
        )
    unused = sorted(set(tensors) - used)
    if unused:
        raise CheckpointError(
            f"{where}: {TENSORS_FILE} holds tensors no key refers to ({', '.join(unused[:3])})"
        )
    return {"state": state, "param_groups": groups}


# ------------------------------------------------------------------------------------------------ files


def save_optimizer_state(optimizer, directory: str | os.PathLike) -> None:
    """Write `optimizer`'s state as optimizer.safetensors + optimizer.json into `directory` (each atomically)."""
    from safetensors.torch import save

    tensors, meta = to_safetensors(optimizer.state_dict())
    directory = Path(directory)
    atomic_write_bytes(directory / TENSORS_FILE, save(tensors))
    write_json(directory / META_FILE, meta)


def has_optimizer_state(directory: str | os.PathLike) -> bool:
    directory = Path(directory)
    return (directory / TENSORS_FILE).is_file() and (directory / META_FILE).is_file()


def load_optimizer_state(optimizer, directory: str | os.PathLike) -> None:
    """Load the state `save_optimizer_state` wrote into `optimizer`, after checking it fits."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    meta_path, tensor_path = directory / META_FILE, directory / TENSORS_FILE
    if meta_path.stat().st_size > MAX_META_BYTES:
        raise CheckpointError(
            f"{meta_path} is larger than {MAX_META_BYTES >> 20} MiB; it is not an optimizer state"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{meta_path} is unreadable ({exc}); delete the checkpoint to resume from an earlier one"
        ) from exc
    try:
        tensors = load_file(str(tensor_path))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(
            f"{tensor_path} is unreadable ({exc}); delete the checkpoint to resume from an earlier one"
        ) from exc
    state_dict = from_safetensors(tensors, meta, str(meta_path))
    check_fits(optimizer, state_dict, str(meta_path))
    optimizer.load_state_dict(state_dict)


def check_fits(optimizer, state_dict: dict, where: str) -> None:
    """Groups, parameter ids and state tensor shapes of `state_dict` match `optimizer`'s parameters."""
    import torch

    ours = optimizer.state_dict()["param_groups"]
    if len(ours) != len(state_dict["param_groups"]):
        raise CheckpointError(
            f"{where}: {len(state_dict['param_groups'])} parameter groups, the optimizer has {len(ours)}; "
            "the checkpoint belongs to another model or optimizer"
        )
    for i, (mine, theirs) in enumerate(zip(ours, state_dict["param_groups"], strict=True)):
        if list(theirs["params"]) != list(mine["params"]):
            raise CheckpointError(f"{where}: param_groups[{i}] lists other parameters than the optimizer's")
    params = dict(enumerate(p for group in optimizer.param_groups for p in group["params"]))
    for pid, entry in state_dict["state"].items():
        if pid not in params:
            raise CheckpointError(f"{where}: state for parameter {pid}, which the optimizer does not have")
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != params[pid].shape:
                raise CheckpointError(
                    f"{where}: state.{pid}.{key} has shape {list(value.shape)} but parameter {pid} has "
                    f"{list(params[pid].shape)}; the checkpoint belongs to another model"
                )

"""The sampling settings a model asks for: its generation_config.json, applied to a run's config where
the user left them unset (`--generation-config auto`, as vLLM and transformers do; flags and YAML values
always win). The runners call `with_model_sampling` before planning.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from wiseft.errors import ConfigError, SamplingError
from wiseft.evaluate.config import EvalConfig
from wiseft.jsonl import loads

GENERATION_KEYS = {"temperature": float, "top_p": float, "top_k": int}
MAX_GENERATION_CONFIG_BYTES = 1 << 20


def read_generation_config(model_dir: str | os.PathLike) -> tuple[Path, dict] | None:
    """(path, the sampling values it sets) of a model's generation_config.json: temperature, top_p and
    top_k where present and valid; None when the directory has no such file. A malformed file is an
    error naming it (it would otherwise silently change how the model samples)."""
    path = Path(model_dir) / "generation_config.json"
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_GENERATION_CONFIG_BYTES:
        raise ConfigError(
            f"{path} is larger than 1 MiB; is it a generation config? (or --generation-config ignore)"
        )
    data = loads(path.read_bytes(), str(path), ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object; fix it or pass --generation-config ignore")
    found = {}
    for key, tp in GENERATION_KEYS.items():
        value = data.get(key)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (tp is int and value != int(value))
        ):
            raise ConfigError(
                f"{path}: {key} is {value!r}, not a {tp.__name__}; fix it or pass --generation-config ignore"
            )
        found[key] = tp(value)
    return path, found


def with_model_sampling(cfg: EvalConfig, model_dir: str | os.PathLike) -> EvalConfig:
    """`cfg` with the sampling settings the user left unset taken from `model_dir`'s
    generation_config.json (with --generation-config auto, as vLLM and transformers do), recorded in
    `sampling_defaults`; unchanged otherwise. Flags and YAML values always win."""
    if cfg.generation_config != "auto" or not cfg.sampling_unset:
        return cfg
    found = read_generation_config(model_dir)
    if found is None:
        return cfg
    path, values = found
    used = {k: v for k, v in values.items() if k in cfg.sampling_unset}
    if not used:
        return cfg
    changes = {k: ((v,) if k == "temperature" else v) for k, v in used.items()}
    try:
        return dataclasses.replace(cfg, **changes, sampling_defaults={"source": str(path), **used})
    except (ConfigError, SamplingError) as exc:
        raise ConfigError(f"{path}: {exc} (fix the file or pass --generation-config ignore)") from None

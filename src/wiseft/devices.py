"""One device resolver for every command: `--device auto|cpu|cuda|cuda:N` (None means auto)."""

from __future__ import annotations

from wiseft.errors import ConfigError


def resolve_device(name: str | None = None) -> str:
    """ "cuda" when a GPU is visible and `name` is None or "auto", else "cpu"; an explicit name is checked:
    CUDA asked for without a GPU, or an unknown name, is a ConfigError naming --device."""
    import torch

    if name is None or name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for CUDA but torch sees no GPU; use --device cpu")
    return name

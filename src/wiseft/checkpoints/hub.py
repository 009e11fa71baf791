"""Turn what the user typed into a local model directory: a path, or a Hub name fetched once.

A name that is not an existing directory and looks like `org/model` is resolved with
`huggingface_hub.snapshot_download`, restricted to safetensors, JSON and tokenizer files (never pickles).
Offline (`HF_HUB_OFFLINE=1`, or the Hub not answering: `wiseft.network`) only the local Hugging Face cache
is used; unknown names fail with a HubError that says what to do.
"""

from __future__ import annotations

from pathlib import Path

from wiseft.errors import CheckpointError, HubError
from wiseft.network import hub_reachable, looks_like_hub_name, why_offline

__all__ = ["ALLOW_PATTERNS", "looks_like_hub_name", "resolve"]

ALLOW_PATTERNS = ["*.safetensors", "*.json", "tokenizer.model", "*.txt", "*.jinja"]


def resolve(name: str) -> Path:
    """Local directory for `name`; Hub names are downloaded (or taken from the local HF cache)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise CheckpointError(
            f"{name} is a file, not a model directory; pass the directory holding config.json"
        )
    if not looks_like_hub_name(name):
        raise CheckpointError(f"model directory {name} does not exist; check the path")
    return _download(name)


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        raise HubError(f"{repo_id} is not a local directory and huggingface_hub is not installed") from exc
    offline = not hub_reachable()  # decided once, in seconds, instead of retrying for half a minute
    try:
        local = snapshot_download(repo_id, allow_patterns=ALLOW_PATTERNS, local_files_only=offline)
    except LocalEntryNotFoundError as exc:
        why = why_offline() if offline else "the Hub could not be reached"
        raise HubError(
            f"{repo_id} is not a local directory and {why}, and it is not in the local Hugging Face cache; "
            "download it first (huggingface-cli download) or pass a local path"
        ) from exc
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as exc:
        raise HubError(f"{repo_id}: not found on the Hub or access denied ({type(exc).__name__})") from exc
    except OSError as exc:
        raise HubError(f"{repo_id}: could not be fetched from the Hub: {exc}") from exc
    except Exception as exc:  # network stacks raise many types; keep the one-line contract
        raise HubError(f"{repo_id}: could not be fetched from the Hub: {type(exc).__name__}: {exc}") from exc
    path = Path(local)
    if not any(path.glob("*.safetensors")):
        raise HubError(f"{repo_id} has no safetensors weights on the Hub; wiseft reads safetensors only")
    return path

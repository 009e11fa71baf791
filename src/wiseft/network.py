"""Whether the Hugging Face Hub can be reached, decided once per process and quickly.

Without a network, `huggingface_hub` and `datasets` retry for half a minute before failing. wiseft asks
once: `HF_HUB_OFFLINE` set means offline; otherwise one TCP connection to the Hub's host (HF_ENDPOINT, by
default huggingface.co) with a short timeout decides, and the answer is kept for the process.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from urllib.parse import urlparse

CONNECT_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_name(name: str) -> bool:
    """Whether `name` could be a Hub repository id (OWNER/NAME), not a local path."""
    return bool(_HUB_NAME.match(name)) and not name.startswith((".", "/", "~"))


def offline_by_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


@functools.cache
def hub_reachable() -> bool:
    """False when HF_HUB_OFFLINE is set or the Hub's host does not answer within CONNECT_TIMEOUT_S."""
    if offline_by_env():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def why_offline() -> str:
    return "HF_HUB_OFFLINE is set" if offline_by_env() else "the Hugging Face Hub cannot be reached"

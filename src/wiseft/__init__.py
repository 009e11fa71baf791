"""wiseft: weight ensembling (WiSE-FT) of language-model checkpoints and test-time scaling metrics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wiseft")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"

__all__ = ["__version__"]

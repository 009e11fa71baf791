"""wiseft: weight ensembling (WiSE-FT) of language-model checkpoints and test-time scaling metrics."""

# The one place the version is written: pyproject.toml reads it from here (setuptools' `attr`, parsed
# without importing). A literal, not importlib.metadata.version(): that lookup imported the email package
# and scanned the installed distributions, about 90 ms of every command's start-up.
__version__ = "0.1.0"

__all__ = ["__version__"]

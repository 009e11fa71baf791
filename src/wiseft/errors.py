"""Typed errors. Every message names the file, tensor or flag at fault and says what to do.

The CLI turns any `WiseftError` into one line on stderr and exit status 2, without a traceback.
"""


class WiseftError(Exception):
    """Base class of every error wiseft raises on purpose."""


class ConfigError(WiseftError):
    """A flag, YAML recipe or config value is invalid."""


class CheckpointError(WiseftError):
    """A checkpoint directory, index or safetensors file is missing, corrupt or inconsistent."""


class MergeError(WiseftError):
    """The inputs of a merge are incompatible, or the merge itself cannot be done."""


class OutputError(WiseftError):
    """The output location is unusable (exists, lies inside an input, cannot be written)."""


class HubError(WiseftError):
    """A Hub name could not be resolved (offline, not found, no safetensors)."""


class TaskError(WiseftError):
    """A task or dataset is unknown, missing or malformed."""


class GradingError(WiseftError):
    """Answer extraction or verification failed in a way that is not a verdict."""


class MetricError(WiseftError):
    """A metric was asked for something it cannot compute (e.g. k > n)."""


class SamplingError(WiseftError):
    """The sampler cannot run with the given model or parameters."""


class StoreError(WiseftError):
    """The sample store is locked, corrupt or written by an incompatible version."""


class TrainError(WiseftError):
    """Training cannot start or resume."""


class VerifierError(WiseftError):
    """A verifier (reward model, PRM, likelihood model) cannot be loaded or gave an unusable score."""

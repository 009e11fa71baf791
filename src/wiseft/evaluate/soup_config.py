"""`wiseft soup`'s config: the candidates, the validation problems and metric, and the output's dtype.

Loads without torch (the CLI builds its flags from it). The checks that need the checkpoints or the task
(architectures, the split, the output place) are the runner's pre-flight (`evaluate.soup.preflight`).
"""

from __future__ import annotations

from dataclasses import dataclass

from wiseft.config import option
from wiseft.errors import ConfigError
from wiseft.evaluate.config import EvalConfig, _check_tuple, check_metric

DEFAULT_SPLIT = "validation"
TEST_SPLIT = "test"


@dataclass(frozen=True)
class SoupConfig(EvalConfig):
    """`wiseft soup CKPT...`: the greedy soup of the candidates by a metric on a validation split."""

    candidates: tuple[str, ...] = ()
    store: str | None = option(
        None, "sample store (SQLite; default OUTPUT.samples.db beside the output); a rerun resumes from it"
    )
    split: str | None = option(
        None,
        f"the task's split the soup is chosen on, disjoint from its test set (default {DEFAULT_SPLIT}; the "
        "toy task has sft, a --data directory NAME.jsonl files)",
    )
    val_fraction: float | None = option(
        None,
        "choose the soup on this seeded share of the test problems (--seed), leaving the rest held out: for "
        "tasks with only a test split",
    )
    in_sample: bool = option(
        False, "choose the soup on the task's test problems themselves (recorded as in-sample)"
    )
    metric: str = option("pass@1", "validation metric that orders and keeps the candidates: pass@k or maj@k")
    dtype: str | None = option(
        None, "output dtype: bfloat16, float16, float32, float64 (default: the candidates')"
    )
    shard_size: str = option("5GB", "maximum shard size of the output")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_tuple(self.candidates, str, "candidates")
        if len(self.candidates) < 2:
            raise ConfigError(
                f"wiseft soup needs at least 2 candidate checkpoints, got {len(self.candidates)}"
            )
        check_metric(self.metric, self.k)
        if len(self.temperature) != 1:
            raise ConfigError(
                f"wiseft soup samples at one temperature; --temperature got {list(self.temperature)}"
            )
        if self.ray is not None:
            raise ConfigError(
                "wiseft soup chooses each next soup from the last score, so it cannot plan its variants "
                "ahead for Ray actors; drop --ray"
            )
        if self.val_fraction is not None:
            if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
                raise ConfigError(
                    f"--val-fraction must lie strictly between 0 and 1, got {self.val_fraction!r}"
                )
            if self.in_sample or self.split is not None:
                raise ConfigError(
                    "--val-fraction chooses on a share of the test split; drop --split and --in-sample"
                )
        if self.in_sample and self.split not in (None, TEST_SPLIT):
            raise ConfigError(
                f"--in-sample chooses the soup on the test problems; drop --split {self.split} (or --in-sample)"
            )
        if not self.in_sample and self.split == TEST_SPLIT:
            raise ConfigError(
                "--split test is the test set; choose the soup on a split disjoint from it, or pass "
                "--in-sample to choose it on the test problems (recorded as in-sample)"
            )

    @property
    def validation_split(self) -> str:
        """The split the soup is chosen on."""
        if self.in_sample or self.val_fraction is not None:
            return TEST_SPLIT
        return self.split or DEFAULT_SPLIT

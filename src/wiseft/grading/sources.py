"""Where samples to grade come from, and where their grades go: a JSONL file or a sample store.

- `JsonlSamples`: sample records read from a JSONL file; graded records written to another JSONL file
  (`SAMPLES.graded.jsonl` by default).
- `StoreSamples`: the samples of every variant of a store; grades are written back beside them, each
  variant graded with its own task unless one is named.
- `open_samples(path, output, force)` picks one from the file's type.
- `read_graded(path, verifier, variant)`: graded records from a graded JSONL file or a store (every
  variant under its own name, scores of one verifier), for scoring.
"""

from __future__ import annotations

from pathlib import Path

from wiseft.errors import ConfigError, GradingError, OutputError
from wiseft.records import GRADE_FIELDS, read_records, write_records
from wiseft.store import SampleStore, is_store


class JsonlSamples:
    """Sample records from a JSONL file; graded records go to another JSONL file."""

    def __init__(self, path: str | Path, output: str | Path | None, force: bool):
        self.path = Path(path)
        self.output = Path(output) if output else self.path.with_name(self.path.stem + ".graded.jsonl")
        if self.output.resolve() == self.path.resolve():
            raise OutputError(f"-o/--output {self.output} is the samples file itself; choose another path")
        if self.output.exists() and not force:
            raise OutputError(
                f"output {self.output} already exists; choose another -o/--output or pass --force"
            )

    def records(self) -> list[dict]:
        return read_records(self.path)

    def task_of(self, record: dict) -> str | None:
        return None  # a JSONL file does not say which task its samples answer

    def record_problems(self, task: str, problems: list[tuple]) -> None:
        pass  # the graded JSONL carries what it carried

    def write(self, graded: list[dict]) -> str:
        write_records(self.output, graded)
        return str(self.output)

    def close(self) -> None:
        pass


class StoreSamples:
    """The samples of every variant in a sample store; grades are written back into the store.

    Records carry "#<variant id>" in "variant" while they are graded (names need not be unique)."""

    def __init__(self, path: str | Path, output: str | Path | None):
        if output:
            raise OutputError(
                f"-o/--output does not apply to a sample store ({path}): grades are written into the store; "
                "use `wiseft store export` for a JSONL copy"
            )
        self.path = Path(path)
        self.store = SampleStore(self.path)
        self.variants = {v.id: v for v in self.store.variants()}

    def records(self) -> list[dict]:
        out = []
        for vid in self.variants:
            for rec in self.store.records(vid):
                out.append({**{k: v for k, v in rec.items() if k not in GRADE_FIELDS}, "variant": f"#{vid}"})
        if not out:
            raise GradingError(
                f"sample store {self.path} holds no samples to grade; sample or import some first"
            )
        return out

    def task_of(self, record: dict) -> str | None:
        return self.variants[int(record["variant"][1:])].task

    def record_problems(self, task: str, problems: list[tuple]) -> None:
        """Keep the task's gold answers (and problem meta) beside the samples, so exports carry them."""
        self.store.add_problems(task, problems)

    def write(self, graded: list[dict]) -> str:
        by_variant: dict[int, list[dict]] = {}
        for rec in graded:
            by_variant.setdefault(int(rec["variant"][1:]), []).append(rec)
        for vid, recs in by_variant.items():
            self.store.add_grades(vid, recs)
        return str(self.path)

    def close(self) -> None:
        self.store.close()


def open_samples(path: str | Path, output: str | Path | None = None, force: bool = False):
    """A `StoreSamples` when `path` is a sample store, else a `JsonlSamples`."""
    if is_store(path):
        return StoreSamples(path, output)
    return JsonlSamples(path, output, force)


def read_graded(path: str | Path, verifier: str | None = None, variant: str | None = None) -> list[dict]:
    """Graded records of a graded JSONL file, or of every variant of a store (a name shared by several
    variants gets "#<id>" appended). From a store, the scores are those of one verifier
    (`SampleStore.choose_verifier`: `verifier` names it, else the only one that scored the variants
    read, which is `variant` when it names one), each record with `verifier` and `vote_transform`."""
    if not is_store(path):
        return read_records(path, graded=True)
    with SampleStore(path, writer=False) as store:
        variants = store.variants()
        names = [v.name for v in variants]
        shown = [v.name if names.count(v.name) == 1 else f"{v.name}#{v.id}" for v in variants]
        picked = [v for v, name in zip(variants, shown, strict=True) if name == variant] or variants
        scorer = store.choose_verifier(picked, verifier)
        vid = scorer.id if scorer is not None else None
        out = []
        for v, name in zip(variants, shown, strict=True):
            out += [{**r, "variant": name} for r in store.records(v, graded=True, verifier=vid)]
    if not out:
        raise ConfigError(f"sample store {path} holds no graded samples; run `wiseft grade` on it first")
    return out

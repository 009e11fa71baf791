"""Fixtures shared by the test modules. Helpers and data tables live in the `support` package."""

from __future__ import annotations

import pytest
from support.merge import ModelFactory


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> ModelFactory:
    """Tiny Hugging Face checkpoints, each built once per session: `models.get(arch, seed, dtype, ...)`."""
    return ModelFactory(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture
def cli(capsys):
    """Run `wiseft ARGV` in-process: `code, err = cli([...])` (stderr of that run; its stdout is `cli.out`)."""
    from wiseft.cli import main

    def run(argv: list[str]) -> tuple[int, str]:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        run.out = captured.out
        return code, captured.err

    run.out = ""
    return run

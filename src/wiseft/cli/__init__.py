"""The `wiseft` command. It parses and calls; the work happens in the library.

Each subcommand lives in its own module under `wiseft.cli` and exposes `register(subparsers)`, which adds
its parser and sets `func` to a callable taking the parsed namespace and returning an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from wiseft import __version__
from wiseft.cli._common import stop_early_actors
from wiseft.errors import WiseftError
from wiseft.memory import tune_allocator
from wiseft.openmp import passive_openmp

# Order is the order shown in `wiseft --help`.
COMMANDS = [
    "merge",
    "fisher",
    "grade",
    "verify",
    "score",
    "eval",
    "sweep",
    "soup",
    "trajectory",
    "train",
    "report",
    "store",
    "demo",
]
# Commands that move model-sized memory get the allocator tuning of `wiseft.memory` (and the OpenMP
# waiting policy of `wiseft.openmp`, set before anything imports torch).
HEAVY = {"merge", "fisher", "verify", "eval", "sweep", "soup", "trajectory", "train", "demo"}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of command `only` alone (what parsing that command's line needs:
    the other commands' modules, and the config modules their flags are generated from, stay unloaded)."""
    parser = argparse.ArgumentParser(
        prog="wiseft",
        description="Weight ensembling of LM checkpoints and its effect on reasoning under test-time scaling.",
    )
    parser.add_argument("--version", action="version", version=f"wiseft {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        importlib.import_module(f"wiseft.cli.{name}").register(sub)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The command a command line runs, when its first argument names one after the global flags
    (`-v`/`--verbose`); None otherwise (no command, `--help`, `--version`, a misspelt command: those
    need every command's parser, to list them)."""
    for arg in argv:
        if arg in ("-v", "--verbose"):
            continue
        return arg if arg in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    if args.command in HEAVY:
        passive_openmp()
        tune_allocator()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except WiseftError as exc:
        if args.verbose:
            raise
        print(f"wiseft {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wiseft {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        stop_early_actors()


def entry() -> None:
    """The `wiseft` command (and `python -m wiseft`): `main`, then `exit_now` with its status."""
    exit_now(main())


def exit_now(code: int) -> None:
    """Exit with `code` once everything that must happen at exit has: the atexit handlers (Ray's
    shutdown, unused actors stopped, logging, temporary directories) and flushed stdout and stderr, but
    without the interpreter's teardown, which frees every object one by one: ~2 s after `wiseft demo`
    on the project's VM, when every file was already written and closed. With a non-daemon thread still
    running, the ordinary exit (which waits for it) is taken instead."""
    import atexit
    import os
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to write to
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()

"""Light commands never import torch (seconds of start-up on a busy machine): the CLI's subcommand modules
import their library entry point inside `run`, and the offline path (grade, score, store) must not reach
the evaluation session, the engine or checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from wiseft.cli import build_parser, command_of
from wiseft.store import SampleStore

PROBE = (
    "import sys\n"
    "from wiseft.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "print(' '.join(sorted(m for m in sys.modules if m.startswith('wiseft.cli.'))))\n"
    "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', rc, 'NUMPY' if 'numpy' in sys.modules else 'NO-NUMPY')\n"
)
# What a command may load of the CLI besides its own module: its consoles, flags and closing tables.
CLI_SHARED = {"wiseft.cli.progress", "wiseft.cli._common", "wiseft.cli.tables"}


def _records(path, graded: bool) -> None:
    lines = []
    for pid, gold in (("a", "3"), ("b", "7")):
        for i in range(4):
            answer = gold if i % 2 == 0 else "5"
            rec = {"problem_id": pid, "sample_idx": i, "completion": f"so \\boxed{{{answer}}}", "gold": gold}
            if graded:
                ok = answer == gold
                rec.update(answer=answer, extraction="boxed", verdict="correct" if ok else "incorrect",
                           correct=ok, answer_class=0 if ok else 1)  # fmt: skip
            lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")


def _problems(path) -> None:
    rows = [{"id": "a", "question": "1+2?", "answer": "3"}, {"id": "b", "question": "3+4?", "answer": "7"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _probe(argv: list[str], cwd) -> tuple[str, set[str]]:
    """(the probe's last line, the `wiseft.cli` modules the command loaded)."""
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    return lines[-1], set(lines[-2].split())


@pytest.mark.parametrize(
    "argv",
    [
        ["store", "info", "{store}"],
        ["grade", "{samples}", "--task", "jsonl", "--data", "{problems}", "-o", "{out}/graded.jsonl"],
        ["grade", "{store}", "--task", "jsonl", "--data", "{problems}"],
        ["score", "{graded}", "--k", "1,2", "-o", "{out}/metrics.json"],
    ],
    ids=["store-info", "grade", "grade-store", "score"],
)
def test_light_commands_do_not_import_torch(tmp_path, argv):
    _records(tmp_path / "samples.jsonl", graded=False)
    _records(tmp_path / "graded.jsonl", graded=True)
    _problems(tmp_path / "problems.jsonl")
    with SampleStore(tmp_path / "s.db") as store:
        store.import_jsonl(tmp_path / "graded.jsonl", task="jsonl")
    names = {"store": tmp_path / "s.db", "samples": tmp_path / "samples.jsonl",
             "graded": tmp_path / "graded.jsonl", "out": tmp_path / "out", "problems": tmp_path / "problems.jsonl"}  # fmt: skip
    (tmp_path / "out").mkdir()
    line, cli_modules = _probe([a.format(**names) for a in argv], tmp_path)
    assert line.startswith("NO-TORCH 0 "), line
    if argv[0] in ("grade", "store"):  # neither builds arrays: records, tasks and the store load no numpy
        assert line.endswith(" NO-NUMPY"), line
    # a command line is parsed by its own command's parser: no other command's module (nor the config
    # modules their flags are generated from) is loaded
    assert cli_modules - CLI_SHARED == {f"wiseft.cli.{argv[0]}"}, cli_modules


@pytest.mark.parametrize(
    "argv, command",
    [
        (["merge", "A", "B"], "merge"),
        (["-v", "grade", "s.jsonl"], "grade"),
        (["--verbose", "eval", "M"], "eval"),
        ([], None),
        (["--help"], None),
        (["--version"], None),
        (["-v"], None),
        (["merg", "A"], None),  # misspelt: the full parser lists the commands
        (["--config", "merge"], None),
    ],
)
def test_command_of(argv, command):
    assert command_of(argv) == command


@pytest.mark.parametrize("argv", [["merge", "--list"], ["grade", "x.jsonl"], ["eval", "m"]])
def test_one_command_parser_parses_as_the_full_parser(argv):
    assert vars(build_parser(command_of(argv)).parse_args(argv)) == vars(build_parser().parse_args(argv))


# Importing the CLI and building the parser of every command (what `wiseft --help` and argument parsing
# need) loads no array or model library: they load inside the command that runs.
PARSER_PROBE = (
    "import sys\n"
    "from wiseft.cli import COMMANDS, build_parser\n"
    "parser = build_parser()\n"
    "for name in COMMANDS:\n"
    "    try:\n"
    "        parser.parse_args([name, '--help'])\n"
    "    except SystemExit:\n"
    "        pass\n"
    "print(' '.join(sorted(m for m in ('numpy', 'torch', 'transformers') if m in sys.modules)) or 'NONE')\n"
)


def test_parsing_every_command_loads_no_numpy_torch_or_transformers(tmp_path):
    done = subprocess.run([sys.executable, "-c", PARSER_PROBE], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "NONE"


# `wiseft eval` writes no report, so its path loads no matplotlib: the report package imports matplotlib
# inside the functions that draw, and evaluate/outputs.py imports `wiseft.report` at its top.
MODULES_PROBE = (
    "import importlib, sys\n"
    "for name in sys.argv[1:]:\n"
    "    importlib.import_module(name)\n"
    "print(' '.join(sorted(m for m in ('matplotlib', 'numpy') if m in sys.modules)) or 'NONE')\n"
)


def _loaded(modules: list[str], cwd) -> str:
    done = subprocess.run(
        [sys.executable, "-c", MODULES_PROBE, *modules], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "modules",
    [
        ["wiseft.report"],
        ["wiseft.cli.eval", "wiseft.cli.tables", "wiseft.evaluate.runners", "wiseft.evaluate.outputs"],
    ],
    ids=["report-package", "eval-path"],
)
def test_report_and_eval_path_load_no_matplotlib(tmp_path, modules):
    assert "matplotlib" not in _loaded(modules, tmp_path).split()


def _python(code: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_the_command_exits_with_mains_status_and_all_of_its_output():
    """`python -m wiseft` ends through `exit_now`: the status main returned (0, or 2 for bad input), and
    stdout and stderr complete though they are pipes (block-buffered) when it skips the teardown."""
    listed = subprocess.run([sys.executable, "-m", "wiseft", "merge", "--list"], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert listed.returncode == 0 and listed.stdout.rstrip().endswith("┘") and "slerp" in listed.stdout
    bad = subprocess.run([sys.executable, "-m", "wiseft", "merge", "/nonexistent-a", "/nonexistent-b", "--delta",
                          "0.5", "-o", "/nonexistent-out"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("wiseft merge: error:")


def test_exit_now_runs_the_exit_handlers_and_flushes_before_it_leaves(tmp_path):
    """What must happen at exit still does (atexit handlers: Ray's shutdown, unused actors stopped,
    temporary directories removed), buffered output is written, and the status is the one given."""
    code = (
        "import atexit, pathlib, sys, tempfile\n"
        "from wiseft.cli import exit_now\n"
        f"atexit.register(lambda: pathlib.Path({str(tmp_path / 'handler')!r}).write_text('ran'))\n"
        "keep = tempfile.TemporaryDirectory()\n"
        f"pathlib.Path({str(tmp_path / 'tmpdir')!r}).write_text(keep.name)\n"
        "sys.stdout.write('x' * 100000)\n"  # more than a pipe's buffer: written, not dropped
        "exit_now(3)\n"
    )
    done = _python(code)
    assert done.returncode == 3 and done.stdout == "x" * 100000
    assert (tmp_path / "handler").read_text() == "ran"
    assert not os.path.exists((tmp_path / "tmpdir").read_text())


def test_exit_now_waits_for_a_running_thread_as_an_ordinary_exit_does(tmp_path):
    code = (
        "import pathlib, threading, time\n"
        "from wiseft.cli import exit_now\n"
        "def late():\n"
        "    time.sleep(0.5)\n"
        f"    pathlib.Path({str(tmp_path / 'late')!r}).write_text('done')\n"
        "threading.Thread(target=late).start()\n"
        "exit_now(0)\n"
    )
    done = _python(code)
    assert done.returncode == 0 and (tmp_path / "late").read_text() == "done"

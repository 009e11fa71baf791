"""The OpenMP waiting policy the CLI sets before torch is imported (`wiseft.openmp`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = "import os, sys\n{before}from wiseft.openmp import passive_openmp\nprint(passive_openmp(), os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.parametrize(
    "before, env, want",
    [
        ("", {}, "True PASSIVE"),
        ("", {"OMP_WAIT_POLICY": "ACTIVE"}, "False ACTIVE"),  # the user's choice wins
        ("", {"WISEFT_NO_OPENMP_TUNING": "1"}, "False None"),
        ("import torch\n", {}, "False None"),  # too late: libgomp has read its settings
    ],
)
def test_passive_openmp_only_before_torch_and_never_over_the_user(before, env, want):
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "WISEFT_NO_OPENMP_TUNING")}
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(before=before)], env={**clean, **env},
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == want


def test_the_cli_sets_it_for_commands_that_run_models():
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = (
        "import os, sys\nfrom wiseft import cli\n"
        "try:\n    cli.main(['eval', '--limit', '0', 'nowhere'])\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "PASSIVE"

"""The import-layer contract of docs/ARCHITECTURE.md holds, and it bites: an import that runs back up the
layers (planted in a copy of the package) breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (the test extra)")


def _lint(project: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(project / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def _copy(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    return project


def test_the_package_keeps_its_layers(tmp_path):
    done = _lint(_copy(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize(
    "module, upward",
    [
        ("records.py", "import wiseft.store"),  # the schema at the bottom reaching for persistence
        ("store/core.py", "from wiseft import metrics"),  # persistence reaching for what comes after grading
        ("tasks/base.py", "import wiseft.sampling"),  # independent siblings
        ("train/sft.py", "import wiseft.evaluate.session"),  # training reaching for evaluation
        ("evaluate/runners.py", "import wiseft.distributed.engine"),  # the engine seam reaching for Ray
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    project = _copy(tmp_path)
    path = project / "src" / "wiseft" / module
    path.write_text(path.read_text() + f"\n{upward}  # planted\n")
    done = _lint(project)
    assert done.returncode != 0 and "BROKEN" in done.stdout, done.stdout[-3000:]

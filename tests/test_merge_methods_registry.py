"""The method registry's table: looking a method up loads the module that registers it, and no other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import wiseft.merge.methods as methods_pkg
from wiseft.merge.methods import MODULES, all_methods, command_methods

# In a fresh interpreter: each lookup by name (in a mixed-up spelling) adds at most its table module to
# the loaded method modules; a wrong table entry would fall back to loading them all.
PROBE = """
import sys
from wiseft.errors import ConfigError
from wiseft.merge.methods import MODULES, get_method

def loaded():
    return {m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("wiseft.merge.methods.")}

for key, module in MODULES.items():
    before = loaded()
    try:
        method = get_method(key.replace("-", "_").upper())
    except ConfigError as exc:
        assert "its own command" in str(exc), (key, exc)
    else:
        assert method.name.replace("_", "-") == key, (key, method.name)
    assert loaded() - before <= {module}, (key, module, loaded() - before)
    assert module in loaded(), (key, module)
print("OK", len(loaded()))
"""


def test_each_lookup_loads_its_module_alone():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["OK", str(len(set(MODULES.values())))]


def test_table_names_every_method_and_module():
    names = {m.name.replace("_", "-") for m in (*all_methods(), *command_methods())}
    assert set(MODULES) == names
    files = {p.stem for p in Path(methods_pkg.__file__).parent.glob("*.py") if p.stem != "__init__"}
    assert set(MODULES.values()) == files


def test_methods_listed_in_table_order():
    listed = [m.name.replace("_", "-") for m in (*all_methods(), *command_methods())]
    assert listed == list(MODULES)

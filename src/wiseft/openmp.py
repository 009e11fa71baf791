"""OpenMP's waiting policy for machines whose cores are shared.

torch runs an operation on several cores through OpenMP (GNU libgomp), whose threads, between two
parallel operations, spin on the core for a while before they sleep. When the machine runs more
threads than it has cores (other jobs, other engineers), a spinning thread burns the time slice its
partner needs, and every parallel operation waits for the slowest thread, so that a decoding step on
two threads can be slower than on one. `OMP_WAIT_POLICY=PASSIVE` makes idle threads sleep at once; on an idle machine it costs a wake-up per
parallel operation, small against the matrix products of a model that is worth splitting.

libgomp reads the variable once, when torch is first imported, so `passive_openmp()` must run before
that; the CLI calls it first thing for the commands that run models.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "OMP_WAIT_POLICY"


def passive_openmp() -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE unless the user set it or torch is already imported; return whether
    it was set."""
    if VARIABLE in os.environ or "torch" in sys.modules or os.environ.get("WISEFT_NO_OPENMP_TUNING"):
        return False
    os.environ[VARIABLE] = "PASSIVE"
    return True

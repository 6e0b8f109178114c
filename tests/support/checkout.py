"""The PYTHONPATH a test gives the processes it starts, so they run this checkout's code.

The shared venv's editable install points at one checkout; a trainer, worker or pod started by a test in another
checkout (a worktree, CI's fresh clone) must import that checkout's `pretrain_trainer` and `pretrain_operator`
(and `tests.support.*`), whatever the venv or the caller's PYTHONPATH says.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def checkout_pythonpath() -> str:
    """This checkout's trainer/, operator/ and root first, then whatever PYTHONPATH the caller already had."""
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    ours = [str(ROOT / "trainer"), str(ROOT / "operator"), str(ROOT)]
    return os.pathsep.join(ours + [p for p in inherited if p not in ours])

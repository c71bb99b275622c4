"""Folders only their owner may read: `<state>` holds the token, logs, databases and history."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_MODE = 0o700


def private_dir(folder: Path) -> Path:
    """Create `folder` (and missing parents) as 0700; tighten it if it exists more open.

    `mkdir(mode=)` applies to the last folder only, and the umask may open it up: chmod after.
    """
    folder.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(folder.stat().st_mode) != PRIVATE_MODE:
        # A folder of another owner (a shared home) stays as it is: still usable.
        with contextlib.suppress(PermissionError):
            os.chmod(folder, PRIVATE_MODE)
    return folder

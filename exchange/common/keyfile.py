"""Key files: written once, readable by their owner only."""

from __future__ import annotations

import os
from pathlib import Path


def write_new_key_file(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a new file of mode 0600 and flush it to disk.

    Raises FileExistsError when ``path`` exists: a key is never overwritten,
    since what it signed or encrypted may still need it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())

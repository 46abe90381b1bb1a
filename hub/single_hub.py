"""One hub per SQLite store: a hub holds an exclusive lock on ``<store>.hub-lock`` while it runs.

SQLite has one writer and no way for two processes to take turns per
agency, so a second ``hub run`` on the same SQLite store is refused with a
message saying so; several hubs share a PostgreSQL store (docs/scaling.md).
The lock is released by the kernel when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from exchange.common.urls import sqlite_path
from exchange.store import StoreError


def claim(store_url: str) -> int | None:
    """Lock a SQLite store for this hub; the lock file's descriptor (kept open while the hub runs),
    None for other stores.  StoreError when another hub holds it."""
    if not store_url.startswith("sqlite:"):
        return None
    path = Path(sqlite_path(store_url) + ".hub-lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"another hub already serves the SQLite store {store_url} (it holds {path}): a SQLite "
                         "store serves one hub; run several hubs on a PostgreSQL store") from None
    return fd


def release(fd: int | None) -> None:
    """Give the lock up (a no-op for None)."""
    if fd is not None:
        os.close(fd)

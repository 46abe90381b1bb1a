"""The hub's append-only, hash-chained audit log.

One JSON object per line; each entry holds the SHA-256 of the entry before
it, so a changed, removed or reordered entry breaks the chain from there on.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of an entry's canonical JSON (without its own ``hash``)."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


class AuditLog:
    """Appends audit entries to a file, each chained to the one before."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._last = self._read_last()

    def record(self, action: str, actor: str, **details: Any) -> dict[str, Any]:
        """Append one entry (durable when this returns) and return it."""
        with self._lock:
            seq, previous = self._last
            entry = {"seq": seq + 1, "time": datetime.now(timezone.utc).isoformat(), "action": action,
                     "actor": actor, "details": details, "prev": previous}
            entry["hash"] = entry_hash(entry)
            line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._last = (entry["seq"], entry["hash"])
            return entry

    def _read_last(self) -> tuple[int, str]:
        last = (0, GENESIS)
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        entry = json.loads(line)
                        last = (entry["seq"], entry["hash"])
        return last

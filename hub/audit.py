"""The hub's append-only, hash-chained audit log (Art. 18 audit trail).

One JSON object per line::

    {"seq": 7, "time": ISO, "action": "...", "actor": "...", "details": {...},
     "prev": <hash of entry 6>, "hash": <SHA-256 of this entry without "hash">}

Entry 1 chains to ``GENESIS``.  A changed entry no longer matches its hash;
a removed, reordered or inserted one breaks the ``seq`` run or the ``prev``
link; ``verify`` names the first entry that does not hold.  Cutting entries
off the end leaves a valid chain, so operators anchor the head
(``exchange audit head``) somewhere else and verify against it.

Several processes may append (the running hub and ``exchange hub import``):
each append takes an exclusive ``flock`` on the file, reads the current last
entry, writes one line and fsyncs before releasing it.  A line without its
newline can only be the remains of a write that crashed before it returned;
the next append moves those bytes to ``<log>.torn`` and records that it did,
so the damage stays visible in the chain instead of being chained over.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from exchange.common.config import Config
from exchange.contracts.errors import ExchangeError, InvalidInput
from exchange.contracts.text import EXCERPT_CHARS, bounded

log = logging.getLogger(__name__)

GENESIS = "0" * 64
FIELDS = ("seq", "time", "action", "actor", "details", "prev", "hash")
TORN_SUFFIX = ".torn"
_TAIL_CHUNK = 64 * 1024


class AuditError(ExchangeError):
    """The audit log cannot be written or read; the message says why."""


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of an entry's canonical JSON (without its own ``hash``)."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Head:
    """The last entry of a log: its sequence number and hash (0 and GENESIS when empty)."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> "Head":
        """A head written as ``SEQ:HASH`` (what ``exchange audit head`` prints)."""
        seq, _, digest = text.strip().partition(":")
        if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InvalidInput(f"not an audit head {text!r}: expected SEQ:HASH (a number and 64 hex digits)")
        return cls(int(seq), digest)


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` found: ``valid``, the entries read, the head, and the first bad entry."""

    path: str
    valid: bool
    entries: int
    head: Head
    bad_seq: int | None = None  # the sequence number where the chain first fails
    bad_line: int | None = None
    kind: str = ""  # changed, missing, out_of_order, inserted, malformed, torn, truncated, anchor_mismatch
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["head"] = str(self.head)
        return d

    def render(self) -> str:
        if self.valid:
            return f"{self.path}: {self.entries} entries, chain valid, head {self.head}"
        return f"{self.path}: chain BROKEN at entry {self.bad_seq} (line {self.bad_line}): {self.reason}"


class AuditLog:
    """Appends audit entries to a file, each chained to the one before."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640))  # readers can lock it now

    def record(self, action: str, actor: str, **details: Any) -> dict[str, Any]:
        """Append one entry (durable when this returns) and return it.

        Long client-supplied values are kept as excerpts with their hash (exchange/contracts/text.py)."""
        details = bounded(details)
        actor = bounded(actor, EXCERPT_CHARS)
        with self._lock, open(self.path, "r+b") as f, _locked(f, fcntl.LOCK_EX):
            last = self._prepare_tail(f)
            entry = {"seq": last.seq + 1, "time": datetime.now(timezone.utc).isoformat(), "action": action,
                     "actor": actor, "details": details, "prev": last.hash}
            entry["hash"] = entry_hash(entry)
            _append(f, entry)
            return entry

    def head(self) -> Head:
        """The current last entry (what operators anchor elsewhere)."""
        with open(self.path, "rb") as f, _locked(f, fcntl.LOCK_SH):
            return _last_entry(f)[0]

    def _prepare_tail(self, f: BinaryIO) -> Head:
        """The head to chain to, after setting any torn last line aside."""
        last, torn_at = _last_entry(f)
        if torn_at is None:
            return last
        f.seek(torn_at)
        fragment = f.read()
        with open(str(self.path) + TORN_SUFFIX, "ab") as side:
            side.write(json.dumps({"offset": torn_at, "after_seq": last.seq,
                                   "bytes": fragment.decode("utf-8", "replace")}, ensure_ascii=False).encode() + b"\n")
            side.flush()
            os.fsync(side.fileno())
        f.truncate(torn_at)
        os.fsync(f.fileno())
        log.warning("audit log %s ended in an incomplete entry (%d bytes at offset %d, after entry %d); "
                    "moved it to %s%s", self.path, len(fragment), torn_at, last.seq, self.path, TORN_SUFFIX)
        entry = {"seq": last.seq + 1, "time": datetime.now(timezone.utc).isoformat(), "action": "audit.torn_entry",
                 "actor": "audit", "details": {"offset": torn_at, "length": len(fragment),
                                               "sha256": hashlib.sha256(fragment).hexdigest(),
                                               "moved_to": self.path.name + TORN_SUFFIX},
                 "prev": last.hash}
        entry["hash"] = entry_hash(entry)
        _append(f, entry)
        return Head(entry["seq"], entry["hash"])


def _append(f: BinaryIO, entry: dict[str, Any]) -> None:
    f.seek(0, os.SEEK_END)
    f.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    f.flush()
    os.fsync(f.fileno())


@contextmanager
def _locked(f: BinaryIO, mode: int) -> Iterator[None]:
    fcntl.flock(f.fileno(), mode)
    try:
        yield
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _last_entry(f: BinaryIO) -> tuple[Head, int | None]:
    """The head of the log open as ``f``, and the offset of a torn last line (None if none).

    Reads backwards from the end, so appending stays cheap however long the log."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return Head(0, GENESIS), None
    tail = b""
    start = size
    while True:
        step = min(_TAIL_CHUNK, start)
        start -= step
        f.seek(start)
        tail = f.read(step) + tail
        complete_end = tail.rfind(b"\n") if not tail.endswith(b"\n") else len(tail) - 1
        if complete_end == -1 and start > 0:
            continue  # no newline yet: read further back
        torn_at = None if tail.endswith(b"\n") else start + complete_end + 1
        if complete_end == -1:  # only a torn line in the whole file
            return Head(0, GENESIS), torn_at
        line_start = tail.rfind(b"\n", 0, complete_end) + 1
        if line_start == 0 and start > 0:
            continue  # the last complete line starts before what we read
        try:
            entry = json.loads(tail[line_start:complete_end])
            return Head(int(entry["seq"]), str(entry["hash"])), torn_at
        except (ValueError, KeyError, TypeError) as e:
            raise AuditError(f"audit log {f.name}: the last entry is not readable ({e}); "
                             "run `exchange audit verify` and repair the log before writing to it") from None


def verify(path: str | Path, head: Head | None = None) -> Verdict:
    """Check the whole chain of the log at ``path`` (and, with ``head``, that
    the anchored entry is still there, unchanged); name the first bad entry."""
    path = Path(path)
    previous = Head(0, GENESIS)
    count = 0
    anchor_seen = False
    if not path.is_file():
        raise AuditError(f"{path}: no such audit log")
    with open(path, "rb") as f:
        with _locked(f, fcntl.LOCK_SH):  # no append is half-written at this size; later ones are not read
            remaining = f.seek(0, os.SEEK_END)
        f.seek(0)
        for number, raw in enumerate(f, start=1):
            if remaining <= 0:
                break
            raw = raw[:remaining]
            remaining -= len(raw)
            expected = previous.seq + 1
            if not raw.endswith(b"\n"):
                return _bad(path, count, previous, expected, number, "torn",
                            f"the last line is incomplete ({len(raw)} bytes without a newline): "
                            "a write was interrupted; the next append sets it aside")
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict) or set(entry) != set(FIELDS):
                    raise ValueError(f"fields must be exactly {', '.join(FIELDS)}")
                seq = entry["seq"]
                if not isinstance(seq, int):
                    raise ValueError("seq is not an integer")
            except ValueError as e:
                return _bad(path, count, previous, expected, number, "malformed", f"not an audit entry: {e}")
            if entry_hash(entry) != entry["hash"]:
                return _bad(path, count, previous, seq, number, "changed",
                            f"entry {seq} was changed: its content does not match its hash")
            if seq > expected:
                return _bad(path, count, previous, seq, number, "missing",
                            f"entry {seq} follows entry {previous.seq}: "
                            f"{'entry' if seq == expected + 1 else 'entries'} {expected}"
                            f"{'' if seq == expected + 1 else f'-{seq - 1}'} removed")
            if seq < expected:
                return _bad(path, count, previous, seq, number, "out_of_order",
                            f"entry {seq} appears after entry {previous.seq}: entries were reordered or repeated")
            if entry["prev"] != previous.hash:
                return _bad(path, count, previous, seq, number, "inserted",
                            f"entry {seq} does not chain to entry {previous.seq} before it: "
                            "an entry was inserted or replaced")
            previous = Head(seq, entry["hash"])
            count += 1
            if head is not None and seq == head.seq:
                anchor_seen = True
                if entry["hash"] != head.hash:
                    return _bad(path, count - 1, previous, seq, number, "anchor_mismatch",
                                f"entry {seq} differs from the anchored head {head}: the log was rewritten")
    if head is not None and not anchor_seen and head.seq > 0:
        return _bad(path, count, previous, previous.seq + 1, count + 1, "truncated",
                    f"the log ends at entry {previous.seq} but the anchored head is entry {head.seq}: "
                    f"entries {previous.seq + 1}-{head.seq} were cut off")
    return Verdict(str(path), True, count, previous)


def _bad(path: Path, count: int, previous: Head, seq: int, line: int, kind: str, reason: str) -> Verdict:
    return Verdict(str(path), False, count, previous, bad_seq=seq, bad_line=line, kind=kind, reason=reason)


def audit_path(cfg: Config) -> Path:
    """The hub's audit log: ``[audit] path``, or ``audit.log`` beside a SQLite store."""
    if cfg.audit.path:
        return Path(cfg.audit.path)
    url = cfg.store.url
    if url.startswith("sqlite:"):
        from exchange.common.urls import sqlite_path

        return Path(sqlite_path(url)).parent / "audit.log"
    raise AuditError("[audit] path is required when the hub store is not SQLite: "
                     "set it to a file on a local disk, e.g. /var/lib/exchange/audit.log")


def open_audit(cfg: Config) -> AuditLog:
    """The hub's audit log as configured."""
    try:
        return AuditLog(audit_path(cfg))
    except OSError as e:
        raise AuditError(f"cannot open the audit log: {e}") from None


class ChainWatch:
    """Verifies the chain now and every ``interval`` seconds in a thread,
    publishing the result as ``exchange_hub_audit_chain_valid``."""

    def __init__(self, path: str | Path, interval: float):
        if interval <= 0:
            raise ValueError(f"[audit] verify_interval must be positive, got {interval}")
        self.path = Path(path)
        self.interval = interval
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="audit-verify", daemon=True)
        self.last: Verdict | None = None

    def start(self) -> Verdict:
        """Verify once (so the gauge is right from the start), then keep checking."""
        verdict = self.check()
        self.thread.start()
        return verdict

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)

    def check(self) -> Verdict:
        from hub.metrics import METRICS

        try:
            verdict = verify(self.path)
        except (OSError, AuditError) as e:
            verdict = Verdict(str(self.path), False, 0, Head(0, GENESIS), kind="unreadable", reason=str(e))
        METRICS.audit_chain_valid.set(1 if verdict.valid else 0)
        if not verdict.valid and verdict != self.last:
            log.error("audit log chain broken: %s", verdict.render(),
                      extra={"audit_path": str(self.path), "bad_seq": verdict.bad_seq, "kind": verdict.kind})
        self.last = verdict
        return verdict

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.check()

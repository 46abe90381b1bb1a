"""File drops: full table exports dropped in a directory, captured as changes.

For legacy systems whose database cannot be captured directly.  The source
URL names the drop directory (``files:///srv/drops``; ``files://drops`` is
relative to the working directory).  An agency writes a complete export of a
table as one file:

* ``<table>.csv`` or ``<table>-<anything>.csv``: UTF-8 CSV with a header row;
  every value is text, exactly as written (an empty field is an empty string);
* ``<table>.json`` / ``<table>-<anything>.json``: a JSON array of objects;
* ``<table>.jsonl`` / ``<table>-<anything>.jsonl``: one JSON object per line.

JSON values keep their type (string, number, true/false, null); nested
objects and arrays, and numbers that are not finite, are refused; integers
outside the signed 64-bit range are carried as their exact decimal text.
Extensions are matched without regard to case; of two configured tables
whose names both fit, the longer name wins.
Only regular files are read: symbolic links, directories, devices and FIFOs
are left alone (reported once), and a file swapped for a link between the
check and the read is not followed.  Hidden names (``.x``), ``*.tmp``,
``*.part`` and ``*~`` are ignored, so a writer can write under such a name
and rename the finished file into place;
a file is in any case read only once its size and modification time have
stayed the same for ``settle_seconds``.  Files of one table are taken oldest
first (modification time, then name).

Each file is compared with the table's previous state (what the files taken
before it held) and turned into delete, update and insert changes; a change
of the column set first becomes a schema change.  A file without rows (a CSV
header alone, ``[]``) empties the table: one ``TRUNCATE`` change, which the
node turns into deletes of every record of the table it holds.  Rows are equal when their
non-null values are (``image_hash``).  The changes' commit time is the
file's modification time.  Key columns are required for every table
(``[source] keys``).  The previous state (rows as JSON arrays in the
schema's column order), the change log and the record of which file was
taken live in the adapter's own SQLite database
(default ``<drop dir>/.exchange/state.db``) and are written in ONE
transaction per file; only then is the file moved to ``processed/`` (as
``<n>-<name>``, ``n`` numbering the files taken).  A crash between the two
leaves the file in place: it is recognised by name, size and content hash as
the table's last file taken, and only moved.

A malformed file (not UTF-8, bad CSV or JSON, a missing key column, a null
or duplicate key, rows with another column set than the header or the first
object, or whatever else its parser fails on) is refused, alone: the log
names the file, the line and the fault (quoting content only in short,
escaped excerpts), the file stays where it is, and it is tried again only
once it changes.  The WAL is emptied after each file taken.

Finding and opening drop files: directory.py; parsing them: formats.py; the
state database's tables: state.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from adapters.files import metrics
from adapters.files.directory import Changing, Drop, drops_path, find, match_table, open_drop, shown
from adapters.files.formats import DropRefused, HashedText, excerpt, read_rows
from adapters.files.state import STATE_SQL, columns_text, read_changes
from exchange.contracts import changes as ch
from exchange.contracts.changes import Column, SourceNotReady, TableSchema
from exchange.contracts.errors import InvalidInput
from exchange.contracts.events import image_hash

log = logging.getLogger(__name__)

PROCESSED = "processed"
STATE = Path(".exchange") / "state.db"
CSV_TYPE = "TEXT"  # CSV values are text
JSON_TYPE = ""  # JSON values keep their own type: no declared type (no SQLite affinity)


# -- the capture source ---------------------------------------------------------

class FileDropSource:
    """Captures ``tables`` from full exports dropped in the directory at ``url``.

    ``keys`` ({table: [column, ...]}) must name the key of every table.
    ``settle_seconds``: how long a file's size and modification time must
    stay unchanged before it is read.  ``state_path``: the adapter's state
    database (default ``<drop dir>/.exchange/state.db``).
    """

    def __init__(self, url: str, tables: Sequence[str], keys: dict[str, list[str]] | None = None,
                 settle_seconds: float = 5.0, state_path: str = ""):
        self.directory = drops_path(url)
        self.tables = list(tables)
        self.keys = {t: tuple(k) for t, k in (keys or {}).items()}
        self.settle_seconds = settle_seconds
        self.state_path = Path(state_path) if state_path else self.directory / STATE
        self._db: sqlite3.Connection | None = None
        self._prepared = False
        self._seen: dict[str, tuple[int, int, float]] = {}  # name -> size, mtime_ns, monotonic time first seen
        self._reported: set[str] = set()  # names already reported as naming no table or not a regular file
        self._observer: Any = None

    def prepare(self) -> None:
        """Check the directory and keys; create the state database and ``processed/``."""
        if not self.directory.is_dir():
            raise SourceNotReady(f"drop directory {self.directory} does not exist: create it, or correct "
                                 "[source] url (files:///ABSOLUTE/PATH)")
        if self.settle_seconds < 0:
            raise SourceNotReady(f"[source] settle_seconds must not be negative, got {self.settle_seconds}")
        for table in self.tables:
            if not self.keys.get(table):
                raise SourceNotReady(f"table {table!r} has no key: file drops need the key columns of every table, "
                                     f'e.g. `[source] keys = {{ {table} = ["id"] }}` in node config')
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        (self.directory / PROCESSED).mkdir(exist_ok=True)
        db = self._open(create=True)
        for statement in STATE_SQL:
            db.execute(statement)
        db.execute("CREATE TEMP TABLE IF NOT EXISTS incoming (key TEXT PRIMARY KEY, row TEXT NOT NULL, "
                   "digest TEXT NOT NULL, line INTEGER NOT NULL)")
        for table, schema in self._stored_schemas().items():
            if table in self.keys and schema.primary_key != self.keys[table]:
                raise SourceNotReady(
                    f"the key of table {table!r} was {', '.join(schema.primary_key)} and is now configured as "
                    f"{', '.join(self.keys[table])}: a file-drop table's key cannot change; restore the "
                    f"previous [source] keys, or capture the table under a new name")
        self._prepared = True

    def schemas(self) -> dict[str, TableSchema]:
        """The captured tables as the last file taken of each had them (no columns before the first)."""
        stored = self._stored_schemas() if self.state_path.exists() else {}
        return {t: stored.get(t) or TableSchema(t, (), self.keys.get(t, ())) for t in self.tables}

    def read(self, after: int, limit: int) -> list[ch.Change]:
        """Takes at most one complete drop file, then returns changes with position > ``after``."""
        if not self._prepared:
            self.prepare()
        self._take_one()
        return read_changes(self._open(), after, limit)

    def pending(self, after: int) -> int:
        """Changes after ``after``, plus one for each drop file not taken yet (refused ones excepted)."""
        if not self.state_path.exists():
            raise SourceNotReady(f"capture is not set up in {self.directory} yet: start the node")
        db = self._open()
        logged = db.execute("SELECT count(*) FROM changes WHERE id > ?", (after,)).fetchone()[0]
        refused = self._refused()
        waiting = sum(1 for drop in self._candidates() if refused.get(drop.name) != (drop.size, drop.mtime_ns))
        return logged + waiting

    def acknowledge(self, position: int) -> None:
        """Forget the changes up to ``position`` (the hub holds them)."""
        self._open().execute("DELETE FROM changes WHERE id <= ?", (position,))

    def request_resnapshot(self, tables: Sequence[str]) -> None:
        """Refused: every drop is a complete export, compared with what the node holds."""
        raise InvalidInput(f"a file-drop source is not re-read on request ({', '.join(tables)}): every drop is a "
                           "complete export compared with the rows the node holds, so drop a fresh export of "
                           "the table instead")

    def watch(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when a file is written or renamed into the drop directory
        (watchdog), so capture need not wait for its next poll."""
        from watchdog.observers import Observer

        if self._observer is not None:
            return
        observer = Observer()
        observer.schedule(_Arrivals(wake, self.tables), str(self.directory), recursive=False)
        try:
            observer.start()
        except OSError as e:  # e.g. the inotify watch limit: polling still finds every file
            log.warning("cannot watch %s (%s); finding drop files by polling only", self.directory, e)
            return
        self._observer = observer

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)
            self._observer = None
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- state ------------------------------------------------------------------

    def _open(self, create: bool = False) -> sqlite3.Connection:
        if self._db is None:
            if not create and not self.state_path.exists():
                raise SourceNotReady(f"the file-drop state {self.state_path} does not exist: start the node")
            db = sqlite3.connect(self.state_path, isolation_level=None, timeout=30)
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a file is moved away only after its changes are on disk
            self._db = db
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._open()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _stored_schemas(self) -> dict[str, TableSchema]:
        rows = self._open().execute("SELECT tbl, schema FROM schemas").fetchall()
        return {table: TableSchema.from_dict(json.loads(text)) for table, text in rows}

    def _refused(self) -> dict[str, tuple[int, int]]:
        return {name: (size, mtime) for name, size, mtime in
                self._open().execute("SELECT name, size, mtime_ns FROM refused")}

    # -- finding files ----------------------------------------------------------

    def _candidates(self, report: bool = False) -> list[Drop]:
        """Regular files naming a captured table, oldest first."""
        return find(self.directory, self.tables, self._reported if report else None)

    def _ready(self) -> list[Drop]:
        """Candidates whose size and mtime stayed the same for ``settle_seconds``, refused ones excepted."""
        now = time.monotonic()
        refused = self._refused()
        candidates = self._candidates(report=True)
        present = {d.name for d in candidates}
        ready = []
        for drop in candidates:
            if refused.get(drop.name) == (drop.size, drop.mtime_ns):
                continue  # refused as it is: tried again when it changes
            seen = self._seen.get(drop.name)
            if seen is None or seen[:2] != (drop.size, drop.mtime_ns):
                self._seen[drop.name] = (drop.size, drop.mtime_ns, now)
                if self.settle_seconds > 0:
                    continue
            elif now - seen[2] < self.settle_seconds:
                continue
            ready.append(drop)
        self._seen = {n: s for n, s in self._seen.items() if n in present}
        gone = set(refused) - present
        if gone:
            self._open().executemany("DELETE FROM refused WHERE name = ?", [(n,) for n in gone])
        return ready

    # -- taking a file ----------------------------------------------------------

    def _take_one(self) -> None:
        """Take the oldest ready file (or move one taken before a crash); refuse malformed ones."""
        for drop in self._ready():
            try:
                already = self._taken_before(drop)
                if already is not None:
                    log.info("drop file %s was taken before a restart; moving it to %s/", drop.name, PROCESSED,
                             extra={"file": drop.name, "table": drop.table})
                    self._move(drop, already)
                    return
                taken = self._consume(drop)
            except (Changing, FileNotFoundError):
                self._seen.pop(drop.name, None)  # settle again
                continue
            except DropRefused as e:
                self._refuse(drop, e)
                continue
            self._move(drop, taken)
            return

    def _taken_before(self, drop: Drop) -> int | None:
        """The id under which this very file was taken, when it is its table's last file taken."""
        last = self._open().execute("SELECT id, name, size, sha256 FROM taken WHERE tbl = ? ORDER BY id DESC LIMIT 1",
                                    (drop.table,)).fetchone()
        if last is None or last[1] != drop.name or last[2] != drop.size:
            return None
        digest = hashlib.sha256()
        with open_drop(drop) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return last[0] if digest.hexdigest() == last[3] else None

    def _consume(self, drop: Drop) -> int:
        """Diff the file against the table's state and log the changes, in one transaction; the taken id."""
        at = datetime.fromtimestamp(drop.mtime_ns / 1e9, timezone.utc).isoformat()
        with self._transaction() as db, open_drop(drop) as f:
            source = HashedText(f)
            db.execute("DELETE FROM incoming")
            stored = self._stored_schemas().get(drop.table)
            order, rows = self._load(db, drop, source, stored)
            st = os.stat(f.fileno())
            if (st.st_size, st.st_mtime_ns) != (drop.size, drop.mtime_ns):
                raise Changing()
            taken = db.execute("INSERT INTO taken (name, tbl, size, sha256, rows, changes, at) "
                               "VALUES (?, ?, ?, ?, ?, 0, ?)",
                               (drop.name, drop.table, drop.size, source.sha256.hexdigest(), rows,
                                datetime.now(timezone.utc).isoformat())).lastrowid
            schema = None if order is None else TableSchema(
                drop.table, tuple(Column(c, CSV_TYPE if drop.format == "csv" else JSON_TYPE) for c in order),
                self.keys[drop.table])
            if schema is not None and schema != stored:
                self._log_schema(db, schema, at, taken)
            db.execute("INSERT INTO layouts VALUES (?, ?, ?)",
                       (taken, columns_text(stored.column_names) if stored else None,
                        columns_text(order) if order else None))
            counts = self._diff(db, drop.table, at, taken)
            db.execute("UPDATE taken SET changes = ? WHERE id = ?", (sum(counts.values()), taken))
            db.execute("DELETE FROM refused WHERE name = ?", (drop.name,))
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file's transaction made the WAL as large as its changes
        log.info("took drop file %s for %s: %d rows, %d created, %d updated, %d deleted", drop.name, drop.table,
                 rows, counts[ch.INSERT], counts[ch.UPDATE], counts[ch.DELETE],
                 extra={"file": drop.name, "table": drop.table, "rows": rows, **counts})
        metrics.DROP_FILES_TAKEN.labels(drop.table).inc()
        return taken

    def _load(self, db: sqlite3.Connection, drop: Drop, source: HashedText,
              stored: TableSchema | None) -> tuple[list[str] | None, int]:
        """Parse the file into the ``incoming`` table; (its columns in the order kept, or None
        for an empty JSON array; rows).  The order is ``stored``'s when the column set is the same."""
        key = self.keys[drop.table]
        order: list[str] | None = None
        count = 0
        for line, columns, row in read_rows(drop.format, source):
            if order is None:
                missing = [k for k in key if k not in columns]
                if missing:
                    raise DropRefused(line, f"key column {excerpt(', '.join(missing))} of table {drop.table!r} is "
                                      f"missing (columns: {excerpt(', '.join(columns))})")
                same = stored is not None and set(stored.column_names) == set(columns)
                order = list(stored.column_names) if same else list(columns)
            if row is None:
                continue  # the header
            values = [row[c] for c in order]
            key_values = [row[k] for k in key]
            if any(v is None for v in key_values):
                raise DropRefused(line, f"the key ({', '.join(key)}) is null")
            key_text = json.dumps(key_values, ensure_ascii=False, separators=(",", ":"))
            try:
                db.execute("INSERT INTO incoming VALUES (?, ?, ?, ?)",
                           (key_text, json.dumps(values, ensure_ascii=False, separators=(",", ":")),
                            image_hash(dict(zip(order, values))), line))
            except sqlite3.IntegrityError:
                first = db.execute("SELECT line FROM incoming WHERE key = ?", (key_text,)).fetchone()[0]
                raise DropRefused(line, f"duplicate key {excerpt(key_text)} (first on line {first})") from None
            count += 1
        return order, count  # order None: an empty JSON array empties the table, its columns as they were

    def _log_schema(self, db: sqlite3.Connection, schema: TableSchema, at: str, taken: int) -> None:
        text = json.dumps(schema.to_dict(), ensure_ascii=False)
        db.execute("INSERT INTO changes (tbl, op, new, at, drop_id) VALUES (?, ?, ?, ?, ?)",
                   (schema.name, ch.SCHEMA, text, at, taken))
        db.execute("INSERT OR REPLACE INTO schemas VALUES (?, ?)", (schema.name, text))

    def _diff(self, db: sqlite3.Connection, table: str, at: str, taken: int) -> dict[str, int]:
        """Log deletes, updates and inserts (each in key or file order); make ``incoming`` the table's state.
        A file without rows empties the table: one TRUNCATE, however many rows it had."""
        log_change = "INSERT INTO changes (tbl, op, old, new, at, drop_id) "
        if db.execute("SELECT 1 FROM incoming LIMIT 1").fetchone() is None:
            emptied = db.execute("DELETE FROM rows WHERE tbl = ?", (table,)).rowcount
            if emptied:
                db.execute(log_change + "VALUES (?, ?, NULL, NULL, ?, ?)", (table, ch.TRUNCATE, at, taken))
            return {ch.DELETE: emptied, ch.UPDATE: 0, ch.INSERT: 0}
        counts = {
            ch.DELETE: db.execute(
                log_change + "SELECT ?1, ?2, r.row, NULL, ?3, ?4 FROM rows r WHERE r.tbl = ?1 "
                "AND NOT EXISTS (SELECT 1 FROM incoming i WHERE i.key = r.key) ORDER BY r.key",
                (table, ch.DELETE, at, taken)).rowcount,
            ch.UPDATE: db.execute(
                log_change + "SELECT ?1, ?2, r.row, i.row, ?3, ?4 FROM incoming i "
                "JOIN rows r ON r.tbl = ?1 AND r.key = i.key WHERE r.digest != i.digest ORDER BY i.line",
                (table, ch.UPDATE, at, taken)).rowcount,
            ch.INSERT: db.execute(
                log_change + "SELECT ?1, ?2, NULL, i.row, ?3, ?4 FROM incoming i "
                "WHERE NOT EXISTS (SELECT 1 FROM rows r WHERE r.tbl = ?1 AND r.key = i.key) ORDER BY i.line",
                (table, ch.INSERT, at, taken)).rowcount,
        }
        db.execute("DELETE FROM rows WHERE tbl = ? AND NOT EXISTS (SELECT 1 FROM incoming i WHERE i.key = rows.key)",
                   (table,))
        db.execute("INSERT INTO rows (tbl, key, row, digest) SELECT ?, key, row, digest FROM incoming WHERE true "
                   "ON CONFLICT (tbl, key) DO UPDATE SET row = excluded.row, digest = excluded.digest "
                   "WHERE rows.row != excluded.row", (table,))
        db.execute("DELETE FROM incoming")
        return counts

    def _move(self, drop: Drop, taken: int) -> None:
        target = self.directory / PROCESSED / f"{taken:06d}-{drop.name}"
        os.replace(drop.path, target)
        self._seen.pop(drop.name, None)

    def _refuse(self, drop: Drop, fault: DropRefused) -> None:
        log.error("drop file %s refused: %s; fix it or replace it (it stays in %s)",
                  shown(drop.name), fault, self.directory,
                  extra={"file": drop.name, "table": drop.table, "line": fault.line, "reason": fault.reason})
        metrics.DROP_FILES_REFUSED.labels(drop.table).inc()
        self._open().execute("INSERT OR REPLACE INTO refused VALUES (?, ?, ?, ?, ?, ?)",
                             (drop.name, drop.size, drop.mtime_ns, fault.line, fault.reason,
                              datetime.now(timezone.utc).isoformat()))


class _Arrivals:
    """A watchdog handler calling ``wake`` when a drop file is written or renamed into place."""

    def __init__(self, wake: Callable[[], None], tables: Sequence[str]):
        self.wake = wake
        self.tables = tables

    def dispatch(self, event: Any) -> None:
        path = getattr(event, "dest_path", "") or event.src_path
        if event.event_type in ("created", "moved", "closed") and \
                match_table(Path(str(path)).name, self.tables):
            self.wake()

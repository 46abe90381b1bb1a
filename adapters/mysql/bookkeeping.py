"""Capture's bookkeeping on the source server: database ``exchange_capture``, rows keyed by source name.

* ``origins``: where the source's stream begins (the binlog's end when it
  was first prepared, or when a lost position was repaired), the server
  whose binlog that coordinate is in (``server``: ``@@server_id``, with
  ``@@server_uuid`` on MySQL), and the base its coordinates are packed with
  (position.py; NULL from a repair until the next read sets it); ``fresh``
  until the first read (which must read from the start: a node holding
  positions continues a stream this server has no record of);
* ``chunks``: snapshot passes, their progress and regions (snapshot.py);
* ``schemas``: the schemas emitted (history.py);
* ``copies``: copy counts of tables without a key (keyless.py);
* ``markers``: one row per snapshot session, its 64 KiB span in the binlog
  holds the positions of the session's rows (position.py);
* ``requests``: re-snapshot requests; written into the binlog like any row,
  they are read in commit order by the stream (resnapshot.py);
* ``progress``: how far the reading source has looked into the binlog (for
  ``pending`` and the lag gauges of other processes).

Rows of ``chunks``, ``schemas`` and ``copies`` are tagged with the position they belong
to; a read after an earlier position first deletes those after it.
"""

from __future__ import annotations

from typing import NamedTuple

BOOKKEEPING = "exchange_capture"
TAGGED = ("chunks", "schemas", "copies")

TABLES = (
    "CREATE TABLE IF NOT EXISTS {db}.origins (source VARCHAR(191) PRIMARY KEY, origin BIGINT NOT NULL, "
    "created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), server VARCHAR(191) NULL, base BIGINT NULL DEFAULT 0, "
    "fresh BOOLEAN NOT NULL DEFAULT FALSE)",
    "CREATE TABLE IF NOT EXISTS {db}.chunks (source VARCHAR(191), resource VARCHAR(191), position BIGINT, "
    "point BIGINT NOT NULL, last_key LONGTEXT, done BOOLEAN NOT NULL, pass INT NOT NULL DEFAULT 0, "
    "`rows` BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (source, resource, position))",
    "CREATE TABLE IF NOT EXISTS {db}.schemas (source VARCHAR(191), resource VARCHAR(191), position BIGINT, "
    "`schema` LONGTEXT NOT NULL, PRIMARY KEY (source, resource, position))",
    "CREATE TABLE IF NOT EXISTS {db}.copies (source VARCHAR(191), resource VARCHAR(191), digest CHAR(64), "
    "position BIGINT, n INT NOT NULL, PRIMARY KEY (source, resource, digest, position), "
    "KEY by_position (source, position))",
    "CREATE TABLE IF NOT EXISTS {db}.markers (id CHAR(32) PRIMARY KEY, source VARCHAR(191) NOT NULL, "
    "pad MEDIUMTEXT NOT NULL, created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
    "CREATE TABLE IF NOT EXISTS {db}.requests (id BIGINT AUTO_INCREMENT PRIMARY KEY, source VARCHAR(191) NOT NULL, "
    "tables LONGTEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {db}.progress (source VARCHAR(191) PRIMARY KEY, position BIGINT NOT NULL, "
    "scanned BIGINT NOT NULL, at DOUBLE NOT NULL)",
)


ADDED = {"server": "VARCHAR(191) NULL", "base": "BIGINT NULL DEFAULT 0", "fresh": "BOOLEAN NOT NULL DEFAULT FALSE"}  # origins' columns added later


class Origin(NamedTuple):
    coord: int  # where the stream begins
    server: str | None  # the server whose binlog holds it (None: recorded before servers were)
    base: int | None  # added to coordinates when packing positions (None: set by the next read)
    fresh: bool  # not read from yet


def install(cur) -> None:
    """Create the bookkeeping tables when missing (the database exists: prerequisites.py)."""
    for statement in TABLES:
        cur.execute(statement.format(db=BOOKKEEPING))
    upgrade(cur)


def upgrade(cur) -> None:
    """Add the columns of ``origins`` that bookkeeping created by earlier versions lacks (base 0)."""
    cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = 'origins'", (BOOKKEEPING,))
    present = {row[0].lower() for row in cur.fetchall()}
    for name, declaration in ADDED.items():
        if name not in present:
            cur.execute(f"ALTER TABLE {BOOKKEEPING}.origins ADD COLUMN {name} {declaration}")


def installed(cur) -> bool:
    cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'origins'",
                (BOOKKEEPING,))
    return bool(cur.fetchone()[0])


def origin(cur, source: str) -> Origin | None:
    """Where the source's stream begins (None before it was first prepared)."""
    cur.execute(f"SELECT origin, server, base, fresh FROM {BOOKKEEPING}.origins WHERE source = %s", (source,))
    found = cur.fetchone()
    if found is None:
        return None
    coord, server, base, fresh = found
    return Origin(int(coord), None if server is None else str(server), None if base is None else int(base),
                  bool(fresh))


def set_origin(cur, source: str, coord: int, server: str, base: int | None = 0, fresh: bool = False) -> None:
    """Begin the source's stream at ``coord`` of ``server``'s binlog (``base`` None: set by the next read;
    ``fresh``: a new stream, which the first read must read from the start)."""
    cur.execute(f"REPLACE INTO {BOOKKEEPING}.origins (source, origin, server, base, fresh) VALUES (%s, %s, %s, %s, "
                "%s)", (source, coord, server, base, fresh))


def opened(cur, source: str) -> None:
    """Note that the source's stream was read from its start."""
    cur.execute(f"UPDATE {BOOKKEEPING}.origins SET fresh = FALSE WHERE source = %s AND fresh", (source,))


def set_server(cur, source: str, server: str) -> None:
    """Record the server of an origin recorded without one."""
    cur.execute(f"UPDATE {BOOKKEEPING}.origins SET server = %s WHERE source = %s AND server IS NULL",
                (server, source))


def set_base(cur, source: str, base: int) -> None:
    """Set the base a repair left to the next read (once: a base set stays)."""
    cur.execute(f"UPDATE {BOOKKEEPING}.origins SET base = %s WHERE source = %s AND base IS NULL", (base, source))


def forget(cur, source: str, after: int | None = None) -> None:
    """Delete the source's tagged rows after position ``after`` (all of them without)."""
    for name in TAGGED:
        if after is None:
            cur.execute(f"DELETE FROM {BOOKKEEPING}.{name} WHERE source = %s", (source,))
        else:
            cur.execute(f"DELETE FROM {BOOKKEEPING}.{name} WHERE source = %s AND position > %s", (source, after))

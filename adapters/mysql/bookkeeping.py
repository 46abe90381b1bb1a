"""Capture's bookkeeping on the source server: database ``exchange_capture``, rows keyed by source name.

* ``origins``: where the source's stream begins (the binlog's end when it
  was first prepared, or when a lost position was repaired);
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

BOOKKEEPING = "exchange_capture"
TAGGED = ("chunks", "schemas", "copies")

TABLES = (
    "CREATE TABLE IF NOT EXISTS {db}.origins (source VARCHAR(191) PRIMARY KEY, origin BIGINT NOT NULL, "
    "created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
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


def install(cur) -> None:
    """Create the bookkeeping tables when missing (the database exists: prerequisites.py)."""
    for statement in TABLES:
        cur.execute(statement.format(db=BOOKKEEPING))


def installed(cur) -> bool:
    cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'origins'",
                (BOOKKEEPING,))
    return bool(cur.fetchone()[0])


def origin(cur, source: str) -> int | None:
    """The coordinate the source's stream begins at (None before it was first prepared)."""
    cur.execute(f"SELECT origin FROM {BOOKKEEPING}.origins WHERE source = %s", (source,))
    found = cur.fetchone()
    return None if found is None else int(found[0])


def set_origin(cur, source: str, coord: int) -> None:
    cur.execute(f"REPLACE INTO {BOOKKEEPING}.origins (source, origin) VALUES (%s, %s)", (source, coord))


def forget(cur, source: str, after: int | None = None) -> None:
    """Delete the source's tagged rows after position ``after`` (all of them without)."""
    for name in TAGGED:
        if after is None:
            cur.execute(f"DELETE FROM {BOOKKEEPING}.{name} WHERE source = %s", (source,))
        else:
            cur.execute(f"DELETE FROM {BOOKKEEPING}.{name} WHERE source = %s AND position > %s", (source, after))

"""Re-snapshot requests, the repair of a lost binlog position, and the progress of snapshot passes.

A request is a row written into bookkeeping table ``requests`` (source
name, ``tables`` as JSON), in a transaction of its own: with the row binlog
it takes its place in the stream, so it waits there while no node reads,
and survives a node restart until the node stored what came after it.  The
source that reads it starts the next snapshot pass of each named table
(transactions.py, snapshot.py).

When the binlog no longer holds the node's position, there is no stream to
put a request into: the repair records a pass of every captured table at
position 0 (before any position the node holds, so never forgotten on
resume) and moves the source's origin to the binlog's end; the next read
starts there and reads the passes, each between SNAPSHOT_BEGIN and
SNAPSHOT_END.
"""

from __future__ import annotations

import json
from typing import Sequence

from adapters.mysql import bookkeeping
from adapters.mysql.bookkeeping import BOOKKEEPING
from adapters.mysql.catalog import estimated_rows
from adapters.passes import Pass

__all__ = ["Pass", "progress", "recover", "request"]


def request(cur, source: str, tables: Sequence[str]) -> None:
    """Put a request for a pass of ``tables`` into the binlog."""
    cur.execute(f"INSERT INTO {BOOKKEEPING}.requests (source, tables) VALUES (%s, %s)",
                (source, json.dumps(list(tables), ensure_ascii=False)))


def recover(cur, source: str, tables: Sequence[str], end: int) -> None:
    """Record a pass of every table in ``tables`` and start the stream again at coordinate ``end``."""
    cur.execute("START TRANSACTION")
    try:
        cur.execute(f"SELECT resource, MAX(pass) FROM {BOOKKEEPING}.chunks WHERE source = %s GROUP BY resource",
                    (source,))
        passes = {resource: int(number) for resource, number in cur.fetchall()}
        cur.execute(f"DELETE FROM {BOOKKEEPING}.chunks WHERE source = %s", (source,))
        for resource in tables:
            cur.execute(f"INSERT INTO {BOOKKEEPING}.chunks (source, resource, position, point, done, pass) "
                        "VALUES (%s, %s, 0, 0, false, %s)", (source, resource, passes.get(resource, 0) + 1))
        cur.execute(f"DELETE FROM {BOOKKEEPING}.progress WHERE source = %s", (source,))
        bookkeeping.set_origin(cur, source, end)
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def progress(cur, source: str, database: str, tables: Sequence[str]) -> dict[str, Pass]:
    """The latest pass of each of ``tables`` (pass 0, nothing read, for a table never snapshotted)."""
    found = {}
    if bookkeeping.installed(cur):
        cur.execute(f"SELECT resource, pass, SUM(`rows`), MAX(done) FROM {BOOKKEEPING}.chunks c WHERE source = %s "
                    f"AND pass = (SELECT MAX(pass) FROM {BOOKKEEPING}.chunks d WHERE d.source = c.source "
                    "AND d.resource = c.resource) GROUP BY resource, pass", (source,))
        found = {resource: (int(number), int(rows or 0), bool(done)) for resource, number, rows, done in cur.fetchall()}
    passes = {}
    for resource in tables:
        number, rows, done = found.get(resource, (0, 0, False))
        passes[resource] = Pass(number, rows, estimated_rows(cur, database, resource), done)
    return passes

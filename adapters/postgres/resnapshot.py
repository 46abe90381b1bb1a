"""Re-snapshot requests, the recovery of a lost slot, and the progress of snapshot passes.

A request is a transactional logical decoding message (prefix
``exchange_resnapshot``, content ``{"tables": [...]}``) written by whoever
asks, in a transaction of its own.  It takes its place in the slot's stream,
so it waits there while no node reads, and survives a node restart until the
node stored what came after it.  The source that reads it starts the next
snapshot pass of each named table (transactions.py, snapshot.py).

When the slot is lost, there is no stream to put a request into: recovery
records a pass of every captured table at position 0 (before any position
the node holds, so never forgotten on resume), then creates the slot again
at the server's current position.  The first read of the new slot reads
those passes, concurrently with the stream, each between SNAPSHOT_BEGIN and
SNAPSHOT_END.
"""

from __future__ import annotations

import json
from typing import Sequence

from adapters.passes import Pass
from adapters.postgres import prepare
from adapters.postgres.catalog import estimated_rows
from adapters.postgres.dialect import BOOKKEEPING
from adapters.postgres.snapshot import REQUEST_PREFIX
from exchange.contracts.changes import SourceNotReady


def request(cur, tables: Sequence[str]) -> None:
    """Put a request for a pass of ``tables`` into the stream."""
    cur.execute("SELECT pg_logical_emit_message(true, %s, %s)", (REQUEST_PREFIX, json.dumps({"tables": list(tables)})))


def recover(cur, url: str, slot: str, tables: Sequence[str]) -> None:
    """Record a pass of every table in ``tables``, then replace the lost slot by a new one."""
    cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    found = cur.fetchone()
    if found is not None and found[0]:
        raise SourceNotReady(f"replication slot {slot!r} is in use: stop the node, then run the command again")
    cur.execute("BEGIN")
    cur.execute(f"SELECT resource, max(pass) FROM {BOOKKEEPING}.chunks WHERE slot = %s GROUP BY resource", (slot,))
    passes = dict(cur.fetchall())
    cur.execute(f"DELETE FROM {BOOKKEEPING}.chunks WHERE slot = %s", (slot,))
    for resource in tables:
        cur.execute(f"INSERT INTO {BOOKKEEPING}.chunks (slot, resource, position, point, done, pass) "
                    "VALUES (%s, %s, 0, 0, false, %s)", (slot, resource, passes.get(resource, 0) + 1))
    cur.execute("COMMIT")
    if found is not None:
        cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    prepare.create_slot(url, slot)
    cur.execute(f"INSERT INTO {BOOKKEEPING}.slots (slot) VALUES (%s) ON CONFLICT DO NOTHING", (slot,))


def progress(cur, slot: str, tables: Sequence[str]) -> dict[str, Pass]:
    """The latest pass of each of ``tables`` (pass 0, nothing read, for a table never snapshotted)."""
    cur.execute(f"SELECT resource, pass, sum(rows), bool_or(done) FROM {BOOKKEEPING}.chunks c WHERE slot = %s "
                f"AND resource = ANY(%s) AND pass = (SELECT max(pass) FROM {BOOKKEEPING}.chunks d "
                "WHERE d.slot = c.slot AND d.resource = c.resource) GROUP BY resource, pass", (slot, list(tables)))
    found = {resource: (number, int(rows), done) for resource, number, rows, done in cur.fetchall()}
    passes = {}
    for resource in tables:
        number, rows, done = found.get(resource, (0, 0, False))
        passes[resource] = Pass(number, rows, estimated_rows(cur, resource), done)
    return passes

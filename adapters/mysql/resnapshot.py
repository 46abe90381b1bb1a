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
resume) and moves the source's origin to the binlog's end, of the server
answering now; the next read starts there and reads the passes, each
between SNAPSHOT_BEGIN and SNAPSHOT_END.  The origin's base is left unset:
the next read sets it so that the origin packs above the position it reads
after, the node's last (position.py), even when the server changed and its
coordinates are smaller than those of the binlog the node read before.

The PositionLost errors name what happened (a purged or reset binlog,
another server, a stream the server has no record of) and the repair.
"""

from __future__ import annotations

import json
from typing import Sequence

from adapters.mysql import bookkeeping
from adapters.mysql.bookkeeping import BOOKKEEPING
from adapters.mysql.catalog import estimated_rows
from adapters.mysql.position import describe
from adapters.passes import Pass
from exchange.contracts.changes import PositionLost

__all__ = ["Pass", "beyond_end", "progress", "purged", "recover", "request", "server_changed", "unknown_stream"]

REPAIR = ("Repair: exchange node resnapshot --config NODE.toml --all (captures again from now and re-reads every "
          "captured table into the node's store: unchanged rows make no events, rows changed or gone since are "
          "updated or deleted)")


def request(cur, source: str, tables: Sequence[str]) -> None:
    """Put a request for a pass of ``tables`` into the binlog."""
    cur.execute(f"INSERT INTO {BOOKKEEPING}.requests (source, tables) VALUES (%s, %s)",
                (source, json.dumps(list(tables), ensure_ascii=False)))


def recover(cur, source: str, tables: Sequence[str], end: int, server: str) -> None:
    """Record a pass of every table in ``tables`` and start the stream again at coordinate ``end`` of
    ``server``'s binlog."""
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
        bookkeeping.set_origin(cur, source, end, server, None)
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


# -- lost positions: what happened, and the repair ------------------------------

def purged(database: str, start: int) -> PositionLost:
    return PositionLost(
        f"the binlog of database {database!r} no longer holds the node's position ({describe(start)}): the server "
        "purged it (binlog_expire_logs_seconds, expire_logs_days or PURGE BINARY LOGS), so the changes made since "
        f"the node last read are gone from the source. {REPAIR}; keep binlogs longer than the node may be stopped")


def server_changed(former: str, now: str, where: str) -> PositionLost:
    """The origin is in the binlog of server ``former``; server ``now`` answers at ``where``."""
    return PositionLost(
        f"the source server changed ({_named(former)} -> {_named(now)}, answering at {where}: a failover to a "
        "replica, or [source] url pointed at another server): the node's position is a binlog coordinate of the "
        f"former server, which means nothing here, so capture cannot resume from it. {REPAIR}")


def unknown_stream(after: int, where: str) -> PositionLost:
    return PositionLost(
        f"the node holds position {after}, but capture's bookkeeping on the server at {where} ({BOOKKEEPING}) has "
        f"no record of the node's stream: it began afresh there (the database {BOOKKEEPING} was dropped or not "
        "replicated, or [source] url points at another server), so the node's position means nothing here. "
        f"{REPAIR}")


def beyond_end(start: int, end: int, where: str) -> PositionLost:
    return PositionLost(
        f"the node's position ({describe(start)}) lies beyond the end of the binlog of the server at {where} "
        f"({describe(end)}): its binlog was reset (RESET MASTER) or replaced, so it no longer holds the changes "
        f"after the node's position. {REPAIR}")


def _named(server: str) -> str:
    """A server as the origin records it (``server_id``, MySQL ``server_id/server_uuid``), for people."""
    server_id, _, server_uuid = server.partition("/")
    return f"server_id {server_id}" + (f" (server_uuid {server_uuid})" if server_uuid else "")

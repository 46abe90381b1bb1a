"""Stored-batch signals between hub processes on one PostgreSQL store.

A transaction that stores events in an agency log also sends
``pg_notify('exchange_stored', '<log>:<last notification id>')``;
PostgreSQL delivers it to every listening session when, and only if, the
transaction commits.  Each hub listens on a connection of its own and wakes
its subscribers waiting on that log, so events stored through one hub reach
subscribers of another at once rather than at their next poll.  A signal
missed (a listener reconnecting) costs only that: subscribers still poll.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import psycopg
from psycopg import Cursor

log = logging.getLogger(__name__)

CHANNEL = "exchange_stored"
RECONNECT_SECONDS = 5.0


def announce(curs: Cursor[Any], log_name: str, last_id: int) -> None:
    """Signal, at commit of ``curs``'s transaction, that ``log_name`` holds events up to ``last_id``."""
    curs.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{log_name}:{last_id}"))


class StoredListener:
    """A thread calling ``on_stored(log_name, last_id)`` for every stored batch any process
    announces on the store at ``url``; reconnects when the connection fails."""

    def __init__(self, url: str, on_stored: Callable[[str, int], None]):
        self.url = url
        self.on_stored = on_stored
        self.stopping = threading.Event()
        self.listening = threading.Event()  # set while a connection listens
        self._thread = threading.Thread(target=self._run, name="stored-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self.stopping.is_set():
                        for signal in conn.notifies(timeout=1.0):
                            self._deliver(signal.payload)
            except psycopg.Error as e:
                log.warning("not listening for batches other hubs store (subscribers poll meanwhile): %s", e)
            finally:
                self.listening.clear()
            self.stopping.wait(RECONNECT_SECONDS)

    def _deliver(self, payload: str) -> None:
        name, _, last = payload.rpartition(":")
        if not last.isdigit():
            log.warning("ignored a malformed stored-batch signal %r", payload)
            return
        self.on_stored(name, int(last))

    def close(self) -> None:
        """Stop listening (within about a second)."""
        self.stopping.set()
        self._thread.join(timeout=5)

"""A private PostgreSQL cluster for tests.

``PostgresCluster.start()`` runs initdb into a temporary directory and starts
a server set up for logical decoding, listening only on 127.0.0.1 at a free
port with its unix socket in that directory; ``stop()`` kills it and removes
the directory.  Every local and loopback connection is trusted, replication
included, as the superuser ``postgres``.  initdb and postgres refuse to run
as root, so under root they run as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg2

SETTINGS: dict[str, Any] = {
    "wal_level": "logical",
    "max_replication_slots": 50,
    "max_wal_senders": 50,
    "fsync": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
}
START_TIMEOUT = 30.0


def binaries() -> Path:
    """The bin directory of the newest installed PostgreSQL (Debian layout)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
    return Path(max(found, key=lambda p: int(re.search(r"/(\d+)/bin/", p).group(1)))).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """One temporary cluster; ``url(db)`` gives a superuser URL for a database in it."""

    def __init__(self, settings: dict[str, Any] | None = None, template: Path | None = None):
        self.settings = {**SETTINGS, **(settings or {})}
        self.bin = binaries()
        self.directory = Path(tempfile.mkdtemp(prefix="exchange-pg-"))
        self.data = self.directory / "data"
        self.port = _free_port()
        self._template = template
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> "PostgresCluster":
        """initdb (or copy the template data directory), configure and start."""
        if self._template is None:
            self._template = self.directory / "template"
            self._run(str(self.bin / "initdb"), "-D", str(self._template), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--no-locale", "--no-sync")
        self._run("cp", "-a", str(self._template), str(self.data))
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nlocal replication all trust\n"
            "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n")
        self._write_settings()
        self._pg_ctl("start", "-w", "-t", str(int(START_TIMEOUT)), "-l", str(self.directory / "server.log"))
        return self

    def stop(self) -> None:
        """Stop at once (no checkpoint) and remove the directory."""
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def copy(self, **settings: Any) -> "PostgresCluster":
        """Another cluster started from this one's freshly initialised data
        directory (no second initdb); the caller stops it."""
        other = PostgresCluster({**self.settings, **settings}, template=self._template)
        try:
            return other.start()
        except BaseException:
            other.stop()
            raise

    # -- use --------------------------------------------------------------------

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", user: str = "postgres", autocommit: bool = True):
        """A psycopg2 connection (autocommit by default)."""
        conn = psycopg2.connect(self.url(dbname, user))
        conn.autocommit = autocommit
        return conn

    def execute(self, sql: str, params: Any = None, dbname: str = "postgres") -> list[tuple]:
        """Run one statement in its own connection; the rows it returns, if any."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """A fresh database ``name`` (dropped first if it exists, with its
        replication slots); returns ``name``."""
        self.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE database = %s AND NOT active", (name,))
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    # -- internals --------------------------------------------------------------

    def _write_settings(self) -> None:
        settings = {
            **self.settings,
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.directory}'",
        }
        lines = [f"{k} = {v}" for k, v in settings.items()]
        (self.data / "postgresql.auto.conf").write_text("\n".join(lines) + "\n")
        if self._as_postgres:
            for path in (self.data / "pg_hba.conf", self.data / "postgresql.auto.conf"):
                shutil.chown(path, "postgres", "postgres")

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), *args, check=check)

    def _run(self, *command: str, check: bool = True) -> None:
        if self._as_postgres:
            command = ("runuser", "-u", "postgres", "--", *command)
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            log = self.directory / "server.log"
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                               + (f"\nserver log:\n{log.read_text()[-3000:]}" if log.exists() else ""))


def start_standby(primary: PostgresCluster, name: str = "standby1") -> PostgresCluster:
    """A streaming standby of ``primary``, started: a ``pg_basebackup`` of it with ``standby.signal``,
    connecting as application ``name`` (what ``synchronous_standby_names`` lists).  ``promote()``
    makes it a primary; the caller stops it."""
    conninfo = f"host=127.0.0.1 port={primary.port} user=postgres application_name={name}"
    standby = PostgresCluster({**primary.settings, "primary_conninfo": f"'{conninfo}'", "hot_standby": "on"})
    try:
        standby._run(str(standby.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                     "-D", str(standby.data), "-X", "stream", "-c", "fast", "-R")
        standby._write_settings()  # its own port and socket; primary_conninfo from the settings above
        standby._pg_ctl("start", "-w", "-t", str(int(START_TIMEOUT)), "-l", str(standby.directory / "server.log"))
    except BaseException:
        standby.stop()
        raise
    return standby


def promote(cluster: PostgresCluster) -> None:
    """End recovery of a standby: it becomes a primary accepting writes."""
    cluster._pg_ctl("promote", "-w", "-t", str(int(START_TIMEOUT)))


def crash(cluster: PostgresCluster) -> None:
    """Stop the server at once, as a crash would (the data directory stays)."""
    cluster._pg_ctl("stop", "-m", "immediate", check=False)


def start_cluster(**settings: Any) -> PostgresCluster:
    """A started cluster; the caller stops it."""
    cluster = PostgresCluster(settings)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise

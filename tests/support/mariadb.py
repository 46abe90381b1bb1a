"""A private MariaDB server for tests.

``MariaDBServer.start()`` runs ``mariadb-install-db`` into a temporary
directory and starts ``mariadbd`` on 127.0.0.1 at a free port, with the
binlog set up for capture (ROW format, FULL row image and metadata, GTIDs,
no compression) and its socket in that directory; ``stop()`` kills it and
removes the directory.  ``root`` connects over TCP without a password.
``restart()`` kills the server (kill -9, as a crash) and starts it again on
the same port and data directory.  Under root, the server runs as the
``mysql`` system user when there is one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pymysql

SETTINGS: dict[str, Any] = {
    "server_id": 1,
    "log_bin": "binlog",
    "binlog_format": "ROW",
    "binlog_row_image": "FULL",
    "binlog_row_metadata": "FULL",
    "log_bin_compress": "OFF",
    "innodb_flush_log_at_trx_commit": 2,
    "sync_binlog": 0,
    "innodb_buffer_pool_size": "64M",
    "innodb_log_file_size": "48M",
    "max_connections": 200,
    "character_set_server": "utf8mb4",
    "collation_server": "utf8mb4_unicode_ci",
    "skip_name_resolve": "ON",
    "performance_schema": "OFF",
}
START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"{name} is not installed: apt-get install mariadb-server")


class MariaDBServer:
    """One temporary server; ``url(db)`` gives a root ``mysql://`` URL for a database in it."""

    def __init__(self, settings: dict[str, Any] | None = None):
        self.settings = {**SETTINGS, **(settings or {})}
        self.directory = Path(tempfile.mkdtemp(prefix="exchange-mariadb-"))
        self.data = self.directory / "data"
        self.socket = self.directory / "mariadb.sock"
        self.port = _free_port()
        self.process: subprocess.Popen | None = None
        self._user = "mysql" if os.geteuid() == 0 and _has_user("mysql") else None
        if self._user:
            shutil.chown(self.directory, self._user, self._user)

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> "MariaDBServer":
        """Install the system tables, write the settings and start the server."""
        if not self.data.exists():
            command = [_binary("mariadb-install-db"), f"--datadir={self.data}", "--auth-root-authentication-method=normal",
                       "--skip-test-db", "--no-defaults"]
            if self._user:
                command.append(f"--user={self._user}")
            result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if result.returncode != 0:
                raise RuntimeError(f"mariadb-install-db failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        self._write_settings()
        log = open(self.directory / "server.log", "ab")
        self.process = subprocess.Popen([_binary("mariadbd"), f"--defaults-file={self.directory / 'my.cnf'}"],
                                        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._wait_ready()
        return self

    def stop(self) -> None:
        """Kill the server and remove the directory."""
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def kill(self) -> None:
        """kill -9 the server, as a crash; the data directory stays."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """kill -9 and start again on the same port and data."""
        self.kill()
        self.start()

    # -- use --------------------------------------------------------------------

    def url(self, dbname: str = "test", user: str = "root", password: str = "") -> str:
        secret = f":{password}" if password else ""
        return f"mysql://{user}{secret}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str | None = None, autocommit: bool = True) -> pymysql.connections.Connection:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="", database=dbname,
                               autocommit=autocommit, charset="utf8mb4")

    def execute(self, sql: str, params: Any = None, dbname: str | None = None) -> list[tuple]:
        """Run one statement in its own connection; the rows it returns, if any."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """A fresh database ``name`` (dropped first if it exists); returns ``name``."""
        self.execute(f"DROP DATABASE IF EXISTS `{name}`")
        self.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        return name

    # -- internals --------------------------------------------------------------

    def _write_settings(self) -> None:
        settings = {
            **self.settings,
            "datadir": self.data,
            "socket": self.socket,
            "port": self.port,
            "bind_address": "127.0.0.1",
            "pid_file": self.directory / "mariadb.pid",
            "log_error": self.directory / "server.log",
            "tmpdir": self.directory,
        }
        if self._user:
            settings["user"] = self._user
        text = "[mariadbd]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        (self.directory / "my.cnf").write_text(text)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited ({self.process.returncode}):\n{self._log_tail()}")
            try:
                self.connect().close()
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mariadbd not ready after {START_TIMEOUT:.0f}s:\n{self._log_tail()}")
                time.sleep(0.1)

    def _log_tail(self) -> str:
        log = self.directory / "server.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def start_server(**settings: Any) -> MariaDBServer:
    """A started server; the caller stops it."""
    server = MariaDBServer(settings)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise

"""``mysql://USER[:PASSWORD]@HOST[:PORT]/DB`` URLs and the connections they give (PyMySQL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql

from exchange.common.urls import redact_url
from exchange.contracts.errors import InvalidInput

DEFAULT_PORT = 3306


@dataclass(frozen=True)
class MySQLAddress:
    """Where a MariaDB/MySQL database is and who connects to it."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def parse(cls, url: str) -> "MySQLAddress":
        """The parts of a ``mysql://`` URL; an error naming what is missing otherwise."""
        parts = urlsplit(url)
        if parts.scheme != "mysql":
            raise InvalidInput(f"not a MariaDB/MySQL URL: {url!r} (expected mysql://USER[:PASSWORD]@HOST[:PORT]/DB)")
        database = unquote(parts.path.lstrip("/"))
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError as error:
            raise InvalidInput(f"bad port in MariaDB/MySQL URL {redact_url(url)!r}: {error}") from None
        if not parts.hostname or not parts.username or not database or "/" in database:
            raise InvalidInput(f"incomplete MariaDB/MySQL URL {redact_url(url)!r}: "
                               "expected mysql://USER[:PASSWORD]@HOST[:PORT]/DB")
        return cls(parts.hostname, port, unquote(parts.username), unquote(parts.password or ""), database)

    def settings(self) -> dict[str, Any]:
        """Connection settings for PyMySQL and mysql-replication (without the database)."""
        return {"host": self.host, "port": self.port, "user": self.user, "passwd": self.password}

    def connect(self, autocommit: bool = True, **options: Any) -> pymysql.connections.Connection:
        """A PyMySQL connection to the database, utf8mb4, in UTC."""
        return pymysql.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               database=self.database, charset="utf8mb4", autocommit=autocommit,
                               init_command="SET time_zone = '+00:00'", **options)


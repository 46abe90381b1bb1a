"""What a MariaDB/MySQL server must offer before capture starts, each refusal naming its fix.

* the binlog on, in ROW format, with FULL row images and FULL row metadata
  (column names and signedness travel with every row), uncompressed
  (mysql-replication cannot read compressed events);
* for the capture user: REPLICATION SLAVE (read the binlog), REPLICATION
  CLIENT (MariaDB 10.5+: BINLOG MONITOR; see the binlog's files), SELECT on
  the captured database, and all privileges on the bookkeeping database
  ``exchange_capture`` (bookkeeping.py); on MySQL also RELOAD, for the
  moment a snapshot opens (``FLUSH TABLES WITH READ LOCK``: MySQL does not
  report the binlog coordinate of a consistent snapshot as MariaDB does);
* a server_id for the node's binlog reader that is not the server's own.
"""

from __future__ import annotations

import re
import zlib

import pymysql

from exchange.contracts.changes import SourceNotReady

VARIABLES = {  # variable -> (wanted value, what to set)
    "log_bin": ("ON", "log_bin = binlog (in the [mariadbd] or [mysqld] section of the server's configuration) "
                      "and restart the server"),
    "binlog_format": ("ROW", "SET GLOBAL binlog_format = 'ROW' (and binlog_format = ROW in the configuration)"),
    "binlog_row_image": ("FULL", "SET GLOBAL binlog_row_image = 'FULL' (and binlog_row_image = FULL in the "
                                 "configuration)"),
    "binlog_row_metadata": ("FULL", "SET GLOBAL binlog_row_metadata = 'FULL' (and binlog_row_metadata = FULL in "
                                    "the configuration)"),
    "log_bin_compress": ("OFF", "SET GLOBAL log_bin_compress = OFF (and log_bin_compress = OFF in the "
                                "configuration)"),
    "binlog_transaction_compression": ("OFF", "SET GLOBAL binlog_transaction_compression = OFF (and "
                                              "binlog_transaction_compression = OFF in the configuration)"),
}
GRANTS = {  # privilege -> the names SHOW GRANTS may print for it
    "REPLICATION SLAVE": ("REPLICATION SLAVE", "REPLICATION REPLICA"),
    "REPLICATION CLIENT": ("REPLICATION CLIENT", "BINLOG MONITOR"),
}


def is_mariadb(cur) -> bool:
    cur.execute("SELECT VERSION()")
    return "mariadb" in cur.fetchone()[0].lower()


def check_server(cur) -> None:
    """Refuse a server whose binlog capture cannot read, naming the setting to change."""
    names = ", ".join(f"'{name}'" for name in VARIABLES)
    cur.execute(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
    found = {name: str(value).upper() for name, value in cur.fetchall()}
    for name, (wanted, fix) in VARIABLES.items():
        value = found.get(name)
        if value is None:
            if name in ("log_bin", "binlog_format", "binlog_row_image"):
                raise SourceNotReady(f"the server does not report {name}: it must be {wanted}; set {fix}")
            if name == "binlog_row_metadata":
                raise SourceNotReady("the server has no binlog_row_metadata setting (MariaDB 10.5 or later, MySQL "
                                     "8.0.1 or later is needed): upgrade the server")
            continue  # the other server kind's compression setting
        if value != wanted and not (wanted == "ON" and value == "1") and not (wanted == "OFF" and value == "0"):
            raise SourceNotReady(f"{name} is {value}, capture needs {wanted}: {fix}")


def check_grants(cur, database: str, bookkeeping: str) -> str:
    """Refuse a user without the privileges capture needs; the user as the server names it."""
    cur.execute("SELECT CURRENT_USER()")
    user = cur.fetchone()[0]
    cur.execute("SHOW GRANTS FOR CURRENT_USER()")
    grants = " ".join(row[0].upper() for row in cur.fetchall())
    name, _, host = user.partition("@")
    who = f"'{name}'@'{host}'"
    everything = "GRANT ALL PRIVILEGES ON *.*" in grants
    missing = [p for p, spellings in GRANTS.items() if not everything and not any(s in grants for s in spellings)]
    if missing:
        raise SourceNotReady(f"user {user} lacks {', '.join(missing)}: run GRANT {', '.join(missing)} ON *.* TO "
                             f"{who} as an administrator")
    try:
        cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,))
        if cur.fetchone() is None:
            raise SourceNotReady(f"database {database!r} does not exist on the server (or user {user} may not see "
                                 f"it: run GRANT SELECT ON `{database}`.* TO {who})")
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{bookkeeping}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    except pymysql.err.OperationalError as e:
        if e.args[0] in (1044, 1142, 1227):
            raise SourceNotReady(f"user {user} may not keep capture's bookkeeping: run GRANT ALL ON "
                                 f"`{bookkeeping}`.* TO {who} as an administrator") from e
        raise
    return user


def check_readable(cur, database: str, table: str, user: str) -> None:
    """Refuse a table the user may not SELECT from."""
    try:
        cur.execute(f"SELECT 1 FROM `{database}`.`{table.replace('`', '``')}` LIMIT 0")
    except pymysql.err.OperationalError as e:
        if e.args[0] in (1142, 1143):
            raise SourceNotReady(f"user {user} may not read table {table!r}: run GRANT SELECT ON `{database}`.* TO "
                                 f"{user} as an administrator") from e
        raise


def reader_id(configured: int, database: str, host: str, server_id: int) -> int:
    """The server_id the node's binlog reader registers with: ``configured``, else one derived
    from the database and the server address; refused when it is the server's own."""
    chosen = configured or 0x5A000000 + (zlib.crc32(f"{host}/{database}".encode()) & 0xFFFFFF)
    if not 0 < chosen < 1 << 32:
        raise SourceNotReady(f"[source] server_id = {configured} is outside 1 .. 4294967295: choose another")
    if chosen == server_id:
        hint = "[source] server_id" if configured else "[source] server_id (the derived default collides)"
        raise SourceNotReady(f"the node's binlog reader would register with server_id {chosen}, the server's own: "
                             f"set {hint} to a number no server or replica of this replication topology uses")
    return chosen


def check_identifier(name: str, what: str) -> str:
    """Refuse names capture cannot quote safely."""
    if not re.fullmatch(r"[^\x00`]+", name):
        raise SourceNotReady(f"{what} {name!r} holds characters capture cannot quote")
    return name

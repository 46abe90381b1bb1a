"""The drop directory: which names are drop files, finding the regular ones,
and opening one only if it is still the file that was checked.

Symbolic links, directories, devices and FIFOs are never taken, and a file
is opened with ``O_NOFOLLOW`` and checked again on the open descriptor, so a
link (or another file) swapped in after the check is not read.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

from exchange.contracts.errors import OperationFailed

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}
IGNORED_SUFFIXES = (".tmp", ".part", "~")


class Changing(OperationFailed):
    """The file changed since it was checked, or while it was read: it is not complete yet."""


@dataclass(frozen=True)
class Drop:
    """A regular file in the drop directory that names a captured table."""

    path: Path
    table: str
    format: str  # csv, json or jsonl
    size: int
    mtime_ns: int
    inode: tuple[int, int]  # (st_dev, st_ino): the file that was checked is the file that is read

    @property
    def name(self) -> str:
        return self.path.name


def drops_path(url: str) -> Path:
    """The directory of a ``files:///absolute`` or ``files://relative`` URL."""
    prefix = "files://"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"unsupported URL {url!r}: expected files:///DIRECTORY")
    return Path(url[len(prefix):])


def is_ignored(name: str) -> bool:
    """Names a writer uses while a file is incomplete: hidden, ``*.tmp``, ``*.part``, ``*~``."""
    return name.startswith(".") or name.lower().endswith(IGNORED_SUFFIXES)


def match_table(name: str, tables: Sequence[str]) -> tuple[str, str] | None:
    """(table, format) of a drop file name, or None when it names no table in ``tables``."""
    if is_ignored(name):
        return None
    stem, dot, extension = name.rpartition(".")
    fmt = FORMATS.get(dot + extension.lower())
    if fmt is None:
        return None
    fitting = [t for t in tables if stem == t or stem.startswith(t + "-")]
    return (max(fitting, key=len), fmt) if fitting else None


def find(directory: Path, tables: Sequence[str], reported: set[str] | None = None) -> list[Drop]:
    """The regular files in ``directory`` naming one of ``tables``, oldest first.  With
    ``reported``, warn once (per name not in it, then added) of a regular file naming no
    table and of anything else that names one."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if is_ignored(entry.name):
                continue
            matched = match_table(entry.name, tables)
            regular = entry.is_file(follow_symlinks=False)
            if matched is None or not regular:
                if reported is not None and entry.name not in reported and (regular or matched):
                    reported.add(entry.name)
                    why = f"names no captured table ({', '.join(tables)})" if regular else \
                        "is not a regular file (a symbolic link, directory, device or FIFO)"
                    log.warning("drop file %s %s; it is left alone", shown(entry.name), why,
                                extra={"file": entry.name})
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # renamed or removed just now
                continue
            found.append(Drop(Path(entry.path), matched[0], matched[1], st.st_size, st.st_mtime_ns,
                              (st.st_dev, st.st_ino)))
    return sorted(found, key=lambda d: (d.mtime_ns, d.name))


def open_drop(drop: Drop) -> BinaryIO:
    """``drop`` opened for reading, only if it is still the regular file that was checked
    (not a link, FIFO or device swapped in since: raises Changing)."""
    try:
        fd = os.open(drop.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:  # now a symbolic link
            raise Changing() from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != drop.inode:
        os.close(fd)
        raise Changing()
    return os.fdopen(fd, "rb")


def shown(name: str) -> str:
    """A file name fit for a log line (escaped when it holds control characters)."""
    return name if name.isprintable() else repr(name)

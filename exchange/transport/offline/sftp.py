"""SFTP for the offline exchange: connect with host-key checking, atomic
resumable uploads, downloads, and atomic remote writes.

Used by the node's fallback (node/offline.py) and the hub's SFTP inbox
(hub/sftp_inbox.py).  Authentication is by private key only.  The
server's host key must be in the configured known_hosts file; an unknown
key is accepted (and appended to that file) only when the setting says so,
and a key that differs from the recorded one is always refused.

Uploads write ``.<name>.part`` and rename it to ``<name>`` once complete, so
a reader that ignores hidden names never sees a partial file.  A ``.part``
left by a dropped connection or a crash is continued from its size, after
checking that its bytes are a prefix of the local file.

Whoever controls the server controls what is read from it, so every remote
read is bounded: the file must be a regular file (checked by stat before
opening and again on the open handle) no larger than the caller's limit,
and at most limit + 1 bytes are read even if it grows meanwhile; anything
else raises RemoteFileRefused naming the remote path and the limit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import paramiko

from exchange.common.config import Config
from exchange.contracts.errors import OperationFailed
from exchange.transport.offline.bundles import MAX_CONTENT_BYTES

log = logging.getLogger(__name__)
# paramiko logs every connection and login at INFO; a poll every few seconds would drown the log.
logging.getLogger("paramiko").setLevel(logging.WARNING)

CHUNK = 32 * 1024
TIMEOUT_SECONDS = 15.0
IO_TIMEOUT_SECONDS = 60.0
MAX_DOWNLOAD_BYTES = MAX_CONTENT_BYTES + (64 << 20)  # a bundle: compressed content of at most 1 GiB, plus manifest


class SftpError(OperationFailed):
    """An SFTP server that cannot be used; the message says which and why."""


class HostKeyError(SftpError):
    """The server's host key is not the one recorded in known_hosts (or none is recorded)."""


class RemoteFileRefused(SftpError):
    """A remote file that is not a regular file, or is larger than the reader allows: not read."""


@dataclass(frozen=True)
class SftpTarget:
    """Where and as whom to connect, and the directory to work in."""

    host: str
    port: int
    user: str
    key: str  # private key file
    known_hosts: str  # known_hosts file holding the server's host key
    remote_dir: str
    accept_unknown_host: bool = False

    @classmethod
    def from_config(cls, cfg: Config, section: str) -> "SftpTarget":
        """The target in ``[section]`` of a loaded config; ValueError naming a missing setting."""
        settings = getattr(cfg, section)
        values = {name: getattr(settings, name) for name in ("host", "port", "user", "key", "known_hosts", "remote_dir")}
        missing = [name for name, value in values.items() if value in ("", None)]
        if missing:
            raise ValueError(f"[{section}] {', '.join(missing)} must be set to use SFTP (host {values['host']!r})")
        return cls(**values, accept_unknown_host=getattr(settings, "accept_unknown_host", False))

    @property
    def known_hosts_name(self) -> str:
        """The host's name in known_hosts: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def path(self, *names: str) -> str:
        return posixpath.join(self.remote_dir, *names)


@contextmanager
def connect(target: SftpTarget) -> Iterator[paramiko.SFTPClient]:
    """An SFTP session on ``target``, closed on exit.

    Raises HostKeyError for an unknown or changed host key (naming host,
    fingerprint and known_hosts file) and SftpError for any other failure."""
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(target.known_hosts)
    except FileNotFoundError:
        if not target.accept_unknown_host:
            raise HostKeyError(f"known_hosts file {target.known_hosts} does not exist: add the host key of "
                               f"{target.known_hosts_name} to it (e.g. ssh-keyscan -p {target.port} {target.host})") from None
    except (OSError, paramiko.SSHException) as e:
        raise SftpError(f"cannot read known_hosts file {target.known_hosts}: {e}") from None
    client.set_missing_host_key_policy(_UnknownHost(target))
    try:
        client.connect(target.host, target.port, username=target.user, key_filename=target.key, timeout=TIMEOUT_SECONDS,
                       banner_timeout=TIMEOUT_SECONDS, auth_timeout=TIMEOUT_SECONDS, allow_agent=False, look_for_keys=False)
        sftp = client.open_sftp()
    except paramiko.BadHostKeyException as e:
        client.close()
        raise HostKeyError(f"host key of {target.known_hosts_name} has changed: the server presents "
                           f"{e.key.get_name()} {e.key.fingerprint}, known_hosts file {target.known_hosts} records "
                           f"{e.expected_key.fingerprint}. Refusing to connect; if the server's key really changed, "
                           "replace its line in that file") from None
    except HostKeyError:
        client.close()
        raise
    except paramiko.AuthenticationException as e:
        client.close()
        raise SftpError(f"SFTP server {target.known_hosts_name} refused user {target.user!r} with key {target.key}: {e}") from None
    except (OSError, EOFError, paramiko.SSHException) as e:
        client.close()
        raise SftpError(f"cannot open SFTP on {target.known_hosts_name}: {e}") from None
    sftp.get_channel().settimeout(IO_TIMEOUT_SECONDS)  # a server that stops answering fails the session
    try:
        yield sftp
    except (OSError, EOFError, paramiko.SSHException) as e:
        raise SftpError(f"SFTP session with {target.known_hosts_name} failed: {e}") from e
    finally:
        client.close()


class _UnknownHost(paramiko.MissingHostKeyPolicy):
    """Refuses a host with no recorded key, or records it when the target allows that."""

    def __init__(self, target: SftpTarget):
        self.target = target

    def missing_host_key(self, client, hostname, key) -> None:
        if not self.target.accept_unknown_host:
            raise HostKeyError(f"host key of {hostname} is unknown: the server presents {key.get_name()} "
                               f"{key.fingerprint}, which known_hosts file {self.target.known_hosts} does not hold. "
                               "Check the fingerprint with the server's operator and add the key to that file")
        with open(self.target.known_hosts, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        log.warning("accepted the unknown host key of %s (%s %s) and recorded it in %s", hostname, key.get_name(),
                    key.fingerprint, self.target.known_hosts)


def exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
        return True
    except FileNotFoundError:
        return False


def list_files(sftp: paramiko.SFTPClient, directory: str) -> dict[str, int]:
    """``{name: size}`` of the regular files in ``directory``."""
    try:
        entries = sftp.listdir_attr(directory)
    except FileNotFoundError:
        raise SftpError(f"remote directory {directory} does not exist") from None
    return {e.filename: e.st_size for e in entries if stat.S_ISREG(e.st_mode or 0)}


def part_name(name: str) -> str:
    """The hidden name an upload of ``name`` is written under until complete."""
    return f".{name}.part"


def upload(sftp: paramiko.SFTPClient, local: Path, remote_dir: str, *, max_rate: int = 0) -> dict:
    """Upload ``local`` to ``remote_dir`` under its own name, atomically and resumably.

    Returns ``{"name", "size", "uploaded", "sent", "resumed_from"}``;
    ``uploaded`` is False when the complete file was there already.
    ``max_rate`` caps the bytes per second (0: no cap)."""
    name, size = local.name, local.stat().st_size
    final, part = posixpath.join(remote_dir, name), posixpath.join(remote_dir, part_name(name))
    try:
        if sftp.stat(final).st_size == size:
            return {"name": name, "size": size, "uploaded": False, "sent": 0, "resumed_from": size}
    except FileNotFoundError:
        pass
    offset = _resumable_offset(sftp, local, part, size)
    with open(local, "rb") as source, sftp.open(part, "r+" if offset else "w") as target:
        target.set_pipelined(True)
        source.seek(offset)
        target.seek(offset)
        started, sent = time.monotonic(), 0
        chunk_size = min(CHUNK, max(1024, max_rate // 10)) if max_rate else CHUNK  # paced in small steps
        while chunk := source.read(chunk_size):
            target.write(chunk)
            sent += len(chunk)
            if max_rate:
                ahead = sent / max_rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    written = sftp.stat(part).st_size
    if written != size:
        raise SftpError(f"upload of {name} to {part} left {written} bytes, the local file has {size}")
    sftp.posix_rename(part, final)
    if offset:
        log.info("resumed the upload of %s at byte %d of %d", name, offset, size)
    return {"name": name, "size": size, "uploaded": True, "sent": sent, "resumed_from": offset}


def _resumable_offset(sftp: paramiko.SFTPClient, local: Path, part: str, size: int) -> int:
    """Bytes of an earlier partial upload at ``part`` that match ``local``'s start (0 if none do)."""
    try:
        partial = sftp.stat(part).st_size
    except FileNotFoundError:
        return 0
    if not 0 < partial <= size:
        return 0
    with open(local, "rb") as f:
        expected = _sha256(f, partial)
    with sftp.open(part, "r") as f:
        f.prefetch(partial)
        found = _sha256(f, partial)
    if found != expected:
        log.warning("partial upload %s differs from %s; starting it again", part, local)
        return 0
    return partial


def _sha256(f, length: int) -> str:
    digest, left = hashlib.sha256(), length
    while left > 0:
        chunk = f.read(min(CHUNK * 8, left))
        if not chunk:
            break
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def download(sftp: paramiko.SFTPClient, remote: str, local: Path, max_bytes: int = MAX_DOWNLOAD_BYTES) -> int:
    """Copy ``remote`` (a regular file of at most ``max_bytes``) to ``local`` via a hidden
    temp file, fsync and rename; the size.  Raises RemoteFileRefused otherwise."""
    temp = local.with_name(f".{local.name}.part")
    size = _check(remote, sftp.stat(remote), max_bytes)
    try:
        with sftp.open(remote, "r") as source, open(temp, "wb") as target:
            _check(remote, source.stat(), max_bytes)
            source.prefetch(size)
            for chunk in _chunks(source, remote, max_bytes):
                target.write(chunk)
            target.flush()
            os.fsync(target.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    os.replace(temp, local)
    return local.stat().st_size


def write_remote(sftp: paramiko.SFTPClient, remote: str, data: bytes) -> None:
    """Write ``data`` to ``remote`` atomically: a hidden temp file, then rename over it."""
    directory, name = posixpath.split(remote)
    if directory and not exists(sftp, directory):
        sftp.mkdir(directory)
    temp = posixpath.join(directory, f".{name}.tmp")
    with sftp.open(temp, "w") as f:
        f.write(data)
    sftp.posix_rename(temp, remote)


def read_remote(sftp: paramiko.SFTPClient, remote: str, max_bytes: int) -> bytes | None:
    """The content of ``remote``, a regular file of at most ``max_bytes``, or None when there
    is no such file.  Raises RemoteFileRefused for any other file."""
    try:
        _check(remote, sftp.stat(remote), max_bytes)  # before opening: opening a FIFO would block the server
        with sftp.open(remote, "r") as f:
            _check(remote, f.stat(), max_bytes)  # the file opened, not one swapped in since
            return b"".join(_chunks(f, remote, max_bytes))
    except FileNotFoundError:
        return None


def _check(remote: str, attrs: paramiko.SFTPAttributes, max_bytes: int) -> int:
    """The size of a regular remote file of at most ``max_bytes``; RemoteFileRefused for any other."""
    if not stat.S_ISREG(attrs.st_mode or 0):
        raise RemoteFileRefused(f"remote file {remote} is not a regular file (mode {attrs.st_mode or 0:o}): "
                                "refusing to read it")
    size = attrs.st_size or 0
    if size > max_bytes:
        raise RemoteFileRefused(f"remote file {remote} has {size} bytes, more than the {max_bytes} allowed: "
                                "refusing to read it")
    return size


def _chunks(f: paramiko.SFTPFile, remote: str, max_bytes: int) -> Iterator[bytes]:
    """The content of an open remote file; RemoteFileRefused once it exceeds ``max_bytes`` (it grew)."""
    total = 0
    while chunk := f.read(min(CHUNK * 8, max_bytes + 1 - total)):
        total += len(chunk)
        if total > max_bytes:
            raise RemoteFileRefused(f"remote file {remote} grew past the {max_bytes} bytes allowed while it was "
                                    "read: refusing it")
        yield chunk


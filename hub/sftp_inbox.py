"""The hub's SFTP inbox: poll a directory on an SFTP server for bundles.

Every ``[sftp_inbox] poll_interval`` seconds, one pass:

1. list the remote directory and download each complete bundle (hidden
   names, such as uploads in progress, are ignored) into ``local_dir``,
   under a temp name renamed into place;
2. import ``local_dir`` with the same BundleImporter as the local inbox
   (verification, exactly-once storing, gaps pending, quarantine with a
   reason file, ``imported/``, ``ack/``);
3. upload each acknowledgement written to the remote ``ack/<agency>.json``,
   atomically (temp name, then rename);
4. only then remove the imported and quarantined bundles from the server.
   Pending bundles stay there (and locally) until the missing one arrives.

A crash anywhere only repeats work: a bundle imported but not yet removed
is downloaded again and changes nothing.  The order of 3 and 4 lets the node
tell a bundle the hub refused (gone, yet not acknowledged) from one it
imported (see node/offline.py).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from exchange.common.config import Config
from exchange.transport.offline.bundles import is_bundle_name, load_trusted_keys
from exchange.transport.offline.sftp import (
    RemoteFileRefused,
    SftpError,
    SftpTarget,
    connect,
    download,
    list_files,
    write_remote,
)
from hub.audit import AuditLog
from hub.bundle_import import ACK_DIR, BundleImporter, ack_key, decrypt_key
from hub.ingest import Ingest
from hub.metrics import METRICS as metrics

log = logging.getLogger(__name__)


class SftpInbox:
    """Polls one remote directory and imports its bundles until stopped."""

    def __init__(self, importer: BundleImporter, target: SftpTarget, poll_interval: float):
        self.importer = importer
        self.target = target
        self.poll_interval = poll_interval
        self.stopping = threading.Event()
        self.last_error: str | None = None
        self.refused: dict[str, str] = {}  # remote bundle -> why it is not downloaded
        self.thread = threading.Thread(target=self._run, name="sftp-inbox", daemon=True)

    def start(self) -> None:
        self.importer.directory.mkdir(parents=True, exist_ok=True)
        self.thread.start()
        log.info("polling %s:%s every %gs for bundles", self.target.known_hosts_name, self.target.remote_dir,
                 self.poll_interval)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll()
                self.last_error = None
            except SftpError as e:
                metrics.errors.labels("sftp_inbox").inc()
                # Once per distinct error, not every poll: it needs the operator, not a full log.
                log.log(logging.ERROR if str(e) != self.last_error else logging.DEBUG, "SFTP inbox: %s", e)
                self.last_error = str(e)
            except Exception:
                metrics.errors.labels("sftp_inbox").inc()
                log.exception("SFTP inbox poll failed; retrying in %gs", self.poll_interval)
            self.stopping.wait(self.poll_interval)

    def poll(self) -> dict:
        """One pass (see the module docstring); the import report plus the files removed remotely."""
        local = self.importer.directory
        with connect(self.target) as sftp:
            remote = {name: size for name, size in list_files(sftp, self.target.remote_dir).items()
                      if is_bundle_name(name)}
            self.refused = {name: why for name, why in self.refused.items() if name in remote}
            for name, size in sorted(remote.items()):
                staged = local / name
                if not (staged.exists() and staged.stat().st_size == size):  # a pending bundle is kept locally
                    try:
                        download(sftp, self.target.path(name), staged)
                    except RemoteFileRefused as e:  # left on the server; the other bundles go on
                        metrics.errors.labels("sftp_inbox").inc()
                        again = self.refused.get(name) == str(e)
                        log.log(logging.DEBUG if again else logging.ERROR, "SFTP inbox: %s", e)
                        self.refused[name] = str(e)
            report = self.importer.import_all()
            for ack in report["acks"]:
                write_remote(sftp, self.target.path(ACK_DIR, Path(ack).name), Path(ack).read_bytes())
            report["removed"] = []
            for done in report["imported"] + report["quarantined"]:
                if done["file"] in remote:
                    sftp.remove(self.target.path(done["file"]))
                    report["removed"].append(done["file"])
        return report


def start(cfg: Config, ingest: Ingest, audit: AuditLog | None = None) -> SftpInbox | None:
    """Start polling ``[sftp_inbox]`` (None when its host is empty: no SFTP inbox)."""
    if not cfg.sftp_inbox.host:
        return None
    if not cfg.sftp_inbox.local_dir:
        raise ValueError("[sftp_inbox] local_dir must be set: the directory bundles are downloaded to and imported from")
    target = SftpTarget.from_config(cfg, "sftp_inbox")
    trusted_keys = load_trusted_keys(cfg.bundles.trusted_keys)
    if not trusted_keys:
        log.warning("[bundles] trusted_keys is empty: every bundle from SFTP will be quarantined as unknown_signer")
    importer = BundleImporter(ingest, trusted_keys, cfg.sftp_inbox.local_dir, audit=audit,
                              decrypt_key=decrypt_key(cfg), ack_key=ack_key(cfg))
    inbox = SftpInbox(importer, target, cfg.sftp_inbox.poll_interval)
    inbox.start()
    return inbox

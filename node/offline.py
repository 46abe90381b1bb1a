"""Offline fallback: ship the node's events as bundles over SFTP while the hub is unreachable.

``[offline] mode``: ``auto`` falls back once the shipper has not reached
the hub for ``fallback_after`` seconds and stops as soon as it reconnects;
``always`` ships by SFTP all the time (beside gRPC when the hub answers);
``off`` never does.

Each round, while active:

1. list the remote directory, then read the hub's ``ack/<agency>.json`` there
   and move the node's ``hub`` position forward to it (node/bundles.py).  An
   acknowledgement that is not a regular file or has more than
   ``MAX_ACK_BYTES`` is not read: the error names it, ``errors_total{kind=
   "offline"}`` counts it, and the round goes on with the last one read;
2. forget local bundles the hub holds; a bundle uploaded earlier that the
   hub has taken away without acknowledging it (quarantined, e.g. damaged
   on the server) is uploaded again;
3. export the events no local bundle holds yet into ``[offline] outbox``;
4. upload the outbox's bundles in id order (exchange/sftp.py: hidden name,
   resumed after a crash, renamed when complete), then move each to
   ``outbox/sent/``.

Bundles stay in the outbox until acknowledged, so an interrupted upload
resumes with the same bytes.  The hub drops whatever it already holds,
whichever path (gRPC or SFTP) delivered it first.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from exchange.common.config import Config
from exchange.store import NodeRecorder
from exchange.transport.offline.bundles import BundleError, is_bundle_name, read_manifest, write_atomically
from exchange.transport.offline.sftp import (
    RemoteFileRefused,
    SftpError,
    SftpTarget,
    connect,
    list_files,
    part_name,
    read_remote,
    upload,
)
from node.bundles import ACK_DIR, apply_ack, encrypt_to, hub_key, signing_key, write_bundles
from node.metrics import METRICS, NodeMetrics
from node.positions import HUB_TRACKING
from node.shipper import Shipper

log = logging.getLogger(__name__)

SENT_DIR = "sent"
MAX_ACK_BYTES = 64 * 1024  # an acknowledgement has a few hundred bytes


class OfflineShipper:
    """Runs fallback rounds while the hub is unreachable (or always), until stopped."""

    def __init__(self, cfg: Config, recorder: NodeRecorder, shipper: Shipper, stopping: threading.Event,
                 metrics: NodeMetrics = METRICS):
        self.metrics = metrics
        self.agency = cfg.agency
        self.mode = cfg.offline.mode
        self.fallback_after = cfg.offline.fallback_after
        self.interval = cfg.offline.interval
        self.max_events = cfg.offline.max_events
        self.max_rate = cfg.sftp.max_rate
        self.outbox = Path(cfg.offline.outbox)
        self.target = SftpTarget.from_config(cfg, "sftp")
        self.key = signing_key(cfg)
        self.hub_key = hub_key(cfg)
        self.encrypt_to = encrypt_to(cfg)
        self.not_shared = frozenset(cfg.source.not_shared)
        self.recorder = recorder
        self.shipper = shipper
        self.stopping = stopping
        self.active = False
        self.last_error: str | None = None
        self.last_ack_refusal: str | None = None
        self.thread = threading.Thread(target=self.run, name="offline", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def run(self) -> None:
        """Until ``stopping`` is set; never raises."""
        (self.outbox / SENT_DIR).mkdir(parents=True, exist_ok=True)
        while not self.stopping.is_set():
            try:
                self._set_active(self._should_be_active())
                if self.active:
                    self.round()
                    self.last_error = None
            except SftpError as e:
                self.metrics.errors.labels("offline").inc()
                # Once per distinct error, not every round: it needs the operator, not a full log.
                log.log(logging.ERROR if str(e) != self.last_error else logging.DEBUG, "offline fallback: %s", e,
                        extra={"sftp": self.target.known_hosts_name})
                self.last_error = str(e)
            except Exception:
                self.metrics.errors.labels("offline").inc()
                log.exception("offline fallback round failed; retrying in %gs", self.interval)
            self.stopping.wait(self.interval if self.active else min(1.0, self.interval))
        self.metrics.offline_fallback_active.set(0)

    def _should_be_active(self) -> bool:
        if self.mode == "always":
            return True
        since = self.shipper.unreachable_since
        return since is not None and time.monotonic() - since >= self.fallback_after

    def _set_active(self, active: bool) -> None:
        if active and not self.active:
            reason = "always" if self.mode == "always" else f"the hub has been unreachable for {self.fallback_after:g}s"
            log.warning("offline fallback started (%s): shipping bundles over SFTP to %s:%s", reason,
                        self.target.known_hosts_name, self.target.remote_dir, extra={"agency": self.agency})
        elif self.active and not active:
            log.info("offline fallback stopped: the hub is reachable again", extra={"agency": self.agency})
            self._forget_acknowledged(self.recorder.position(HUB_TRACKING))
        self.active = active
        self.metrics.offline_fallback_active.set(1 if active else 0)

    def round(self) -> dict:
        """One fallback round (see the module docstring); what was uploaded."""
        uploaded = []
        with connect(self.target) as sftp:
            remote = list_files(sftp, self.target.remote_dir)  # before the ack: see _resend_taken
            acknowledged = self._read_ack(self._fetch_ack(sftp))
            self._forget_acknowledged(acknowledged)
            self._resend_taken(remote, acknowledged)
            paths, events = write_bundles(self.recorder, self.agency, self.key, self.outbox,
                                          self._exported_up_to(acknowledged), self.max_events, self.encrypt_to,
                                          self.not_shared)
            if events:
                log.info("exported %d events as %d bundles for SFTP", events, len(paths))
            for path in self._bundles(self.outbox):
                if self.stopping.is_set():
                    break
                result = upload(sftp, path, self.target.remote_dir, max_rate=self.max_rate)
                path.replace(self.outbox / SENT_DIR / path.name)
                if result["uploaded"]:
                    self.metrics.bundles_uploaded.inc()
                self.metrics.bundle_bytes_uploaded.inc(result["sent"])
                uploaded.append(result)
                log.info("uploaded bundle %s (%d bytes sent)", path.name, result["sent"],
                         extra={"agency": self.agency, "bundle": path.name})
        return {"acknowledged": acknowledged, "uploaded": uploaded}

    def _fetch_ack(self, sftp) -> bytes | None:
        """The hub's acknowledgement on the server; None when there is none, or it is refused
        (the last one read then stands)."""
        try:
            data = read_remote(sftp, self.target.path(ACK_DIR, f"{self.agency}.json"), MAX_ACK_BYTES)
        except RemoteFileRefused as e:
            self.metrics.errors.labels("offline").inc()
            log.log(logging.ERROR if str(e) != self.last_ack_refusal else logging.DEBUG,
                    "offline fallback: %s; keeping the acknowledgement read before", e,
                    extra={"sftp": self.target.known_hosts_name})
            self.last_ack_refusal = str(e)
            return None
        self.last_ack_refusal = None
        return data

    def _read_ack(self, data: bytes | None) -> int:
        """Apply the hub's acknowledgement (if any) through the same checks as ``export``; the hub position."""
        path = self.outbox / ACK_DIR / f"{self.agency}.json"
        if data is not None:
            path.parent.mkdir(exist_ok=True)
            write_atomically(path, data)
        return apply_ack(self.recorder, path, self.agency, self.hub_key, self.not_shared)

    def _forget_acknowledged(self, acknowledged: int) -> None:
        for path in self._bundles(self.outbox) + self._bundles(self.outbox / SENT_DIR):
            if self._manifest(path).last <= acknowledged:
                path.unlink()

    def _resend_taken(self, remote: dict[str, int], acknowledged: int) -> None:
        """Move back to the outbox the sent bundles the hub took away without acknowledging them.

        The hub writes its acknowledgement before it removes what it
        imported, and the listing was read before the acknowledgement, so a
        bundle missing from the listing yet not acknowledged was not imported."""
        for path in self._bundles(self.outbox / SENT_DIR):
            if path.name not in remote and part_name(path.name) not in remote:
                log.warning("the hub took bundle %s without importing it (see its quarantine); uploading it again",
                            path.name, extra={"agency": self.agency, "bundle": path.name})
                path.replace(self.outbox / path.name)

    def _exported_up_to(self, acknowledged: int) -> int:
        """The id up to which the hub's position and the local bundles hold every event, without a gap."""
        reach = acknowledged
        manifests = [self._manifest(p) for p in self._bundles(self.outbox) + self._bundles(self.outbox / SENT_DIR)]
        for manifest in sorted(manifests, key=lambda m: (m.after, m.last)):
            if manifest.after <= reach:
                reach = max(reach, manifest.last)
        return reach

    def _bundles(self, directory: Path) -> list[Path]:
        """The agency's bundles in ``directory``, in id order (the names sort that way)."""
        return sorted(p for p in directory.iterdir() if is_bundle_name(p.name) and p.name.startswith(self.agency))

    def _manifest(self, path: Path):
        try:
            return read_manifest(path)
        except BundleError:  # cannot happen to a bundle this node wrote unless the disk lost it
            log.error("local bundle %s is damaged; removing it (its events are exported again)", path)
            path.unlink()
            raise


def create(cfg: Config, recorder: NodeRecorder, shipper: Shipper, stopping: threading.Event,
           metrics: NodeMetrics = METRICS) -> OfflineShipper | None:
    """The node's offline fallback (None when ``[offline] mode`` is off); ``start()`` it.

    Raises ValueError (or SigningKeyError) naming a setting that is missing or wrong."""
    if cfg.offline.mode == "off":
        return None
    if not cfg.offline.outbox:
        raise ValueError("[offline] outbox must be set: the directory keeping bundles until the hub acknowledges them")
    return OfflineShipper(cfg, recorder, shipper, stopping, metrics)

"""Mutual TLS between nodes and the hub: credentials, peer certificates, revocation.

Every party presents a certificate issued by the exchange's CA
(``exchange ca``).  The subject says who it is: CN is the agency id, the
administrator's, reviewer's or hub's name; OU is the role (``agency``,
``administrator``, ``reviewer`` or ``hub``).  gRPC checks the chain and validity period
during the handshake; revocation and the role are checked by the hub's
identity layer (hub/identity.py), since gRPC Python cannot read a CRL.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from exchange.common.config import Config
from exchange.contracts.errors import ExchangeError

log = logging.getLogger(__name__)

ROLE_AGENCY = "agency"
ROLE_ADMIN = "administrator"
ROLE_HUB = "hub"
ROLE_REVIEWER = "reviewer"  # an agency's designated reviewer of its catalog entries (the hub's registry names them)
ROLES = (ROLE_AGENCY, ROLE_ADMIN, ROLE_HUB, ROLE_REVIEWER)


class TLSError(ValueError, ExchangeError):
    """A certificate, key or revocation list that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Peer:
    """Who a certificate says its holder is."""

    name: str  # subject CN
    role: str | None  # subject OU: agency, administrator or hub (None when missing)
    serial: int
    not_after: datetime

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "X")


def describe(cert: x509.Certificate) -> Peer:
    """The identity a certificate names."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    role = str(units[0].value) if units and units[0].value in ROLES else None
    return Peer(str(names[0].value) if names else "", role, cert.serial_number, cert.not_valid_after_utc)


@lru_cache(maxsize=1024)
def peer_from_pem(pem: bytes) -> Peer:
    """The identity in a PEM certificate (as gRPC's auth context gives it); cached per certificate."""
    return describe(x509.load_pem_x509_certificate(pem))


# Files.

def read_file(path: str, setting: str) -> bytes:
    """The bytes of the file a ``[tls]`` setting names; TLSError naming both when unreadable."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TLSError(f"[tls] {setting} {path}: cannot read it: {e.strerror}") from None


def load_certificates(path: str, setting: str) -> list[x509.Certificate]:
    """The PEM certificates in a file (a CA file may hold several)."""
    data = read_file(path, setting)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise TLSError(f"[tls] {setting} {path}: not a PEM certificate: {e}") from None
    return certs


def check_pair(cfg: Config, now: datetime | None = None) -> x509.Certificate:
    """Check that ``[tls] ca``, ``cert`` and ``key`` are all set, readable, that the key
    belongs to the certificate, which the CA issued and which is valid now; the certificate."""
    missing = [name for name in ("ca", "cert", "key") if not getattr(cfg.tls, name)]
    if missing:
        raise TLSError(f"[tls] {', '.join(missing)} not set: mutual TLS needs the CA certificate, "
                       "this party's certificate and its key (exchange ca issue creates them)")
    cas = load_certificates(cfg.tls.ca, "ca")
    cert = load_certificates(cfg.tls.cert, "cert")[0]
    try:
        key = serialization.load_pem_private_key(read_file(cfg.tls.key, "key"), password=None)
    except (ValueError, TypeError) as e:
        raise TLSError(f"[tls] key {cfg.tls.key}: not an unencrypted PEM private key: {e}") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.PEM, spki) != \
            cert.public_key().public_bytes(serialization.Encoding.PEM, spki):
        raise TLSError(f"[tls] key {cfg.tls.key} does not belong to the certificate {cfg.tls.cert}")
    if not any(issued_by(cert, ca) for ca in cas):
        raise TLSError(f"[tls] cert {cfg.tls.cert} was not issued by the CA in {cfg.tls.ca}")
    check_validity(cert, cfg.tls.cert, now)
    return cert


def check_node_certificate(cfg: Config) -> x509.Certificate:
    """``check_pair``, and that the certificate is the configured agency's (the hub would refuse any other)."""
    cert = check_pair(cfg)
    holder = describe(cert)
    if holder.role != ROLE_AGENCY or holder.name != cfg.agency:
        raise TLSError(f"[tls] cert {cfg.tls.cert} belongs to {holder.role or 'no role'} {holder.name}, "
                       f"not to agency {cfg.agency}; issue one with exchange ca issue --agency {cfg.agency}")
    return cert


def check_validity(cert: x509.Certificate, path: str, now: datetime | None = None) -> None:
    """TLSError when ``cert`` is not valid at ``now`` (default: the current time)."""
    now = now or datetime.now(timezone.utc)
    who = describe(cert)
    if now > cert.not_valid_after_utc:
        raise TLSError(f"certificate {path} of {who.name} (serial {who.serial_hex}) expired at "
                       f"{cert.not_valid_after_utc.isoformat()}; issue a new one with exchange ca issue")
    if now < cert.not_valid_before_utc:
        raise TLSError(f"certificate {path} of {who.name} (serial {who.serial_hex}) is not valid before "
                       f"{cert.not_valid_before_utc.isoformat()}")


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` signed ``cert`` directly."""
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:  # InvalidSignature, another issuer name or key type
        return False


# gRPC credentials.

def client_credentials(cfg: Config) -> grpc.ChannelCredentials:
    """Channel credentials from ``[tls] ca, cert, key``; exports the certificate's expiry."""
    cert = check_pair(cfg)
    export_expiry(cert)
    return grpc.ssl_channel_credentials(
        root_certificates=read_file(cfg.tls.ca, "ca"),
        private_key=read_file(cfg.tls.key, "key"),
        certificate_chain=read_file(cfg.tls.cert, "cert"),
    )


def server_credentials(cfg: Config) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate issued by ``[tls] ca``.

    The files are re-read when they change (checked at each new connection),
    so a renewed certificate or CA takes effect without a restart; files
    that do not form a valid set are logged and the previous ones kept."""
    files = _ServerFiles(cfg)
    return grpc.dynamic_ssl_server_credentials(files.load(), files.fetch, require_client_authentication=True)


class _ServerFiles:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.paths = [cfg.tls.ca, cfg.tls.cert, cfg.tls.key]
        self.seen = [_stamp(p) for p in self.paths]

    def load(self) -> grpc.ServerCertificateConfiguration:
        cert = check_pair(self.cfg)
        configuration = grpc.ssl_server_certificate_configuration(
            [(read_file(self.cfg.tls.key, "key"), read_file(self.cfg.tls.cert, "cert"))],
            root_certificates=read_file(self.cfg.tls.ca, "ca"))
        export_expiry(cert)
        return configuration

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed, else None (gRPC keeps the current one)."""
        stamps = [_stamp(p) for p in self.paths]
        if stamps == self.seen:
            return None
        self.seen = stamps
        try:
            configuration = self.load()
        except TLSError as e:
            log.error("the changed TLS files cannot be used (%s); still serving with the previous ones", e)
            return None
        log.info("TLS certificate, key or CA changed: serving with %s from now on", self.cfg.tls.cert)
        return configuration


_EXPIRY = None


def export_expiry(cert: x509.Certificate) -> None:
    """Set ``exchange_certificate_expiry_timestamp_seconds`` to the expiry of the certificate this process presents.

    Created on first use, so a process without TLS never exports a value the expiry alert would read as 1970."""
    global _EXPIRY
    if _EXPIRY is None:
        from prometheus_client import Gauge

        _EXPIRY = Gauge("exchange_certificate_expiry_timestamp_seconds",
                        "Expiry time (Unix) of the certificate this process presents")
    _EXPIRY.set(cert.not_valid_after_utc.timestamp())


def is_loopback(address: str) -> bool:
    """True when ``host:port`` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Revocation.

class RevocationList:
    """The revoked serial numbers of a CRL file, re-read whenever the file changes.

    Only a CRL signed by one of the CA certificates is used.  Revocations
    accumulate for the life of the process: replacing the file by an older or
    broken one never makes a revoked certificate valid again (a broken file
    is logged and the revocations known so far stay in force)."""

    def __init__(self, path: str, ca_path: str):
        self.path = path
        self.cas = load_certificates(ca_path, "ca")
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._revoked: set[int] = set()
        self._load(strict=True)

    def is_revoked(self, serial: int) -> bool:
        """True when the CRL (as it is on disk now) revokes ``serial``."""
        self._reload_if_changed()
        return serial in self._revoked

    def _reload_if_changed(self) -> None:
        if _stamp(self.path) != self._seen:
            with self._lock:
                if _stamp(self.path) != self._seen:
                    self._load(strict=False)

    def _load(self, strict: bool) -> None:
        stamp = _stamp(self.path)
        try:
            crl = x509.load_pem_x509_crl(read_file(self.path, "crl"))
            if not any(_crl_signed_by(crl, ca) for ca in self.cas):
                raise TLSError(f"[tls] crl {self.path} is not signed by the CA")
        except (OSError, ValueError) as e:
            if strict:
                raise TLSError(f"[tls] crl {self.path}: {e}") from None
            log.error("revocation list %s cannot be used (%s); the %d revocations known so far stay in force",
                      self.path, e, len(self._revoked), extra={"crl": self.path})
            self._seen = stamp  # logged once per change of the file
            return
        revoked = {entry.serial_number for entry in crl}
        added = revoked - self._revoked
        self._revoked |= revoked
        self._seen = stamp
        if added:
            log.info("revocation list %s loaded: %d certificates revoked (%d new)", self.path, len(self._revoked),
                     len(added), extra={"crl": self.path, "revoked": len(self._revoked)})


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _crl_signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    return crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())

"""``exchange ca``: the exchange's certificate authority.

A CA directory holds:

- ``ca.pem`` and ``ca-key.pem`` (mode 0600): the CA certificate and key;
- ``issued/<SERIAL>.pem``: a copy of every certificate issued, so a
  revocation by agency or name knows which serials to list;
- ``crl.pem``: the certificate revocation list the hub reads (``[tls] crl``).

Subjects: CN is the agency id, the administrator's, reviewer's or hub's
name; OU is the role (agency, administrator, reviewer or hub).

Registered agencies only: when the CA is given the hub's agency registry
(``exchange registry list > registry.json``: ``--registry FILE``, or a
``registry.json`` in the CA directory), agency certificates are issued only
for registered agencies and reviewer certificates only for designated
reviewers.  Without one the CA works offline as before.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.common.keyfile import write_new_key_file
from exchange.contracts.agency import InvalidAgency, check_agency
from exchange.contracts.errors import ExchangeError
from exchange.contracts.identifiers import is_valid_uscc
from exchange.transport.offline.bundles import write_atomically
from exchange.transport.rpc.tls import ROLE_ADMIN, ROLE_AGENCY, ROLE_HUB, ROLE_REVIEWER, TLSError, describe

ORGANISATION = "Government data exchange"
CA_DAYS = 3650
CERT_DAYS = 365
CRL_DAYS = 30  # the CRL's next update: `exchange ca crl` signs a fresh one
HUB_HOSTS = ("localhost", "127.0.0.1", "::1")


class CAError(ValueError, ExchangeError):
    """A CA operation that cannot be done; the message says why."""


def _paths(directory: str | Path) -> dict[str, Path]:
    d = Path(directory)
    return {"cert": d / "ca.pem", "key": d / "ca-key.pem", "crl": d / "crl.pem", "issued": d / "issued",
            "registry": d / "registry.json"}


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        write_new_key_file(path, pem)
    except FileExistsError:
        raise CAError(f"{path} already exists; move it away first if you really mean to replace it") from None


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def init(directory: str | Path, name: str = "Exchange CA", days: int = CA_DAYS) -> dict[str, Any]:
    """Create a CA (key, self-signed certificate, empty CRL) in ``directory``."""
    paths = _paths(directory)
    paths["issued"].mkdir(parents=True, exist_ok=True)
    if paths["cert"].exists() or paths["key"].exists():
        raise CAError(f"{directory} already holds a CA; use a new directory for a new CA")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(paths["key"], key)
    write_atomically(paths["cert"], _pem(cert))
    _write_crl(paths, cert, key, [])
    return {"ca": str(paths["cert"]), "crl": str(paths["crl"]), "not_after": cert.not_valid_after_utc.isoformat()}


def _load_ca(directory: str | Path) -> tuple[dict[str, Path], x509.Certificate, Any]:
    paths = _paths(directory)
    try:
        cert = x509.load_pem_x509_certificate(paths["cert"].read_bytes())
        key = serialization.load_pem_private_key(paths["key"].read_bytes(), password=None)
    except FileNotFoundError:
        raise CAError(f"{directory} holds no CA: run exchange ca init --dir {directory} first") from None
    except ValueError as e:
        raise CAError(f"{directory}: the CA files cannot be read: {e}") from None
    return paths, cert, key


def issue(directory: str | Path, role: str, name: str, *, out: str | Path | None = None,
          hosts: Sequence[str] = (), days: int = CERT_DAYS,
          not_before: datetime | None = None, not_after: datetime | None = None,
          registry: str | Path | None = None) -> dict[str, Any]:
    """Issue a certificate for an agency, an administrator, a reviewer or the hub; write
    ``<out>/<name>.pem`` and ``<out>/<name>-key.pem`` (0600, never overwritten).

    With a registry (``registry``, else ``registry.json`` in the CA directory
    when present) an agency must be registered and a reviewer designated."""
    if role == ROLE_AGENCY:
        try:
            check_agency(name)
        except InvalidAgency as e:
            raise CAError(str(e)) from None
    elif role in (ROLE_ADMIN, ROLE_HUB, ROLE_REVIEWER):
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise CAError(f"invalid {role} name {name!r}: use letters, digits, '-', '_' or '.'")
    else:
        raise CAError(f"unknown role {role!r}")
    paths, ca_cert, ca_key = _load_ca(directory)
    registered = _check_registered(role, name, Path(registry) if registry else paths["registry"], required=bool(registry))
    out_dir = Path(out) if out else Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}-key.pem"
    if cert_path.exists() or key_path.exists():
        raise CAError(f"{cert_path} or {key_path} already exists; move them away first to issue a new certificate")
    now = datetime.now(timezone.utc)
    not_before = not_before or now - timedelta(minutes=5)
    not_after = not_after or now + timedelta(days=days)
    if not_after > ca_cert.not_valid_after_utc:
        raise CAError(f"the certificate would outlive the CA (valid until {ca_cert.not_valid_after_utc.isoformat()})")
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if role == ROLE_HUB else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                                 x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                                 x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if role == ROLE_HUB:
        builder = builder.add_extension(x509.SubjectAlternativeName(_alt_names(hosts or HUB_HOSTS)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(key_path, key)
    write_atomically(cert_path, _pem(cert))
    paths["issued"].mkdir(exist_ok=True)
    write_atomically(paths["issued"] / f"{format(cert.serial_number, 'X')}.pem", _pem(cert))
    report = {"role": role, "name": name, "serial": format(cert.serial_number, "X"), "cert": str(cert_path),
              "key": str(key_path), "ca": str(paths["cert"]), "not_after": not_after.isoformat()}
    if role == ROLE_AGENCY and not is_valid_uscc(name):
        report["warning"] = f"{name} is not a valid unified social credit code"
    if registered:
        report["registered"] = registered
    return report


def _check_registered(role: str, name: str, path: Path, required: bool) -> str:
    """Refuse an agency or reviewer the registry file does not name; what it says of them ("" without a file)."""
    if role not in (ROLE_AGENCY, ROLE_REVIEWER) or not (required or path.exists()):
        return ""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        agencies = {r["agency"]: r for r in records}
        reviewers = {person: r["agency"] for r in records for person in r.get("reviewers", [])}
    except OSError as e:
        raise CAError(f"registry {path}: cannot read it: {e.strerror}") from None
    except (ValueError, TypeError, KeyError) as e:
        raise CAError(f"registry {path}: not the output of exchange registry list ({e})") from None
    if role == ROLE_AGENCY:
        if name not in agencies:
            raise CAError(f"agency {name} is not in the registry {path}: certificates are issued for registered "
                          "agencies only (a hub administrator registers it with exchange registry add)")
        return f"agency {name} ({agencies[name].get('name', '')})"
    if name not in reviewers:
        raise CAError(f"{name} is not a designated reviewer of any agency in the registry {path} "
                      "(exchange registry update AGENCY --reviewer NAME)")
    return f"reviewer of agency {reviewers[name]}"


def _alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issued(directory: str | Path) -> list[x509.Certificate]:
    """Every certificate the CA in ``directory`` has issued."""
    folder = _paths(directory)["issued"]
    return [x509.load_pem_x509_certificate(p.read_bytes()) for p in sorted(folder.glob("*.pem"))]


def revoke(directory: str | Path, serials: Sequence[str] = (), *, agency: str | None = None,
           admin: str | None = None) -> dict[str, Any]:
    """Add certificates to the CA's revocation list: by serial number (hex), or
    every certificate issued to ``agency`` or to administrator ``admin``."""
    paths, ca_cert, ca_key = _load_ca(directory)
    wanted: set[int] = set()
    for serial in serials:
        try:
            wanted.add(int(serial.removeprefix("0x"), 16))
        except ValueError:
            raise CAError(f"serial {serial!r} is not a hexadecimal number (as exchange ca issue prints it)") from None
    known = {c.serial_number: describe(c) for c in issued(directory)}
    for role, name in ((ROLE_AGENCY, agency), (ROLE_ADMIN, admin)):
        if name is not None:
            matches = {s for s, p in known.items() if p.role == role and p.name == name}
            if not matches:
                raise CAError(f"this CA has issued no certificate to {role} {name}")
            wanted |= matches
    unknown = sorted(format(s, "X") for s in wanted - set(known))
    if unknown:
        raise CAError(f"this CA has issued no certificate with serial {', '.join(unknown)}")
    revoked = _revoked_entries(paths)
    already = {entry.serial_number for entry in revoked}
    now = datetime.now(timezone.utc)
    for serial in sorted(wanted - already):
        revoked.append(x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    _write_crl(paths, ca_cert, ca_key, revoked)
    return {"crl": str(paths["crl"]), "revoked_now": sorted(format(s, "X") for s in wanted - already),
            "revoked_total": len(revoked)}


def refresh_crl(directory: str | Path) -> dict[str, Any]:
    """Sign the revocation list again with a new next-update time."""
    return revoke(directory)


def listing(directory: str | Path) -> list[dict[str, Any]]:
    """Every certificate issued: serial, role, name, expiry and whether it is revoked."""
    paths = _paths(directory)
    revoked = {entry.serial_number for entry in _revoked_entries(paths)}
    return [{"serial": p.serial_hex, "role": p.role, "name": p.name, "not_after": p.not_after.isoformat(),
             "revoked": p.serial in revoked} for p in map(describe, issued(directory))]


def _revoked_entries(paths: dict[str, Path]) -> list[x509.RevokedCertificate]:
    try:
        crl = x509.load_pem_x509_crl(paths["crl"].read_bytes())
    except FileNotFoundError:
        return []
    except ValueError as e:
        raise TLSError(f"{paths['crl']}: not a PEM CRL: {e}") from None
    return list(crl)


def _write_crl(paths: dict[str, Path], ca_cert: x509.Certificate, ca_key, revoked: list) -> None:
    number = 1
    if paths["crl"].exists():
        old = x509.load_pem_x509_crl(paths["crl"].read_bytes())
        try:
            number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
        except x509.ExtensionNotFound:
            pass
    now = datetime.now(timezone.utc)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now).next_update(now + timedelta(days=CRL_DAYS))
               .add_extension(x509.CRLNumber(number), critical=False))
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca_key, hashes.SHA256())
    write_atomically(paths["crl"], crl.public_bytes(serialization.Encoding.PEM))

"""Signed delivery receipts: a consumer acknowledges what it received (Arts. 15, 17, 23).

A receipt is canonical JSON (sorted keys, no spaces, UTF-8) naming the
delivery: its kind (stream batch, bundle or query), consumer, provider,
resource, the hub positions it covered (``after`` < ids <= ``reached``), the
number of events, a SHA-256 of the content as received, the purpose and the
time of receipt.  The consumer signs it with the key of its TLS certificate
(ECDSA P-256, SHA-256), so anyone holding the CA certificate can check it
without trusting the hub that keeps it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from exchange.contracts.errors import ExchangeError

VERSION = 1
KINDS = ("stream", "bundle", "query")
FIELDS: dict[str, type] = {"v": int, "kind": str, "consumer": str, "provider": str, "resource": str, "after": int,
                           "reached": int, "events": int, "content_sha256": str, "purpose": str, "received_at": str}
MAX_PAYLOAD = 16 * 1024
_NAMESPACE = uuid.UUID("8f2a6c1e-4b7d-4e59-a0c3-1d9e7b5f2a64")


class ReceiptError(ValueError, ExchangeError):
    """A receipt that is malformed or does not verify; the message says what is wrong."""


def canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(parts: Iterable[bytes]) -> str:
    """SHA-256 (hex) over the parts, each preceded by its length, so no two sequences of parts hash alike."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def parse(payload: bytes) -> dict[str, Any]:
    """The fields of a receipt's payload; ReceiptError unless it is a canonical receipt of this version."""
    if len(payload) > MAX_PAYLOAD:
        raise ReceiptError(f"receipt payload of {len(payload)} bytes: at most {MAX_PAYLOAD}")
    try:
        fields = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise ReceiptError(f"receipt payload is not JSON: {e}") from None
    if not isinstance(fields, dict) or set(fields) != set(FIELDS):
        raise ReceiptError(f"receipt payload must have exactly the fields {', '.join(sorted(FIELDS))}")
    for name, kind in FIELDS.items():
        if not isinstance(fields[name], kind) or isinstance(fields[name], bool):
            raise ReceiptError(f"receipt field {name} must be {'a number' if kind is int else 'text'}")
    if fields["v"] != VERSION or fields["kind"] not in KINDS:
        raise ReceiptError(f"receipt version {fields['v']} / kind {fields['kind']!r}: expected version {VERSION} "
                           f"and one of {', '.join(KINDS)}")
    if canonical(fields) != payload:
        raise ReceiptError("receipt payload is not in canonical form (sorted keys, no spaces)")
    try:
        datetime.fromisoformat(fields["received_at"])
    except ValueError:
        raise ReceiptError(f"receipt received_at {fields['received_at']!r} is not an ISO-8601 time") from None
    return fields


def receipt_id(fields: dict[str, Any]) -> uuid.UUID:
    """One id per delivery acknowledged: the same delivery acknowledged twice is kept once."""
    key = "\0".join(str(fields[k]) for k in ("kind", "consumer", "provider", "resource", "after", "reached"))
    return uuid.uuid5(_NAMESPACE, key)


def load_signing_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    """The consumer's TLS private key (``[tls] key``), which must be an EC key."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ReceiptError(f"[tls] key {path}: cannot be used to sign receipts: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ReceiptError(f"[tls] key {path} is not an EC key (exchange ca issue makes P-256 keys)")
    return key


def sign(fields: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    """(payload, signature) of a receipt with ``fields``."""
    payload = canonical({"v": VERSION, **fields})
    parse(payload)
    return payload, key.sign(payload, ec.ECDSA(hashes.SHA256()))


def check_signature(payload: bytes, signature: bytes, certificate: x509.Certificate) -> None:
    """ReceiptError unless ``signature`` over ``payload`` was made with the certificate's key."""
    public = certificate.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ReceiptError("the certificate's key is not an EC key")
    try:
        public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ReceiptError("the signature does not match the receipt and the consumer's certificate") from None

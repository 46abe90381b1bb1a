"""``exchange share receipts`` and ``exchange share verify-receipts``: delivery receipts as evidence.

The export is JSON lines, one receipt each: ``payload`` (base64 of the
canonical JSON the consumer signed), ``signature`` (base64), the
consumer's PEM ``certificate``, ``recorded_at`` (when the hub kept it) and
``receipt`` (the payload decoded, for reading).  Verification needs only
the file and the CA certificate: each certificate must be issued by the CA
to the agency the receipt names, valid when it says it received the
delivery, and its key must have made the signature.  Nothing is taken from
the hub's database.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from cryptography import x509

from exchange.transport.receipts import ReceiptError, check_signature, parse
from exchange.transport.rpc.tls import ROLE_AGENCY, describe, issued_by, load_certificates


def export_line(receipt_id: str, payload: bytes, signature: bytes, certificate: bytes, recorded_at: str) -> str:
    """One line of an export file."""
    return json.dumps({"receipt_id": receipt_id, "payload": base64.b64encode(payload).decode(),
                       "signature": base64.b64encode(signature).decode(), "certificate": certificate.decode(),
                       "recorded_at": recorded_at, "receipt": json.loads(payload)}, ensure_ascii=False)


def verify_file(path: str | Path, ca_path: str | Path) -> dict[str, Any]:
    """Check every receipt in an export file against the CA; counts and each failure with its line and reason."""
    cas = load_certificates(str(ca_path), "ca")
    verified, failed = 0, []
    try:
        lines: Iterable[str] = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ReceiptError(f"{path}: cannot read it: {e.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            verify_line(line, cas)
            verified += 1
        except ReceiptError as e:
            failed.append({"line": number, "reason": str(e)})
    return {"file": str(path), "verified": verified, "failed": failed}


def verify_line(line: str, cas: list[x509.Certificate]) -> dict[str, Any]:
    """The receipt's fields, if the line verifies; else ReceiptError saying why."""
    try:
        record = json.loads(line)
        payload = base64.b64decode(record["payload"], validate=True)
        signature = base64.b64decode(record["signature"], validate=True)
        certificate = x509.load_pem_x509_certificate(record["certificate"].encode())
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ReceiptError(f"not a receipt export line: {e}") from None
    fields = parse(payload)
    if "receipt" in record and record["receipt"] != fields:
        raise ReceiptError("the readable copy of the receipt differs from what was signed")
    if not any(issued_by(certificate, ca) for ca in cas):
        raise ReceiptError("the certificate was not issued by the CA")
    holder = describe(certificate)
    if holder.role != ROLE_AGENCY or holder.name != fields["consumer"]:
        raise ReceiptError(f"the certificate belongs to {holder.role or 'no role'} {holder.name}, not to consumer "
                           f"{fields['consumer']}")
    received = datetime.fromisoformat(fields["received_at"])
    if received.tzinfo is None or not (certificate.not_valid_before_utc <= received <= certificate.not_valid_after_utc):
        raise ReceiptError(f"received_at {fields['received_at']} is outside the certificate's validity")
    check_signature(payload, signature, certificate)
    return fields

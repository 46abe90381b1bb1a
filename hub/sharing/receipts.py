"""Consumers' signed receipts for deliveries, kept by the hub as evidence (Arts. 15, 17, 23).

A receipt is accepted only from the consumer it names (the caller's
certificate), with a valid signature by that certificate's key, for a
delivery the hub recorded (``sharing_deliveries``: same consumer,
provider, resource, mode and positions).  It is stored once (log
``sharing_receipts``, one aggregate per delivery) with the certificate that
verifies it, and audited; ``Export`` hands receipts out so that they
verify with the CA alone (``exchange share verify-receipts``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import OrderedDict, defaultdict
from datetime import datetime, timezone
from typing import Any, Iterator

import grpc
from cryptography import x509
from eventsourcing.persistence import IntegrityError, StoredEvent

from exchange.transport.receipts import ReceiptError, check_signature, parse, receipt_id
from exchange.transport.rpc.tls import ROLE_AGENCY
from hub import identity
from hub.sharing.ledger import DELIVERIES_LOG
from protos.exchange.v1 import sharing_pb2 as pb
from protos.exchange.v1 import sharing_pb2_grpc as pb_grpc

RECEIPTS_LOG = "sharing_receipts"
TOPIC = "exchange.sharing:ReceiptKept"
READ_BATCH = 5000
RECENT = 100_000  # delivery keys held in memory


class ReceiptBook:
    """The receipts the hub keeps, checked against its delivery records."""

    def __init__(self, store: Any, audit: Any = None):
        self.audit = audit
        self._receipts = store.log(RECEIPTS_LOG)
        self._deliveries = store.log(DELIVERIES_LOG)
        self._lock = threading.Lock()
        # The latest deliveries, (consumer, provider, resource, mode, after, reached): receipts follow deliveries
        # closely, so an older one is looked for in the log instead of being held in memory.
        self._recent: OrderedDict[tuple, None] = OrderedDict()
        self._per_provider: dict[str, int] = defaultdict(int)
        self._deliveries_head = 0

    def keep(self, payload: bytes, signature: bytes, certificate_pem: bytes, caller: str) -> tuple[str, bool]:
        """Check and store a receipt sent by ``caller``; (receipt id, False when it was already kept)."""
        fields = parse(payload)
        if fields["consumer"] != caller:
            raise ReceiptError(f"the receipt names consumer {fields['consumer']}, but {caller} sent it")
        check_signature(payload, signature, x509.load_pem_x509_certificate(certificate_pem))
        key = tuple(fields[k] for k in ("consumer", "provider", "resource", "kind", "after", "reached"))
        if not self._delivered(key):
            raise ReceiptError(f"no {fields['kind']} delivery to {caller} of {fields['provider']}/{fields['resource']} "
                               f"after {fields['after']} up to {fields['reached']} is recorded")
        rid = receipt_id(fields)
        state = {"payload": base64.b64encode(payload).decode(), "signature": base64.b64encode(signature).decode(),
                 "certificate": certificate_pem.decode(), "recorded_at": datetime.now(timezone.utc).isoformat()}
        try:
            self._receipts.insert_events([StoredEvent(rid, 1, TOPIC, json.dumps(state, sort_keys=True).encode())])
        except IntegrityError:
            return str(rid), False
        if self.audit is not None:
            self.audit.record("share.receipt", caller, receipt=str(rid), digest=hashlib.sha256(payload + signature).hexdigest(),
                              **{k: fields[k] for k in ("kind", "provider", "resource", "after", "reached", "events",
                                                        "content_sha256", "purpose")})
        return str(rid), True

    def receipts(self, provider: str = "", consumer: str = "") -> Iterator[dict[str, Any]]:
        """Kept receipts, oldest first, optionally of one provider and/or consumer (read in batches)."""
        after = 0
        while notifications := self._receipts.read(after, READ_BATCH):
            for n in notifications:
                state = json.loads(n.state)
                fields = json.loads(base64.b64decode(state["payload"]))
                if (not provider or fields["provider"] == provider) and (not consumer or fields["consumer"] == consumer):
                    yield {"receipt_id": str(n.originator_id), **state, "fields": fields}
            after = notifications[-1].id

    def counts(self) -> dict[str, dict[str, int]]:
        """Per provider: deliveries recorded and deliveries with a kept receipt (Art. 22)."""
        with self._lock:
            self._catch_up()
            found = {p: {"deliveries": n, "receipted": 0} for p, n in self._per_provider.items()}
        for receipt in self.receipts():
            found.setdefault(receipt["fields"]["provider"], {"deliveries": 0, "receipted": 0})["receipted"] += 1
        return found

    def _delivered(self, key: tuple) -> bool:
        """Whether the delivery ``key`` names is recorded (deliveries may be recorded by other processes)."""
        with self._lock:
            self._catch_up()
            if key in self._recent:
                return True
        after = 0
        while notifications := self._deliveries.read(after, READ_BATCH):
            if key in map(_delivery_key, notifications):
                return True
            after = notifications[-1].id
        return False

    def _catch_up(self) -> None:
        """Fold in the deliveries recorded since the last look (called under the lock)."""
        while notifications := self._deliveries.read(self._deliveries_head, READ_BATCH):
            for n in notifications:
                key = _delivery_key(n)
                self._recent[key] = None
                self._per_provider[key[1]] += 1
            while len(self._recent) > RECENT:
                self._recent.popitem(last=False)
            self._deliveries_head = notifications[-1].id


def _delivery_key(notification: Any) -> tuple:
    d = json.loads(notification.state)
    return d["consumer"], d["provider"], d["resource"], d["mode"], d["after"], d["reached"]


class ReceiptsServicer(pb_grpc.ReceiptsServicer):
    """``exchange.v1.Receipts``: consumers acknowledge deliveries; receipts are exported as evidence."""

    def __init__(self, book: ReceiptBook, administrators: frozenset[str]):
        self.book = book
        self.administrators = administrators

    def Acknowledge(self, request: pb.DeliveryReceipt, context: grpc.ServicerContext) -> pb.ReceiptAck:
        consumer = identity.acting_agency(context, "")
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          "receipts are signed with the consumer's certificate key: send them over mutual TLS")
        try:
            rid, recorded = self.book.keep(request.payload, request.signature, pems[0], consumer)
        except ReceiptError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return pb.ReceiptAck(receipt_id=rid, recorded=recorded)

    def Export(self, request: pb.ReceiptQuery, context: grpc.ServicerContext) -> Iterator[pb.StoredReceipt]:
        proven = identity.peer(context)
        if proven is not None and proven.role != ROLE_AGENCY:
            identity.require_admin(context, self.administrators)
        elif proven is not None and proven.name not in (request.provider, request.consumer):
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"{proven.name} exports the receipts of its own deliveries: name it as --provider or "
                          "--consumer")
        if not (request.provider or request.consumer):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name the provider or the consumer whose receipts to export")
        for r in self.book.receipts(request.provider, request.consumer):
            yield pb.StoredReceipt(receipt_id=r["receipt_id"], payload=base64.b64decode(r["payload"]),
                                   signature=base64.b64decode(r["signature"]),
                                   certificate=r["certificate"].encode(), recorded_at=r["recorded_at"])

"""The consumer's signed receipts for what it received from the hub (exchange/transport/receipts.py).

A receipt is signed with the key of the consumer's TLS certificate and sent
to the hub's Receipts service once the delivery is applied to the replica.
Without TLS (an insecure test hub) there is no key and no receipt.  A
receipt the hub did not take (the connection failed) is kept and sent
before the next one, the hub keeping each receipt once; one lost to a
crash between applying and sending is not re-sent: the hub's evaluation
counts deliveries without a receipt.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime, timezone
from typing import Any, Iterable

from exchange.common.config import Config
from exchange.transport.receipts import content_hash, load_signing_key, sign
from protos.exchange.v1 import sharing_pb2 as pb
from protos.exchange.v1 import sharing_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 30.0
MAX_PENDING = 10000  # receipts kept while the hub cannot be reached; the oldest are dropped beyond


class Receipts:
    """Signs and sends receipts for one consumer (``enabled`` is False without a TLS key)."""

    def __init__(self, consumer: str, purpose: str, key_file: str):
        self.consumer = consumer
        self.purpose = purpose
        self.key = load_signing_key(key_file) if key_file else None
        self.pending: deque[pb.DeliveryReceipt] = deque(maxlen=MAX_PENDING)

    @classmethod
    def from_config(cls, cfg: Config) -> "Receipts":
        """The receipts of the consumer ``cfg`` describes (its agency, purpose and TLS key)."""
        return cls(cfg.agency, cfg.consumer.purpose, cfg.tls.key)

    @property
    def enabled(self) -> bool:
        return self.key is not None

    def send(self, channel: Any, kind: str, provider: str, resource: str, after: int, reached: int,
             parts: Iterable[bytes], events: int) -> None:
        """Acknowledge one delivery (``parts``: its content as received), after any receipts still pending.

        Raises the gRPC error when the hub cannot be reached; the receipt stays pending."""
        assert self.key is not None
        payload, signature = sign({
            "kind": kind, "consumer": self.consumer, "provider": provider, "resource": resource, "after": after,
            "reached": reached, "events": events, "content_sha256": content_hash(parts), "purpose": self.purpose,
            "received_at": datetime.now(timezone.utc).isoformat()}, self.key)
        self.pending.append(pb.DeliveryReceipt(payload=payload, signature=signature))
        self.flush(channel)

    def flush(self, channel: Any) -> None:
        """Send the pending receipts, oldest first, each removed once the hub has it."""
        stub = pb_grpc.ReceiptsStub(channel)
        while self.pending:
            ack = stub.Acknowledge(self.pending[0], timeout=TIMEOUT_SECONDS)
            self.pending.popleft()
            log.debug("receipt %s kept by the hub", ack.receipt_id)


def batch_parts(batch: Any) -> list[bytes]:
    """The content of a stream batch as hashed in its receipt: each event's deterministic wire form."""
    return [e.SerializeToString(deterministic=True) for e in batch.events]

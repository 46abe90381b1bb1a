"""The hub's acknowledgement files (``ack/<agency>.json``), optionally signed.

The hub writes one after importing bundles; the node reads it to learn up
to which of its events the hub holds (docs/bundles.md).  With a hub key the
file carries ``key_id`` and ``signature``: an Ed25519 signature of
``SIGNED_PREFIX`` + the compact, key-sorted JSON of every other field.  A
node given the hub's public key accepts only acknowledgements that verify.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange.transport.offline.bundles import key_id

FORMAT = 1
SIGNED_PREFIX = b"exchange-ack-v1\n"


def make_ack(agency: str, position: int, key: Ed25519PrivateKey | None = None) -> bytes:
    """The acknowledgement file's bytes, signed when ``key`` is given."""
    ack: dict = {"format": FORMAT, "agency": agency, "position": position,
                 "hub_time": datetime.now(timezone.utc).isoformat()}
    if key is not None:
        ack["key_id"] = key_id(key.public_key())
        ack["signature"] = base64.b64encode(key.sign(SIGNED_PREFIX + _signed_part(ack))).decode()
    return json.dumps(ack).encode() + b"\n"


def read_ack(data: bytes, agency: str, hub_key: Ed25519PublicKey | None = None) -> int:
    """The position in an acknowledgement for ``agency``; with ``hub_key``, only if signed by it.

    Raises ValueError saying what is wrong."""
    try:
        ack = json.loads(data)
        position = ack["position"]
        if ack["agency"] != agency or not isinstance(position, int) or isinstance(position, bool):
            raise ValueError(f"it is for agency {ack['agency']!r}, position {position!r}")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not a valid acknowledgement for agency {agency}: {e}") from None
    if hub_key is not None:
        signature = ack.pop("signature", None)
        if not isinstance(signature, str):
            raise ValueError("it is not signed, and [bundles] hub_key requires signed acknowledgements")
        if ack.get("key_id") != key_id(hub_key):
            raise ValueError(f"it is signed with key {ack.get('key_id')!r}, not with [bundles] hub_key ({key_id(hub_key)})")
        try:
            hub_key.verify(base64.b64decode(signature, validate=True), SIGNED_PREFIX + _signed_part(ack))
        except (InvalidSignature, ValueError):
            raise ValueError("its signature does not verify: it was altered or forged") from None
    return position


def _signed_part(ack: dict) -> bytes:
    return json.dumps(ack, sort_keys=True, separators=(",", ":")).encode()

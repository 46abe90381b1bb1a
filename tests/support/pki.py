"""A test CA made with ``exchange ca``, and raw gRPC clients holding its certificates.

``PKI(directory)`` runs ``exchange ca init``; ``pki.issue(role, name)``
issues a certificate and returns its ``[tls]`` settings; ``pki.hub_tls()``
the hub's settings (with the CRL); ``client(address, tls)`` a channel that
presents a certificate (or none, ``tls=None``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

import grpc

from exchange.common.config import from_values
from exchange.tools import ca
from exchange.transport.rpc.channel import CLIENT_SETTINGS, open_channel
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

EXCHANGE = [sys.executable, "-m", "exchange"]


def run_exchange(*args: str) -> dict[str, Any]:
    """``exchange ARGS`` (must exit 0); its JSON output."""
    result = subprocess.run([*EXCHANGE, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class PKI:
    """A CA in ``directory/ca``; certificates go to ``directory/certs``."""

    def __init__(self, directory: Path, name: str = "Test exchange CA"):
        self.dir = directory / "ca"
        self.certs = directory / "certs"
        run_exchange("ca", "init", "--dir", str(self.dir), "--name", name)

    @property
    def crl(self) -> str:
        return str(self.dir / "crl.pem")

    def issue(self, role: str, name: str, **options: Any) -> dict[str, str]:
        """Issue a certificate (exchange.tools.ca.issue options); its ``[tls]`` settings plus ``serial``."""
        report = ca.issue(self.dir, role, name, out=self.certs, **options)
        return {"ca": report["ca"], "cert": report["cert"], "key": report["key"], "serial": report["serial"]}

    def hub_tls(self, name: str = "hub") -> dict[str, str]:
        settings = self.issue("hub", name)
        settings.pop("serial")
        return {**settings, "crl": self.crl}

    def revoke(self, *args: str) -> dict[str, Any]:
        return run_exchange("ca", "revoke", "--dir", str(self.dir), *args)


def tls_settings(tls: Mapping[str, str]) -> dict[str, str]:
    """The ``[tls]`` section of a config (without the serial)."""
    return {k: v for k, v in tls.items() if k in ("ca", "cert", "key")}


def client(address: str, tls: Mapping[str, str] | None) -> grpc.Channel:
    """A channel to ``address`` presenting the certificate in ``tls`` (plain gRPC when None)."""
    if tls is None:
        return grpc.insecure_channel(address)
    return open_channel(address, from_values(CLIENT_SETTINGS, {f"tls.{k}": v for k, v in tls_settings(tls).items()}))


def events(count: int, start: int = 1, record: uuid.UUID | None = None) -> list[pb.Event]:
    """``count`` wire events of one new record, versions 1..count, notification ids from ``start``."""
    record = record or uuid.uuid4()
    return [pb.Event(notification_id=start + i, originator_id=str(record), originator_version=i + 1,
                     topic="exchange.record:Created", state=b'{"agency": "test"}') for i in range(count)]


def publish(channel: grpc.Channel, agency: str, batches: Iterable[pb.EventBatch], timeout: float = 20):
    """Open a publish stream as ``agency``, send ``batches``; the hub's answers (raises grpc.RpcError)."""
    requests = [pb.PublishRequest(hello=pb.Hello(agency=agency, node_version="test"))]
    requests += [pb.PublishRequest(batch=b) for b in batches]
    return list(pb_grpc.ExchangeStub(channel).Publish(iter(requests), timeout=timeout))


def subscribe_first(channel: grpc.Channel, agency: str, timeout: float = 5, *, consumer: str = "",
                    resource: str = "") -> pb.EventBatch | None:
    """The first batch a subscription to ``agency`` delivers (None when the agency's log is empty);
    ``consumer`` and ``resource`` as another agency's subscription states them."""
    request = pb.SubscribeRequest(agency=agency, after=0, consumer=consumer, resource=resource, purpose="checks")
    stream = pb_grpc.ExchangeStub(channel).Subscribe(request, timeout=timeout)
    try:
        return next(stream)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return None
        raise
    finally:
        stream.cancel()


def get_position(channel: grpc.Channel, agency: str, timeout: float = 5) -> pb.Position:
    return pb_grpc.ExchangeStub(channel).GetPosition(pb.PositionRequest(agency=agency), timeout=timeout)

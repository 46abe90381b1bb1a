"""Who is calling: the agency (or administrator) behind a gRPC call.

Every servicer asks here instead of trusting a name in the message, so the
rule "identity from the client certificate, never from the message" lives
in one place.  The TLS handshake has already checked the certificate's
chain and validity period; here its revocation, expiry (streams outlive
handshakes) and role are checked, and refusals are logged (and audited when
an audit log is configured).  Deny by default: a certificate without a role
this hub knows may do nothing but health checks.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import grpc

from exchange.transport.rpc.tls import (
    ROLE_ADMIN,
    ROLE_AGENCY,
    ROLE_HUB,
    ROLE_REVIEWER,
    Peer,
    RevocationList,
    peer_from_pem,
)
from hub.metrics import METRICS as metrics

log = logging.getLogger(__name__)

_secure = False
_revocations: RevocationList | None = None
_audit: Any = None  # an object with record(action, actor, **details), e.g. hub.audit.AuditLog


def configure(*, secure: bool, revocations: RevocationList | None = None, audit: Any = None) -> None:
    """How this process serves: ``secure`` (mutual TLS: a call without a client
    certificate is refused, never trusted), the revocation list every call is
    checked against, and where refusals are audited."""
    global _secure, _revocations, _audit
    _secure, _revocations, _audit = secure, revocations, audit


def peer(context: grpc.ServicerContext) -> Peer | None:
    """The verified, unrevoked certificate identity of the caller; None on an insecure hub.

    Aborts the call with UNAUTHENTICATED when the certificate is revoked or expired."""
    properties = context.auth_context()
    pems = properties.get("x509_pem_cert") if properties.get("transport_security_type") == [b"ssl"] else None
    if not pems:
        if not _secure:
            return None
        # gRPC already requires a client certificate on a TLS port; this is defence in depth.
        _deny(context, grpc.StatusCode.UNAUTHENTICATED, None, "no client certificate was presented")
    proven = peer_from_pem(pems[0])
    if datetime.now(timezone.utc) > proven.not_after:
        _deny(context, grpc.StatusCode.UNAUTHENTICATED, proven,
              f"the client certificate of {proven.name} (serial {proven.serial_hex}) expired at "
              f"{proven.not_after.isoformat()}")
    if _revocations is not None and _revocations.is_revoked(proven.serial):
        _deny(context, grpc.StatusCode.UNAUTHENTICATED, proven,
              f"the client certificate of {proven.name} (serial {proven.serial_hex}) has been revoked")
    return proven


def caller(context: grpc.ServicerContext) -> str | None:
    """The identity proven by the peer's client certificate; None when the hub serves without TLS."""
    proven = peer(context)
    return proven.name if proven else None


def acting_agency(context: grpc.ServicerContext, claimed: str) -> str:
    """The agency a call acts for: the certificate's; the message's claim only on an insecure hub.

    Aborts the call with PERMISSION_DENIED when the certificate is not an
    agency's or names another agency than the message claims."""
    proven = peer(context)
    if proven is None:
        return claimed
    if proven.role != ROLE_AGENCY:
        _deny(context, grpc.StatusCode.PERMISSION_DENIED, proven,
              f"the certificate of {proven.name} is for the role {proven.role or '(none)'}; only an agency's "
              "certificate may act for an agency")
    if claimed and claimed != proven.name:
        _deny(context, grpc.StatusCode.PERMISSION_DENIED, proven,
              f"the client certificate belongs to {proven.name}, not to {claimed}")
    return proven.name


def publishing_agency(context: grpc.ServicerContext, claimed: str, downstream: Mapping[str, frozenset[str]]) -> str:
    """The agency whose log a Publish stream carries: as ``acting_agency``, or, for a district hub's
    certificate (role hub), the claimed agency when ``downstream`` ([federation] downstream) lists it
    for that hub.  Aborts the call with PERMISSION_DENIED naming the hub and the agency otherwise."""
    proven = peer(context)
    if proven is None or proven.role != ROLE_HUB:
        return acting_agency(context, claimed)
    if claimed not in downstream.get(proven.name, frozenset()):
        listed = ", ".join(sorted(downstream.get(proven.name, ()))) or "none"
        _deny(context, grpc.StatusCode.PERMISSION_DENIED, proven,
              f"hub {proven.name} may not publish agency {claimed or '(none named)'}: [federation] downstream "
              f"lists for hub {proven.name} {listed}")
    return claimed


def require_admin(context: grpc.ServicerContext, administrators: frozenset[str] | set[str]) -> str:
    """The administrator making an administrative call (catalog review, request decisions, coordination).

    With TLS the certificate must be an administrator's and its identity
    listed in ``administrators`` ([security] administrators); on an insecure
    (loopback-only) hub the local operator is trusted."""
    proven = peer(context)
    if proven is None:
        return "local-operator"
    if proven.role != ROLE_ADMIN or proven.name not in administrators:
        _deny(context, grpc.StatusCode.PERMISSION_DENIED, proven,
              f"{proven.name} is not a hub administrator (an administrator certificate listed in "
              "[security] administrators is needed)")
    return proven.name


def require_reviewer(context: grpc.ServicerContext, agency: str, designated: Callable[[str], bool]) -> str:
    """The designated reviewer of ``agency`` making a review call (Arts. 10, 19).

    With TLS the certificate must be a reviewer's whose name ``designated``
    accepts (the agency registry lists it for ``agency``); on an insecure
    hub the local operator is trusted."""
    proven = peer(context)
    if proven is None:
        return "local-operator"
    if proven.role != ROLE_REVIEWER or not designated(proven.name):
        _deny(context, grpc.StatusCode.PERMISSION_DENIED, proven,
              f"{proven.name} ({proven.role or 'no role'}) is not a designated reviewer of agency {agency}: the "
              "providing agency's reviewers (a reviewer certificate named in its registry record) review its "
              "entries; hub administrators publish or return them")
    return proven.name


def require_reader(context: grpc.ServicerContext, administrators: frozenset[str] | set[str]) -> str | None:
    """The caller of a read-only call (catalog reads): any agency or reviewer, or an administrator as in ``require_admin``.

    None on an insecure hub; any other certificate (e.g. a hub's) is refused with PERMISSION_DENIED."""
    proven = peer(context)
    if proven is None:
        return None
    if proven.role in (ROLE_AGENCY, ROLE_REVIEWER) or (proven.role == ROLE_ADMIN and proven.name in administrators):
        return proven.name
    _deny(context, grpc.StatusCode.PERMISSION_DENIED, proven,
          f"the certificate of {proven.name} is for the role {proven.role or '(none)'}; only an agency's, a reviewer's "
          "or a listed administrator's certificate may read the catalog")


def _deny(context: grpc.ServicerContext, code: grpc.StatusCode, proven: Peer | None, message: str):
    """Log, count and audit the refusal, then end the call (raises)."""
    who = proven.name if proven else "unknown"
    details = {"peer": context.peer(), "code": code.name, "reason": message}
    if proven is not None:
        details["serial"] = proven.serial_hex
    log.warning("refused %s: %s", context.peer(), message, extra={"identity": who, **details})
    metrics.errors.labels("unauthenticated" if code == grpc.StatusCode.UNAUTHENTICATED else "permission_denied").inc()
    if _audit is not None:
        _audit.record("access.refused", who, **details)
    context.abort(code, message)


class CertificateCheck(grpc.ServerInterceptor):
    """Checks the caller's certificate (revocation, expiry) before any servicer runs, for every service."""

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        for kind, wrap in _HANDLER_KINDS.items():
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                return wrap(_checked(behaviour), request_deserializer=handler.request_deserializer,
                            response_serializer=handler.response_serializer)
        return handler


def _checked(behaviour: Callable) -> Callable:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        peer(context)
        return behaviour(request, context)
    return call


_HANDLER_KINDS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}

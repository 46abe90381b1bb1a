"""Who is calling: the agency (or administrator) behind a gRPC call.

Every servicer asks here instead of trusting a name in the message, so the
rule "identity from the client certificate, never from the message" lives
in one place.
"""

from __future__ import annotations

import grpc


def caller(context: grpc.ServicerContext) -> str | None:
    """The identity proven by the peer's client certificate; None when the hub serves without TLS."""
    properties = context.auth_context()
    if not properties.get("transport_security_type"):
        return None
    names = properties.get("x509_common_name") or []
    return names[0].decode() if names else None


def acting_agency(context: grpc.ServicerContext, claimed: str) -> str:
    """The agency a call acts for: the certificate's; the message's claim only on an insecure hub.

    Aborts the call with PERMISSION_DENIED when a certificate names someone else."""
    proven = caller(context)
    if proven is None:
        return claimed
    if claimed and claimed != proven:
        context.abort(grpc.StatusCode.PERMISSION_DENIED,
                      f"the client certificate belongs to {proven}, not to {claimed}")
    return proven


def require_admin(context: grpc.ServicerContext, administrators: frozenset[str] | set[str]) -> str:
    """The administrator making an administrative call (catalog review, request decisions, coordination).

    With TLS the certificate's identity must be listed in ``administrators``;
    on an insecure (loopback-only) hub the local operator is trusted."""
    proven = caller(context)
    if proven is None:
        return "local-operator"
    if proven not in administrators:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{proven} is not a hub administrator")
    return proven

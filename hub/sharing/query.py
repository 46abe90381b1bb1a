"""The ``exchange.v1.Query`` gRPC service: lookup and browse (Art. 16) within the caller's entitlement.

An entitled agency reads one record by its key, or pages through the rows
matching a filter, from the hub's current-state table (current.py) instead
of replicating the whole resource.  Every answer is cut to the entitled
data items (record keys always go with them) and to the approved row
filter, is recorded as a delivery (mode ``query``) with what was asked,
and a query outside the entitlement (no approval, another purpose, a
filter naming items not granted) ends with PERMISSION_DENIED, audited.
A browse looks at no more than ``SCAN_BUDGET`` rows per call; its page
token then continues where it stopped, so every call is bounded.
"""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal
from typing import Any

import grpc

from exchange.contracts.agency import InvalidAgency, check_agency
from hub.identity import acting_agency
from hub.sharing.current import CurrentState, key_text
from hub.sharing.ledger import Entitlement, NotEntitled, SharingLedger
from hub.sharing.scope import BadFilter, Filter, optional, plain_value
from hub.sharing.subscription import refuse
from protos.exchange.v1 import query_pb2 as pb
from protos.exchange.v1 import query_pb2_grpc as pb_grpc

PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
SCAN_BUDGET = 20_000


class QueryServicer(pb_grpc.QueryServicer):
    """Answers Find from a CurrentState, checking every call against the SharingLedger."""

    def __init__(self, ledger: SharingLedger, current: CurrentState, scan_budget: int = SCAN_BUDGET):
        self.ledger, self.current, self.scan_budget = ledger, current, scan_budget

    def Find(self, request: pb.QueryRequest, context: grpc.ServicerContext) -> pb.QueryPage:
        consumer = _check(acting_agency(context, request.agency), context)
        provider, resource = _check(request.provider, context), request.resource
        if not resource:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name the resource to query")
        try:
            granted = self.ledger.entitlement(consumer, provider, resource)
        except NotEntitled as e:
            refuse(self.ledger, consumer, provider, resource, str(e), context)
        purpose = self._purpose(granted, request.purpose, context)
        where = self._where(granted, request.where, context)
        page_size = request.page_size or PAGE_SIZE
        if page_size > MAX_PAGE_SIZE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page_size: at most {MAX_PAGE_SIZE}, got {page_size}")
        position = self.current.position(provider)
        if request.key:
            rows, token, scanned = self._lookup(granted, request, where, context)
        else:
            rows, token, scanned = self._browse(granted, where, page_size, request.page_token, context)
        asked: dict[str, Any] = {"where": where.text if where else "", "rows": len(rows)}
        if request.key:
            asked["key"] = {part.item: part.value for part in request.key}
        else:
            asked["page_token"] = request.page_token
        self.ledger.record_delivery(granted, purpose=purpose, events=len(rows), after=position, reached=position,
                                    mode="query", query=asked)
        items = sorted(granted.items)
        return pb.QueryPage(rows=[pb.QueryRow(row=_json(_cut(key, row, granted.items)), version=version)
                                  for version, key, row in rows],
                            next_page_token=token, items=items, rows_filter=granted.rows_text, position=position,
                            scanned=scanned, purpose=purpose)

    def _purpose(self, granted: Entitlement, stated: str, context: grpc.ServicerContext) -> str:
        approved = [p for p in granted.purpose.split("; ") if p]
        if approved and stated and stated not in approved:
            refuse(self.ledger, granted.consumer, granted.provider, granted.resource,
                   f"{granted.provider}/{granted.resource} is approved for the purpose {granted.purpose!r}, "
                   f"not {stated!r}", context)
        purpose = stated or granted.purpose
        if not purpose:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"state the purpose of querying {granted.provider}/{granted.resource} "
                          "(Art. 17: deliveries are recorded with it)")
        return purpose

    def _where(self, granted: Entitlement, text: str, context: grpc.ServicerContext) -> Filter | None:
        try:
            where = optional(text)
        except BadFilter as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if where is not None and not where.items <= granted.items:
            refuse(self.ledger, granted.consumer, granted.provider, granted.resource,
                   f"the filter names {', '.join(sorted(where.items - granted.items))}, not among the data items "
                   f"granted ({', '.join(sorted(granted.items))})", context)
        return where

    def _lookup(self, granted: Entitlement, request: pb.QueryRequest, where: Filter | None,
                context: grpc.ServicerContext) -> tuple[list, str, int]:
        key = {}
        for part in request.key:
            if not part.item or part.item in key:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"key: each key column once, by name ({part.item!r} is empty or repeated)")
            key[part.item] = part.value
        if request.page_token:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a key lookup answers one record: no page_token")
        held = self.current.get(granted.provider, granted.resource, key_text(key))
        if held is None or not _visible(granted, where, held[2]):
            return [], "", int(held is not None)
        return [held], "", 1

    def _browse(self, granted: Entitlement, where: Filter | None, page_size: int, token: str,
                context: grpc.ServicerContext) -> tuple[list, str, int]:
        after = _read_token(token, context)
        found: list = []
        scanned = 0
        while len(found) < page_size and scanned < self.scan_budget:
            chunk = self.current.scan(granted.provider, granted.resource, after,
                                      min(max(page_size, 500), self.scan_budget - scanned))
            if not chunk:
                return found, "", scanned
            for record_key, version, key, row in chunk:
                scanned += 1
                after = record_key
                if _visible(granted, where, row):
                    found.append((version, key, row))
                    if len(found) == page_size:
                        break
        return found, _token(after), scanned


def _visible(granted: Entitlement, where: Filter | None, row: dict[str, Any]) -> bool:
    return (granted.rows is None or granted.rows.matches(row)) and (where is None or where.matches(row))


def _cut(key: dict[str, Any], row: dict[str, Any], items: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k in items or k in key}


def _json(row: dict[str, Any]) -> bytes:
    plain = {k: plain_value(v) for k, v in row.items()}
    return json.dumps({k: str(v) if isinstance(v, Decimal) else v for k, v in plain.items()},
                      ensure_ascii=False, separators=(",", ":")).encode()


def _token(record_key: str) -> str:
    return base64.urlsafe_b64encode(record_key.encode()).decode()


def _read_token(token: str, context: grpc.ServicerContext) -> str:
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode() if token else ""
    except (binascii.Error, ValueError):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page_token {token[:40]!r} is not one this hub gave")


def _check(agency: str, context: grpc.ServicerContext) -> str:
    try:
        return check_agency(agency)
    except InvalidAgency as e:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))

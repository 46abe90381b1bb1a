"""The ``exchange.v1.Sharing`` gRPC service: share requests, agreements, lists and the report."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

import grpc

from exchange.contracts.agency import InvalidAgency, check_agency
from hub.identity import acting_agency, require_admin
from hub.sharing.ledger import SharingLedger
from hub.sharing.requests import STATUSES, ShareRequest, WorkflowError
from hub.sharing.scope import BadFilter
from hub.workdays import CalendarUnknown
from protos.exchange.v1 import sharing_pb2 as pb
from protos.exchange.v1 import sharing_pb2_grpc as pb_grpc


class SharingServicer(pb_grpc.SharingServicer):
    """Thin gRPC layer over a SharingLedger: identities from hub.identity, errors as status codes."""

    def __init__(self, ledger: SharingLedger, administrators: frozenset[str]):
        self.ledger = ledger
        self.administrators = administrators

    def Request(self, request: pb.ShareRequestCreate, context: grpc.ServicerContext) -> pb.ShareRequestInfo:
        requester = self._agency(request.agency, context)
        return self._call(context, lambda: self.ledger.request(
            requester, _check(request.provider, context), request.resource, scope=request.scope,
            purpose=request.purpose, items=list(request.items), rows=request.rows))

    def Answer(self, request: pb.ShareAnswer, context: grpc.ServicerContext) -> pb.ShareRequestInfo:
        provider = self._agency(request.agency, context)
        if request.approve:
            expires = _time(request.expires, context)
            return self._call(context, lambda: self.ledger.approve(
                request.request_id, provider, items=list(request.items), expires=expires, note=request.reasons,
                rows=request.rows))
        return self._call(context, lambda: self.ledger.reject(request.request_id, provider, reasons=request.reasons))

    def Dispute(self, request: pb.ShareDispute, context: grpc.ServicerContext) -> pb.ShareRequestInfo:
        requester = self._agency(request.agency, context)
        return self._call(context, lambda: self.ledger.dispute(request.request_id, requester, grounds=request.grounds))

    def Decide(self, request: pb.ShareAnswer, context: grpc.ServicerContext) -> pb.ShareRequestInfo:
        office = require_admin(context, self.administrators)
        expires = _time(request.expires, context)
        return self._call(context, lambda: self.ledger.decide(
            request.request_id, office, approve=request.approve, items=list(request.items), expires=expires,
            reasons=request.reasons, rows=request.rows))

    def Revoke(self, request: pb.ShareRevoke, context: grpc.ServicerContext) -> pb.ShareRequestInfo:
        if request.agency:
            actor, admin = self._agency(request.agency, context), False
        else:
            actor, admin = require_admin(context, self.administrators), True
        return self._call(context, lambda: self.ledger.revoke(request.request_id, actor, reason=request.reason,
                                                              admin=admin))

    def RecordAgreement(self, request: pb.SecrecyAgreement, context: grpc.ServicerContext) -> pb.SecrecyAgreement:
        provider = self._agency(request.agency, context)
        consumer = _check(request.consumer, context)
        try:
            recorded = self.ledger.record_agreement(provider, provider, consumer, request.resource, request.reference)
        except WorkflowError as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        return pb.SecrecyAgreement(agency=provider, consumer=consumer, resource=recorded["resource"],
                                   reference=recorded["reference"], recorded_at=recorded["at"])

    def List(self, request: pb.ShareListRequest, context: grpc.ServicerContext) -> pb.ShareRequestList:
        if request.agency:
            agency = self._agency(request.agency, context)
        else:
            require_admin(context, self.administrators)
            agency = None
        if request.status and request.status not in STATUSES:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"unknown status {request.status!r}: one of {', '.join(STATUSES)}")
        found = self.ledger.list(agency, request.status or None)
        return pb.ShareRequestList(requests=[_info_from_dict(d) for d in found])

    def Report(self, request: pb.ShareReportRequest, context: grpc.ServicerContext) -> pb.ShareReport:
        require_admin(context, self.administrators)
        try:
            return report_message(self.ledger, _time(request.at, context))
        except CalendarUnknown as e:  # working days late counted into a year [calendar] does not cover yet
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))

    def _agency(self, claimed: str, context: grpc.ServicerContext) -> str:
        return _check(acting_agency(context, claimed), context)

    def _call(self, context: grpc.ServicerContext, step) -> pb.ShareRequestInfo:
        try:
            result: ShareRequest = step()
        except (WorkflowError, CalendarUnknown) as e:  # e.g. a deadline in a year [calendar] does not cover yet
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except BadFilter as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        answer = info(result, self.ledger.clock())
        answer.waiting_for.extend(self.ledger.waiting_for(result))
        return answer


def report_message(ledger: SharingLedger, at: datetime | None = None) -> pb.ShareReport:
    """The late-answers and deliveries report (as of ``at``, default now) as a message."""
    report = ledger.report(at)
    delivered: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in ledger.deliveries():
        delivered[record["provider"]][record["consumer"]] += record["events"]
    providers = []
    for agency in sorted(set(report["providers"]) | set(delivered)):
        row = report["providers"].get(agency, {})
        listed = [ledger.get(r["id"]).to_dict(at or ledger.clock()) for r in row.get("late", []) + row.get("overdue_requests", [])]
        providers.append(pb.ProviderReport(
            agency=agency, requests=row.get("requests", 0), answered=row.get("answered", 0),
            answered_late=row.get("answered_late", 0), overdue=row.get("overdue", 0),
            late_or_overdue=[_info_from_dict(d) for d in listed], delivered=dict(delivered.get(agency, {}))))
    return pb.ShareReport(at=report["at"], providers=providers)


def info(request: ShareRequest, now: datetime) -> pb.ShareRequestInfo:
    return _info_from_dict(request.to_dict(now))


def _info_from_dict(d: dict[str, Any]) -> pb.ShareRequestInfo:
    fields = {k: (v or "") if k in ("expires", "answered_at") else v for k, v in d.items() if k != "history"}
    return pb.ShareRequestInfo(**fields, history=[pb.ShareStep(**step) for step in d["history"]])


def _check(agency: str, context: grpc.ServicerContext) -> str:
    try:
        return check_agency(agency)
    except InvalidAgency as e:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))


def _time(text: str, context: grpc.ServicerContext) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not an ISO-8601 time: {text!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

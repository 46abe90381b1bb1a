"""The hub's catalog API: the ``exchange.v1.Catalog`` gRPC service."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from functools import wraps
from typing import Callable

import grpc

from hub import identity
from hub.catalog import dcat, reports, wire
from hub.catalog.catalog import Catalog
from hub.catalog.entry import UnknownEntry, WorkflowError
from hub.catalog.metadata import InvalidEntry
from hub.registry.agencies import Registry
from protos.exchange.v1 import catalog_pb2 as pb
from protos.exchange.v1 import catalog_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


def _answers(method):
    """Turn catalog errors into gRPC status codes that carry their message."""

    @wraps(method)
    def call(self, request, context: grpc.ServicerContext):
        try:
            return method(self, request, context)
        except InvalidEntry as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except UnknownEntry as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        except WorkflowError as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except ValueError as e:  # e.g. a year the working-day calendar does not know
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))

    return call


class CatalogServicer(pb_grpc.CatalogServicer):
    """Compiling, reviewing, reading and reporting on the catalog over gRPC.

    ``sync`` gives an agency's newest source commit time at the hub (for
    freshness); ``late_answers`` the share requests it answered late.
    With a ``registry`` in force, entries of unregistered agencies and
    provider codes not the agency's are refused, and reviews are the
    providing agency's designated reviewers' (hub/registry/agencies.py)."""

    def __init__(self, catalog: Catalog, administrators: frozenset[str] = frozenset(),
                 sync: Callable[[str], float | None] | None = None,
                 late_answers: Callable[[str], int] | None = None, dcat_base: str = dcat.DEFAULT_BASE,
                 registry: Registry | None = None):
        self.catalog = catalog
        self.registry = registry
        self.administrators = frozenset(administrators)
        self.sync = sync
        self.late_answers = late_answers
        self.dcat_base = dcat_base

    def _entry(self, entry) -> pb.Entry:
        return wire.entry_to_pb(entry, self.catalog.calendar)

    @_answers
    def SaveEntry(self, request: pb.SaveEntryRequest, context):
        content = wire.content_from_pb(request.content)
        agency = identity.acting_agency(context, content["agency"])
        if self.registry is not None:
            self.registry.check_entry(agency, content["provider_uscc"])
        return self._entry(self.catalog.edit(agency, content, submit=request.submit))

    @_answers
    def Submit(self, request: pb.EntryRef, context):
        identity.acting_agency(context, "")  # only an agency may submit: said before anything about the entry
        entry = self._existing(request.code)
        agency = identity.acting_agency(context, entry.agency)
        return self._entry(self.catalog.submit(agency, request.code))

    @_answers
    def RecordSecrecyReview(self, request: pb.SecrecyReviewRequest, context):
        actor = self._reviewer(context, request.code)
        return self._entry(self.catalog.record_secrecy_review(request.code, actor, request.cleared,
                                                              list(request.sensitivity), request.note))

    @_answers
    def ReviewItems(self, request: pb.ReviewItemsRequest, context):
        actor = self._reviewer(context, request.code)
        decisions = {}
        for d in request.decisions:
            if not d.accepted and not d.reason.strip():
                raise WorkflowError(f"data item {d.item} is not accepted: say why")
            decisions[d.item] = "" if d.accepted else d.reason
        return self._entry(self.catalog.review_items(request.code, actor, decisions))

    @_answers
    def Publish(self, request: pb.EntryRef, context):
        actor = identity.require_admin(context, self.administrators)
        return self._entry(self.catalog.publish(request.code, actor))

    @_answers
    def Return(self, request: pb.ReturnRequest, context):
        actor = identity.require_admin(context, self.administrators)
        return self._entry(self.catalog.return_entry(request.code, actor, list(request.reasons)))

    @_answers
    def RecordFullReview(self, request: pb.FullReviewRequest, context):
        actor = identity.require_admin(context, self.administrators)
        return self._entry(self.catalog.record_full_review(request.code, actor, request.note))

    @_answers
    def GetEntry(self, request: pb.EntryRef, context):
        identity.require_reader(context, self.administrators)
        return self._entry(self._existing(request.code))

    @_answers
    def ListEntries(self, request: pb.ListRequest, context):
        identity.require_reader(context, self.administrators)
        entries = self.catalog.entries(agency=request.agency or None, status=request.status or None)
        return pb.EntryList(entries=[self._entry(e) for e in entries])

    @_answers
    def GetHistory(self, request: pb.EntryRef, context):
        identity.require_reader(context, self.administrators)
        return pb.History(events=[wire.event_to_pb(e) for e in self.catalog.history(request.code)])

    @_answers
    def GetReport(self, request: pb.ReportRequest, context):
        identity.require_reader(context, self.administrators)
        at = _time(request.at) if request.at else datetime.now(timezone.utc)
        return wire.report_to_pb(
            at.isoformat(), reports.overdue(self.catalog, at), reports.one_datum_one_source(self.catalog),
            reports.evaluation(self.catalog, at, sync=self.sync, late_answers=self.late_answers))

    @_answers
    def ExportDcat(self, request: pb.DcatRequest, context):
        identity.require_reader(context, self.administrators)
        document = dcat.export(self.catalog, self.dcat_base)
        return pb.DcatDocument(json_ld=json.dumps(document, ensure_ascii=False, indent=2))

    def _reviewer(self, context, code: str) -> str:
        """Who may review entry ``code``: its agency's designated reviewers while the registry is in force,
        else (no agency registered) a hub administrator."""
        if self.registry is None or not self.registry.in_force():
            return identity.require_admin(context, self.administrators)
        identity.require_reader(context, self.administrators)  # no role at all: refused before the entry is named
        agency = self._existing(code).agency
        registry = self.registry
        return identity.require_reviewer(context, agency, lambda name: registry.is_reviewer(name, agency))

    def _existing(self, code: str):
        entry = self.catalog.get(code)
        if entry is None:
            raise UnknownEntry(f"no catalog entry has code {code}")
        return entry


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

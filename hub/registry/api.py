"""The ``exchange.v1.Registry`` gRPC service: hub administrators manage the agency registry; agencies read it."""

from __future__ import annotations

from typing import Any

import grpc

from hub import identity
from hub.registry.agencies import NotRegistered, Registry, RegistryError
from protos.exchange.v1 import catalog_pb2 as pb
from protos.exchange.v1 import catalog_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Registry"].full_name


def record_to_pb(record: dict[str, Any]) -> pb.AgencyRecord:
    return pb.AgencyRecord(**record)


def record_from_pb(message: pb.AgencyRecord) -> dict[str, Any]:
    """The dict form of a record message (as ``exchange registry`` prints it and ``exchange ca issue`` reads it)."""
    return {"agency": message.agency, "uscc": message.uscc, "name": message.name, "parent": message.parent,
            "district": message.district, "administrators": list(message.administrators),
            "reviewers": list(message.reviewers), "version": message.version, "updated_at": message.updated_at,
            "updated_by": message.updated_by}


class RegistryServicer(pb_grpc.RegistryServicer):
    def __init__(self, registry: Registry, administrators: frozenset[str]):
        self.registry = registry
        self.administrators = administrators

    def SaveAgency(self, request: pb.SaveAgencyRequest, context: grpc.ServicerContext) -> pb.AgencyRecord:
        actor = identity.require_admin(context, self.administrators)
        try:
            saved = self.registry.save(record_from_pb(request.record), actor, create=request.create)
        except NotRegistered as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        except RegistryError as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        return record_to_pb(saved)

    def GetAgency(self, request: pb.AgencyRef, context: grpc.ServicerContext) -> pb.AgencyRecord:
        identity.require_reader(context, self.administrators)
        found = self.registry.get(request.agency)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"agency {request.agency} is not registered")
        return record_to_pb(found)

    def ListAgencies(self, request: pb.AgencyRef, context: grpc.ServicerContext) -> pb.AgencyList:
        identity.require_reader(context, self.administrators)
        return pb.AgencyList(agencies=[record_to_pb(r) for r in self.registry.agencies()])

from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShareRequestCreate(_message.Message):
    __slots__ = ("agency", "provider", "resource", "scope", "purpose", "items", "rows")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    agency: str
    provider: str
    resource: str
    scope: str
    purpose: str
    items: _containers.RepeatedScalarFieldContainer[str]
    rows: str
    def __init__(self, agency: _Optional[str] = ..., provider: _Optional[str] = ..., resource: _Optional[str] = ..., scope: _Optional[str] = ..., purpose: _Optional[str] = ..., items: _Optional[_Iterable[str]] = ..., rows: _Optional[str] = ...) -> None: ...

class ShareAnswer(_message.Message):
    __slots__ = ("agency", "request_id", "approve", "items", "expires", "reasons", "rows")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    agency: str
    request_id: str
    approve: bool
    items: _containers.RepeatedScalarFieldContainer[str]
    expires: str
    reasons: str
    rows: str
    def __init__(self, agency: _Optional[str] = ..., request_id: _Optional[str] = ..., approve: _Optional[bool] = ..., items: _Optional[_Iterable[str]] = ..., expires: _Optional[str] = ..., reasons: _Optional[str] = ..., rows: _Optional[str] = ...) -> None: ...

class ShareDispute(_message.Message):
    __slots__ = ("agency", "request_id", "grounds")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    GROUNDS_FIELD_NUMBER: _ClassVar[int]
    agency: str
    request_id: str
    grounds: str
    def __init__(self, agency: _Optional[str] = ..., request_id: _Optional[str] = ..., grounds: _Optional[str] = ...) -> None: ...

class ShareRevoke(_message.Message):
    __slots__ = ("agency", "request_id", "reason")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    agency: str
    request_id: str
    reason: str
    def __init__(self, agency: _Optional[str] = ..., request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SecrecyAgreement(_message.Message):
    __slots__ = ("agency", "consumer", "resource", "reference", "recorded_at")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    agency: str
    consumer: str
    resource: str
    reference: str
    recorded_at: str
    def __init__(self, agency: _Optional[str] = ..., consumer: _Optional[str] = ..., resource: _Optional[str] = ..., reference: _Optional[str] = ..., recorded_at: _Optional[str] = ...) -> None: ...

class ShareStep(_message.Message):
    __slots__ = ("step", "actor", "at")
    STEP_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    step: str
    actor: str
    at: str
    def __init__(self, step: _Optional[str] = ..., actor: _Optional[str] = ..., at: _Optional[str] = ...) -> None: ...

class ShareRequestInfo(_message.Message):
    __slots__ = ("id", "requester", "provider", "resource", "scope", "purpose", "items", "status", "approved_items", "requested_at", "deadline", "expires", "answered_at", "reasons", "grounds", "decided_by", "overdue", "late", "active", "history", "waiting_for", "rows", "approved_rows")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    APPROVED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_AT_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    GROUNDS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    APPROVED_ROWS_FIELD_NUMBER: _ClassVar[int]
    id: str
    requester: str
    provider: str
    resource: str
    scope: str
    purpose: str
    items: _containers.RepeatedScalarFieldContainer[str]
    status: str
    approved_items: _containers.RepeatedScalarFieldContainer[str]
    requested_at: str
    deadline: str
    expires: str
    answered_at: str
    reasons: str
    grounds: str
    decided_by: str
    overdue: bool
    late: bool
    active: bool
    history: _containers.RepeatedCompositeFieldContainer[ShareStep]
    waiting_for: _containers.RepeatedScalarFieldContainer[str]
    rows: str
    approved_rows: str
    def __init__(self, id: _Optional[str] = ..., requester: _Optional[str] = ..., provider: _Optional[str] = ..., resource: _Optional[str] = ..., scope: _Optional[str] = ..., purpose: _Optional[str] = ..., items: _Optional[_Iterable[str]] = ..., status: _Optional[str] = ..., approved_items: _Optional[_Iterable[str]] = ..., requested_at: _Optional[str] = ..., deadline: _Optional[str] = ..., expires: _Optional[str] = ..., answered_at: _Optional[str] = ..., reasons: _Optional[str] = ..., grounds: _Optional[str] = ..., decided_by: _Optional[str] = ..., overdue: _Optional[bool] = ..., late: _Optional[bool] = ..., active: _Optional[bool] = ..., history: _Optional[_Iterable[_Union[ShareStep, _Mapping]]] = ..., waiting_for: _Optional[_Iterable[str]] = ..., rows: _Optional[str] = ..., approved_rows: _Optional[str] = ...) -> None: ...

class ShareListRequest(_message.Message):
    __slots__ = ("agency", "status")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    agency: str
    status: str
    def __init__(self, agency: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class ShareRequestList(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ShareRequestInfo]
    def __init__(self, requests: _Optional[_Iterable[_Union[ShareRequestInfo, _Mapping]]] = ...) -> None: ...

class ShareReportRequest(_message.Message):
    __slots__ = ("at",)
    AT_FIELD_NUMBER: _ClassVar[int]
    at: str
    def __init__(self, at: _Optional[str] = ...) -> None: ...

class ProviderReport(_message.Message):
    __slots__ = ("agency", "requests", "answered", "answered_late", "overdue", "late_or_overdue", "delivered")
    class DeliveredEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_LATE_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    LATE_OR_OVERDUE_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    agency: str
    requests: int
    answered: int
    answered_late: int
    overdue: int
    late_or_overdue: _containers.RepeatedCompositeFieldContainer[ShareRequestInfo]
    delivered: _containers.ScalarMap[str, int]
    def __init__(self, agency: _Optional[str] = ..., requests: _Optional[int] = ..., answered: _Optional[int] = ..., answered_late: _Optional[int] = ..., overdue: _Optional[int] = ..., late_or_overdue: _Optional[_Iterable[_Union[ShareRequestInfo, _Mapping]]] = ..., delivered: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ShareReport(_message.Message):
    __slots__ = ("at", "providers")
    AT_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    at: str
    providers: _containers.RepeatedCompositeFieldContainer[ProviderReport]
    def __init__(self, at: _Optional[str] = ..., providers: _Optional[_Iterable[_Union[ProviderReport, _Mapping]]] = ...) -> None: ...

class DeliveryReceipt(_message.Message):
    __slots__ = ("payload", "signature")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    signature: bytes
    def __init__(self, payload: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ReceiptAck(_message.Message):
    __slots__ = ("receipt_id", "recorded")
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    receipt_id: str
    recorded: bool
    def __init__(self, receipt_id: _Optional[str] = ..., recorded: _Optional[bool] = ...) -> None: ...

class ReceiptQuery(_message.Message):
    __slots__ = ("provider", "consumer")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    provider: str
    consumer: str
    def __init__(self, provider: _Optional[str] = ..., consumer: _Optional[str] = ...) -> None: ...

class StoredReceipt(_message.Message):
    __slots__ = ("receipt_id", "payload", "signature", "certificate", "recorded_at")
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    receipt_id: str
    payload: bytes
    signature: bytes
    certificate: bytes
    recorded_at: str
    def __init__(self, receipt_id: _Optional[str] = ..., payload: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., certificate: _Optional[bytes] = ..., recorded_at: _Optional[str] = ...) -> None: ...

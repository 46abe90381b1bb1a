from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataItem(_message.Message):
    __slots__ = ("name", "type", "length", "element", "authoritative")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    ELEMENT_FIELD_NUMBER: _ClassVar[int]
    AUTHORITATIVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    length: int
    element: str
    authoritative: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., length: _Optional[int] = ..., element: _Optional[str] = ..., authoritative: _Optional[bool] = ...) -> None: ...

class EntryContent(_message.Message):
    __slots__ = ("code", "name", "agency", "provider", "provider_uscc", "resource", "summary", "format", "share_type", "share_condition", "not_shared_basis", "share_modes", "open_to_public", "open_condition", "update_cycle", "related", "items")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_USCC_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SHARE_TYPE_FIELD_NUMBER: _ClassVar[int]
    SHARE_CONDITION_FIELD_NUMBER: _ClassVar[int]
    NOT_SHARED_BASIS_FIELD_NUMBER: _ClassVar[int]
    SHARE_MODES_FIELD_NUMBER: _ClassVar[int]
    OPEN_TO_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    OPEN_CONDITION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_CYCLE_FIELD_NUMBER: _ClassVar[int]
    RELATED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    agency: str
    provider: str
    provider_uscc: str
    resource: str
    summary: str
    format: str
    share_type: int
    share_condition: str
    not_shared_basis: str
    share_modes: _containers.RepeatedScalarFieldContainer[str]
    open_to_public: bool
    open_condition: str
    update_cycle: str
    related: _containers.RepeatedScalarFieldContainer[str]
    items: _containers.RepeatedCompositeFieldContainer[DataItem]
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., agency: _Optional[str] = ..., provider: _Optional[str] = ..., provider_uscc: _Optional[str] = ..., resource: _Optional[str] = ..., summary: _Optional[str] = ..., format: _Optional[str] = ..., share_type: _Optional[int] = ..., share_condition: _Optional[str] = ..., not_shared_basis: _Optional[str] = ..., share_modes: _Optional[_Iterable[str]] = ..., open_to_public: _Optional[bool] = ..., open_condition: _Optional[str] = ..., update_cycle: _Optional[str] = ..., related: _Optional[_Iterable[str]] = ..., items: _Optional[_Iterable[_Union[DataItem, _Mapping]]] = ...) -> None: ...

class SecrecyReview(_message.Message):
    __slots__ = ("cleared", "sensitivity", "note", "reviewer")
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    cleared: bool
    sensitivity: _containers.RepeatedScalarFieldContainer[str]
    note: str
    reviewer: str
    def __init__(self, cleared: _Optional[bool] = ..., sensitivity: _Optional[_Iterable[str]] = ..., note: _Optional[str] = ..., reviewer: _Optional[str] = ...) -> None: ...

class ItemDecision(_message.Message):
    __slots__ = ("item", "accepted", "reason")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    item: str
    accepted: bool
    reason: str
    def __init__(self, item: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class SchemaFlag(_message.Message):
    __slots__ = ("changed_at", "due", "schema_version", "columns")
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    DUE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    changed_at: str
    due: str
    schema_version: int
    columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, changed_at: _Optional[str] = ..., due: _Optional[str] = ..., schema_version: _Optional[int] = ..., columns: _Optional[_Iterable[str]] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("code", "version", "status", "content", "published", "has_published", "publish_date", "submitted_at", "updated_at", "secrecy_review", "has_secrecy_review", "decisions", "return_reasons", "schema_flag", "has_schema_flag", "full_review_at")
    CODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    HAS_PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_DATE_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SECRECY_REVIEW_FIELD_NUMBER: _ClassVar[int]
    HAS_SECRECY_REVIEW_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    RETURN_REASONS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FLAG_FIELD_NUMBER: _ClassVar[int]
    HAS_SCHEMA_FLAG_FIELD_NUMBER: _ClassVar[int]
    FULL_REVIEW_AT_FIELD_NUMBER: _ClassVar[int]
    code: str
    version: int
    status: str
    content: EntryContent
    published: EntryContent
    has_published: bool
    publish_date: str
    submitted_at: str
    updated_at: str
    secrecy_review: SecrecyReview
    has_secrecy_review: bool
    decisions: _containers.RepeatedCompositeFieldContainer[ItemDecision]
    return_reasons: _containers.RepeatedScalarFieldContainer[str]
    schema_flag: SchemaFlag
    has_schema_flag: bool
    full_review_at: str
    def __init__(self, code: _Optional[str] = ..., version: _Optional[int] = ..., status: _Optional[str] = ..., content: _Optional[_Union[EntryContent, _Mapping]] = ..., published: _Optional[_Union[EntryContent, _Mapping]] = ..., has_published: _Optional[bool] = ..., publish_date: _Optional[str] = ..., submitted_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., secrecy_review: _Optional[_Union[SecrecyReview, _Mapping]] = ..., has_secrecy_review: _Optional[bool] = ..., decisions: _Optional[_Iterable[_Union[ItemDecision, _Mapping]]] = ..., return_reasons: _Optional[_Iterable[str]] = ..., schema_flag: _Optional[_Union[SchemaFlag, _Mapping]] = ..., has_schema_flag: _Optional[bool] = ..., full_review_at: _Optional[str] = ...) -> None: ...

class SaveEntryRequest(_message.Message):
    __slots__ = ("content", "submit")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_FIELD_NUMBER: _ClassVar[int]
    content: EntryContent
    submit: bool
    def __init__(self, content: _Optional[_Union[EntryContent, _Mapping]] = ..., submit: _Optional[bool] = ...) -> None: ...

class EntryRef(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class SecrecyReviewRequest(_message.Message):
    __slots__ = ("code", "cleared", "sensitivity", "note")
    CODE_FIELD_NUMBER: _ClassVar[int]
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    code: str
    cleared: bool
    sensitivity: _containers.RepeatedScalarFieldContainer[str]
    note: str
    def __init__(self, code: _Optional[str] = ..., cleared: _Optional[bool] = ..., sensitivity: _Optional[_Iterable[str]] = ..., note: _Optional[str] = ...) -> None: ...

class ReviewItemsRequest(_message.Message):
    __slots__ = ("code", "decisions")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    code: str
    decisions: _containers.RepeatedCompositeFieldContainer[ItemDecision]
    def __init__(self, code: _Optional[str] = ..., decisions: _Optional[_Iterable[_Union[ItemDecision, _Mapping]]] = ...) -> None: ...

class ReturnRequest(_message.Message):
    __slots__ = ("code", "reasons")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    code: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, code: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class FullReviewRequest(_message.Message):
    __slots__ = ("code", "note")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    code: str
    note: str
    def __init__(self, code: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("agency", "status")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    agency: str
    status: str
    def __init__(self, agency: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class EntryList(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    def __init__(self, entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ...) -> None: ...

class EntryEvent(_message.Message):
    __slots__ = ("version", "kind", "actor", "time", "details_json")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    version: int
    kind: str
    actor: str
    time: str
    details_json: str
    def __init__(self, version: _Optional[int] = ..., kind: _Optional[str] = ..., actor: _Optional[str] = ..., time: _Optional[str] = ..., details_json: _Optional[str] = ...) -> None: ...

class History(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[EntryEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[EntryEvent, _Mapping]]] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("at",)
    AT_FIELD_NUMBER: _ClassVar[int]
    at: str
    def __init__(self, at: _Optional[str] = ...) -> None: ...

class OverdueEntry(_message.Message):
    __slots__ = ("code", "agency", "name", "kind", "since", "due")
    CODE_FIELD_NUMBER: _ClassVar[int]
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    DUE_FIELD_NUMBER: _ClassVar[int]
    code: str
    agency: str
    name: str
    kind: str
    since: str
    due: str
    def __init__(self, code: _Optional[str] = ..., agency: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., since: _Optional[str] = ..., due: _Optional[str] = ...) -> None: ...

class ItemProvider(_message.Message):
    __slots__ = ("agency", "codes", "authoritative", "items")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    AUTHORITATIVE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    agency: str
    codes: _containers.RepeatedScalarFieldContainer[str]
    authoritative: bool
    items: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agency: _Optional[str] = ..., codes: _Optional[_Iterable[str]] = ..., authoritative: _Optional[bool] = ..., items: _Optional[_Iterable[str]] = ...) -> None: ...

class SharedItem(_message.Message):
    __slots__ = ("item", "providers", "datum", "conflict", "suggested_source", "reason")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    DATUM_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_SOURCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    item: str
    providers: _containers.RepeatedCompositeFieldContainer[ItemProvider]
    datum: str
    conflict: str
    suggested_source: str
    reason: str
    def __init__(self, item: _Optional[str] = ..., providers: _Optional[_Iterable[_Union[ItemProvider, _Mapping]]] = ..., datum: _Optional[str] = ..., conflict: _Optional[str] = ..., suggested_source: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AgencyEvaluation(_message.Message):
    __slots__ = ("agency", "entries", "published", "resources_captured", "resources_published", "uncatalogued_resources", "completeness", "has_completeness", "overdue_entries", "late_answers", "has_late_answers", "sync_lag_seconds", "has_sync_lag")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_CAPTURED_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    UNCATALOGUED_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    HAS_COMPLETENESS_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LATE_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    HAS_LATE_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    SYNC_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HAS_SYNC_LAG_FIELD_NUMBER: _ClassVar[int]
    agency: str
    entries: int
    published: int
    resources_captured: int
    resources_published: int
    uncatalogued_resources: _containers.RepeatedScalarFieldContainer[str]
    completeness: float
    has_completeness: bool
    overdue_entries: int
    late_answers: int
    has_late_answers: bool
    sync_lag_seconds: float
    has_sync_lag: bool
    def __init__(self, agency: _Optional[str] = ..., entries: _Optional[int] = ..., published: _Optional[int] = ..., resources_captured: _Optional[int] = ..., resources_published: _Optional[int] = ..., uncatalogued_resources: _Optional[_Iterable[str]] = ..., completeness: _Optional[float] = ..., has_completeness: _Optional[bool] = ..., overdue_entries: _Optional[int] = ..., late_answers: _Optional[int] = ..., has_late_answers: _Optional[bool] = ..., sync_lag_seconds: _Optional[float] = ..., has_sync_lag: _Optional[bool] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("at", "overdue", "shared_items", "evaluation")
    AT_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    SHARED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    at: str
    overdue: _containers.RepeatedCompositeFieldContainer[OverdueEntry]
    shared_items: _containers.RepeatedCompositeFieldContainer[SharedItem]
    evaluation: _containers.RepeatedCompositeFieldContainer[AgencyEvaluation]
    def __init__(self, at: _Optional[str] = ..., overdue: _Optional[_Iterable[_Union[OverdueEntry, _Mapping]]] = ..., shared_items: _Optional[_Iterable[_Union[SharedItem, _Mapping]]] = ..., evaluation: _Optional[_Iterable[_Union[AgencyEvaluation, _Mapping]]] = ...) -> None: ...

class DcatRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DcatDocument(_message.Message):
    __slots__ = ("json_ld",)
    JSON_LD_FIELD_NUMBER: _ClassVar[int]
    json_ld: str
    def __init__(self, json_ld: _Optional[str] = ...) -> None: ...

class AgencyRecord(_message.Message):
    __slots__ = ("agency", "uscc", "name", "parent", "district", "administrators", "reviewers", "version", "updated_at", "updated_by")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    USCC_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_FIELD_NUMBER: _ClassVar[int]
    ADMINISTRATORS_FIELD_NUMBER: _ClassVar[int]
    REVIEWERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    agency: str
    uscc: str
    name: str
    parent: str
    district: str
    administrators: _containers.RepeatedScalarFieldContainer[str]
    reviewers: _containers.RepeatedScalarFieldContainer[str]
    version: int
    updated_at: str
    updated_by: str
    def __init__(self, agency: _Optional[str] = ..., uscc: _Optional[str] = ..., name: _Optional[str] = ..., parent: _Optional[str] = ..., district: _Optional[str] = ..., administrators: _Optional[_Iterable[str]] = ..., reviewers: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ..., updated_at: _Optional[str] = ..., updated_by: _Optional[str] = ...) -> None: ...

class SaveAgencyRequest(_message.Message):
    __slots__ = ("record", "create")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    record: AgencyRecord
    create: bool
    def __init__(self, record: _Optional[_Union[AgencyRecord, _Mapping]] = ..., create: _Optional[bool] = ...) -> None: ...

class AgencyRef(_message.Message):
    __slots__ = ("agency",)
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    agency: str
    def __init__(self, agency: _Optional[str] = ...) -> None: ...

class AgencyList(_message.Message):
    __slots__ = ("agencies",)
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    agencies: _containers.RepeatedCompositeFieldContainer[AgencyRecord]
    def __init__(self, agencies: _Optional[_Iterable[_Union[AgencyRecord, _Mapping]]] = ...) -> None: ...

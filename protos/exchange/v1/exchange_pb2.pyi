from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Event(_message.Message):
    __slots__ = ("notification_id", "originator_id", "originator_version", "topic", "state", "resource", "operation", "commit_time", "source_position")
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINATOR_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINATOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_POSITION_FIELD_NUMBER: _ClassVar[int]
    notification_id: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes
    resource: str
    operation: str
    commit_time: float
    source_position: int
    def __init__(self, notification_id: _Optional[int] = ..., originator_id: _Optional[str] = ..., originator_version: _Optional[int] = ..., topic: _Optional[str] = ..., state: _Optional[bytes] = ..., resource: _Optional[str] = ..., operation: _Optional[str] = ..., commit_time: _Optional[float] = ..., source_position: _Optional[int] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("after", "events", "head", "reached", "items", "rows")
    AFTER_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    REACHED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    after: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    head: int
    reached: int
    items: _containers.RepeatedScalarFieldContainer[str]
    rows: str
    def __init__(self, after: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., head: _Optional[int] = ..., reached: _Optional[int] = ..., items: _Optional[_Iterable[str]] = ..., rows: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("agency", "node_version")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    NODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    agency: str
    node_version: str
    def __init__(self, agency: _Optional[str] = ..., node_version: _Optional[str] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("hello", "batch")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: EventBatch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[EventBatch, _Mapping]] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("position", "stored")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    position: int
    stored: int
    def __init__(self, position: _Optional[int] = ..., stored: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("agency", "after", "max_batch", "consumer", "resource", "purpose")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    agency: str
    after: int
    max_batch: int
    consumer: str
    resource: str
    purpose: str
    def __init__(self, agency: _Optional[str] = ..., after: _Optional[int] = ..., max_batch: _Optional[int] = ..., consumer: _Optional[str] = ..., resource: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class PositionRequest(_message.Message):
    __slots__ = ("agency",)
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    agency: str
    def __init__(self, agency: _Optional[str] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("position", "hub_position")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    HUB_POSITION_FIELD_NUMBER: _ClassVar[int]
    position: int
    hub_position: int
    def __init__(self, position: _Optional[int] = ..., hub_position: _Optional[int] = ...) -> None: ...

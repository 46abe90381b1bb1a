from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyPart(_message.Message):
    __slots__ = ("item", "value")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    item: str
    value: str
    def __init__(self, item: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("agency", "provider", "resource", "key", "where", "page_size", "page_token", "purpose")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    agency: str
    provider: str
    resource: str
    key: _containers.RepeatedCompositeFieldContainer[KeyPart]
    where: str
    page_size: int
    page_token: str
    purpose: str
    def __init__(self, agency: _Optional[str] = ..., provider: _Optional[str] = ..., resource: _Optional[str] = ..., key: _Optional[_Iterable[_Union[KeyPart, _Mapping]]] = ..., where: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class QueryRow(_message.Message):
    __slots__ = ("row", "version")
    ROW_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    row: bytes
    version: int
    def __init__(self, row: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class QueryPage(_message.Message):
    __slots__ = ("rows", "next_page_token", "items", "rows_filter", "position", "scanned", "purpose")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FILTER_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SCANNED_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[QueryRow]
    next_page_token: str
    items: _containers.RepeatedScalarFieldContainer[str]
    rows_filter: str
    position: int
    scanned: int
    purpose: str
    def __init__(self, rows: _Optional[_Iterable[_Union[QueryRow, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., items: _Optional[_Iterable[str]] = ..., rows_filter: _Optional[str] = ..., position: _Optional[int] = ..., scanned: _Optional[int] = ..., purpose: _Optional[str] = ...) -> None: ...

from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status", "version", "handle_store")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HANDLE_STORE_FIELD_NUMBER: _ClassVar[int]
    status: str
    version: str
    handle_store: str
    def __init__(self, status: _Optional[str] = ..., version: _Optional[str] = ..., handle_store: _Optional[str] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("if_absent", "if_version")
    IF_ABSENT_FIELD_NUMBER: _ClassVar[int]
    IF_VERSION_FIELD_NUMBER: _ClassVar[int]
    if_absent: bool
    if_version: int
    def __init__(self, if_absent: _Optional[bool] = ..., if_version: _Optional[int] = ...) -> None: ...

class StoreHeader(_message.Message):
    __slots__ = ("name", "condition")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    name: str
    condition: Condition
    def __init__(self, name: _Optional[str] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ...) -> None: ...

class StoreRequest(_message.Message):
    __slots__ = ("header", "ipc")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    IPC_FIELD_NUMBER: _ClassVar[int]
    header: StoreHeader
    ipc: bytes
    def __init__(self, header: _Optional[_Union[StoreHeader, _Mapping]] = ..., ipc: _Optional[bytes] = ...) -> None: ...

class StoreResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: DatasetInfo
    def __init__(self, dataset: _Optional[_Union[DatasetInfo, _Mapping]] = ...) -> None: ...

class StoreBatchResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ...) -> None: ...

class LoadRequest(_message.Message):
    __slots__ = ("name", "columns", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    version: int
    def __init__(self, name: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ...) -> None: ...

class LoadResponse(_message.Message):
    __slots__ = ("dataset", "ipc")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    IPC_FIELD_NUMBER: _ClassVar[int]
    dataset: DatasetInfo
    ipc: bytes
    def __init__(self, dataset: _Optional[_Union[DatasetInfo, _Mapping]] = ..., ipc: _Optional[bytes] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("sql", "into")
    SQL_FIELD_NUMBER: _ClassVar[int]
    INTO_FIELD_NUMBER: _ClassVar[int]
    sql: str
    into: str
    def __init__(self, sql: _Optional[str] = ..., into: _Optional[str] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("ipc", "stored")
    IPC_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    ipc: bytes
    stored: DatasetInfo
    def __init__(self, ipc: _Optional[bytes] = ..., stored: _Optional[_Union[DatasetInfo, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class CacheStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CacheStatsResponse(_message.Message):
    __slots__ = ("hits", "misses", "hit_rate", "bytes", "capacity", "entries", "evictions", "disk_hits", "disk_misses", "disk_bytes", "disk_capacity", "store_requests", "store_bytes_read", "store_bytes_written")
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    DISK_HITS_FIELD_NUMBER: _ClassVar[int]
    DISK_MISSES_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    STORE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    STORE_BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    STORE_BYTES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    hits: int
    misses: int
    hit_rate: float
    bytes: int
    capacity: int
    entries: int
    evictions: int
    disk_hits: int
    disk_misses: int
    disk_bytes: int
    disk_capacity: int
    store_requests: int
    store_bytes_read: int
    store_bytes_written: int
    def __init__(self, hits: _Optional[int] = ..., misses: _Optional[int] = ..., hit_rate: _Optional[float] = ..., bytes: _Optional[int] = ..., capacity: _Optional[int] = ..., entries: _Optional[int] = ..., evictions: _Optional[int] = ..., disk_hits: _Optional[int] = ..., disk_misses: _Optional[int] = ..., disk_bytes: _Optional[int] = ..., disk_capacity: _Optional[int] = ..., store_requests: _Optional[int] = ..., store_bytes_read: _Optional[int] = ..., store_bytes_written: _Optional[int] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name", "data_type", "nullable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    NULLABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    data_type: str
    nullable: bool
    def __init__(self, name: _Optional[str] = ..., data_type: _Optional[str] = ..., nullable: _Optional[bool] = ...) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("name", "version", "rows", "bytes", "created_unix_ms", "columns")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    rows: int
    bytes: int
    created_unix_ms: int
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., rows: _Optional[int] = ..., bytes: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ...) -> None: ...

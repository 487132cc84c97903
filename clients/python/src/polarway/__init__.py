"""Python client for Polarway: store DataFrames by name on a Polarway server, load them back
whole or streamed, and run SQL over them.

    from polarway import DistributedClient
    client = DistributedClient(host="localhost", port=50052)
    client.store("trades", df)
    df = client.load("trades")
"""

from ._common import DEFAULT, Column, DatasetInfo
from .aio import AsyncDistributedClient, AsyncFrameStream
from .client import DistributedClient, FrameStream
from .errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    ConditionFailed,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PolarwayError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

__version__ = "0.1.0"

__all__ = [
    "DistributedClient",
    "AsyncDistributedClient",
    "FrameStream",
    "AsyncFrameStream",
    "DatasetInfo",
    "Column",
    "DEFAULT",
    "PolarwayError",
    "InvalidArgument",
    "NotFound",
    "ConditionFailed",
    "AlreadyExists",
    "Aborted",
    "PermissionDenied",
    "Unauthenticated",
    "ResourceExhausted",
    "Unavailable",
    "DeadlineExceeded",
    "Cancelled",
    "Internal",
]

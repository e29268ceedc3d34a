"""People label preferences: the label database, its store, and the HTTP API.

``open_database(url)`` opens (and migrates) the database; ``LabelStore`` holds every
operation on it; ``robopref.label.export`` reads preferences back for reward training;
``robopref.label.server.create_app`` serves the API (imported on demand: it needs FastAPI).
Also imported on demand (they need torch): ``robopref.label.source.LabelingSource``, the
loop's ``people`` preference source; ``robopref.label.enqueue`` (``robopref label enqueue``)
and ``robopref.label.train`` (``robopref reward train``: a reward from the database alone).
"""

from robopref.label.database import Database, open_database
from robopref.label.errors import (
    Conflict,
    Forbidden,
    InvalidLabel,
    LabelDatabaseError,
    LabelError,
    NotFound,
    Retired,
    Unauthorized,
)
from robopref.label.store import AnnotatorInfo, LabelInfo, LabelStore, QueryInfo

__all__ = [
    "AnnotatorInfo",
    "Conflict",
    "Database",
    "Forbidden",
    "InvalidLabel",
    "LabelDatabaseError",
    "LabelError",
    "LabelInfo",
    "LabelStore",
    "NotFound",
    "QueryInfo",
    "Retired",
    "Unauthorized",
    "open_database",
]

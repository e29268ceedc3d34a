"""Errors of the label database and server, each one line naming the problem and the fix.

They derive from :class:`robopref.errors.RobopError`, so the CLI prints them without a
traceback; the HTTP server maps each class to one status code (see ``server.py``).
"""

from __future__ import annotations

from robopref.errors import ConfigError, RobopError


class LabelError(RobopError):
    """Base class: a request the label store refuses (bad input, not a bug)."""


class LabelDatabaseError(LabelError):
    """The database cannot be used: unreachable, or of a format this robopref cannot read."""


class Unauthorized(LabelError):
    """No token, or a token that names no annotator (HTTP 401)."""


class Forbidden(LabelError):
    """The annotator is known but may not see or do this (HTTP 403)."""


class NotFound(LabelError):
    """The query or label named does not exist (HTTP 404)."""


class Conflict(LabelError):
    """The request contradicts what is already stored (HTTP 409)."""


class Retired(Conflict):
    """The query was retired (enough answers) or withdrawn; it takes no more labels (409)."""


class InvalidLabel(LabelError, ConfigError):
    """A label or query that breaks a rule the body schema cannot express (HTTP 422)."""

"""The one exception tree of wellml.

Every error wellml raises on purpose derives from :class:`WellmlError`, so a caller can catch
one class; the CLI prints the message as one line and the REST edge maps the class to a status
code through :data:`HTTP_STATUS`::

    WellmlError
    ├── NotFound            a name, version, alias or id that does not exist
    ├── AlreadyExists       a create that would overwrite something immutable
    ├── Conflict            a write that clashes with the current state
    ├── InvalidInput        malformed files, wrong types, missing columns, bad specs
    │   └── SchemaMismatch  data that does not fit a recorded schema or signature
    ├── IntegrityError      stored content whose digest no longer matches
    ├── PermissionDenied    a scope that does not cover the call
    │   └── Unauthenticated no token, or an unknown, revoked or expired one
    ├── BackendUnavailable  a store or service that cannot be reached, or an extra not installed
    └── UserCodeError       an exception raised by user code (training function, transform);
                            it keeps the original traceback as ``__cause__``
"""

from __future__ import annotations


class WellmlError(Exception):
    """Root of every error wellml raises on purpose."""


class NotFound(WellmlError):
    """A referenced record does not exist."""


class AlreadyExists(WellmlError):
    """A create would overwrite an existing immutable record."""


class Conflict(WellmlError):
    """A write clashes with the current state of a record."""


class InvalidInput(WellmlError):
    """Input is malformed, of the wrong type, or incomplete."""


class SchemaMismatch(InvalidInput):
    """Data does not match a recorded schema or model signature."""


class IntegrityError(WellmlError):
    """Stored content no longer matches its recorded digest."""


class PermissionDenied(WellmlError):
    """The caller is not allowed to do this."""


class Unauthenticated(PermissionDenied):
    """No valid credentials were presented."""


class BackendUnavailable(WellmlError):
    """A backend cannot be reached or its optional dependency is not installed."""


class UserCodeError(WellmlError):
    """User code raised an exception; the original is kept as ``__cause__``."""


# The one place that maps errors to HTTP status codes (the REST edge uses it).
HTTP_STATUS: dict[type[WellmlError], int] = {
    NotFound: 404,
    AlreadyExists: 409,
    Conflict: 409,
    SchemaMismatch: 422,
    InvalidInput: 400,
    IntegrityError: 500,
    Unauthenticated: 401,
    PermissionDenied: 403,
    BackendUnavailable: 503,
    UserCodeError: 500,
}


def http_status(error: WellmlError) -> int:
    """Return the HTTP status for an error, using its most specific class in the map."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
